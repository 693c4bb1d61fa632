package agent_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/pem"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"

	"github.com/garrison-mesh/garrison/ca/agent"
	"github.com/garrison-mesh/garrison/ca/catest"
	"github.com/garrison-mesh/garrison/ca/sds"
	"github.com/garrison-mesh/garrison/ca/sds/sdstest"
)

const (
	wait  = 10 * time.Second
	quiet = 200 * time.Millisecond
)

// env is an agent wired to a test CA and an SDS server on a Unix socket,
// all on one fake clock.
type env struct {
	t       *testing.T
	clk     *fakeClock
	ca      *catest.CA
	sds     *sds.Server
	socket  string
	agent   *agent.Agent
	certDir string
	reg     *prometheus.Registry
	logs    *syncBuffer
}

type envOption func(*agent.Config, *catest.Config)

func newEnv(t *testing.T, opts ...envOption) *env {
	t.Helper()
	clk := newFakeClock(time.Now().Truncate(time.Second))
	// CRLs that outlive the jumps the tests make in time, unless a test
	// is about expiring CRLs.
	caCfg := catest.Config{Now: clk.Now, CRLValidity: 48 * time.Hour}
	cfg := agent.Config{
		TokenFile: filepath.Join(t.TempDir(), "token"),
		CertDir:   filepath.Join(t.TempDir(), "certs"),
		Now:       clk.Now,
		NewTimer:  clk.NewTimer,
		// 0.5 makes the rotation jitter zero and every backoff 3/4 of its
		// step, so the tests know when things happen.
		Rand:         func() float64 { return 0.5 },
		RetryInitial: time.Second,
		RetryMax:     16 * time.Second,
		LogInterval:  time.Hour,
	}
	for _, o := range opts {
		o(&cfg, &caCfg)
	}
	ca := catest.Start(t, caCfg)
	cfg.CAAddr = ca.Addr()
	cfg.BundleURL = ca.BundleURL()
	cfg.RootCertFile = filepath.Join(t.TempDir(), "roots.pem")
	if err := os.WriteFile(cfg.RootCertFile, ca.RootsPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg.TokenFile, []byte("test-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	reg := prometheus.NewRegistry()
	srv, err := sds.New(sds.Config{Logger: log, Metrics: reg})
	if err != nil {
		t.Fatal(err)
	}
	socket := filepath.Join(t.TempDir(), "sds.sock")
	ep, err := srv.Listen(socket, 0)
	if err != nil {
		t.Fatal(err)
	}
	cfg.SDS = srv
	cfg.Logger = log
	cfg.Metrics = reg
	a, err := agent.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); _ = ep.Serve(ctx) }()
	go func() {
		defer wg.Done()
		if err := a.Run(ctx); err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		if t.Failed() {
			t.Logf("agent log:\n%s", logs)
		}
	})
	return &env{t: t, clk: clk, ca: ca, sds: srv, socket: socket, agent: a, certDir: cfg.CertDir, reg: reg, logs: logs}
}

// settle waits until the agent has finished what the clock made due (it
// has armed its next timer) and returns the CreateCertificate calls made.
func (e *env) settle() []catest.Call {
	e.t.Helper()
	e.clk.waitPending(e.t)
	var out []catest.Call
	for {
		select {
		case c := <-e.ca.Calls():
			out = append(out, c)
		default:
			return out
		}
	}
}

// call waits for the CA's next CreateCertificate.
func (e *env) call() catest.Call {
	e.t.Helper()
	select {
	case c := <-e.ca.Calls():
		return c
	case <-time.After(wait):
		e.t.Fatal("no CreateCertificate within 10s")
		return catest.Call{}
	}
}

// stream opens an SDS stream that asks as Envoy does, "default" then
// "default" and "ROOTCA", and returns it with the secrets it received.
func (e *env) stream(node string) (*sdstest.Stream, map[string]*tlsv3.Secret) {
	e.t.Helper()
	st := sdstest.NewStream(e.t, sdstest.Dial(e.t, e.socket), sdstest.Node(node))
	st.Subscribe("default")
	r := st.Recv(wait)
	st.ACK(r)
	st.Subscribe("default", "ROOTCA")
	r2 := st.Recv(wait)
	st.ACK(r2)
	secrets := sdstest.MustSecrets(e.t, r2)
	if secrets["default"] == nil || secrets["ROOTCA"] == nil {
		e.t.Fatalf("stream got %v", keys(secrets))
	}
	return st, secrets
}

