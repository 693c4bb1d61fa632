package casuite

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"
	pb "istio.io/api/security/v1alpha1"
)

// Options tune a Runner.
type Options struct {
	// Messages checks each refusal's message against Expect.Message,
	// which is Garrison's wording.
	Messages bool
	// Log, when set, receives notes on the fixtures (waits, skips).
	Log func(format string, args ...any)
}

// Runner asks a Target the suite's cases. Its methods are safe for
// concurrent use: cases may run in parallel.
type Runner struct {
	target Target
	opts   Options
	now    func() time.Time
	pool   *x509.CertPool

	mu    sync.Mutex
	conns map[string]*grpc.ClientConn // by mtls fixture; "" without a client certificate
	certs map[string]fixture
}

type fixture struct {
	cert *tls.Certificate
	skip string // why the fixture cannot be made for this target
	err  error
}

// Result is the outcome of one case.
type Result struct {
	// Skip, when set, says why the case was not run.
	Skip string
	// Problem says how the outcome differs from the case; empty when it
	// conforms.
	Problem string
	// Got describes the outcome.
	Got string
}

// NewRunner prepares the mtls: callers (through the API, or from the
// target when it is a ClientCerts): this issues certificates and, for the
// expired one, waits a few seconds.
func NewRunner(ctx context.Context, target Target, opts Options) (*Runner, error) {
	r := &Runner{target: target, opts: opts, now: time.Now, conns: map[string]*grpc.ClientConn{}, certs: map[string]fixture{}}
	if c, ok := target.(Clock); ok {
		r.now = c.Now
	}
	if r.opts.Log == nil {
		r.opts.Log = func(string, ...any) {}
	}
	roots := target.Roots()
	if len(roots) == 0 {
		return nil, errors.New("casuite: the target has no roots")
	}
	r.pool = x509.NewCertPool()
	for _, c := range roots {
		r.pool.AddCert(c)
	}
	names := []string{MTLSValid, MTLSRevoked, MTLSExpired, MTLSForeign}
	var wg sync.WaitGroup
	var mu sync.Mutex
	for _, name := range names {
		wg.Go(func() {
			f := r.makeFixture(ctx, name)
			mu.Lock()
			r.certs[name] = f
			mu.Unlock()
		})
	}
	wg.Wait()
	return r, nil
}

// Close closes the runner's connections.
func (r *Runner) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	var err error
	for _, c := range r.conns {
		err = errors.Join(err, c.Close())
	}
	r.conns = nil
	return err
}

func (r *Runner) makeFixture(ctx context.Context, name string) fixture {
	if cc, ok := r.target.(ClientCerts); ok {
		c, err := cc.ClientCert(ctx, name)
		if errors.Is(err, errors.ErrUnsupported) {
			return fixture{skip: fmt.Sprintf("the implementation makes no %s client certificate: %v", name, err)}
		}
		return fixture{cert: c, err: err}
	}
	if name == MTLSForeign {
		c, err := foreignSVID(r.now())
		return fixture{cert: c, err: err}
	}
	tok, err := r.target.Token(MTLSToken)
	if errors.Is(err, errors.ErrUnsupported) {
		return fixture{skip: fmt.Sprintf("no token for %q to get a client certificate with: %v", MTLSToken, err)}
	}
	if err != nil {
		return fixture{err: err}
	}
	revoker, canRevoke := r.target.(Revoker)
	if name == MTLSRevoked && !canRevoke {
		return fixture{skip: "the implementation has no revocation hook"}
	}
	ttl := int64(3600)
	if name == MTLSExpired {
		ttl = 1
	}
	c, err := r.issue(ctx, tok, ttl)
	if err != nil {
		return fixture{err: fmt.Errorf("issuing the %s client certificate with token %q: %w", name, MTLSToken, err)}
	}
	switch name {
	case MTLSRevoked:
		if err := revoker.Revoke(ctx, c.Leaf); err != nil {
			return fixture{err: fmt.Errorf("revoking serial %x: %w", c.Leaf.SerialNumber, err)}
		}
	case MTLSExpired:
		wait := c.Leaf.NotAfter.Add(time.Second).Sub(r.now())
		if wait > 30*time.Second {
			return fixture{skip: fmt.Sprintf("asked for a 1s certificate, the implementation issued one valid until %s", c.Leaf.NotAfter)}
		}
		r.opts.Log("waiting %s for the expired client certificate to expire", wait.Round(time.Millisecond))
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return fixture{err: ctx.Err()}
		}
	}
	return fixture{cert: c}
}

// issue gets a certificate with a fresh P-256 key through the API.
func (r *Runner) issue(ctx context.Context, token string, ttl int64) (*tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		return nil, err
	}
	conn, err := r.conn("")
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token), 30*time.Second)
	defer cancel()
	resp, err := pb.NewIstioCertificateServiceClient(conn).CreateCertificate(ctx, &pb.IstioCertificateRequest{
		Csr: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})), ValidityDuration: ttl,
	})
	if err != nil {
		return nil, err
	}
	chain, err := parseChain(resp.GetCertChain())
	if err != nil {
		return nil, err
	}
	c := &tls.Certificate{PrivateKey: key, Leaf: chain[0]}
	for _, cert := range chain {
		c.Certificate = append(c.Certificate, cert.Raw)
	}
	return c, nil
}

