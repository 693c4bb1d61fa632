package authority

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"time"
)

// The leaf encoder. x509.CreateCertificate spends about as long encoding
// a certificate through reflection (encoding/asn1) as signing it, and then
// verifies its own signature, which for ECDSA costs about three
// signatures: together most of the CA's CPU per certificate. For the one
// profile the authority issues (an X.509-SVID signed by an in-process
// ECDSA key) this file writes the DER directly and signs it.
//
// The bytes are exactly Go's: TestEncoderMatchesGo compares the
// to-be-signed certificate with what x509.CreateCertificate makes from the
// same template, over keys, SANs, serials and both time encodings. The
// self-check x509.CreateCertificate adds guards against a faulty
// crypto.Signer (an HSM, a remote signer); this path is only taken for Go's
// own ECDSA keys. Any other signing key goes through x509.CreateCertificate.

// leafFields are what varies between two SVIDs.
type leafFields struct {
	serial    *big.Int
	notBefore time.Time
	notAfter  time.Time
	spki      []byte // the leaf's SubjectPublicKeyInfo, DER
	keyUsage  x509.KeyUsage
	ski, aki  []byte
	uri       string
	dnsNames  []string
	ips       []net.IP
}

// DER tags.
const (
	tagInteger     = 0x02
	tagBitString   = 0x03
	tagOctetString = 0x04
	tagOID         = 0x06
	tagUTCTime     = 0x17
	tagGenTime     = 0x18
	tagSequence    = 0x30
)

var (
	derVersion3        = []byte{0xa0, 0x03, 0x02, 0x01, 0x02}
	derEmptySubject    = []byte{0x30, 0x00}
	derBoolTrue        = []byte{0x01, 0x01, 0xff}
	derOIDKeyUsage     = []byte{0x06, 0x03, 0x55, 0x1d, 0x0f}
	derOIDExtKeyUsage  = []byte{0x06, 0x03, 0x55, 0x1d, 0x25}
	derOIDBasicConstr  = []byte{0x06, 0x03, 0x55, 0x1d, 0x13}
	derOIDSubjectKeyID = []byte{0x06, 0x03, 0x55, 0x1d, 0x0e}
	derOIDAuthKeyID    = []byte{0x06, 0x03, 0x55, 0x1d, 0x23}
	derOIDSubjectAlt   = []byte{0x06, 0x03, 0x55, 0x1d, 0x11}
	// SEQUENCE { serverAuth, clientAuth }
	derEKUServerClient = []byte{0x30, 0x14,
		0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x01,
		0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x02}
	// basicConstraints CA:false is the empty SEQUENCE (both fields default).
	derBasicNotCA = []byte{0x30, 0x00}
)

func appendLength(b []byte, n int) []byte {
	switch {
	case n < 0x80:
		return append(b, byte(n))
	case n < 0x100:
		return append(b, 0x81, byte(n))
	case n < 0x10000:
		return append(b, 0x82, byte(n>>8), byte(n))
	default:
		return append(b, 0x83, byte(n>>16), byte(n>>8), byte(n))
	}
}

func appendTLV(b []byte, tag byte, content ...[]byte) []byte {
	n := 0
	for _, c := range content {
		n += len(c)
	}
	b = append(b, tag)
	b = appendLength(b, n)
	for _, c := range content {
		b = append(b, c...)
	}
	return b
}

func appendExtension(b []byte, oid []byte, critical bool, value []byte) []byte {
	octets := appendTLV(nil, tagOctetString, value)
	if critical {
		return appendTLV(b, tagSequence, oid, derBoolTrue, octets)
	}
	return appendTLV(b, tagSequence, oid, octets)
}

// appendTime writes a time as RFC 5280 4.1.2.5 asks: UTCTime through
// 2049, GeneralizedTime after.
func appendTime(b []byte, t time.Time) []byte {
	t = t.UTC()
	if y := t.Year(); y >= 1950 && y < 2050 {
		return appendTLV(b, tagUTCTime, []byte(t.Format("060102150405Z")))
	}
	return appendTLV(b, tagGenTime, []byte(t.Format("20060102150405Z")))
}

// appendKeyUsage writes the BIT STRING of a key usage as Go does (bit 0 is
// the most significant bit; trailing zero bits are unused).
func appendKeyUsage(b []byte, ku x509.KeyUsage) []byte {
	var a [2]byte
	for i := range 9 {
		if ku&(1<<i) != 0 {
			a[i/8] |= 0x80 >> (i % 8)
		}
	}
	bits := a[:1]
	if a[1] != 0 {
		bits = a[:2]
	}
	last := bits[len(bits)-1]
	unused := 0
	for unused < 8 && last&(1<<unused) == 0 {
		unused++
	}
	if unused == 8 { // no bit set at all
		unused = 0
	}
	return appendTLV(b, tagBitString, []byte{byte(unused)}, bits)
}