func keys(m map[string]*tlsv3.Secret) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func chain(t *testing.T, s *tlsv3.Secret) []*x509.Certificate {
	t.Helper()
	certs, err := catest.ParseCerts(s.GetTlsCertificate().GetCertificateChain().GetInlineBytes())
	if err != nil {
		t.Fatalf("default: %v", err)
	}
	return certs
}

func roots(t *testing.T, s *tlsv3.Secret) []*x509.Certificate {
	t.Helper()
	certs, err := catest.ParseCerts(s.GetValidationContext().GetTrustedCa().GetInlineBytes())
	if err != nil {
		t.Fatalf("ROOTCA: %v", err)
	}
	return certs
}

// pushed waits for a response on st that carries secret name, ACKs it
// and returns the secret.
func pushed(t *testing.T, st *sdstest.Stream, name string) *tlsv3.Secret {
	t.Helper()
	deadline := time.Now().Add(wait)
	for time.Now().Before(deadline) {
		r := st.Recv(time.Until(deadline))
		st.ACK(r)
		if s := sdstest.MustSecrets(t, r)[name]; s != nil {
			return s
		}
	}
	t.Fatalf("%s was not pushed", name)
	return nil
}

// pushedSerial waits until st is pushed the certificate with serial (SotW
// responses repeat "default" when only ROOTCA changed).
func pushedSerial(t *testing.T, st *sdstest.Stream, serial *big.Int) {
	t.Helper()
	for {
		if chain(t, pushed(t, st, "default"))[0].SerialNumber.Cmp(serial) == 0 {
			return
		}
	}
}

// TestFirstCertificateAndRotation: the agent gets its first certificate
// with the token, serves "default" (leaf first, no root) and "ROOTCA" to an
// SDS client asking as Envoy does, and when the fake clock reaches half the
// lifetime renews with its certificate and pushes the new one, unasked, on
// every open stream.
func TestFirstCertificateAndRotation(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	first := e.call()
	if first.Auth != "token" || first.Code != codes.OK || first.Identity != "spiffe://cluster.local/ns/default/sa/default" {
		t.Fatalf("first call: %+v", first)
	}
	if len(first.CSRURIs) != 0 {
		t.Errorf("CSR carries URI SANs %v without --spiffe-id", first.CSRURIs)
	}
	if first.TTL != int64(agent.DefaultTTL/time.Second) {
		t.Errorf("validity_duration %d", first.TTL)
	}
	a, secrets := e.stream("sidecar~a")
	b, _ := e.stream("sidecar~b")

	c := chain(t, secrets["default"])
	if len(c) != 2 || c[0].SerialNumber.Cmp(first.Serial) != 0 || !bytes.Equal(c[1].Raw, e.ca.SigningCA().Raw) {
		t.Fatalf("default is not leaf + signing CA without the root: %d certificates", len(c))
	}
	key := parseKey(t, secrets["default"].GetTlsCertificate().GetPrivateKey().GetInlineBytes())
	if !key.PublicKey.Equal(c[0].PublicKey) {
		t.Fatal("default's key does not match its leaf")
	}
	if r := roots(t, secrets["ROOTCA"]); len(r) != 1 || !bytes.Equal(r[0].Raw, e.ca.Roots()[0].Raw) {
		t.Fatal("ROOTCA is not the CA's root")
	}
	if !e.agent.Ready() {
		t.Error("agent not ready with a certificate")
	}
	st := e.agent.Status()
	wantRotate := c[0].NotBefore.Add(c[0].NotAfter.Sub(c[0].NotBefore) / 2)
	if !st.RotateAt.Equal(wantRotate) {
		t.Fatalf("rotation at %v, want half the lifetime %v", st.RotateAt, wantRotate)
	}

	// Just before half the lifetime nothing happens; at it, a new
	// certificate is pushed on both streams.
	e.clk.Set(wantRotate.Add(-time.Second))
	a.NoResponse(quiet)
	start := time.Now()
	e.clk.Set(wantRotate)
	renewal := e.call()
	if renewal.Auth != "cert" || renewal.Code != codes.OK || renewal.Identity != first.Identity {
		t.Fatalf("renewal: %+v", renewal)
	}
	for _, s := range []*sdstest.Stream{a, b} {
		nc := chain(t, pushed(t, s, "default"))
		if nc[0].SerialNumber.Cmp(renewal.Serial) != 0 {
			t.Fatal("the pushed certificate is not the renewed one")
		}
	}
	t.Logf("rotation due -> pushed on 2 streams in %v (CreateCertificate over mTLS included)", time.Since(start))
	nkey := parseKey(t, e.sds.Secret("default").GetTlsCertificate().GetPrivateKey().GetInlineBytes())
	if nkey.Equal(key) {
		t.Error("the renewal reused the private key")
	}
	if v := metricValue(t, e.reg, "garrison_agent_csr_total", "success"); v != 2 {
		t.Errorf("garrison_agent_csr_total{result=success} = %v, want 2", v)
	}
	if v := metricValue(t, e.reg, "garrison_agent_cert_expiry_seconds", ""); v < 23*3600 {
		t.Errorf("garrison_agent_cert_expiry_seconds = %v", v)
	}
}

