package server_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"gopkg.in/yaml.v3"
	pb "istio.io/api/security/v1alpha1"

	"github.com/garrison-mesh/garrison/ca/authority"
	"github.com/garrison-mesh/garrison/ca/server"
	"github.com/garrison-mesh/garrison/ca/store"
	"github.com/garrison-mesh/garrison/ca/tokenfile"
	"github.com/garrison-mesh/garrison/ca/upstream/selfsigned"
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
	for name, sa := range map[string]string{"a": "a", "b": "b", "expired": "old"} {
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

type csrSpec struct {
	Key          string   `yaml:"key"`
	URIs         []string `yaml:"uris"`
	DNS          []string `yaml:"dns"`
	CN           string   `yaml:"cn"`
	CA           bool     `yaml:"ca"`
	KeyCertSign  bool     `yaml:"keyCertSign"`
	BadSignature bool     `yaml:"badSignature"`
	Raw          *string  `yaml:"raw"`
}

type testCase struct {
	Name    string  `yaml:"name"`
	Caller  string  `yaml:"caller"`
	CSR     csrSpec `yaml:"csr"`
	TTL     int64   `yaml:"ttl"`
	Want    string  `yaml:"want"`
	WantID  string  `yaml:"wantID"`
	Message string  `yaml:"message"`
}

func genKey(t testing.TB, kind string) crypto.Signer {
	t.Helper()
	var (
		k   crypto.Signer
		err error
	)
	switch kind {
	case "", "p256":
		k, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "p384":
		k, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case "p224":
		k, err = ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	case "p521":
		k, err = ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	case "rsa1024":
		k, err = rsa.GenerateKey(rand.Reader, 1024)
	case "rsa2048":
		k, err = rsa.GenerateKey(rand.Reader, 2048)
	case "rsa3072":
		k, err = rsa.GenerateKey(rand.Reader, 3072)
	case "rsa4096":
		k, err = rsa.GenerateKey(rand.Reader, 4096)
	case "ed25519":
		_, k, err = ed25519.GenerateKey(rand.Reader)
	default:
		t.Fatalf("unknown key kind %q", kind)
	}
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func makeCSR(t testing.TB, spec csrSpec) string {
	t.Helper()
	if spec.Raw != nil {
		return *spec.Raw
	}
	key := genKey(t, spec.Key)
	tmpl := &x509.CertificateRequest{DNSNames: spec.DNS, Subject: pkix.Name{CommonName: spec.CN}}
	for _, u := range spec.URIs {
		pu, err := url.Parse(u)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.URIs = append(tmpl.URIs, pu)
	}
	if spec.CA {
		v, _ := asn1.Marshal(struct{ IsCA bool }{true})
		tmpl.ExtraExtensions = append(tmpl.ExtraExtensions, pkix.Extension{Id: asn1.ObjectIdentifier{2, 5, 29, 19}, Critical: true, Value: v})
	}
	if spec.KeyCertSign {
		v, _ := asn1.Marshal(asn1.BitString{Bytes: []byte{0x04}, BitLength: 6}) // bit 5: keyCertSign
		tmpl.ExtraExtensions = append(tmpl.ExtraExtensions, pkix.Extension{Id: asn1.ObjectIdentifier{2, 5, 29, 15}, Critical: true, Value: v})
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	if spec.BadSignature {
		// The last byte is in the signature's last integer: flipping it
		// keeps the DER well-formed and the signature wrong.
		der[len(der)-1] ^= 0x01
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
}

func loadCases(t *testing.T) []testCase {
	data, err := os.ReadFile("testdata/createcertificate.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var cases []testCase
	dec := yaml.NewDecoder(strings.NewReader(string(data)))
	dec.KnownFields(true)
	if err := dec.Decode(&cases); err != nil {
		t.Fatal(err)
	}
	return cases
}

func TestCreateCertificateCases(t *testing.T) {
	e := newEnv(t)
	for _, tc := range loadCases(t) {
		t.Run(tc.Name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			var clientCert *tls.Certificate
			kind, arg, _ := strings.Cut(tc.Caller, ":")
			switch kind {
			case "token":
				ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+e.tokens[arg])
			case "bearer":
				ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+arg)
			case "auth":
				ctx = metadata.AppendToOutgoingContext(ctx, "authorization", arg)
			case "mtls":
				c, ok := e.certs[arg]
				if !ok {
					t.Fatalf("unknown client certificate %q", arg)
				}
				clientCert = &c
			case "none":
			default:
				t.Fatalf("unknown caller %q", tc.Caller)
			}
			client := e.dial(t, clientCert)
			resp, err := client.CreateCertificate(ctx, &pb.IstioCertificateRequest{Csr: makeCSR(t, tc.CSR), ValidityDuration: tc.TTL})
			if tc.Want != "OK" {
				var want codes.Code
				if err := want.UnmarshalJSON([]byte(`"` + strings.ToUpper(snake(tc.Want)) + `"`)); err != nil {
					t.Fatalf("bad want %q", tc.Want)
				}
				if status.Code(err) != want {
					t.Fatalf("got %v, want %s", err, want)
				}
				if !strings.Contains(status.Convert(err).Message(), tc.Message) {
					t.Fatalf("message %q does not say %q", status.Convert(err).Message(), tc.Message)
				}
				return
			}
			if err != nil {
				t.Fatalf("refused: %v", err)
			}
			var chain []*x509.Certificate
			for _, p := range resp.CertChain {
				block, rest := pem.Decode([]byte(p))
				if block == nil || len(strings.TrimSpace(string(rest))) != 0 {
					t.Fatalf("cert_chain element is not one PEM certificate")
				}
				c, err := x509.ParseCertificate(block.Bytes)
				if err != nil {
					t.Fatal(err)
				}
				chain = append(chain, c)
			}
			if len(chain) != 3 || !chain[2].Equal(e.ca.Roots()[0]) {
				t.Fatalf("chain of %d, want leaf, intermediate, root", len(chain))
			}
			id, _, err := x509svid.Verify(chain, x509bundle.FromX509Authorities(e.ca.TrustDomain(), e.ca.Roots()), x509svid.WithTime(e.clock.Now()))
			if err != nil {
				t.Fatal(err)
			}
			if id.String() != tc.WantID {
				t.Fatalf("issued %s, want %s", id, tc.WantID)
			}
			if len(chain[0].DNSNames) != 0 || chain[0].Subject.CommonName != "" {
				t.Fatalf("CSR's subject or DNS SANs copied: %v %q", chain[0].DNSNames, chain[0].Subject)
			}
			wantTTL := time.Duration(tc.TTL) * time.Second
			if wantTTL == 0 {
				wantTTL = 24 * time.Hour
			}
			if got := chain[0].NotAfter.Sub(e.clock.Now().Truncate(time.Second)); got != wantTTL {
				t.Fatalf("TTL %s, want %s", got, wantTTL)
			}
		})
	}
}

// snake turns PermissionDenied into PERMISSION_DENIED's spelling.
func snake(s string) string {
	var b strings.Builder
	for i, r := range s {
		if i > 0 && r >= 'A' && r <= 'Z' {
			b.WriteByte('_')
		}
		b.WriteRune(r)
	}
	return b.String()
}
