package extauthz

import (
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"

	"github.com/garrison-mesh/garrison/authz/engine"
)

func TestNewRequiresDecider(t *testing.T) {
	if _, err := New(Config{}); err == nil {
		t.Fatal("New without a Decider succeeded")
	}
}

func TestNewRefusesARegistryTwiceAndLeavesItClean(t *testing.T) {
	reg := prometheus.NewRegistry()
	if _, err := New(Config{Decider: newFakeDecider(nil), Metrics: reg}); err != nil {
		t.Fatal(err)
	}
	if _, err := New(Config{Decider: newFakeDecider(nil), Metrics: reg}); err == nil {
		t.Fatal("second New with the same registry succeeded")
	}
	// The failed New unregistered what it had registered: one set remains.
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	if len(fams) == 0 {
		t.Fatal("the first server's metrics are gone")
	}
}

func TestCheckAllowsWithFakeDecider(t *testing.T) {
	fd := newFakeDecider(&engine.Decision{Allowed: true, Status: 200, Reason: "allowed", Policy: "default/viewer", Kind: "AuthorizationPolicy"})
	r := start(t, Config{Decider: fd, DenyBodyDetails: true}, ListenConfig{})

	resp, err := r.client.Check(context.Background(), checkRequest("GET", "/productpage", nil))
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	if c := codes.Code(resp.GetStatus().GetCode()); c != codes.OK {
		t.Errorf("status %v, want OK", c)
	}
	if resp.GetOkResponse() == nil || resp.GetDeniedResponse() != nil || resp.GetErrorResponse() != nil {
		t.Errorf("response %v, want ok_response only", resp)
	}
	if len(resp.GetOkResponse().GetHeaders()) != 0 {
		t.Errorf("allow carries headers %v", resp.GetOkResponse().GetHeaders())
	}
	if fd.calls.Load() != 1 {
		t.Errorf("decider called %d times, want 1", fd.calls.Load())
	}
}

func TestCheckDeniesWithFakeDecider(t *testing.T) {
	cases := []struct {
		name       string
		dec        engine.Decision
		wantHTTP   int32
		wantCode   codes.Code
		wantBody   string
		wantHeader string
	}{{
		name: "deny policy",
		dec: engine.Decision{Status: 403, Reason: "denied", Policy: "default/deny-post", Kind: "AuthorizationPolicy", Rule: 1,
			Body: "RBAC: access denied by AuthorizationPolicy default/deny-post rule 1"},
		wantHTTP: 403, wantCode: codes.PermissionDenied,
		wantBody:   "RBAC: access denied by AuthorizationPolicy default/deny-post rule 1",
		wantHeader: "reason=denied; policy=default/deny-post; kind=AuthorizationPolicy; rule=1",
	}, {
		name:     "no allow policy matched, engine gave no body",
		dec:      engine.Decision{Status: 403, Reason: "no-allow-match"},
		wantHTTP: 403, wantCode: codes.PermissionDenied,
		wantBody:   "RBAC: access denied (no-allow-match)",
		wantHeader: "reason=no-allow-match",
	}, {
		name:     "legacy RBAC, engine gave no body",
		dec:      engine.Decision{Status: 403, Reason: "rbac-denied", Policy: "default/productpage-viewer", Kind: "ServiceRoleBinding"},
		wantHTTP: 403, wantCode: codes.PermissionDenied,
		wantBody:   "RBAC: access denied by ServiceRoleBinding default/productpage-viewer rule 0",
		wantHeader: "reason=rbac-denied; policy=default/productpage-viewer; kind=ServiceRoleBinding; rule=0",
	}, {
		name:     "invalid JWT",
		dec:      engine.Decision{Status: 401, Reason: "denied", Body: "Jwt verification fails"},
		wantHTTP: 401, wantCode: codes.Unauthenticated,
		wantBody: "Jwt verification fails", wantHeader: "reason=denied",
	}, {
		name:     "path rejected",
		dec:      engine.Decision{Status: 400, Reason: "invalid-path"},
		wantHTTP: 400, wantCode: codes.InvalidArgument,
		wantBody: "RBAC: access denied (invalid-path)", wantHeader: "reason=invalid-path",
	}, {
		name:     "status the server does not pass on",
		dec:      engine.Decision{Status: 500, Reason: "denied"},
		wantHTTP: 403, wantCode: codes.PermissionDenied,
		wantBody: "RBAC: access denied (denied)", wantHeader: "reason=denied",
	}, {
		name:     "no status at all",
		dec:      engine.Decision{Reason: "denied"},
		wantHTTP: 403, wantCode: codes.PermissionDenied,
		wantBody: "RBAC: access denied (denied)", wantHeader: "reason=denied",
	}}
	fd := newFakeDecider(nil)
	r := start(t, Config{Decider: fd, DenyBodyDetails: true}, ListenConfig{})
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fd.set(&tc.dec, nil)
			resp, err := r.client.Check(context.Background(), checkRequest("POST", "/productpage", nil))
			if err != nil {
				t.Fatalf("Check: %v", err)
			}
			assertDenied(t, resp, tc.wantCode, tc.wantHTTP, tc.wantBody)
			hs := resp.GetDeniedResponse().GetHeaders()
			if len(hs) != 1 || hs[0].GetHeader().GetKey() != DecisionHeader || hs[0].GetHeader().GetValue() != tc.wantHeader {
				t.Errorf("headers %v, want %s: %q", hs, DecisionHeader, tc.wantHeader)
			}
		})
	}
}