// TestCADownUntilExpiry: with the CA down at rotation time, the agent keeps
// serving its still-valid certificate and retries with growing backoff
// (observed at the test CA); when the CA is back it renews. With the CA
// down past expiry it keeps serving the expired certificate (as Istio's
// agent) and reports not ready, then renews with the token, since an
// expired certificate cannot authenticate.
func TestCADownUntilExpiry(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(_ *agent.Config, c *catest.Config) { c.CRLValidity = time.Hour })
	first := e.call()
	st, secrets := e.stream("sidecar~a")
	served := chain(t, secrets["default"])[0]

	e.ca.SetDown(true)
	e.clk.Set(e.agent.Status().RotateAt)
	var times []time.Time
	for {
		for _, c := range e.settle() {
			if c.Code != codes.Unavailable {
				t.Fatalf("call while down: %+v", c)
			}
			times = append(times, c.At)
		}
		if len(times) >= 7 {
			break
		}
		e.clk.fireNext(t)
	}
	// 3/4 of 1s, 2s, 4s, 8s, then of the 16s cap.
	want := []time.Duration{750 * time.Millisecond, 1500 * time.Millisecond, 3 * time.Second, 6 * time.Second, 12 * time.Second, 12 * time.Second}
	for i, w := range want {
		if got := times[i+1].Sub(times[i]); got != w {
			t.Errorf("retry %d after %v, want %v", i+1, got, w)
		}
	}
	if got := chain(t, e.sds.Secret("default"))[0]; !bytes.Equal(got.Raw, served.Raw) || !e.agent.Ready() {
		t.Fatal("the still-valid certificate is no longer served while the CA is down")
	}
	// The only push while the CA is down: ROOTCA without the CRL, which
	// expired (the test CA's CRLs last an hour) and which Envoy would
	// otherwise hold against every peer certificate.
	r := st.Recv(wait)
	st.ACK(r)
	if s := sdstest.MustSecrets(t, r); s["ROOTCA"].GetValidationContext().GetCrl() != nil ||
		!bytes.Equal(chain(t, s["default"])[0].Raw, served.Raw) {
		t.Fatal("push while the CA is down is not ROOTCA without its expired CRL")
	}
	st.NoResponse(quiet)
	if v := metricValue(t, e.reg, "garrison_agent_csr_total", "unavailable"); v != 7 {
		t.Errorf("garrison_agent_csr_total{result=unavailable} = %v", v)
	}

	e.ca.SetDown(false)
	e.clk.fireNext(t)
	back := e.call()
	if back.Code != codes.OK || back.Auth != "cert" {
		t.Fatalf("call after the CA came back: %+v", back)
	}
	pushedSerial(t, st, back.Serial)

	// Down past expiry.
	cur := chain(t, e.sds.Secret("default"))[0]
	e.ca.SetDown(true)
	e.clk.Set(cur.NotAfter.Add(time.Second))
	if c := e.call(); c.Code != codes.Unavailable {
		t.Fatalf("call after expiry: %+v", c)
	}
	e.clk.waitPending(t)
	if e.agent.Ready() {
		t.Error("ready with an expired certificate")
	}
	if got := chain(t, e.sds.Secret("default"))[0]; !bytes.Equal(got.Raw, cur.Raw) {
		t.Error("the expired certificate is no longer served")
	}
	if v := metricValue(t, e.reg, "garrison_agent_cert_expiry_seconds", ""); v >= 0 {
		t.Errorf("garrison_agent_cert_expiry_seconds = %v after expiry, want negative", v)
	}
	if !strings.Contains(e.logs.String(), "workload certificate expired") {
		t.Error("expiry not logged")
	}
	e.ca.SetDown(false)
	e.clk.fireNext(t)
	c := e.call()
	if c.Code != codes.OK || c.Auth != "token" || c.Identity != first.Identity {
		t.Fatalf("renewal after expiry: %+v", c)
	}
	pushedSerial(t, st, c.Serial)
	if !e.agent.Ready() {
		t.Error("not ready after renewal")
	}
}

