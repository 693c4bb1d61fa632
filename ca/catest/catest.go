// Package catest is a test double of Garrison's CA, for tests of CA clients
// such as the node agent. It is not the CA (that is ca/authority and
// ca/server): it implements only the wire contract the agent relies on, with
// a throwaway in-memory signer.
//
//   - gRPC istio.v1.auth.IstioCertificateService/CreateCertificate over TLS
//     on 127.0.0.1:0: the caller's identity comes from its client
//     certificate (renewal) or from `authorization: Bearer <token>` (a
//     static token -> SPIFFE ID table), never from the CSR; the response is
//     one PEM certificate per element, leaf first, root last.
//   - HTTPS on 127.0.0.1:0 with the same server certificate: GET /bundle (a
//     SPIFFE trust bundle listing every trusted root, with a refresh hint),
//     GET /crl (a DER CRL signed by the current signing CA), GET
//     /root-cert.pem.
//   - The server certificate is an X.509-SVID for
//     spiffe://<trust domain>/ns/<namespace>/sa/garrison, signed by the first
//     signing CA, also valid for 127.0.0.1 and localhost.
//
// Tests can take it down (every call answers Unavailable, every HTTP
// request 503), make it refuse client certificates, revoke serials and
// rotate its root; every CreateCertificate is reported on Calls.
package catest

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	pb "istio.io/api/security/v1alpha1"

	"github.com/garrison-mesh/garrison/ca/pemcert"
)

// Config configures the test CA; every field is optional.
type Config struct {
	// TrustDomain defaults to "cluster.local".
	TrustDomain string
	// Namespace is the namespace of the CA's own identity (default
	// "garrison-system").
	Namespace string
	// Now is the CA's clock (default time.Now); tests drive certificate
	// lifetimes with a fake clock.
	Now func() time.Time
	// Tokens maps bearer tokens to the SPIFFE ID they authenticate (default
	// "test-token" -> spiffe://<td>/ns/default/sa/default).
	Tokens map[string]string
	// DefaultTTL is the lifetime when a request asks for none (default 24h).
	DefaultTTL time.Duration
	// CRLValidity is a CRL's nextUpdate - thisUpdate (default 1h).
	CRLValidity time.Duration
	// RefreshHint is the bundle's spiffe_refresh_hint (0: none).
	RefreshHint time.Duration
}

// Call is one CreateCertificate the CA received.
type Call struct {
	// Auth is how the caller authenticated: "cert", "token" or "" (refused
	// before authentication, or not authenticated).
	Auth string
	// Identity is the SPIFFE ID the certificate was issued for.
	Identity string
	// Code is the gRPC status the CA answered with.
	Code codes.Code
	// Serial of the issued certificate.
	Serial *big.Int
	// CSRURIs are the URI SANs the CSR asked for (ignored by the CA).
	CSRURIs []string
	// TTL is the requested validity_duration in seconds.
	TTL int64
	// At is the CA's clock at the call.
	At time.Time
}

// CA is the running test double.
type CA struct {
	cfg    Config
	grpcLn net.Listener
	httpLn net.Listener
	grpc   *grpc.Server
	http   *http.Server
	calls  chan Call

	mu            sync.Mutex
	roots         []*x509.Certificate // every trusted root, oldest first
	signer        *authority          // signs leaves and CRLs
	serverCert    tls.Certificate
	down          bool
	refuseCerts   bool
	revoked       []x509.RevocationListEntry
	crlNumber     int64
	bundleFetches int
	crlFetches    int
}

type authority struct {
	cert  *x509.Certificate
	key   crypto.Signer
	chain []*x509.Certificate // the signing CA, then up to the root
}