func appendInteger(b []byte, n *big.Int) []byte {
	v := n.Bytes()
	if len(v) == 0 {
		return appendTLV(b, tagInteger, []byte{0})
	}
	if v[0]&0x80 != 0 {
		return appendTLV(b, tagInteger, []byte{0}, v)
	}
	return appendTLV(b, tagInteger, v)
}

// ecdsaAlgorithm is the AlgorithmIdentifier (DER) and hash Go uses with an
// ECDSA key on curve c.
func ecdsaAlgorithm(c elliptic.Curve) ([]byte, crypto.Hash, error) {
	switch c {
	case elliptic.P256():
		return []byte{0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02}, crypto.SHA256, nil
	case elliptic.P384():
		return []byte{0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03}, crypto.SHA384, nil
	case elliptic.P521():
		return []byte{0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x04}, crypto.SHA512, nil
	}
	return nil, 0, fmt.Errorf("unsupported CA curve %s", c.Params().Name)
}

// encodeTBS writes the TBSCertificate of an X.509-SVID issued by issuer
// with signature algorithm alg.
func encodeTBS(f *leafFields, issuer *x509.Certificate, alg []byte) []byte {
	var san []byte
	for _, d := range f.dnsNames {
		san = appendTLV(san, 0x82, []byte(d))
	}
	for _, ip := range f.ips {
		if ip4 := ip.To4(); ip4 != nil {
			ip = ip4
		}
		san = appendTLV(san, 0x87, ip)
	}
	san = appendTLV(san, 0x86, []byte(f.uri))

	exts := make([]byte, 0, 256)
	exts = appendExtension(exts, derOIDKeyUsage, true, appendKeyUsage(nil, f.keyUsage))
	exts = appendExtension(exts, derOIDExtKeyUsage, false, derEKUServerClient)
	exts = appendExtension(exts, derOIDBasicConstr, true, derBasicNotCA)
	exts = appendExtension(exts, derOIDSubjectKeyID, false, appendTLV(nil, tagOctetString, f.ski))
	if len(f.aki) > 0 {
		exts = appendExtension(exts, derOIDAuthKeyID, false, appendTLV(nil, tagSequence, appendTLV(nil, 0x80, f.aki)))
	}
	// The subject is empty, so the SAN extension is critical (RFC 5280
	// 4.2.1.6, X.509-SVID 4.2).
	exts = appendExtension(exts, derOIDSubjectAlt, true, appendTLV(nil, tagSequence, san))

	validity := appendTLV(nil, tagSequence, appendTime(nil, f.notBefore), appendTime(nil, f.notAfter))
	return appendTLV(make([]byte, 0, 512+len(exts)+len(f.spki)), tagSequence,
		derVersion3,
		appendInteger(nil, f.serial),
		alg,
		issuer.RawSubject,
		validity,
		derEmptySubject,
		f.spki,
		appendTLV(nil, 0xa3, appendTLV(nil, tagSequence, exts)),
	)
}

// signLeaf encodes and signs an X.509-SVID with an in-process ECDSA key.
func signLeaf(rnd io.Reader, f *leafFields, issuer *x509.Certificate, key *ecdsa.PrivateKey) ([]byte, error) {
	alg, hash, err := ecdsaAlgorithm(key.Curve)
	if err != nil {
		return nil, err
	}
	tbs := encodeTBS(f, issuer, alg)
	var digest []byte
	switch hash {
	case crypto.SHA256:
		d := sha256.Sum256(tbs)
		digest = d[:]
	case crypto.SHA384:
		d := sha512.Sum384(tbs)
		digest = d[:]
	default:
		d := sha512.Sum512(tbs)
		digest = d[:]
	}
	sig, err := ecdsa.SignASN1(rnd, key, digest)
	if err != nil {
		return nil, err
	}
	return appendTLV(make([]byte, 0, len(tbs)+len(alg)+len(sig)+16), tagSequence,
		tbs, alg, appendTLV(nil, tagBitString, []byte{0}, sig)), nil
}

// splitSPKI marshals a public key and returns its SubjectPublicKeyInfo and
// the SHA-256-based key identifier of RFC 7093 2 method 1 (the leftmost
// 160 bits of the hash of the subjectPublicKey bits), what Go computes for
// CA certificates since 1.25; Go leaves it out of leaves, and X.509-SVID
// consumers use it to tell keys apart.
func splitSPKI(pub crypto.PublicKey) (spki, ski []byte, err error) {
	spki, err = x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, nil, err
	}
	var info struct {
		Algorithm asn1.RawValue
		PublicKey asn1.BitString
	}
	if rest, err := asn1.Unmarshal(spki, &info); err != nil || len(rest) > 0 {
		return nil, nil, errors.New("malformed SubjectPublicKeyInfo")
	}
	sum := sha256.Sum256(info.PublicKey.Bytes)
	return spki, sum[:20], nil
}
