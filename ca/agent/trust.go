package agent

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"slices"
	"strings"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// caTLSConfig authenticates the CA by its SPIFFE ID rather than by the
// name dialled (Istio's agent checks a DNS name, istiod.istio-system.svc):
// the wire contract guarantees the CA's X.509-SVID
// spiffe://<td>/ns/<namespace>/sa/garrison, while the address an agent
// dials may be an IP, a load balancer or a port-forward. The chain must
// verify against the platform's roots or the CA's current trust bundle,
// with the agent's clock. cert, when set, is the client certificate.
func (a *Agent) caTLSConfig(cert *tls.Certificate) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		// Go's own verification would check the dialled name; the chain
		// and the identity are checked by verifyCA instead, as go-spiffe's
		// tlsconfig does.
		InsecureSkipVerify:    true,
		VerifyPeerCertificate: a.verifyCA,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			if cert == nil {
				return &tls.Certificate{}, nil // none: the token authenticates
			}
			return cert, nil
		},
		Time: a.cfg.Now,
	}
}

func (a *Agent) verifyCA(raw [][]byte, _ [][]*x509.Certificate) error {
	id, _, err := x509svid.ParseAndVerify(raw, anyTrustDomain(a.verificationRoots()), x509svid.WithTime(a.cfg.Now()))
	if err != nil {
		return fmt.Errorf("CA server certificate: %w", err)
	}
	return a.authorizeCA(id)
}

func (a *Agent) authorizeCA(id spiffeid.ID) error {
	if !a.serverID.IsZero() {
		if id != a.serverID {
			return fmt.Errorf("CA server is %s, want %s", id, a.serverID)
		}
		return nil
	}
	seg := strings.Split(strings.TrimPrefix(id.Path(), "/"), "/")
	if len(seg) != 4 || seg[0] != "ns" || seg[2] != "sa" || seg[3] != "garrison" {
		return fmt.Errorf("CA server is %s, want spiffe://<trust domain>/ns/<namespace>/sa/garrison", id)
	}
	a.mu.Lock()
	td := a.td
	a.mu.Unlock()
	if !td.IsZero() && id.TrustDomain() != td {
		return fmt.Errorf("CA server is %s, outside the workload's trust domain %s", id, td)
	}
	return nil
}

// verificationRoots are the roots that authenticate the CA and the chains
// it issues: the platform's roots file, read again so that a rotated file
// is followed (the last good copy stays when it cannot be read), and the
// roots of the CA's current bundle.
func (a *Agent) verificationRoots() []*x509.Certificate {
	roots, err := readRoots(a.cfg.RootCertFile)
	a.mu.Lock()
	defer a.mu.Unlock()
	if err == nil && !equalCerts(roots, a.fileRoots) {
		a.fileRoots = roots
	}
	out := slices.Clone(a.fileRoots)
	for _, r := range a.bundleRoots {
		if !containsCert(out, r) {
			out = append(out, r)
		}
	}
	return out
}

// anyTrustDomain serves the same roots for whatever trust domain is asked:
// a roots file names none. The trust domain is checked by authorizeCA and
// by the SPIFFE ID checks on issued certificates.
type anyTrustDomain []*x509.Certificate

var _ x509bundle.Source = anyTrustDomain(nil)

func (r anyTrustDomain) GetX509BundleForTrustDomain(td spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	return x509bundle.FromX509Authorities(td, r), nil
}
