package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/protobuf/proto"

	"github.com/garrison-mesh/garrison/authz/compile"
	"github.com/garrison-mesh/garrison/policies"
)

// The tests named ...WithStubRego run the engine with a fake compiler and a
// tiny hand-written policy set shaped as CONTRACT.md sections 4 and 5 say,
// for what the real compiler cannot be made to produce: a version stamped
// into every rule, an undefined or malformed decision, an evaluation error,
// a compiler failure on demand.

// stubModule is a minimal library plus one generated-looking rule of each
// kind. %[1]d is the snapshot version: the allow rule requires the label
// gen=<version> that the version's snapshot gives its workload, so a
// decision that mixed the Rego of one version with the workload index of
// another would not be allowed; and every element names the version.
const stubModule = `package garrison.authz

ns := input.attributes.contextExtensions["garrison.io/namespace"]

path := split(input.attributes.request.http.path, "?")[0]

deny_matches contains {"policy": "shop/deny-v%[1]d", "kind": "AuthorizationPolicy", "rule": 0} if {
	input.attributes.contextExtensions["garrison.io/namespace"] == "shop"
	startswith(path, "/admin")
}

allow_policies contains {"policy": "shop/allow-v%[1]d", "kind": "AuthorizationPolicy"} if {
	input.attributes.contextExtensions["garrison.io/namespace"] == "shop"
	input.attributes.contextExtensions["garrison.io/label/app"] == "web"
}

allow_matches contains {"policy": "shop/allow-v%[1]d", "kind": "AuthorizationPolicy", "rule": 1} if {
	input.attributes.contextExtensions["garrison.io/namespace"] == "shop"
	input.attributes.contextExtensions["garrison.io/label/app"] == "web"
	input.attributes.contextExtensions["garrison.io/label/gen"] == "%[1]d"
	input.attributes.request.http.headers["x-user"] == "alice"
}

audit_matches contains {"policy": "shop/audit-v%[1]d", "kind": "AuthorizationPolicy", "rule": 0} if {
	input.attributes.contextExtensions["garrison.io/namespace"] == "shop"
	input.attributes.request.http.method == "DELETE"
}

verdict(allowed, status, reason, m) := object.union({"allowed": allowed, "status": status, "reason": reason}, object.filter(m, ["policy", "kind", "rule"]))

outcome := verdict(false, 403, "denied", sort(deny_matches)[0]) if {
	count(deny_matches) > 0
} else := verdict(true, 200, "allowed", sort(allow_matches)[0]) if {
	count(allow_matches) > 0
} else := verdict(false, 403, "no-allow-match", sort(allow_policies)[0]) if {
	count(allow_policies) > 0
} else := {"allowed": true, "status": 200, "reason": "no-policy"}

recorded["audit"] := sort(audit_matches) if count(audit_matches) > 0

decision := object.union(outcome, recorded) if not input.attributes.request.http.headers["x-stub"]

# Requests that make the policy set misbehave, for the fail-closed tests.
decision := {"allowed": "yes"} if input.attributes.request.http.headers["x-stub"] == "malformed"

decision := "allowed" if input.attributes.request.http.headers["x-stub"] == "string"

decision := {"allowed": true} if input.attributes.request.http.headers["x-stub"] == "conflict"

decision := {
	"allowed": false, "status": 403, "reason": "custom", "policy": "shop/ext", "kind": "AuthorizationPolicy", "rule": 0,
	"custom": {"provider": "opa-ext", "policy": "shop/ext"},
	"after_custom": {"allowed": true, "status": 200, "reason": "allowed", "policy": "shop/allow", "kind": "AuthorizationPolicy", "rule": 2},
	"dry_run": [{"policy": "shop/dry", "kind": "AuthorizationPolicy", "rule": 0, "action": "DENY"}],
	"body": "custom body",
} if input.attributes.request.http.headers["x-stub"] == "custom"

decision := {"allowed": false} if input.attributes.request.http.headers["x-stub"] == "conflict"

envoy_response := {"allowed": decision.allowed, "headers": {"x-garrison-decision": decision.reason}}
`

// stubCompile compiles every snapshot to stubModule of its version. The
// policy set reads one header, x-user; x-stub is read too but left out of
// Headers on purpose in one test below.
func stubCompile(snap *policies.Snapshot) (*compile.Result, error) {
	return &compile.Result{
		Modules:         map[string]string{"garrison/authz/stub.rego": fmt.Sprintf(stubModule, snap.Version())},
		Headers:         []string{"x-user", "x-stub"},
		SnapshotVersion: snap.Version(),
	}, nil
}