// TestRefusedCertificateFallsBackToToken: a renewal the CA refuses over
// mTLS is made again at once with the token.
func TestRefusedCertificateFallsBackToToken(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.call()
	st, _ := e.stream("sidecar~a")
	e.ca.RefuseClientCerts(true)
	e.clk.Set(e.agent.Status().RotateAt)
	if c := e.call(); c.Auth != "cert" || c.Code != codes.Unauthenticated {
		t.Fatalf("first renewal call: %+v", c)
	}
	c := e.call()
	if c.Auth != "token" || c.Code != codes.OK {
		t.Fatalf("fallback call: %+v", c)
	}
	pushedSerial(t, st, c.Serial)
}

// TestRefusedTokenWaitsLongest: a refused token is retried after the
// longest backoff (and re-read each time), not in a tight loop.
func TestRefusedTokenWaitsLongest(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(_ *agent.Config, c *catest.Config) { c.Tokens = map[string]string{} })
	c1 := e.call()
	if c1.Code != codes.Unauthenticated {
		t.Fatalf("call with an unknown token: %+v", c1)
	}
	at := e.clk.fireNext(t)
	if got := at.Sub(c1.At); got != 12*time.Second {
		t.Errorf("retry after a refusal in %v, want 3/4 of the 16s maximum", got)
	}
	if c2 := e.call(); c2.Code != codes.Unauthenticated {
		t.Fatalf("second call: %+v", c2)
	}
	e.clk.waitPending(t)
	if e.agent.Ready() || metricValue(t, e.reg, "garrison_agent_csr_total", "refused") != 2 {
		t.Error("refusals not counted or agent ready without a certificate")
	}
}

// TestSPIFFEIDInCSR: with --spiffe-id the CSR carries it, and a
// certificate for another identity is not accepted.
func TestSPIFFEIDInCSR(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(c *agent.Config, _ *catest.Config) { c.SPIFFEID = "spiffe://cluster.local/ns/default/sa/default" })
	if c := e.call(); len(c.CSRURIs) != 1 || c.CSRURIs[0] != "spiffe://cluster.local/ns/default/sa/default" {
		t.Fatalf("CSR URIs %v", c.CSRURIs)
	}
	e.stream("a")

	other := newEnv(t, func(c *agent.Config, _ *catest.Config) { c.SPIFFEID = "spiffe://cluster.local/ns/prod/sa/payments" })
	other.call()
	other.clk.waitPending(t)
	if other.agent.Ready() || metricValue(t, other.reg, "garrison_agent_csr_total", "invalid_response") != 1 {
		t.Fatal("a certificate for another identity than --spiffe-id was accepted")
	}
}