func assertDenied(t *testing.T, resp *authv3.CheckResponse, code codes.Code, httpStatus int32, body string) {
	t.Helper()
	if c := codes.Code(resp.GetStatus().GetCode()); c != code {
		t.Errorf("status %v, want %v", c, code)
	}
	d := resp.GetDeniedResponse()
	if d == nil || resp.GetOkResponse() != nil || resp.GetErrorResponse() != nil {
		t.Fatalf("response %v, want denied_response only", resp)
	}
	if got := int32(d.GetStatus().GetCode()); got != httpStatus {
		t.Errorf("HTTP status %d, want %d", got, httpStatus)
	}
	if d.GetBody() != body {
		t.Errorf("body %q, want %q", d.GetBody(), body)
	}
}

func TestCheckDetailsOffWithFakeDecider(t *testing.T) {
	fd := newFakeDecider(nil)
	r := start(t, Config{Decider: fd, DenyBodyDetails: false}, ListenConfig{})
	for _, tc := range []struct {
		dec      engine.Decision
		wantHTTP int32
		wantCode codes.Code
	}{
		{engine.Decision{Status: 403, Reason: "denied", Policy: "default/deny-post", Kind: "AuthorizationPolicy", Rule: 2,
			Body: "RBAC: access denied by AuthorizationPolicy default/deny-post rule 2"}, 403, codes.PermissionDenied},
		{engine.Decision{Status: 401, Reason: "denied", Policy: "default/jwt"}, 401, codes.Unauthenticated},
		{engine.Decision{Status: 400, Reason: "invalid-path"}, 400, codes.InvalidArgument},
	} {
		fd.set(&tc.dec, nil)
		resp, err := r.client.Check(context.Background(), checkRequest("POST", "/productpage", nil))
		if err != nil {
			t.Fatalf("Check: %v", err)
		}
		assertDenied(t, resp, tc.wantCode, tc.wantHTTP, "RBAC: access denied")
		if hs := resp.GetDeniedResponse().GetHeaders(); len(hs) != 0 {
			t.Errorf("details off, yet headers %v", hs)
		}
	}
}

