package server_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	pb "istio.io/api/security/v1alpha1"

	"github.com/garrison-mesh/garrison/ca/authority"
	"github.com/garrison-mesh/garrison/ca/server"
	"github.com/garrison-mesh/garrison/ca/store"
	"github.com/garrison-mesh/garrison/ca/tokenfile"
	"github.com/garrison-mesh/garrison/ca/upstream/selfsigned"
	"github.com/garrison-mesh/garrison/conformance/casuite"
)

type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
}

const td = "cluster.local"

var _ server.TokenAuthenticator = (*tokenfile.Authenticator)(nil)

// env is a CA behind a real gRPC TLS server on 127.0.0.1.
type env struct {
	clock  *fakeClock
	ca     *authority.Authority
	st     *store.Store
	srv    *server.Server
	addr   string
	tokens map[string]string // name -> token
	certs  map[string]tls.Certificate
	roots  *x509.CertPool
	dir    string
}

func newAuthority(t testing.TB, clock *fakeClock, dir string) (*authority.Authority, *store.Store) {
	t.Helper()
	st, err := store.Open(context.Background(), store.Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	up, err := selfsigned.New(selfsigned.Config{TrustDomain: td})
	if err != nil {
		t.Fatal(err)
	}
	ca, err := authority.New(context.Background(), authority.Config{TrustDomain: td, Upstream: up, Store: st, Clock: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	return ca, st
}

func newEnv(t testing.TB) *env {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	e := &env{clock: &fakeClock{now: time.Now()}, tokens: map[string]string{}, certs: map[string]tls.Certificate{}, dir: t.TempDir()}
	e.ca, e.st = newAuthority(t, e.clock, filepath.Join(e.dir, "ca"))
	tokPath := filepath.Join(e.dir, "tokens.yaml")
	for name, sa := range map[string]string{"a": "a", "b": "b", "c": "c", "expired": "old"} {
		var exp time.Time
		if name == "expired" {
			exp = e.clock.Now().Add(-time.Hour)
		}
		tok, err := tokenfile.Create(tokPath, "default", sa, exp, e.clock.Now())
		if err != nil {
			t.Fatal(err)
		}
		e.tokens[name] = tok
	}
	auth, err := tokenfile.New(tokenfile.Config{Path: tokPath, Clock: e.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	e.srv, err = server.New(ctx, server.Config{
		Authority: e.ca, Tokens: auth, DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		Clock: e.clock.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.addr = ln.Addr().String()
	done := make(chan struct{})
	go func() { _ = e.srv.Serve(ctx, ln); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	e.roots = x509.NewCertPool()
	e.roots.AppendCertsFromPEM(e.ca.RootsPEM())

	c := spiffeid.RequireFromString("spiffe://cluster.local/ns/default/sa/c")
	e.certs["valid"] = e.issueTLS(t, e.ca, c, time.Hour)
	revoked := e.issueTLS(t, e.ca, c, time.Hour)
	if err := e.ca.Revoke(ctx, revoked.Leaf.SerialNumber, "keyCompromise"); err != nil {
		t.Fatal(err)
	}
	e.certs["revoked"] = revoked
	now := e.clock.Now()
	e.clock.Set(now.Add(-48 * time.Hour))
	e.certs["expired"] = e.issueTLS(t, e.ca, c, time.Hour)
	e.clock.Set(now)
	other, _ := newAuthority(t, e.clock, filepath.Join(e.dir, "other-ca"))
	e.certs["foreign"] = e.issueTLS(t, other, c, time.Hour)
	// Renewal starts once the fixture stopped moving the clock.
	go func() { _ = e.srv.RunRenewal(ctx) }()
	return e
}

func (e *env) issueTLS(t testing.TB, ca *authority.Authority, id spiffeid.ID, ttl time.Duration) tls.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	iss, err := ca.Sign(context.Background(), authority.SignRequest{PublicKey: key.Public(), ID: id, TTL: ttl, Caller: "test"})
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := iss.Certificate()
	tc := tls.Certificate{Certificate: [][]byte{iss.DER}, PrivateKey: key, Leaf: leaf}
	for _, c := range iss.Chain {
		tc.Certificate = append(tc.Certificate, c.Raw)
	}
	return tc
}

func (e *env) dial(t testing.TB, clientCert *tls.Certificate) pb.IstioCertificateServiceClient {
	t.Helper()
	cfg := &tls.Config{RootCAs: e.roots, ServerName: "localhost", MinVersion: tls.VersionTLS12}
	if clientCert != nil {
		cfg.Certificates = []tls.Certificate{*clientCert}
	}
	conn, err := grpc.NewClient(e.addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return pb.NewIstioCertificateServiceClient(conn)
}

// The cases live in the CA conformance suite, which runs them against any
// implementation over the wire; here they run against this package's
// server, with the fixture's fake clock and client certificates.
const conformanceCases = "../../conformance/ca"

// env is a casuite.Target (and its Clock and ClientCerts).
func (e *env) Addr() string               { return e.addr }
func (e *env) Roots() []*x509.Certificate { return e.ca.Roots() }
func (e *env) Now() time.Time             { return e.clock.Now() }

func (e *env) Token(name string) (string, error) {
	tok, ok := e.tokens[name]
	if !ok {
		return "", fmt.Errorf("no token %q: %w", name, errors.ErrUnsupported)
	}
	return tok, nil
}

func (e *env) ClientCert(_ context.Context, name string) (*tls.Certificate, error) {
	c, ok := e.certs[name]
	if !ok {
		return nil, fmt.Errorf("no client certificate %q: %w", name, errors.ErrUnsupported)
	}
	return &c, nil
}

func TestCreateCertificateCases(t *testing.T) {
	suite, err := casuite.Load(conformanceCases)
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t)
	r, err := casuite.NewRunner(t.Context(), e, casuite.Options{Messages: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	for _, c := range suite.Cases {
		t.Run(c.Name, func(t *testing.T) {
			t.Parallel()
			res := r.Run(context.Background(), c)
			switch {
			case res.Skip != "":
				t.Fatalf("%s:%d: skipped in process: %s", c.File, c.Line, res.Skip)
			case res.Problem != "":
				t.Errorf("%s:%d: %s\n  got %s", c.File, c.Line, res.Problem, res.Got)
			}
		})
	}
}

// makeCSR is a PEM CSR with a fresh P-256 key.
func makeCSR(t testing.TB) string {
	t.Helper()
	csr, _, err := casuite.MakeCSR(casuite.CSRSpec{})
	if err != nil {
		t.Fatal(err)
	}
	return csr
}
