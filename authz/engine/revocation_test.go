package engine

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net/url"
	"sync"
	"testing"
	"time"
)

// revokedSet is a RevocationChecker over a set of serials.
type revokedSet struct {
	mu      sync.Mutex
	serials map[string]bool
}

func (r *revokedSet) IsRevoked(s *big.Int) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.serials[s.String()]
}

func (r *revokedSet) revoke(s *big.Int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.serials[s.String()] = true
}

// peerCertificate is a self-signed SVID-like certificate with serial, as
// Envoy sends it with include_peer_certificate: URL-encoded PEM.
func peerCertificate(t *testing.T, serial int64) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	spiffe, _ := url.Parse("spiffe://cluster.local/ns/default/sa/bookinfo-productpage")
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{}, URIs: []*url.URL{spiffe},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return url.QueryEscape(string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
}

// TestRevokedPeerCertificateIsRefused: a request whose peer certificate
// the CA revoked is denied before any policy, including one whose decision
// was cached while the certificate was good; others are decided as usual.
func TestRevokedPeerCertificateIsRefused(t *testing.T) {
	revoked := &revokedSet{serials: map[string]bool{}}
	snap := bookinfoSnapshot(t)
	e, err := NewStaticConfig(Config{Revocations: revoked}, mustCompile(t, snap), snap)
	if err != nil {
		t.Fatal(err)
	}
	good, bad := peerCertificate(t, 1001), peerCertificate(t, 1002)
	ask := func(cert string) *Decision {
		req := bookinfoRequest("bookinfo-productpage", "bookinfo-details", "GET", "/details/0")
		req.Attributes.Source.Certificate = cert
		d, err := e.Decide(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	for _, cert := range []string{good, bad, "", "not%20a%20certificate"} {
		if d := ask(cert); !d.Allowed {
			t.Fatalf("before any revocation: %+v", d)
		}
	}
	revoked.revoke(big.NewInt(1002))
	if d := ask(bad); d.Allowed || d.Status != 403 || d.Reason != ReasonCertificateRevoked {
		t.Errorf("revoked certificate: %+v", d)
	}
	for _, cert := range []string{good, ""} {
		if d := ask(cert); !d.Allowed {
			t.Errorf("unrevoked (%q...): %+v", cert[:min(len(cert), 10)], d)
		}
	}
}