func TestCheckFailsClosedWithFakeDecider(t *testing.T) {
	fd := newFakeDecider(nil)
	reg := prometheus.NewRegistry()
	var logs syncBuffer
	clock := &stepClock{next: time.Date(2026, 10, 1, 12, 0, 0, 0, time.UTC), step: 10 * time.Microsecond}
	r := start(t, Config{
		Decider: fd, Metrics: reg, DenyBodyDetails: true, Now: clock.Now,
		Logger: slog.New(slog.NewJSONHandler(&logs, nil)),
	}, ListenConfig{})

	failures := []struct {
		name string
		set  func()
	}{
		{"error", func() { fd.set(nil, errEngine) }},
		// An error must win even when the engine also returns a decision.
		{"error with an allow", func() { fd.set(&engine.Decision{Allowed: true, Status: 200}, errEngine) }},
		{"nil decision", func() { fd.set(nil, nil) }},
		{"panic", func() {
			fd.setFunc(func(context.Context, *authv3.CheckRequest) (*engine.Decision, error) { panic("index out of range") })
		}},
		{"deadline", func() {
			fd.setFunc(func(ctx context.Context, _ *authv3.CheckRequest) (*engine.Decision, error) {
				return nil, context.DeadlineExceeded
			})
		}},
	}
	for _, f := range failures {
		t.Run(f.name, func(t *testing.T) {
			f.set()
			resp, err := r.client.Check(context.Background(), checkRequest("GET", "/productpage", nil))
			if err != nil {
				t.Fatalf("Check returned an RPC error (Envoy's failure_mode_allow would let it through): %v", err)
			}
			assertDenied(t, resp, codes.PermissionDenied, 403, "RBAC: access denied (policy evaluation failed)")
			if hs := resp.GetDeniedResponse().GetHeaders(); len(hs) != 0 {
				t.Errorf("failure response carries headers %v", hs)
			}
		})
	}

	if v, _ := metricValue(t, reg, "garrison_authz_decisions_total", map[string]string{"result": "error", "policy": ""}); v != float64(len(failures)) {
		t.Errorf("decisions_total{result=error} = %v, want %d", v, len(failures))
	}
	if v, _ := metricValue(t, reg, "garrison_authz_decisions_total", map[string]string{"result": "allow", "policy": ""}); v != 0 {
		t.Errorf("decisions_total{result=allow} = %v, want 0", v)
	}
	// The clock moves 20µs per Check, so all failures fall in one second:
	// the first is logged, the rest are counted for the next log line.
	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	if len(lines) != 1 {
		t.Fatalf("logged %d lines, want 1 (rate-limited):\n%s", len(lines), logs.String())
	}
	var rec map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &rec); err != nil {
		t.Fatal(err)
	}
	if rec["level"] != "ERROR" || !strings.Contains(rec["err"].(string), "eval_conflict_error") {
		t.Errorf("log record %v, want an ERROR naming the engine's error", rec)
	}

	clock.mu.Lock()
	clock.next = clock.next.Add(time.Second)
	clock.mu.Unlock()
	fd.set(nil, errEngine)
	if _, err := r.client.Check(context.Background(), checkRequest("GET", "/", nil)); err != nil {
		t.Fatal(err)
	}
	lines = strings.Split(strings.TrimSpace(logs.String()), "\n")
	if len(lines) != 2 || !strings.Contains(lines[1], `"suppressed":`+itoa(len(failures)-1)) {
		t.Errorf("after a second, want a second line counting %d suppressed:\n%s", len(failures)-1, logs.String())
	}
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

func TestCheckCustomDeniesWithFakeDecider(t *testing.T) {
	custom := engine.Decision{
		Allowed: true, // CUSTOM is not the engine's to allow: still denied
		Status:  200, Reason: "custom", Policy: "default/ext-authz", Kind: "AuthorizationPolicy",
		Custom: &engine.Custom{Provider: "my-ext-authz", Policy: "default/ext-authz"},
	}
	for _, details := range []bool{true, false} {
		t.Run(map[bool]string{true: "details", false: "no details"}[details], func(t *testing.T) {
			reg := prometheus.NewRegistry()
			r := start(t, Config{Decider: newFakeDecider(&custom), Metrics: reg, DenyBodyDetails: details}, ListenConfig{})
			resp, err := r.client.Check(context.Background(), checkRequest("GET", "/productpage", nil))
			if err != nil {
				t.Fatal(err)
			}
			body := "RBAC: access denied (extension provider not configured)"
			if details {
				body = `RBAC: access denied (extension provider "my-ext-authz" of CUSTOM policy default/ext-authz is not configured)`
			}
			assertDenied(t, resp, codes.PermissionDenied, 403, body)
			hs := resp.GetDeniedResponse().GetHeaders()
			if details && (len(hs) != 1 || hs[0].GetHeader().GetValue() != "reason=custom; provider=my-ext-authz; policy=default/ext-authz") {
				t.Errorf("headers %v", hs)
			}
			if !details && len(hs) != 0 {
				t.Errorf("details off, yet headers %v", hs)
			}
			if v, _ := metricValue(t, reg, "garrison_authz_custom_unavailable_total", map[string]string{"provider": "my-ext-authz"}); v != 1 {
				t.Errorf("custom_unavailable_total = %v, want 1", v)
			}
			if v, _ := metricValue(t, reg, "garrison_authz_decisions_total", map[string]string{"result": "deny", "policy": "default/ext-authz"}); v != 1 {
				t.Errorf("decisions_total{deny, default/ext-authz} = %v, want 1", v)
			}
		})
	}
}