// stubWorkloads is the snapshot content of version gen: workload web in
// namespace shop, running as service account web, labelled gen=<gen>.
func stubWorkloads(gen uint64) string {
	return fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
spec:
  template:
    metadata: {labels: {app: web, gen: "%d"}}
    spec: {serviceAccountName: web}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80}]
`, gen)
}

func parseYAML(t testing.TB, docs ...string) []*policies.Resource {
	t.Helper()
	rs, problems := policies.Parse("test.yaml", []byte(strings.Join(docs, "\n---\n")))
	if err := problems.Err(); err != nil {
		t.Fatal(err)
	}
	return rs
}

// shopRequest is a request to the web workload of namespace shop, with no
// context extensions: the engine derives them from the destination.
func shopRequest(method, path string, headers map[string]string) *authv3.CheckRequest {
	h := map[string]string{":method": method, ":path": path, ":authority": "web.shop.svc.cluster.local"}
	for k, v := range headers {
		h[k] = v
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source: &authv3.AttributeContext_Peer{Address: socket("10.0.0.1", 40000),
			Principal: "spiffe://cluster.local/ns/shop/sa/frontend"},
		Destination: &authv3.AttributeContext_Peer{Address: socket("10.0.0.2", 80),
			Principal: "spiffe://cluster.local/ns/shop/sa/web"},
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: method, Path: path, Headers: h, Host: "web.shop.svc.cluster.local", Protocol: "HTTP/1.1"}},
	}}
}

// runEngine starts an engine on store and waits until it serves version.
func runEngine(t testing.TB, cfg Config, store *policies.Store, version uint64) *Engine {
	t.Helper()
	cfg.Store = store
	e, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	waitVersion(t, e, version)
	return e
}

func waitVersion(t testing.TB, e *Engine, version uint64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for e.Version() != version {
		if time.Now().After(deadline) {
			t.Fatalf("engine at version %d, want %d", e.Version(), version)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestDecideWithStubRego(t *testing.T) {
	store := policies.NewStore(policies.StoreConfig{})
	store.Update(parseYAML(t, stubWorkloads(1)))
	e := runEngine(t, Config{Compile: stubCompile}, store, 1)
	ctx := context.Background()

	for _, tc := range []struct {
		name   string
		req    *authv3.CheckRequest
		want   Decision
		audits int
	}{
		{"allowed", shopRequest("GET", "/x", map[string]string{"x-user": "alice"}),
			Decision{Allowed: true, Status: 200, Reason: "allowed", Policy: "shop/allow-v1", Kind: "AuthorizationPolicy", Rule: 1}, 0},
		{"no allow match", shopRequest("GET", "/x", map[string]string{"x-user": "bob"}),
			Decision{Allowed: false, Status: 403, Reason: "no-allow-match", Policy: "shop/allow-v1", Kind: "AuthorizationPolicy"}, 0},
		{"denied", shopRequest("GET", "/admin/users", map[string]string{"x-user": "alice"}),
			Decision{Allowed: false, Status: 403, Reason: "denied", Policy: "shop/deny-v1", Kind: "AuthorizationPolicy"}, 0},
		{"denied after normalization", shopRequest("GET", "/public/../%61dmin", map[string]string{"x-user": "alice"}),
			Decision{Allowed: false, Status: 403, Reason: "denied", Policy: "shop/deny-v1", Kind: "AuthorizationPolicy"}, 0},
		{"denied after backslash", shopRequest("GET", `\admin`, map[string]string{"x-user": "alice"}),
			Decision{Allowed: false, Status: 403, Reason: "denied", Policy: "shop/deny-v1", Kind: "AuthorizationPolicy"}, 0},
		{"encoded slash kept", shopRequest("GET", "/admin%2Fx", map[string]string{"x-user": "alice"}),
			Decision{Allowed: false, Status: 403, Reason: "denied", Policy: "shop/deny-v1", Kind: "AuthorizationPolicy"}, 0},
		{"audited", shopRequest("DELETE", "/x", map[string]string{"x-user": "alice"}),
			Decision{Allowed: true, Status: 200, Reason: "allowed", Policy: "shop/allow-v1", Kind: "AuthorizationPolicy", Rule: 1}, 1},
		{"%00 is 400", shopRequest("GET", "/x%00", nil),
			Decision{Status: 400, Reason: ReasonInvalidPath}, 0},
		{"invalid escape is matched as written", shopRequest("GET", "/x%G0", nil),
			Decision{Allowed: false, Status: 403, Reason: "no-allow-match", Policy: "shop/allow-v1", Kind: "AuthorizationPolicy"}, 0},
		{"invalid escape before a dot segment", shopRequest("GET", "/public/%G0/../../%61dmin/x", map[string]string{"x-user": "alice"}),
			Decision{Allowed: false, Status: 403, Reason: "denied", Policy: "shop/deny-v1", Kind: "AuthorizationPolicy"}, 0},
		{"unparsable query is 400", shopRequest("GET", "/x?a=%zz", nil),
			Decision{Status: 400, Reason: ReasonInvalidRequest}, 0},
		{"unparsable body is 400", shopRequest("POST", "/x", map[string]string{"content-type": "application/json"}),
			Decision{Status: 400, Reason: ReasonInvalidRequest}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.name == "unparsable body is 400" {
				tc.req.Attributes.Request.Http.Body = "{"
			}
			before := proto.Clone(tc.req)
			d, err := e.Decide(ctx, tc.req)
			if err != nil {
				t.Fatal(err)
			}
			if d.Allowed != tc.want.Allowed || d.Status != tc.want.Status || d.Reason != tc.want.Reason ||
				d.Policy != tc.want.Policy || d.Kind != tc.want.Kind || d.Rule != tc.want.Rule {
				t.Errorf("decision %+v, want %+v", d, tc.want)
			}
			if len(d.Audit) != tc.audits {
				t.Errorf("audit %v, want %d", d.Audit, tc.audits)
			}
			if d.PolicyVersion != 1 {
				t.Errorf("policy version %d", d.PolicyVersion)
			}
			if d.Status == 400 && len(d.Notes) == 0 {
				t.Error("a 400 without a note saying why")
			}
			if d.Status != 400 && d.Workload != "Deployment/web" {
				t.Errorf("workload %q", d.Workload)
			}
			if !proto.Equal(before, tc.req) {
				t.Error("Decide modified the request")
			}
		})
	}
}

func TestDecideFailsClosedWithStubRego(t *testing.T) {
	ctx := context.Background()
	store := policies.NewStore(policies.StoreConfig{})

	// Nothing published yet: no decision.
	e, err := New(Config{Store: store, Compile: stubCompile})
	if err != nil {
		t.Fatal(err)
	}
	if e.Ready() {
		t.Fatal("ready before any policy set")
	}
	if _, err := e.Decide(ctx, shopRequest("GET", "/", nil)); !errors.Is(err, ErrNotReady) {
		t.Fatalf("Decide before a policy set: %v", err)
	}
	if _, err := e.Explain(ctx, shopRequest("GET", "/", nil)); !errors.Is(err, ErrNotReady) {
		t.Fatalf("Explain before a policy set: %v", err)
	}

	store.Update(parseYAML(t, stubWorkloads(1)))
	e = runEngine(t, Config{Compile: stubCompile}, store, 1)
	for stub, want := range map[string]error{
		"undefined": ErrUndefined, // x-stub set to anything else: no decision rule applies
		"malformed": nil,
		"string":    nil,
		"conflict":  nil,
	} {
		d, err := e.Decide(ctx, shopRequest("GET", "/", map[string]string{"x-stub": stub}))
		if err == nil {
			t.Errorf("%s: decision %+v, want an error", stub, d)
			continue
		}
		if want != nil && !errors.Is(err, want) {
			t.Errorf("%s: %v, want %v", stub, err, want)
		}
		if d != nil {
			t.Errorf("%s: a decision (%+v) with the error", stub, d)
		}
	}
	// Every field of a decision is read.
	d, err := e.Decide(ctx, shopRequest("GET", "/", map[string]string{"x-stub": "custom"}))
	if err != nil {
		t.Fatal(err)
	}
	want := `{"allowed":false,"status":403,"reason":"custom","policy":"shop/ext","kind":"AuthorizationPolicy",` +
		`"custom":{"provider":"opa-ext","policy":"shop/ext"},"after_custom":{"allowed":true,"status":200,"reason":"allowed",` +
		`"policy":"shop/allow","kind":"AuthorizationPolicy","rule":2,"policy_version":0},"body":"custom body",` +
		`"dry_run":[{"action":"DENY","kind":"AuthorizationPolicy","policy":"shop/dry","rule":0}],"policy_version":1,"workload":"Deployment/web"}`
	if got, _ := json.Marshal(d); string(got) != want {
		t.Errorf("custom decision\n got %s\nwant %s", got, want)
	}

	// A cancelled request is not decided either.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if d, err := e.Decide(cctx, shopRequest("GET", "/", nil)); err == nil {
		t.Errorf("cancelled: decision %+v", d)
	}
}

// TestHeaderFilterDecisionsWithStubRego: leaving out the headers no policy
// reads changes no decision; leaving out one a policy reads would.
func TestHeaderFilterDecisionsWithStubRego(t *testing.T) {
	snap, _ := policies.NewSnapshot(1, parseYAML(t, stubWorkloads(1)), policies.SnapshotOptions{})
	res, _ := stubCompile(snap)
	filtered, err := NewStatic(res, snap)
	if err != nil {
		t.Fatal(err)
	}
	all := *res
	all.Headers = nil
	full, err := NewStatic(&all, snap)
	if err != nil {
		t.Fatal(err)
	}
	tooFew := *res
	tooFew.Headers = []string{"x-stub"}
	wrong, err := NewStatic(&tooFew, snap)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	differs := 0
	for _, user := range []string{"alice", "bob", ""} {
		for _, path := range []string{"/", "/admin", "/x?y=1"} {
			req := shopRequest("GET", path, map[string]string{"x-user": user, "x-noise": "n", "cookie": "c=1"})
			a, err1 := filtered.Decide(ctx, req)
			b, err2 := full.Decide(ctx, req)
			c, err3 := wrong.Decide(ctx, req)
			if err1 != nil || err2 != nil || err3 != nil {
				t.Fatal(err1, err2, err3)
			}
			if fmt.Sprint(*a) != fmt.Sprint(*b) {
				t.Errorf("%s %s: filtered %+v, full %+v", user, path, a, b)
			}
			if fmt.Sprint(*c) != fmt.Sprint(*b) {
				differs++
			}
		}
	}
	if differs == 0 {
		t.Error("leaving out x-user changed no decision: the test proves nothing")
	}
}

// TestFailedCompileKeepsPreviousWithStubRego: a snapshot that fails to
// compile, panics the compiler or yields Rego that does not compile leaves
// the previous set live, and is logged and counted.
func TestFailedCompileKeepsPreviousWithStubRego(t *testing.T) {
	var mode atomic.Value
	mode.Store("ok")
	compileFn := func(snap *policies.Snapshot) (*compile.Result, error) {
		switch mode.Load() {
		case "error":
			return nil, errors.New("boom")
		case "panic":
			panic("compiler bug")
		case "nil":
			return nil, nil
		case "bad rego":
			return &compile.Result{Modules: map[string]string{"x.rego": "package garrison.authz\n\ndecision := {"}}, nil
		case "unsafe rego":
			return &compile.Result{Modules: map[string]string{"x.rego": "package garrison.authz\n\ndecision if x == 1"}}, nil
		}
		return stubCompile(snap)
	}
	reg := prometheus.NewRegistry()
	var logs lockedBuffer
	store := policies.NewStore(policies.StoreConfig{})
	store.Update(parseYAML(t, stubWorkloads(1)))
	e := runEngine(t, Config{Compile: compileFn, Metrics: reg, Logger: logs.logger()}, store, 1)

	failures := []string{"error", "panic", "nil", "bad rego", "unsafe rego"}
	for i, m := range failures {
		mode.Store(m)
		store.Update(parseYAML(t, stubWorkloads(uint64(i+2))))
		waitCounter(t, reg, "error", float64(i+1))
		d, err := e.Decide(context.Background(), shopRequest("GET", "/", map[string]string{"x-user": "alice"}))
		if err != nil || !d.Allowed || d.PolicyVersion != 1 || d.Policy != "shop/allow-v1" {
			t.Fatalf("after a %s: %+v, %v; want version 1 still deciding", m, d, err)
		}
	}
	if got := metricValue(t, reg, "garrison_authz_policy_version", ""); got != 1 {
		t.Errorf("policy version gauge %v, want 1", got)
	}
	if !strings.Contains(logs.String(), "policy set rejected") || !strings.Contains(logs.String(), "compiler panicked") {
		t.Errorf("logs do not report the rejections:\n%s", logs.String())
	}

	mode.Store("ok")
	next := uint64(len(failures) + 2)
	store.Update(parseYAML(t, stubWorkloads(next)))
	waitVersion(t, e, next)
	if got := metricValue(t, reg, "garrison_authz_compile_total", "success"); got != 2 {
		t.Errorf("successful compiles %v, want 2", got)
	}
	if got := metricValue(t, reg, "garrison_authz_policy_version", ""); got != float64(next) {
		t.Errorf("policy version gauge %v, want %d", got, next)
	}
	if n := metricValue(t, reg, "garrison_authz_compile_seconds", ""); n != float64(len(failures)+2) {
		t.Errorf("compile_seconds counted %v compiles, want %d", n, len(failures)+2)
	}
}

// TestSwapUnderLoadWithStubRego: readers decide without pause while
// snapshots replace each other; every decision must come from one version
// (its Rego, its header list and its workload index together).
func TestSwapUnderLoadWithStubRego(t *testing.T) {
	store := policies.NewStore(policies.StoreConfig{})
	store.Update(parseYAML(t, stubWorkloads(1)))
	e := runEngine(t, Config{Compile: stubCompile}, store, 1)
	testSwapUnderLoad(t, e, 40, func(v uint64) { store.Update(parseYAML(t, stubWorkloads(v))) },
		shopRequest("GET", "/x", map[string]string{"x-user": "alice"}),
		func(d *Decision) error {
			if want := fmt.Sprintf("shop/allow-v%d", d.PolicyVersion); !d.Allowed || d.Policy != want {
				return fmt.Errorf("version %d decided %+v, want allowed by %s", d.PolicyVersion, d, want)
			}
			return nil
		})
}

// testSwapUnderLoad publishes versions 2..last with publish while readers
// decide req and check each decision, and fails unless the readers saw at
// least a few versions.
func testSwapUnderLoad(t *testing.T, e *Engine, last uint64, publish func(uint64), req *authv3.CheckRequest, check func(*Decision) error) {
	t.Helper()
	var (
		stop    atomic.Bool
		wg      sync.WaitGroup
		mu      sync.Mutex
		seen    = map[uint64]int{}
		failure error
	)
	for range 4 {
		wg.Go(func() {
			local := map[uint64]int{}
			var prev uint64
			for !stop.Load() {
				d, err := e.Decide(context.Background(), req)
				if err == nil {
					err = check(d)
				}
				if err == nil && d.PolicyVersion < prev {
					err = fmt.Errorf("version went back from %d to %d", prev, d.PolicyVersion)
				}
				if err != nil {
					mu.Lock()
					failure = err
					mu.Unlock()
					stop.Store(true)
					return
				}
				prev = d.PolicyVersion
				local[d.PolicyVersion]++
			}
			mu.Lock()
			for v, n := range local {
				seen[v] += n
			}
			mu.Unlock()
		})
	}
	for v := uint64(2); v <= last && !stop.Load(); v++ {
		publish(v)
		if v%4 == 0 {
			waitVersion(t, e, v) // let readers see some versions for sure
		}
	}
	waitVersion(t, e, last)
	time.Sleep(20 * time.Millisecond)
	stop.Store(true)
	wg.Wait()
	if failure != nil {
		t.Fatal(failure)
	}
	if len(seen) < 3 {
		t.Fatalf("readers saw versions %v only", seen)
	}
	t.Logf("decisions by version: %v", seen)
}

func waitCounter(t *testing.T, reg *prometheus.Registry, result string, want float64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if got := metricValue(t, reg, "garrison_authz_compile_total", result); got >= want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("compile_total{result=%q} never reached %v", result, want)
		}
		time.Sleep(time.Millisecond)
	}
}

// metricValue reads a counter or gauge (or a histogram's sample count)
// from reg; result selects the compile_total series.
func metricValue(t *testing.T, reg *prometheus.Registry, name, result string) float64 {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			if result != "" && !slices.ContainsFunc(m.GetLabel(), func(l *dto.LabelPair) bool { return l.GetValue() == result }) {
				continue
			}
			switch {
			case m.Counter != nil:
				return m.GetCounter().GetValue()
			case m.Gauge != nil:
				return m.GetGauge().GetValue()
			case m.Histogram != nil:
				return float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	t.Fatalf("no metric %s %s", name, result)
	return 0
}

// lockedBuffer collects log output from several goroutines.
type lockedBuffer struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *lockedBuffer) logger() *slog.Logger { return slog.New(slog.NewTextHandler(b, nil)) }
