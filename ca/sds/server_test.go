package sds_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	secretv3 "github.com/envoyproxy/go-control-plane/envoy/service/secret/v3"
	"github.com/prometheus/client_golang/prometheus"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/garrison-mesh/garrison/ca/sds"
	"github.com/garrison-mesh/garrison/ca/sds/sdstest"
)

const wait = 10 * time.Second

// quiet is how long a test waits to be sure that nothing is sent. Arrivals
// are always waited for; only absences need a bound.
const quiet = 200 * time.Millisecond

type fixture struct {
	srv    *sds.Server
	socket string
	reg    *prometheus.Registry
	logs   *syncBuffer
	cancel context.CancelFunc
	done   chan error
}

func start(t *testing.T) *fixture {
	t.Helper()
	logs := &syncBuffer{}
	reg := prometheus.NewRegistry()
	srv, err := sds.New(sds.Config{Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})), Metrics: reg})
	if err != nil {
		t.Fatal(err)
	}
	socket := filepath.Join(t.TempDir(), "sds.sock")
	ep, err := srv.Listen(socket, 0)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	f := &fixture{srv: srv, socket: socket, reg: reg, logs: logs, cancel: cancel, done: make(chan error, 1)}
	go func() { f.done <- ep.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-f.done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return f
}

// workload returns a workload with a fresh certificate, so that every call
// differs from the previous one in "default" only.
func workload(t *testing.T) sds.Workload {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{SerialNumber: serial, NotAfter: time.Now().Add(time.Hour)},
		&x509.Certificate{SerialNumber: big.NewInt(1)}, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalPKCS8PrivateKey(key)
	return sds.Workload{
		CertChainPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:       pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}),
		TrustDomain:  "cluster.local",
		RootsPEM:     []byte("-----BEGIN CERTIFICATE-----\nroot\n-----END CERTIFICATE-----\n"),
	}
}

func chainOf(t *testing.T, s *tlsv3.Secret) string {
	t.Helper()
	if s == nil || s.GetTlsCertificate() == nil {
		t.Fatalf("not a TLS certificate secret: %v", s)
	}
	return string(s.GetTlsCertificate().GetCertificateChain().GetInlineBytes())
}

func names(t *testing.T, resp *discovery.DiscoveryResponse) string {
	t.Helper()
	var out []string
	for _, r := range resp.GetResources() {
		s := &tlsv3.Secret{}
		if err := r.UnmarshalTo(s); err != nil {
			t.Fatal(err)
		}
		out = append(out, s.GetName())
	}
	return strings.Join(out, ",")
}

// TestStreamAsEnvoy follows one stream through what Envoy does: it asks for
// "default", then "default" and "ROOTCA", acknowledges, is pushed a rotated
// certificate without asking, rejects a version, and gets the next version
// and never the rejected one again.
func TestStreamAsEnvoy(t *testing.T) {
	t.Parallel()
	f := start(t)
	w1 := workload(t)
	if err := f.srv.SetWorkload(w1); err != nil {
		t.Fatal(err)
	}
	st := sdstest.NewStream(t, sdstest.Dial(t, f.socket), sdstest.Node("sidecar~10.0.0.1~productpage-v1.default~default.svc.cluster.local"))

	st.Subscribe("default")
	r1 := st.Recv(wait)
	if got := names(t, r1); got != "default" {
		t.Fatalf("first response has %q, want only default", got)
	}
	if chainOf(t, sdstest.MustSecrets(t, r1)["default"]) != string(w1.CertChainPEM) {
		t.Fatal("default does not carry the workload's chain")
	}
	// Envoy acknowledges r1, then a cluster starts using ROOTCA.
	st.ACK(r1)
	st.Subscribe("default", "ROOTCA")
	r2 := st.Recv(wait)
	if got := names(t, r2); got != "ROOTCA,default" {
		t.Fatalf("second response has %q, want ROOTCA and default", got)
	}
	st.ACK(r2)

	// A rotation is pushed without a request.
	w2 := workload(t)
	if err := f.srv.SetWorkload(w2); err != nil {
		t.Fatal(err)
	}
	r3 := st.Recv(wait)
	if chainOf(t, sdstest.MustSecrets(t, r3)["default"]) != string(w2.CertChainPEM) {
		t.Fatal("push does not carry the rotated chain")
	}
	if r3.GetVersionInfo() == r2.GetVersionInfo() || r3.GetNonce() == r2.GetNonce() {
		t.Fatalf("push reuses version %q / nonce %q", r3.GetVersionInfo(), r3.GetNonce())
	}
	st.ACK(r3)

	// A NACK is not answered by the rejected version: the next response is
	// the next version.
	w3 := workload(t)
	if err := f.srv.SetWorkload(w3); err != nil {
		t.Fatal(err)
	}
	r4 := st.Recv(wait)
	st.NACK(r4, "invalid certificate")
	st.NoResponse(quiet)
	w4 := workload(t)
	if err := f.srv.SetWorkload(w4); err != nil {
		t.Fatal(err)
	}
	r5 := st.Recv(wait)
	if chainOf(t, sdstest.MustSecrets(t, r5)["default"]) != string(w4.CertChainPEM) {
		t.Fatal("after a NACK the next response is not the next version")
	}
	if got := value(t, f.reg, "garrison_sds_nacks_total"); got != 1 {
		t.Errorf("garrison_sds_nacks_total = %v, want 1", got)
	}
	if !strings.Contains(f.logs.String(), "sds client rejected secrets") {
		t.Error("the NACK was not logged")
	}
	// Setting equal secrets pushes nothing.
	if err := f.srv.SetWorkload(w4); err != nil {
		t.Fatal(err)
	}
	st.ACK(r5)
	st.NoResponse(quiet)
}