func TestHealthFollowsReadyWithFakeDecider(t *testing.T) {
	fd := newFakeDecider(&engine.Decision{Allowed: true, Status: 200})
	fd.ready.Store(false)
	r := start(t, Config{Decider: fd}, ListenConfig{})
	hc := healthpb.NewHealthClient(r.conn)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	check := func(want healthpb.HealthCheckResponse_ServingStatus) {
		t.Helper()
		for _, svc := range []string{"", "envoy.service.auth.v3.Authorization"} {
			resp, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: svc})
			if err != nil {
				t.Fatalf("health Check(%q): %v", svc, err)
			}
			if resp.GetStatus() != want {
				t.Errorf("health Check(%q) = %v, want %v", svc, resp.GetStatus(), want)
			}
		}
	}
	check(healthpb.HealthCheckResponse_NOT_SERVING)

	watch, err := hc.Watch(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	recv := func(want healthpb.HealthCheckResponse_ServingStatus) {
		t.Helper()
		got, err := watch.Recv()
		if err != nil {
			t.Fatalf("Watch: %v", err)
		}
		if got.GetStatus() != want {
			t.Errorf("Watch sent %v, want %v", got.GetStatus(), want)
		}
	}
	recv(healthpb.HealthCheckResponse_NOT_SERVING)

	fd.ready.Store(true)
	// A probe sees the change at once, and Watch hears of it from the probe
	// (or from the poller within HealthPoll).
	check(healthpb.HealthCheckResponse_SERVING)
	recv(healthpb.HealthCheckResponse_SERVING)

	fd.ready.Store(false)
	check(healthpb.HealthCheckResponse_NOT_SERVING)
	recv(healthpb.HealthCheckResponse_NOT_SERVING)

	// Unknown services are unknown, as grpc's health server says.
	if _, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: "nope"}); err == nil {
		t.Error("health Check of an unknown service succeeded")
	}
}