// Start starts the CA on two loopback ports; it stops when the test ends.
func Start(t testing.TB, cfg Config) *CA {
	t.Helper()
	if cfg.TrustDomain == "" {
		cfg.TrustDomain = "cluster.local"
	}
	if cfg.Namespace == "" {
		cfg.Namespace = "garrison-system"
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Tokens == nil {
		cfg.Tokens = map[string]string{"test-token": "spiffe://" + cfg.TrustDomain + "/ns/default/sa/default"}
	}
	if cfg.DefaultTTL <= 0 {
		cfg.DefaultTTL = 24 * time.Hour
	}
	if cfg.CRLValidity <= 0 {
		cfg.CRLValidity = time.Hour
	}
	c := &CA{cfg: cfg, calls: make(chan Call, 4096)}
	root, signer := c.newHierarchy("Test Root 1")
	c.roots = []*x509.Certificate{root}
	c.signer = signer
	c.serverCert = c.issueServerCert()

	tlsConf := &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			c.mu.Lock()
			defer c.mu.Unlock()
			pool := x509.NewCertPool()
			for _, r := range c.roots {
				pool.AddCert(r)
			}
			return &tls.Config{
				MinVersion:   tls.VersionTLS12,
				Certificates: []tls.Certificate{c.serverCert},
				ClientAuth:   tls.VerifyClientCertIfGiven,
				ClientCAs:    pool,
				Time:         c.cfg.Now,
				NextProtos:   []string{"h2", "http/1.1"},
			}, nil
		},
	}
	var err error
	if c.grpcLn, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	if c.httpLn, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	c.grpc = grpc.NewServer(grpc.Creds(credentials.NewTLS(tlsConf)))
	pb.RegisterIstioCertificateServiceServer(c.grpc, &service{ca: c})
	go func() { _ = c.grpc.Serve(c.grpcLn) }()

	mux := http.NewServeMux()
	mux.HandleFunc("GET /bundle", c.serveBundle)
	mux.HandleFunc("GET /crl", c.serveCRL)
	mux.HandleFunc("GET /root-cert.pem", c.serveRoots)
	c.http = &http.Server{Handler: mux, TLSConfig: tlsConf, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = c.http.ServeTLS(c.httpLn, "", "") }()
	t.Cleanup(func() {
		c.grpc.Stop()
		_ = c.http.Close()
	})
	return c
}

// Addr is the gRPC address, host:port.
func (c *CA) Addr() string { return c.grpcLn.Addr().String() }

// BundleURL is the base URL of the HTTPS endpoints.
func (c *CA) BundleURL() string { return "https://" + c.httpLn.Addr().String() }

// ServerID is the SPIFFE ID of the CA's server certificate.
func (c *CA) ServerID() string {
	return "spiffe://" + c.cfg.TrustDomain + "/ns/" + c.cfg.Namespace + "/sa/garrison"
}

// Calls reports every CreateCertificate, in order.
func (c *CA) Calls() <-chan Call { return c.calls }

// Roots returns every trusted root, oldest first.
func (c *CA) Roots() []*x509.Certificate {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*x509.Certificate(nil), c.roots...)
}

// RootsPEM is the root bundle a platform would give workloads.
func (c *CA) RootsPEM() []byte { return EncodeCerts(c.Roots()) }

// SigningCA returns the certificate that signs leaves and CRLs now.
func (c *CA) SigningCA() *x509.Certificate {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.signer.cert
}

// SetDown makes every call fail with Unavailable and every HTTP request
// with 503 (true), or serve again (false).
func (c *CA) SetDown(down bool) {
	c.mu.Lock()
	c.down = down
	c.mu.Unlock()
}

// RefuseClientCerts makes the CA answer Unauthenticated to callers that
// authenticate with a client certificate, so they must use their token.
func (c *CA) RefuseClientCerts(refuse bool) {
	c.mu.Lock()
	c.refuseCerts = refuse
	c.mu.Unlock()
}

// Revoke adds a serial to the CRL.
func (c *CA) Revoke(serial *big.Int) {
	c.mu.Lock()
	c.revoked = append(c.revoked, x509.RevocationListEntry{SerialNumber: serial, RevocationTime: c.cfg.Now()})
	c.mu.Unlock()
}

// RotateRoot creates a new root and signing CA: new leaves and CRLs are
// signed by the new signing CA, and the bundle lists the old and the new
// roots. The server certificate stays (it chains to the old root, which is
// still trusted).
func (c *CA) RotateRoot() {
	c.mu.Lock()
	n := len(c.roots) + 1
	c.mu.Unlock()
	root, signer := c.newHierarchy(fmt.Sprintf("Test Root %d", n))
	c.mu.Lock()
	c.roots = append(c.roots, root)
	c.signer = signer
	c.mu.Unlock()
}

