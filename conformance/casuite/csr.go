package casuite

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"fmt"
	"net/url"
)

// keyFor returns a generator for a CSRSpec.Key.
func keyFor(kind string) (func() (crypto.Signer, error), error) {
	ec := func(c elliptic.Curve) func() (crypto.Signer, error) {
		return func() (crypto.Signer, error) { return ecdsa.GenerateKey(c, rand.Reader) }
	}
	rsaKey := func(bits int) func() (crypto.Signer, error) {
		return func() (crypto.Signer, error) { return rsa.GenerateKey(rand.Reader, bits) }
	}
	switch kind {
	case "", "p256":
		return ec(elliptic.P256()), nil
	case "p384":
		return ec(elliptic.P384()), nil
	case "p224":
		return ec(elliptic.P224()), nil
	case "p521":
		return ec(elliptic.P521()), nil
	case "rsa1024":
		return rsaKey(1024), nil
	case "rsa2048":
		return rsaKey(2048), nil
	case "rsa3072":
		return rsaKey(3072), nil
	case "rsa4096":
		return rsaKey(4096), nil
	case "ed25519":
		return func() (crypto.Signer, error) {
			_, k, err := ed25519.GenerateKey(rand.Reader)
			return k, err
		}, nil
	}
	return nil, fmt.Errorf("unknown csr key %q", kind)
}

// MakeCSR builds the PEM CSR a spec describes and returns it with its
// public key (nil for a Raw CSR).
func MakeCSR(spec CSRSpec) (string, crypto.PublicKey, error) {
	if spec.Raw != nil {
		return *spec.Raw, nil, nil
	}
	gen, err := keyFor(spec.Key)
	if err != nil {
		return "", nil, err
	}
	key, err := gen()
	if err != nil {
		return "", nil, err
	}
	tmpl := &x509.CertificateRequest{DNSNames: spec.DNS, Subject: pkix.Name{CommonName: spec.CN}}
	for _, u := range spec.URIs {
		pu, err := url.Parse(u)
		if err != nil {
			return "", nil, err
		}
		tmpl.URIs = append(tmpl.URIs, pu)
	}
	if spec.CA {
		v, _ := asn1.Marshal(struct{ IsCA bool }{true})
		tmpl.ExtraExtensions = append(tmpl.ExtraExtensions, pkix.Extension{Id: oidBasicConstraints, Critical: true, Value: v})
	}
	if spec.KeyCertSign {
		v, _ := asn1.Marshal(asn1.BitString{Bytes: []byte{0x04}, BitLength: 6}) // bit 5: keyCertSign
		tmpl.ExtraExtensions = append(tmpl.ExtraExtensions, pkix.Extension{Id: oidKeyUsage, Critical: true, Value: v})
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		return "", nil, err
	}
	if spec.BadSignature {
		// The last byte is in the signature's last integer: flipping it
		// keeps the DER well-formed and the signature wrong.
		der[len(der)-1] ^= 0x01
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})), key.Public(), nil
}

var (
	oidBasicConstraints = asn1.ObjectIdentifier{2, 5, 29, 19}
	oidKeyUsage         = asn1.ObjectIdentifier{2, 5, 29, 15}
)