func TestHealthWatchFollowsReadyWithoutProbesWithFakeDecider(t *testing.T) {
	fd := newFakeDecider(nil)
	fd.ready.Store(false)
	// The poller is the only thing re-reading Ready here.
	r := start(t, Config{Decider: fd}, ListenConfig{HealthPoll: time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	watch, err := healthpb.NewHealthClient(r.conn).Watch(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := watch.Recv(); err != nil || got.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("first Watch status %v, %v", got, err)
	}
	fd.ready.Store(true)
	if got, err := watch.Recv(); err != nil || got.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("Watch status after Ready %v, %v", got, err)
	}
}

func TestReflectionListsServicesWithFakeDecider(t *testing.T) {
	r := start(t, Config{Decider: newFakeDecider(nil)}, ListenConfig{})
	stream, err := reflectionpb.NewServerReflectionClient(r.conn).ServerReflectionInfo(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&reflectionpb.ServerReflectionRequest{
		MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{},
	}); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	_ = stream.CloseSend()
	got := map[string]bool{}
	for _, s := range resp.GetListServicesResponse().GetService() {
		got[s.GetName()] = true
	}
	for _, want := range []string{"envoy.service.auth.v3.Authorization", "grpc.health.v1.Health"} {
		if !got[want] {
			t.Errorf("reflection does not list %s (lists %v)", want, got)
		}
	}
}

func TestMetricsWithFakeDecider(t *testing.T) {
	fd := newFakeDecider(nil)
	reg := prometheus.NewRegistry()
	clock := &stepClock{next: time.Date(2026, 10, 1, 12, 0, 0, 0, time.UTC), step: 50 * time.Microsecond}
	r := start(t, Config{Decider: fd, Metrics: reg, Now: clock.Now}, ListenConfig{})

	// Before any Check, the three results exist at zero.
	for _, res := range []string{"allow", "deny", "error"} {
		if v, ok := metricValue(t, reg, "garrison_authz_decisions_total", map[string]string{"result": res, "policy": ""}); !ok || v != 0 {
			t.Errorf("decisions_total{%s,\"\"} = %v (present %v) before any Check, want 0", res, v, ok)
		}
	}

	do := func(dec *engine.Decision, err error, n int) {
		t.Helper()
		fd.set(dec, err)
		for range n {
			if _, err := r.client.Check(context.Background(), checkRequest("GET", "/", nil)); err != nil {
				t.Fatal(err)
			}
		}
	}
	do(&engine.Decision{Allowed: true, Status: 200, Reason: "allowed", Policy: "default/viewer",
		DryRun: []map[string]any{{"policy": "default/deny-all", "kind": "AuthorizationPolicy", "rule": 0, "action": "DENY"}}}, nil, 3)
	do(&engine.Decision{Allowed: true, Status: 200, Reason: "no-policy"}, nil, 1)
	do(&engine.Decision{Status: 403, Reason: "denied", Policy: "default/deny-post",
		DryRun: []map[string]any{{"policy": "default/new-allow", "action": "ALLOW"}, {"policy": "default/odd", "would": "maybe"}}}, nil, 2)
	do(nil, errEngine, 1)

	want := []struct {
		name   string
		labels map[string]string
		v      float64
	}{
		{"garrison_authz_decisions_total", map[string]string{"result": "allow", "policy": "default/viewer"}, 3},
		{"garrison_authz_decisions_total", map[string]string{"result": "allow", "policy": ""}, 1},
		{"garrison_authz_decisions_total", map[string]string{"result": "deny", "policy": "default/deny-post"}, 2},
		{"garrison_authz_decisions_total", map[string]string{"result": "deny", "policy": ""}, 0},
		{"garrison_authz_decisions_total", map[string]string{"result": "error", "policy": ""}, 1},
		{"garrison_authz_dry_run_total", map[string]string{"policy": "default/deny-all", "would": "deny"}, 3},
		{"garrison_authz_dry_run_total", map[string]string{"policy": "default/new-allow", "would": "allow"}, 2},
		{"garrison_authz_dry_run_total", map[string]string{"policy": "default/odd", "would": "unknown"}, 2},
		{"garrison_authz_check_duration_seconds", nil, 7},
	}
	for _, w := range want {
		if got, ok := metricValue(t, reg, w.name, w.labels); !ok || got != w.v {
			t.Errorf("%s%v = %v (present %v), want %v", w.name, w.labels, got, ok, w.v)
		}
	}
	// Every Check took 50µs by the injected clock: all land in the
	// (40µs, 80µs] bucket.
	h := histogram(t, reg, "garrison_authz_check_duration_seconds")
	for _, b := range h.GetBucket() {
		want := uint64(0)
		if b.GetUpperBound() >= 80e-6 {
			want = 7
		}
		if b.GetCumulativeCount() != want {
			t.Errorf("bucket le=%g has %d, want %d", b.GetUpperBound(), b.GetCumulativeCount(), want)
		}
	}
	if lo, hi := h.GetBucket()[0].GetUpperBound(), h.GetBucket()[len(h.GetBucket())-1].GetUpperBound(); lo != 10e-6 || hi < 10e-3 {
		t.Errorf("buckets span %g..%g, want 10µs..≥10ms", lo, hi)
	}
	if s := h.GetSampleSum(); s < 7*50e-6*0.999 || s > 7*50e-6*1.001 {
		t.Errorf("sum %g, want %g", s, 7*50e-6)
	}
}

func TestCheckRecordsNothingWithoutMetricsOrLogWithFakeDecider(t *testing.T) {
	// Metrics and DecisionLog are optional: nil must not panic anywhere.
	r := start(t, Config{Decider: newFakeDecider(&engine.Decision{Status: 403, Reason: "denied", Policy: "a/b",
		DryRun: []map[string]any{{"policy": "a/c", "action": "DENY"}}})}, ListenConfig{})
	for range 2 {
		if _, err := r.client.Check(context.Background(), checkRequest("GET", "/", nil)); err != nil {
			t.Fatal(err)
		}
	}
}

// Register serves on a grpc.Server the caller owns, as cmd may do to share
// one server between services.
func TestRegisterOnCallersServerWithFakeDecider(t *testing.T) {
	srv, err := New(Config{Decider: newFakeDecider(&engine.Decision{Allowed: true, Status: 200})})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	srv.Register(gs)
	served := make(chan error, 1)
	go func() { served <- gs.Serve(ln) }()
	defer func() {
		gs.Stop()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}()
	conn := dial(t, ln.Addr().String())
	defer conn.Close()
	resp, err := authv3.NewAuthorizationClient(conn).Check(context.Background(), checkRequest("GET", "/", nil))
	if err != nil || resp.GetOkResponse() == nil {
		t.Fatalf("Check: %v %v", resp, err)
	}
	if st, err := healthpb.NewHealthClient(conn).Check(context.Background(), &healthpb.HealthCheckRequest{}); err != nil || st.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health: %v %v", st, err)
	}
}
