package extauthz

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/garrison-mesh/garrison/authz/engine"
)

// fakeDecider answers with a fixed decision or error, or runs fn.
type fakeDecider struct {
	ready atomic.Bool
	calls atomic.Int64

	mu  sync.Mutex
	dec *engine.Decision
	err error
	fn  func(context.Context, *authv3.CheckRequest) (*engine.Decision, error)
}

func newFakeDecider(dec *engine.Decision) *fakeDecider {
	f := &fakeDecider{dec: dec}
	f.ready.Store(true)
	return f
}

func (f *fakeDecider) set(dec *engine.Decision, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.dec, f.err, f.fn = dec, err, nil
}

func (f *fakeDecider) setFunc(fn func(context.Context, *authv3.CheckRequest) (*engine.Decision, error)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fn = fn
}

func (f *fakeDecider) Decide(ctx context.Context, req *authv3.CheckRequest) (*engine.Decision, error) {
	f.calls.Add(1)
	f.mu.Lock()
	dec, err, fn := f.dec, f.err, f.fn
	f.mu.Unlock()
	if fn != nil {
		return fn(ctx, req)
	}
	if dec != nil {
		cp := *dec // callers must not share the decision between requests
		dec = &cp
	}
	return dec, err
}

func (f *fakeDecider) Ready() bool { return f.ready.Load() }

// stepClock returns start, then start+step, start+2*step, ... so that every
// Check measures exactly step.
type stepClock struct {
	mu   sync.Mutex
	next time.Time
	step time.Duration
}

func (c *stepClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := c.next
	c.next = c.next.Add(c.step)
	return t
}

// syncBuffer is a bytes.Buffer safe for the decision log's writer and the
// test to share.
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

// running is a server serving on 127.0.0.1:0 (and a Unix socket when
// asked) with a client connected over TCP.
type running struct {
	srv    *Server
	ep     *Endpoint
	conn   *grpc.ClientConn
	client authv3.AuthorizationClient
	cancel context.CancelFunc
	done   chan error // Serve's result
}

// start serves cfg until the test ends and checks that Serve then returns
// nil.
func start(t testing.TB, cfg Config, lc ListenConfig) *running {
	t.Helper()
	srv, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if lc.TCPAddr == "" {
		lc.TCPAddr = "127.0.0.1:0"
	}
	ep, err := srv.Listen(lc)
	if err != nil {
		t.Fatalf("Listen: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{srv: srv, ep: ep, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- ep.Serve(ctx) }()
	r.conn = dial(t, ep.TCPAddr().String())
	r.client = authv3.NewAuthorizationClient(r.conn)
	t.Cleanup(func() {
		_ = r.conn.Close()
		if err := r.stop(); err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return r
}

// stop cancels Serve and waits for it; it may be called more than once.
func (r *running) stop() error {
	r.cancel()
	err, ok := <-r.done
	if ok {
		close(r.done)
	}
	return err
}

func dial(t testing.TB, target string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("dial %s: %v", target, err)
	}
	return conn
}

// checkRequest is a CheckRequest as Envoy sends it for an inbound request
// to productpage.
func checkRequest(method, path string, headers map[string]string) *authv3.CheckRequest {
	h := map[string]string{
		":authority": "productpage:9080",
		":method":    method,
		":path":      path,
		"user-agent": "curl/8.5.0",
	}
	for k, v := range headers {
		h[k] = v
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source: &authv3.AttributeContext_Peer{
			Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
				Address: "10.0.0.7", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 43210},
			}}},
			Principal: "spiffe://cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account",
		},
		Destination: &authv3.AttributeContext_Peer{
			Principal: "spiffe://cluster.local/ns/default/sa/bookinfo-productpage",
		},
		ContextExtensions: map[string]string{
			"garrison.io/namespace": "default",
			"garrison.io/label/app": "productpage",
			"garrison.io/workload":  "Deployment/productpage-v1",
		},
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Id:       "1234567890",
			Method:   method,
			Path:     path,
			Host:     "productpage:9080",
			Scheme:   "http",
			Protocol: "HTTP/1.1",
			Headers:  h,
		}},
	}}
}

// metricValue is the value of the counter, gauge or histogram sample count
// named name with exactly the labels given; ok is false when there is no
// such series.
func metricValue(t *testing.T, g prometheus.Gatherer, name string, labels map[string]string) (float64, bool) {
	t.Helper()
	fams, err := g.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			if !labelsEqual(m.GetLabel(), labels) {
				continue
			}
			switch {
			case m.Counter != nil:
				return m.GetCounter().GetValue(), true
			case m.Gauge != nil:
				return m.GetGauge().GetValue(), true
			case m.Histogram != nil:
				return float64(m.GetHistogram().GetSampleCount()), true
			}
		}
	}
	return 0, false
}

func labelsEqual(got []*dto.LabelPair, want map[string]string) bool {
	if len(got) != len(want) {
		return false
	}
	for _, l := range got {
		if v, ok := want[l.GetName()]; !ok || v != l.GetValue() {
			return false
		}
	}
	return true
}

// histogram returns the named histogram (no labels).
func histogram(t *testing.T, g prometheus.Gatherer, name string) *dto.Histogram {
	t.Helper()
	fams, err := g.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	for _, f := range fams {
		if f.GetName() == name && len(f.GetMetric()) == 1 {
			return f.GetMetric()[0].GetHistogram()
		}
	}
	t.Fatalf("no histogram %s", name)
	return nil
}

var errEngine = errors.New("rego: eval_conflict_error: complete rules must not produce multiple outputs")
