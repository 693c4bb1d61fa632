package engine

import (
	"crypto/x509"
	"encoding/pem"
	"math/big"
	"net/url"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/garrison-mesh/garrison/internal/twogen"
)

// RevocationChecker says whether a certificate Garrison's CA issued has
// been revoked (ca/authority). It must be fast: it is asked on every
// request that carries a peer certificate.
type RevocationChecker interface {
	IsRevoked(serial *big.Int) bool
}

// ReasonCertificateRevoked: the peer's certificate has been revoked. Envoy
// checks the CRL the node agent gives it at the handshake; ext_authz also
// refuses the request, so that a revocation takes effect on connections
// opened before it and for proxies without the CRL.
const ReasonCertificateRevoked = "certificate-revoked"

// peerSerials remembers the serial of each peer certificate seen: parsing
// an X.509 certificate costs tens of microseconds and a client presents the
// same one for its whole lifetime.
type peerSerials struct {
	m *twogen.Map[string, *big.Int]
}

func newPeerSerials() *peerSerials {
	return &peerSerials{m: twogen.New[string, *big.Int](4096)}
}

// serial of the peer certificate Envoy sent (source.certificate: the
// URL-encoded PEM, with include_peer_certificate), nil when there is none
// or it does not parse.
func (p *peerSerials) serial(certificate string) *big.Int {
	if s, ok := p.m.Get(certificate); ok {
		return s
	}
	var serial *big.Int
	if decoded, err := url.QueryUnescape(certificate); err == nil {
		if block, _ := pem.Decode([]byte(decoded)); block != nil && block.Type == "CERTIFICATE" {
			if cert, err := x509.ParseCertificate(block.Bytes); err == nil {
				serial = cert.SerialNumber
			}
		}
	}
	p.m.Put(certificate, serial)
	return serial
}

// requireUnrevoked denies a request whose peer certificate is revoked.
func (e *Engine) requireUnrevoked(ps *policySet, req *authv3.CheckRequest, in *preparedInput) *Decision {
	if e.revocations == nil {
		return nil
	}
	cert := req.GetAttributes().GetSource().GetCertificate()
	if cert == "" {
		return nil
	}
	serial := e.peerSerials.serial(cert)
	if serial == nil || !e.revocations.IsRevoked(serial) {
		return nil
	}
	d := &Decision{Status: 403, Reason: ReasonCertificateRevoked,
		Notes: []string{"peer certificate serial " + serial.Text(16) + " is revoked"}}
	in.annotate(d, ps.version)
	return d
}