// TestPushReachesEveryStream: Envoy opens one stream per secret it uses (and
// several Envoys or a restarted one may share the socket); every stream that
// subscribes to a changed secret is pushed it, and only those.
func TestPushReachesEveryStream(t *testing.T) {
	t.Parallel()
	f := start(t)
	if err := f.srv.SetWorkload(workload(t)); err != nil {
		t.Fatal(err)
	}
	conn := sdstest.Dial(t, f.socket)
	a := sdstest.NewStream(t, conn, sdstest.Node("a"))
	b := sdstest.NewStream(t, sdstest.Dial(t, f.socket), sdstest.Node("b"))
	roots := sdstest.NewStream(t, conn, sdstest.Node("a"))
	a.Subscribe("default")
	b.Subscribe("default")
	roots.Subscribe("ROOTCA")
	a.ACK(a.Recv(wait))
	b.ACK(b.Recv(wait))
	roots.ACK(roots.Recv(wait))

	w := workload(t)
	if err := f.srv.SetWorkload(w); err != nil {
		t.Fatal(err)
	}
	for _, st := range []*sdstest.Stream{a, b} {
		if chainOf(t, sdstest.MustSecrets(t, st.Recv(wait))["default"]) != string(w.CertChainPEM) {
			t.Fatal("stream was not pushed the new chain")
		}
	}
	roots.NoResponse(quiet) // ROOTCA did not change

	w.RootsPEM = append(w.RootsPEM, w.RootsPEM...)
	if err := f.srv.SetWorkload(w); err != nil {
		t.Fatal(err)
	}
	if got := names(t, roots.Recv(wait)); got != "ROOTCA" {
		t.Fatalf("ROOTCA stream got %q", got)
	}
	a.NoResponse(quiet)
	if got := value(t, f.reg, "garrison_sds_streams"); got != 3 {
		t.Errorf("garrison_sds_streams = %v, want 3", got)
	}
}

// TestUnknownAndNotYetHeldSecrets: a name the server does not hold is
// answered with nothing (Envoy waits) and logged once; once the secret
// exists it is sent on the waiting stream.
func TestUnknownAndNotYetHeldSecrets(t *testing.T) {
	t.Parallel()
	f := start(t)
	st := sdstest.NewStream(t, sdstest.Dial(t, f.socket), sdstest.Node("a"))
	st.Subscribe("default", "file-cert:/etc/x.pem")
	st.NoResponse(quiet)
	if err := f.srv.SetWorkload(workload(t)); err != nil {
		t.Fatal(err)
	}
	r := st.Recv(wait)
	if got := names(t, r); got != "default" {
		t.Fatalf("got %q, want default only", got)
	}
	st.ACK(r)
	st.NoResponse(quiet)
	if n := strings.Count(f.logs.String(), "file-cert:/etc/x.pem"); n != 1 {
		t.Errorf("unknown name logged %d times, want once:\n%s", n, f.logs)
	}
}

// TestSPIREStyleNames: "ALL" and "spiffe://<td>" are SPIFFE validator
// contexts for the trust domain.
func TestSPIREStyleNames(t *testing.T) {
	t.Parallel()
	f := start(t)
	w := workload(t)
	if err := f.srv.SetWorkload(w); err != nil {
		t.Fatal(err)
	}
	st := sdstest.NewStream(t, sdstest.Dial(t, f.socket), sdstest.Node("a"))
	st.Subscribe("ALL", "spiffe://cluster.local")
	secrets := sdstest.MustSecrets(t, st.Recv(wait))
	for _, name := range []string{"ALL", "spiffe://cluster.local"} {
		cvc := secrets[name].GetValidationContext().GetCustomValidatorConfig()
		if cvc.GetName() != sds.SPIFFEValidatorName {
			t.Fatalf("%s: validator %q", name, cvc.GetName())
		}
		cfg := &tlsv3.SPIFFECertValidatorConfig{}
		if err := cvc.GetTypedConfig().UnmarshalTo(cfg); err != nil {
			t.Fatal(err)
		}
		if len(cfg.GetTrustDomains()) != 1 || cfg.GetTrustDomains()[0].GetName() != "cluster.local" ||
			!bytes.Equal(cfg.GetTrustDomains()[0].GetTrustBundle().GetInlineBytes(), w.RootsPEM) {
			t.Fatalf("%s: %v", name, cfg)
		}
	}
}