// Fetches reports how many times /bundle and /crl were served.
func (c *CA) Fetches() (bundle, crl int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.bundleFetches, c.crlFetches
}

type service struct {
	pb.UnimplementedIstioCertificateServiceServer
	ca *CA
}

func (s *service) CreateCertificate(ctx context.Context, req *pb.IstioCertificateRequest) (*pb.IstioCertificateResponse, error) {
	c := s.ca
	call := Call{At: c.cfg.Now(), TTL: req.GetValidityDuration()}
	resp, err := c.create(ctx, req, &call)
	call.Code = status.Code(err)
	c.calls <- call
	return resp, err
}

func (c *CA) create(ctx context.Context, req *pb.IstioCertificateRequest, call *Call) (*pb.IstioCertificateResponse, error) {
	c.mu.Lock()
	down, refuseCerts := c.down, c.refuseCerts
	c.mu.Unlock()
	if down {
		return nil, status.Error(codes.Unavailable, "test CA is down")
	}
	id, err := c.authenticate(ctx, refuseCerts, call)
	if err != nil {
		return nil, err
	}
	call.Identity = id
	block, _ := pem.Decode([]byte(req.GetCsr()))
	if block == nil || block.Type != "CERTIFICATE REQUEST" {
		return nil, status.Error(codes.InvalidArgument, "csr is not a PEM CERTIFICATE REQUEST")
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "csr: %v", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "csr signature: %v", err)
	}
	for _, u := range csr.URIs {
		call.CSRURIs = append(call.CSRURIs, u.String())
	}
	ttl := c.cfg.DefaultTTL
	if req.GetValidityDuration() > 0 {
		ttl = time.Duration(req.GetValidityDuration()) * time.Second
	}
	uri, err := url.Parse(id)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "identity %q: %v", id, err)
	}
	now := c.cfg.Now()
	c.mu.Lock()
	signer := c.signer
	c.mu.Unlock()
	leaf := signer.sign(&x509.Certificate{
		SerialNumber:          serial(),
		URIs:                  []*url.URL{uri},
		NotBefore:             now.Add(-2 * time.Minute),
		NotAfter:              now.Add(ttl),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	}, csr.PublicKey)
	call.Serial = leaf.SerialNumber
	out := &pb.IstioCertificateResponse{CertChain: []string{string(EncodeCerts([]*x509.Certificate{leaf}))}}
	for _, ca := range signer.chain {
		out.CertChain = append(out.CertChain, string(EncodeCerts([]*x509.Certificate{ca})))
	}
	return out, nil
}

func (c *CA) authenticate(ctx context.Context, refuseCerts bool, call *Call) (string, error) {
	if p, ok := peer.FromContext(ctx); ok {
		if info, ok := p.AuthInfo.(credentials.TLSInfo); ok && len(info.State.VerifiedChains) > 0 {
			call.Auth = "cert"
			if refuseCerts {
				return "", status.Error(codes.Unauthenticated, "test CA refuses client certificates")
			}
			leaf := info.State.VerifiedChains[0][0]
			if len(leaf.URIs) != 1 {
				return "", status.Error(codes.Unauthenticated, "client certificate without exactly one URI SAN")
			}
			return leaf.URIs[0].String(), nil
		}
	}
	md, _ := metadata.FromIncomingContext(ctx)
	for _, v := range md.Get("authorization") {
		token, ok := strings.CutPrefix(v, "Bearer ")
		if !ok {
			continue
		}
		call.Auth = "token"
		if id, ok := c.cfg.Tokens[strings.TrimSpace(token)]; ok {
			return id, nil
		}
		return "", status.Error(codes.Unauthenticated, "unknown token")
	}
	return "", status.Error(codes.Unauthenticated, "no client certificate and no bearer token")
}

