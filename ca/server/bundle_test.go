package server_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"google.golang.org/grpc/metadata"
	pb "istio.io/api/security/v1alpha1"

	"github.com/garrison-mesh/garrison/ca/authority"
	"github.com/garrison-mesh/garrison/ca/server"
)

func TestBundleHandler(t *testing.T) {
	e := newEnv(t)
	h := e.srv.BundleHandler()
	get := func(path, etag string) *http.Response {
		req := httptest.NewRequest(http.MethodGet, path, nil)
		if etag != "" {
			req.Header.Set("If-None-Match", etag)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec.Result()
	}
	resp := get("/bundle", "")
	body, _ := io.ReadAll(resp.Body)
	b, err := spiffebundle.Parse(e.ca.TrustDomain(), body)
	if err != nil || len(b.X509Authorities()) != 1 {
		t.Fatalf("bundle: %v", err)
	}
	if hint, ok := b.RefreshHint(); !ok || hint != authority.DefaultBundleRefreshHint {
		t.Errorf("refresh hint %v", hint)
	}
	etag := resp.Header.Get("ETag")
	if get("/bundle", etag).StatusCode != http.StatusNotModified {
		t.Error("an unchanged bundle is not 304 with its ETag")
	}
	seq, _ := b.SequenceNumber()
	// A revocation re-signs the CRL but leaves the bundle as it was.
	if err := e.ca.Revoke(context.Background(), e.certs["valid"].Leaf.SerialNumber, ""); err != nil {
		t.Fatal(err)
	}
	if get("/bundle", etag).StatusCode != http.StatusNotModified {
		t.Error("a revocation changed the bundle's ETag")
	}
	resp = get("/crl", "")
	body, _ = io.ReadAll(resp.Body)
	crl, err := x509.ParseRevocationList(body)
	if err != nil || resp.Header.Get("Content-Type") != "application/pkix-crl" || crl.NextUpdate.IsZero() {
		t.Fatalf("CRL: %v %s", err, resp.Header.Get("Content-Type"))
	}
	if err := crl.CheckSignatureFrom(e.ca.SigningChain()[0]); err != nil {
		t.Fatal(err)
	}
	// A rotation changes the ETag and the content.
	if err := e.ca.Rotate(context.Background(), authority.MintRoot, authority.RotateOptions{}); err != nil {
		t.Fatal(err)
	}
	resp = get("/bundle", etag)
	body, _ = io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("after a rotation: %d", resp.StatusCode)
	}
	if b, err = spiffebundle.Parse(e.ca.TrustDomain(), body); err != nil || len(b.X509Authorities()) != 2 {
		t.Fatalf("bundle during a root rotation must list both roots: %v", err)
	}
	if next, _ := b.SequenceNumber(); next <= seq {
		t.Errorf("spiffe_sequence %d after a root was added, was %d", next, seq)
	}
	resp = get("/root-cert.pem", "")
	body, _ = io.ReadAll(resp.Body)
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(body) || resp.Header.Get("Content-Type") != "application/x-pem-file" {
		t.Fatal("root-cert.pem")
	}
}

// TestServerCertificateFollowsRotation: after a root rotation, new TLS
// handshakes get a certificate under the new root without a restart, and
// a client trusting only the old root is refused only once the server
// certificate changed.
func TestServerCertificateFollowsRotation(t *testing.T) {
	e := newEnv(t)
	before := e.srv.ServerCertificate()
	// A staged root rotation leaves the server certificate under the old
	// root, which every client trusts, until the new root signs.
	if err := e.ca.Rotate(context.Background(), authority.MintRoot, authority.RotateOptions{ActivateAfter: time.Second}); err != nil {
		t.Fatal(err)
	}
	if !e.srv.ServerCertificate().Equal(before) {
		t.Fatal("the server certificate changed while the new root was only published")
	}
	// (The TLS clients here check certificates against the real clock: a
	// second ahead is well inside the 2-minute backdating.)
	e.clock.Set(e.clock.Now().Add(time.Second))
	if err := e.ca.Maintain(context.Background()); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for e.srv.ServerCertificate().Equal(before) {
		if time.Now().After(deadline) {
			t.Fatal("the server certificate was not renewed after a root rotation")
		}
		time.Sleep(10 * time.Millisecond)
	}
	newRoot := x509.NewCertPool()
	newRoot.AddCert(e.ca.Roots()[0])
	conn, err := tls.Dial("tcp", e.addr, &tls.Config{RootCAs: newRoot, ServerName: "localhost", NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatalf("handshake trusting only the new root: %v", err)
	}
	st := conn.ConnectionState()
	_ = conn.Close()
	leaf := st.PeerCertificates[0]
	if len(leaf.URIs) != 1 || leaf.URIs[0].String() != "spiffe://cluster.local/ns/istio-system/sa/garrison" {
		t.Fatalf("server SVID %v", leaf.URIs)
	}
	if len(leaf.IPAddresses) != 1 || !leaf.IPAddresses[0].Equal(net.IPv4(127, 0, 0, 1)) || leaf.DNSNames[0] != "localhost" {
		t.Fatalf("server SANs %v %v", leaf.DNSNames, leaf.IPAddresses)
	}
	// Certificates issued under the old root still renew over mTLS.
	c := e.certs["valid"]
	client := e.dial(t, &c)
	e.roots.AddCert(e.ca.Roots()[0])
	if _, err := client.CreateCertificate(context.Background(), &pb.IstioCertificateRequest{Csr: makeCSR(t)}); err != nil {
		t.Fatalf("renewal with a certificate under the old root: %v", err)
	}
}

func TestMetrics(t *testing.T) {
	e := newEnv(t)
	reg := prometheus.NewRegistry()
	srv, err := server.New(context.Background(), server.Config{Authority: e.ca, Metrics: reg, Clock: e.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer x")
	if _, err := srv.CreateCertificate(ctx, &pb.IstioCertificateRequest{Csr: "x"}); err == nil {
		t.Fatal("accepted without a token authenticator")
	}
	if n := testutil.ToFloat64(issuedCounter(t, reg, "unauthenticated")); n != 1 {
		t.Fatalf("garrison_ca_certificates_issued_total{result=unauthenticated} = %v", n)
	}
}

func issuedCounter(t *testing.T, reg *prometheus.Registry, result string) prometheus.Collector {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "garrison_ca_certificates_issued_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "result" && l.GetValue() == result {
					c := prometheus.NewCounter(prometheus.CounterOpts{Name: "x"})
					c.Add(m.GetCounter().GetValue())
					return c
				}
			}
		}
	}
	t.Fatalf("no garrison_ca_certificates_issued_total{result=%q}", result)
	return nil
}