// TestRootRotationAndRevocation: a revoked serial reaches ROOTCA's CRL at
// the next CRL poll; a root rotation at the CA reaches ROOTCA with both
// roots, and the CRL of the new signing CA makes the agent renew under it
// while it keeps the old signing CA's CRL until that expires.
func TestRootRotationAndRevocation(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.call()
	st, secrets := e.stream("sidecar~a")
	vc := secrets["ROOTCA"].GetValidationContext()
	if len(crls(t, vc)) != 1 || !vc.GetOnlyVerifyLeafCertCrl() {
		t.Fatalf("ROOTCA without the CA's CRL: %v", vc)
	}

	revoked := big.NewInt(0xdead)
	e.ca.Revoke(revoked)
	e.clk.fireNext(t) // the next CRL poll, within a minute
	list := crls(t, pushed(t, st, "ROOTCA").GetValidationContext())
	if len(list) != 1 || !hasSerial(list[0], revoked) {
		t.Fatal("the revoked serial did not reach ROOTCA's crl")
	}

	oldRoot := e.ca.Roots()[0]
	e.ca.RotateRoot()
	newSigner := e.ca.SigningCA()
	// The next CRL poll finds a CRL from the new signing CA: the agent
	// renews, fetching the bundle that lists the new root.
	e.clk.fireNext(t)
	c := e.call()
	if c.Code != codes.OK {
		t.Fatalf("renewal after the root rotation: %+v", c)
	}
	var gotRoots []*x509.Certificate
	var gotChain []*x509.Certificate
	for gotRoots == nil || gotChain == nil {
		r := st.Recv(wait)
		st.ACK(r)
		s := sdstest.MustSecrets(t, r)
		if s["ROOTCA"] != nil && len(roots(t, s["ROOTCA"])) == 2 {
			gotRoots = roots(t, s["ROOTCA"])
		}
		if s["default"] != nil {
			if ch := chain(t, s["default"]); bytes.Equal(ch[1].Raw, newSigner.Raw) {
				gotChain = ch
			}
		}
	}
	if !bytes.Equal(gotRoots[0].Raw, oldRoot.Raw) || !bytes.Equal(gotRoots[1].Raw, e.ca.Roots()[1].Raw) {
		t.Fatal("ROOTCA does not list the old and the new root")
	}
	// At the next CRL poll the new signing CA's CRL verifies: ROOTCA
	// carries both CRLs, the old one until its nextUpdate.
	e.clk.fireNext(t)
	list = crls(t, pushed(t, st, "ROOTCA").GetValidationContext())
	if len(list) != 2 {
		t.Fatalf("ROOTCA has %d CRLs, want the old and the new signing CA's", len(list))
	}
	for _, l := range list {
		if !hasSerial(l, revoked) {
			t.Errorf("the CRL of %s lost the revocation", l.Issuer)
		}
	}
	if list[0].Issuer.CommonName == list[1].Issuer.CommonName {
		t.Error("both CRLs from one issuer")
	}
}

func crls(t *testing.T, vc *tlsv3.CertificateValidationContext) []*x509.RevocationList {
	t.Helper()
	var out []*x509.RevocationList
	data := vc.GetCrl().GetInlineBytes()
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return out
		}
		if block.Type != "X509 CRL" {
			t.Fatalf("crl holds a %s block", block.Type)
		}
		l, err := x509.ParseRevocationList(block.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, l)
	}
}

func hasSerial(l *x509.RevocationList, serial *big.Int) bool {
	for _, e := range l.RevokedCertificateEntries {
		if e.SerialNumber.Cmp(serial) == 0 {
			return true
		}
	}
	return false
}

func parseKey(t *testing.T, data []byte) *ecdsa.PrivateKey {
	t.Helper()
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PRIVATE KEY" {
		t.Fatal("key is not a PEM PKCS#8 PRIVATE KEY")
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	ek, ok := k.(*ecdsa.PrivateKey)
	if !ok || ek.Curve.Params().Name != "P-256" {
		t.Fatalf("key is %T, want ECDSA P-256", k)
	}
	return ek
}

// metricValue reads a metric from the registry; label is the value of its
// only label, or "" for none.
func metricValue(t *testing.T, reg *prometheus.Registry, name, label string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if label == "" || (len(m.GetLabel()) > 0 && m.GetLabel()[0].GetValue() == label) {
				return m.GetCounter().GetValue() + m.GetGauge().GetValue()
			}
		}
	}
	t.Fatalf("no metric %s{%s}", name, label)
	return 0
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