func TestWorkloadSecrets(t *testing.T) {
	t.Parallel()
	w := workload(t)
	for _, s := range sds.WorkloadSecrets(w) {
		if err := s.Validate(); err != nil {
			t.Fatalf("%s: %v", s.GetName(), err)
		}
	}
	get := func(w sds.Workload, name string) *tlsv3.Secret {
		for _, s := range sds.WorkloadSecrets(w) {
			if s.GetName() == name {
				return s
			}
		}
		return nil
	}
	if vc := get(w, "ROOTCA").GetValidationContext(); vc.GetCrl() != nil || vc.GetOnlyVerifyLeafCertCrl() {
		t.Errorf("ROOTCA without CRLs: %v", vc)
	}
	w.CRLPEM = []byte("-----BEGIN X509 CRL-----\nx\n-----END X509 CRL-----\n")
	vc := get(w, "ROOTCA").GetValidationContext()
	if !bytes.Equal(vc.GetCrl().GetInlineBytes(), w.CRLPEM) || !vc.GetOnlyVerifyLeafCertCrl() || !bytes.Equal(vc.GetTrustedCa().GetInlineBytes(), w.RootsPEM) {
		t.Errorf("ROOTCA with CRLs: %v", vc)
	}
	if get(sds.Workload{RootsPEM: w.RootsPEM}, "default") != nil || get(sds.Workload{RootsPEM: w.RootsPEM}, "ALL") != nil {
		t.Error("secrets without a certificate or trust domain")
	}
	srv, err := sds.New(sds.Config{})
	if err != nil {
		t.Fatal(err)
	}
	bad := &tlsv3.Secret{Name: "x", Type: &tlsv3.Secret_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
		CustomValidatorConfig: &corev3.TypedExtensionConfig{Name: ""},
	}}}
	if err := srv.Set(bad); err == nil {
		t.Error("Set accepted a secret that fails Validate()")
	}
}

// TestDeltaSecrets: the incremental protocol sends only what changed, and a
// NACK is not answered by the rejected version either.
func TestDeltaSecrets(t *testing.T) {
	t.Parallel()
	f := start(t)
	if err := f.srv.SetWorkload(workload(t)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st, err := secretv3.NewSecretDiscoveryServiceClient(sdstest.Dial(t, f.socket)).DeltaSecrets(ctx)
	if err != nil {
		t.Fatal(err)
	}
	recv := make(chan *discovery.DeltaDiscoveryResponse, 8)
	go func() {
		for {
			r, err := st.Recv()
			if err != nil {
				close(recv)
				return
			}
			recv <- r
		}
	}()
	next := func() *discovery.DeltaDiscoveryResponse {
		t.Helper()
		select {
		case r, ok := <-recv:
			if !ok {
				t.Fatal("delta stream ended")
			}
			if err := r.Validate(); err != nil {
				t.Fatal(err)
			}
			return r
		case <-time.After(wait):
			t.Fatal("no delta response")
			return nil
		}
	}
	send := func(r *discovery.DeltaDiscoveryRequest) {
		t.Helper()
		r.TypeUrl = sdstest.SecretTypeURL
		if err := st.Send(r); err != nil {
			t.Fatal(err)
		}
	}
	send(&discovery.DeltaDiscoveryRequest{Node: sdstest.Node("d"), ResourceNamesSubscribe: []string{"default", "ROOTCA"}})
	r1 := next()
	if len(r1.GetResources()) != 2 {
		t.Fatalf("first delta response has %d resources", len(r1.GetResources()))
	}
	send(&discovery.DeltaDiscoveryRequest{ResponseNonce: r1.GetNonce()})
	w := workload(t)
	if err := f.srv.SetWorkload(w); err != nil {
		t.Fatal(err)
	}
	r2 := next()
	if len(r2.GetResources()) != 1 || r2.GetResources()[0].GetName() != "default" {
		t.Fatalf("delta push: %v", r2.GetResources())
	}
	send(&discovery.DeltaDiscoveryRequest{ResponseNonce: r2.GetNonce(), ErrorDetail: &rpcstatus.Status{Code: int32(codes.InvalidArgument), Message: "bad"}})
	w2 := workload(t)
	if err := f.srv.SetWorkload(w2); err != nil {
		t.Fatal(err)
	}
	r3 := next()
	s := &tlsv3.Secret{}
	if err := r3.GetResources()[0].GetResource().UnmarshalTo(s); err != nil {
		t.Fatal(err)
	}
	if chainOf(t, s) != string(w2.CertChainPEM) {
		t.Fatal("after a delta NACK the next response is not the next version")
	}
}

func TestFetchSecrets(t *testing.T) {
	t.Parallel()
	f := start(t)
	w := workload(t)
	if err := f.srv.SetWorkload(w); err != nil {
		t.Fatal(err)
	}
	c := secretv3.NewSecretDiscoveryServiceClient(sdstest.Dial(t, f.socket))
	resp, err := c.FetchSecrets(t.Context(), &discovery.DiscoveryRequest{Node: sdstest.Node("f"), ResourceNames: []string{"default"}})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Nonce = "fetch"; sdstest.CheckResponse(resp) != nil || chainOf(t, sdstest.MustSecrets(t, resp)["default"]) != string(w.CertChainPEM) {
		t.Fatalf("fetch: %v", resp)
	}
	_, err = c.FetchSecrets(t.Context(), &discovery.DiscoveryRequest{ResourceNames: []string{"nope"}})
	if status.Code(err) != codes.NotFound {
		t.Fatalf("fetch of an unknown name: %v", err)
	}
}

// TestShutdownEndsStreams: cancelling Serve's context ends open streams and
// removes the socket.
func TestShutdownEndsStreams(t *testing.T) {
	t.Parallel()
	srv, err := sds.New(sds.Config{})
	if err != nil {
		t.Fatal(err)
	}
	socket := filepath.Join(t.TempDir(), "sds.sock")
	ep, err := srv.Listen(socket, 0)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ep.Serve(ctx) }()
	st := sdstest.NewStream(t, sdstest.Dial(t, socket), sdstest.Node("a"))
	st.Subscribe("default")
	st.NoResponse(quiet) // the stream is open and waiting
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(wait):
		t.Fatal("Serve did not return")
	}
	if _, err := os.Lstat(socket); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket left behind: %v", err)
	}
}

