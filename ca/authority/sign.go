package authority

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"
)

// createCertificate signs tmpl with the signing CA.
//
// For an in-process ECDSA key it takes a faster path than
// x509.CreateCertificate, which after signing verifies its own signature
// with the issuer's public key. That check exists to catch a faulty
// crypto.Signer (an HSM, a remote signer); for Go's own ECDSA it only
// repeats work, and an ECDSA verification costs about three signatures: it
// was half of the CA's CPU per certificate. So Go still encodes the
// certificate (x509.CreateCertificate with a signer that captures the
// to-be-signed bytes and returns no signature, which makes Go's check fail
// at once, before any elliptic-curve arithmetic), and we sign those bytes
// and assemble the certificate. Tests verify every certificate this path
// makes against its issuer. Any other key takes x509.CreateCertificate.
func (a *Authority) createCertificate(tmpl *x509.Certificate, sc *signingCA, pub crypto.PublicKey) ([]byte, error) {
	if sc.fast == nil {
		return x509.CreateCertificate(a.cfg.Rand, tmpl, sc.cert, pub, sc.key)
	}
	return fastSign(a.cfg.Rand, tmpl, sc.cert, pub, sc.fast)
}

// captureSigner hands x509.CreateCertificate the CA's public key and keeps
// the bytes it is asked to sign.
type captureSigner struct {
	pub crypto.PublicKey
	tbs []byte
}

var _ crypto.MessageSigner = (*captureSigner)(nil)

func (c *captureSigner) Public() crypto.PublicKey { return c.pub }

func (c *captureSigner) Sign(io.Reader, []byte, crypto.SignerOpts) ([]byte, error) {
	return nil, errCaptured
}

func (c *captureSigner) SignMessage(_ io.Reader, msg []byte, _ crypto.SignerOpts) ([]byte, error) {
	c.tbs = append([]byte(nil), msg...)
	// An empty signature fails Go's check while parsing, before any
	// curve arithmetic.
	return []byte{}, nil
}

var errCaptured = errors.New("capture signer asked for a digest signature")

var (
	oidECDSAWithSHA256 = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 2}
	oidECDSAWithSHA384 = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 3}
	oidECDSAWithSHA512 = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 4}
)

func fastSign(rnd io.Reader, tmpl, parent *x509.Certificate, pub crypto.PublicKey, key *ecdsa.PrivateKey) ([]byte, error) {
	capt := &captureSigner{pub: &key.PublicKey}
	if _, err := x509.CreateCertificate(rnd, tmpl, parent, pub, capt); err == nil || capt.tbs == nil {
		if err == nil {
			err = errors.New("x509.CreateCertificate accepted an empty signature")
		}
		return nil, fmt.Errorf("encoding certificate: %w", err)
	}
	// Go picks the hash by curve (x509.signingParamsForKey); so do we, and
	// the algorithm inside the TBS is the one Go wrote there.
	var (
		digest []byte
		oid    asn1.ObjectIdentifier
	)
	switch key.Curve {
	case elliptic.P256():
		d := sha256.Sum256(capt.tbs)
		digest, oid = d[:], oidECDSAWithSHA256
	case elliptic.P384():
		d := sha512.Sum384(capt.tbs)
		digest, oid = d[:], oidECDSAWithSHA384
	case elliptic.P521():
		d := sha512.Sum512(capt.tbs)
		digest, oid = d[:], oidECDSAWithSHA512
	default:
		return nil, fmt.Errorf("unsupported CA curve %s", key.Curve.Params().Name)
	}
	sig, err := ecdsa.SignASN1(rnd, key, digest)
	if err != nil {
		return nil, err
	}
	return asn1.Marshal(struct {
		TBS       asn1.RawValue
		Algorithm pkix.AlgorithmIdentifier
		Signature asn1.BitString
	}{
		TBS:       asn1.RawValue{FullBytes: capt.tbs},
		Algorithm: pkix.AlgorithmIdentifier{Algorithm: oid},
		Signature: asn1.BitString{Bytes: sig, BitLength: 8 * len(sig)},
	})
}
