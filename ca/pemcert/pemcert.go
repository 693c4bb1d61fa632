// Package pemcert reads and writes chains of X.509 certificates as PEM,
// the form the CA API, the trust bundle files and Istio's cacerts layout
// use, so that the CA, its upstreams and the node agent agree on it.
package pemcert

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
)

// ErrNone: the data holds no CERTIFICATE block.
var ErrNone = errors.New("no PEM certificate")

// Parse parses every CERTIFICATE block of data, in order; other blocks are
// skipped. A block that does not parse is an error.
func Parse(data []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, ErrNone
	}
	return out, nil
}

// Encode writes certs as concatenated CERTIFICATE blocks.
func Encode(certs []*x509.Certificate) []byte {
	var b []byte
	for _, c := range certs {
		b = append(b, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return b
}