func (c *CA) serveBundle(w http.ResponseWriter, _ *http.Request) {
	c.mu.Lock()
	down := c.down
	c.bundleFetches++
	roots := append([]*x509.Certificate(nil), c.roots...)
	c.mu.Unlock()
	if down {
		http.Error(w, "test CA is down", http.StatusServiceUnavailable)
		return
	}
	b := spiffebundle.FromX509Authorities(spiffeid.RequireTrustDomainFromString(c.cfg.TrustDomain), roots)
	if c.cfg.RefreshHint > 0 {
		b.SetRefreshHint(c.cfg.RefreshHint)
	}
	data, err := b.Marshal()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(data)
}

func (c *CA) serveCRL(w http.ResponseWriter, _ *http.Request) {
	c.mu.Lock()
	down := c.down
	c.crlFetches++
	c.crlNumber++
	tmpl := &x509.RevocationList{
		Number:                    big.NewInt(c.crlNumber),
		ThisUpdate:                c.cfg.Now(),
		NextUpdate:                c.cfg.Now().Add(c.cfg.CRLValidity),
		RevokedCertificateEntries: append([]x509.RevocationListEntry(nil), c.revoked...),
	}
	signer := c.signer
	c.mu.Unlock()
	if down {
		http.Error(w, "test CA is down", http.StatusServiceUnavailable)
		return
	}
	der, err := x509.CreateRevocationList(rand.Reader, tmpl, signer.cert, signer.key)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/pkix-crl")
	_, _ = w.Write(der)
}

func (c *CA) serveRoots(w http.ResponseWriter, _ *http.Request) {
	c.mu.Lock()
	down := c.down
	c.mu.Unlock()
	if down {
		http.Error(w, "test CA is down", http.StatusServiceUnavailable)
		return
	}
	_, _ = w.Write(c.RootsPEM())
}

// newHierarchy creates a root and a signing CA under it, valid for ten
// years around the CA's clock.
func (c *CA) newHierarchy(name string) (*x509.Certificate, *authority) {
	now := c.cfg.Now()
	rootKey := newKey()
	rootTmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{Organization: []string{"Garrison test CA"}, CommonName: name},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(10 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		URIs:                  []*url.URL{{Scheme: "spiffe", Host: c.cfg.TrustDomain}},
	}
	rootDER, err := x509.CreateCertificate(rand.Reader, rootTmpl, rootTmpl, rootKey.Public(), rootKey)
	if err != nil {
		panic(err)
	}
	root, _ := x509.ParseCertificate(rootDER)
	rootAuth := &authority{cert: root, key: rootKey, chain: []*x509.Certificate{root}}
	signingKey := newKey()
	signing := rootAuth.sign(&x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{Organization: []string{"Garrison test CA"}, CommonName: name + " signing CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(10 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
		URIs:                  []*url.URL{{Scheme: "spiffe", Host: c.cfg.TrustDomain}},
	}, signingKey.Public())
	return root, &authority{cert: signing, key: signingKey, chain: []*x509.Certificate{signing, root}}
}

func (c *CA) issueServerCert() tls.Certificate {
	key := newKey()
	now := c.cfg.Now()
	leaf := c.signer.sign(&x509.Certificate{
		SerialNumber:          serial(),
		URIs:                  []*url.URL{{Scheme: "spiffe", Host: c.cfg.TrustDomain, Path: "/ns/" + c.cfg.Namespace + "/sa/garrison"}},
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(5 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	}, key.Public())
	// The server sends its chain without the root.
	return tls.Certificate{Certificate: [][]byte{leaf.Raw, c.signer.cert.Raw}, PrivateKey: key, Leaf: leaf}
}

func (a *authority) sign(tmpl *x509.Certificate, pub crypto.PublicKey) *x509.Certificate {
	der, err := x509.CreateCertificate(rand.Reader, tmpl, a.cert, pub, a.key)
	if err != nil {
		panic(fmt.Sprintf("catest: sign: %v", err))
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		panic(err)
	}
	return cert
}

func newKey() *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	return k
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err)
	}
	return n.Add(n, big.NewInt(1))
}

// EncodeCerts is pemcert.Encode, for tests that hold a catest.
func EncodeCerts(certs []*x509.Certificate) []byte { return pemcert.Encode(certs) }

// ParseCerts is pemcert.Parse, for tests that hold a catest.
func ParseCerts(data []byte) ([]*x509.Certificate, error) { return pemcert.Parse(data) }