func TestSocketFile(t *testing.T) {
	t.Parallel()
	srv, err := sds.New(sds.Config{})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()

	t.Run("mode", func(t *testing.T) {
		for _, mode := range []os.FileMode{0, 0o660} {
			path := filepath.Join(dir, fmt.Sprintf("m%o", mode), "sds.sock")
			ep, err := srv.Listen(path, mode)
			if err != nil {
				t.Fatal(err)
			}
			info, err := os.Lstat(path)
			if err != nil {
				t.Fatal(err)
			}
			want := mode
			if want == 0 {
				want = sds.DefaultSocketMode
			}
			if info.Mode()&os.ModeSocket == 0 || info.Mode().Perm() != want {
				t.Errorf("socket mode %v, want socket %v", info.Mode(), want)
			}
			entries, _ := os.ReadDir(filepath.Dir(path))
			if len(entries) != 1 {
				t.Errorf("directory holds %d entries, want the socket only", len(entries))
			}
			serveAndStop(t, ep)
		}
	})
	t.Run("stale socket is replaced", func(t *testing.T) {
		path := filepath.Join(dir, "stale.sock")
		ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
		if err != nil {
			t.Fatal(err)
		}
		ln.SetUnlinkOnClose(false)
		ln.Close() // a dead agent's socket
		ep, err := srv.Listen(path, 0)
		if err != nil {
			t.Fatal(err)
		}
		serveAndStop(t, ep)
	})
	t.Run("live socket is refused", func(t *testing.T) {
		path := filepath.Join(dir, "live.sock")
		ln, err := net.Listen("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		if _, err := srv.Listen(path, 0); err == nil || !strings.Contains(err.Error(), "in use") {
			t.Fatalf("Listen on a live socket: %v", err)
		}
	})
	t.Run("regular file is refused", func(t *testing.T) {
		path := filepath.Join(dir, "file")
		if err := os.WriteFile(path, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := srv.Listen(path, 0); err == nil || !strings.Contains(err.Error(), "not a socket") {
			t.Fatalf("Listen on a regular file: %v", err)
		}
	})
}

func serveAndStop(t *testing.T, ep *sds.Endpoint) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ep.Serve(ctx) }()
	c := sdstest.Dial(t, ep.Path())
	if _, err := secretv3.NewSecretDiscoveryServiceClient(c).FetchSecrets(t.Context(), &discovery.DiscoveryRequest{}); status.Code(err) != codes.NotFound {
		t.Fatalf("fetch over %s: %v", ep.Path(), err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// value is the sum of a registered metric's samples.
func value(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			v := 0.0
			for _, m := range mf.GetMetric() {
				v += m.GetCounter().GetValue() + m.GetGauge().GetValue()
			}
			return v
		}
	}
	t.Fatalf("metric %s not registered", name)
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