// foreignSVID is an SVID of MTLSToken's identity from a CA made here, of
// the same trust domain: what an attacker with another CA would present.
func foreignSVID(now time.Time) (*tls.Certificate, error) {
	rootKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	root := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{Organization: []string{TrustDomain}, CommonName: "foreign root"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		URIs: []*url.URL{{Scheme: "spiffe", Host: TrustDomain}},
	}
	rootDER, err := x509.CreateCertificate(rand.Reader, root, root, rootKey.Public(), rootKey)
	if err != nil {
		return nil, err
	}
	if root, err = x509.ParseCertificate(rootDER); err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	sa := TokenCallers[MTLSToken]
	leaf := &x509.Certificate{
		SerialNumber: big.NewInt(2), NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		URIs:        []*url.URL{{Scheme: "spiffe", Host: TrustDomain, Path: "/ns/" + sa.Namespace + "/sa/" + sa.Name}},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leaf, root, key.Public(), rootKey)
	if err != nil {
		return nil, err
	}
	parsed, err := x509.ParseCertificate(leafDER)
	if err != nil {
		return nil, err
	}
	return &tls.Certificate{Certificate: [][]byte{leafDER, rootDER}, PrivateKey: key, Leaf: parsed}, nil
}

// conn returns the connection presenting the named fixture's certificate
// ("" for none): one per fixture, shared by the cases.
func (r *Runner) conn(fixtureName string) (*grpc.ClientConn, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if c, ok := r.conns[fixtureName]; ok {
		return c, nil
	}
	if r.conns == nil {
		return nil, errors.New("casuite: runner closed")
	}
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS12,
		// The server's certificate is verified against the roots, but not
		// its name: implementations serve under names of their own
		// (localhost, istiod.istio-system.svc) and the suite dials an
		// address. Name checks are not what it tests.
		InsecureSkipVerify: true,
		VerifyConnection:   r.verifyServer,
	}
	if fixtureName != "" {
		f := r.certs[fixtureName]
		cfg.Certificates = []tls.Certificate{*f.cert}
	}
	c, err := grpc.NewClient(r.target.Addr(), grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		return nil, err
	}
	r.conns[fixtureName] = c
	return c, nil
}

func (r *Runner) verifyServer(cs tls.ConnectionState) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("the server presented no certificate")
	}
	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{
		Roots: r.pool, Intermediates: inter, CurrentTime: r.now(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	if err != nil {
		return fmt.Errorf("the CA server's certificate does not verify against the roots: %w", err)
	}
	return nil
}

// Run asks the target one case and compares.
func (r *Runner) Run(ctx context.Context, c Case) Result {
	var fixtureName string
	kind, arg, _ := strings.Cut(c.Caller, ":")
	switch kind {
	case CallerToken:
		tok, err := r.target.Token(arg)
		if errors.Is(err, errors.ErrUnsupported) {
			return Result{Skip: fmt.Sprintf("no token for %q: %v", arg, err)}
		}
		if err != nil {
			return Result{Problem: fmt.Sprintf("token %q: %v", arg, err)}
		}
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok)
	case CallerBearer:
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+arg)
	case CallerAuth:
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", arg)
	case CallerMTLS:
		f := r.certs[arg]
		switch {
		case f.skip != "":
			return Result{Skip: f.skip}
		case f.err != nil:
			return Result{Problem: fmt.Sprintf("client certificate %q: %v", arg, f.err)}
		}
		fixtureName = arg
	}
	csr, pub, err := MakeCSR(c.CSR)
	if err != nil {
		return Result{Problem: "making the CSR: " + err.Error()}
	}
	req := &pb.IstioCertificateRequest{Csr: csr, ValidityDuration: c.TTL}
	if len(c.Metadata) > 0 {
		m := map[string]any{}
		for k, v := range c.Metadata {
			m[k] = v
		}
		if req.Metadata, err = structpb.NewStruct(m); err != nil {
			return Result{Problem: err.Error()}
		}
	}
	conn, err := r.conn(fixtureName)
	if err != nil {
		return Result{Problem: err.Error()}
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	sent := r.now()
	resp, err := pb.NewIstioCertificateServiceClient(conn).CreateCertificate(ctx, req)
	received := r.now()
	if err != nil {
		st := status.Convert(err)
		got := fmt.Sprintf("%s: %s", st.Code(), st.Message())
		switch {
		case c.Expect.Code == "OK":
			return Result{Got: got, Problem: "refused, want a certificate of " + c.Expect.SPIFFEID}
		case st.Code() != c.Expect.code:
			return Result{Got: got, Problem: fmt.Sprintf("refused with %s, want %s", st.Code(), c.Expect.code)}
		case r.opts.Messages && !strings.Contains(st.Message(), c.Expect.Message):
			return Result{Got: got, Problem: fmt.Sprintf("the message does not say %q", c.Expect.Message)}
		}
		return Result{Got: got}
	}
	if c.Expect.Code != "OK" {
		return Result{Got: describeChain(resp.GetCertChain()), Problem: fmt.Sprintf("issued, want %s", c.Expect.code)}
	}
	return r.checkIssued(c, resp.GetCertChain(), pub, sent, received)
}

func describeChain(pems []string) string {
	chain, err := parseChain(pems)
	if err != nil {
		return fmt.Sprintf("a chain of %d that does not parse: %v", len(pems), err)
	}
	return fmt.Sprintf("a certificate for %v (chain of %d)", chain[0].URIs, len(chain))
}
