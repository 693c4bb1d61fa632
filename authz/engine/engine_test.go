package engine

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/garrison-mesh/garrison/authz/compile"
	"github.com/garrison-mesh/garrison/policies"
)

// These tests run the real compiler on real YAML: the bookinfo-modern
// example (Istio's bookinfo workloads with its RBAC rules as
// AuthorizationPolicies).

const bookinfoDir = "../../deploy/examples/bookinfo-modern"

func bookinfoResources(t testing.TB) []*policies.Resource {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(bookinfoDir, "*", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no bookinfo YAML: %v", err)
	}
	var out []*policies.Resource
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		rs, problems := policies.Parse(f, data)
		if err := problems.Err(); err != nil {
			t.Fatal(err)
		}
		out = append(out, rs...)
	}
	return out
}

func bookinfoSnapshot(t testing.TB) *policies.Snapshot {
	t.Helper()
	snap, problems := policies.NewSnapshot(1, bookinfoResources(t), policies.SnapshotOptions{})
	if err := problems.Err(); err != nil {
		t.Fatal(err)
	}
	return snap
}

// bookinfoRequest is a request from service account from to the workload
// running as service account to, both in namespace default, on port 9080.
func bookinfoRequest(from, to, method, path string) *authv3.CheckRequest {
	req := shopRequest(method, path, map[string]string{"x-request-id": "r1", "user-agent": "test"})
	a := req.Attributes
	a.Source.Principal = "spiffe://cluster.local/ns/default/sa/" + from
	a.Destination.Principal = "spiffe://cluster.local/ns/default/sa/" + to
	a.Destination.Address = socket("10.0.0.2", 9080)
	a.Request.Http.Host = to + ":9080"
	return req
}

func withJWT(req *authv3.CheckRequest) *authv3.CheckRequest {
	req.Attributes.MetadataContext = &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{
		"istio_authn": mustStruct(map[string]any{
			"request.auth.principal": "testing@secure.istio.io/testing@secure.istio.io",
			"request.auth.claims":    map[string]any{"iss": "testing@secure.istio.io", "sub": "testing@secure.istio.io"},
		}),
	}}
	return req
}

func withExtensions(req *authv3.CheckRequest, ext map[string]string) *authv3.CheckRequest {
	req.Attributes.ContextExtensions = ext
	return req
}

func TestDecideBookinfo(t *testing.T) {
	store := policies.NewStore(policies.StoreConfig{})
	store.Update(bookinfoResources(t))
	e := runEngine(t, Config{}, store, 1)
	ctx := context.Background()

	reviewsExt := map[string]string{ // what Garrison's xDS sends for reviews-v2
		ExtNamespace: "default", ExtLabelPrefix + "app": "reviews", ExtLabelPrefix + "version": "v2",
		ExtServices: "reviews.default.svc.cluster.local", ExtWorkload: "Deployment/reviews-v2",
	}
	for _, tc := range []struct {
		name           string
		req            *authv3.CheckRequest
		allowed        bool
		reason, policy string
		workload, note string
	}{
		{"details GET from productpage", bookinfoRequest("bookinfo-productpage", "bookinfo-details", "GET", "/details/0"),
			true, "allowed", "default/details-viewer", "Deployment/details-v1", ""},
		{"details POST from productpage", bookinfoRequest("bookinfo-productpage", "bookinfo-details", "POST", "/details/0"),
			false, "no-allow-match", "", "Deployment/details-v1", ""},
		{"details GET from sleep", bookinfoRequest("sleep", "bookinfo-details", "GET", "/details/0"),
			false, "no-allow-match", "", "Deployment/details-v1", ""},
		{"ratings GET from reviews", bookinfoRequest("bookinfo-reviews", "bookinfo-ratings", "GET", "/ratings/0"),
			true, "allowed", "default/ratings-viewer", "Deployment/ratings-v1", ""},
		// Three reviews versions run as one service account with different
		// labels: without Garrison's extensions only namespace-wide policy
		// (allow-nothing) can apply, and the decision says so.
		{"reviews without extensions", bookinfoRequest("bookinfo-productpage", "bookinfo-reviews", "GET", "/reviews/0"),
			false, "no-allow-match", "", "", "different labels"},
		{"reviews with extensions", withExtensions(bookinfoRequest("bookinfo-productpage", "bookinfo-reviews", "GET", "/reviews/0"), reviewsExt),
			true, "allowed", "default/reviews-viewer", "Deployment/reviews-v2", ""},
		{"productpage without a token", bookinfoRequest("istio-ingressgateway", "bookinfo-productpage", "GET", "/productpage"),
			false, "denied", "default/productpage-require-jwt", "Deployment/productpage-v1", ""},
		{"productpage health without a token", bookinfoRequest("istio-ingressgateway", "bookinfo-productpage", "GET", "/health"),
			true, "allowed", "default/products-viewer", "Deployment/productpage-v1", ""},
		{"productpage health via dot segments", bookinfoRequest("istio-ingressgateway", "bookinfo-productpage", "GET", "/static/../health"),
			true, "allowed", "default/products-viewer", "Deployment/productpage-v1", ""},
		{"productpage with a token", withJWT(bookinfoRequest("istio-ingressgateway", "bookinfo-productpage", "GET", "/productpage")),
			true, "allowed", "default/products-viewer", "Deployment/productpage-v1", ""},
		{"unknown service account", bookinfoRequest("bookinfo-productpage", "ghost", "GET", "/"),
			false, "no-allow-match", "", "", "no workload runs as default/ghost"},
		{"no destination principal", withExtensions(bookinfoRequest("a", "b", "GET", "/"), nil),
			true, "no-policy", "", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.name == "no destination principal" {
				tc.req.Attributes.Destination.Principal = ""
				tc.note = "no destination principal"
			}
			d, err := e.Decide(ctx, tc.req)
			if err != nil {
				t.Fatal(err)
			}
			if d.Allowed != tc.allowed || d.Reason != tc.reason || (tc.policy != "" && d.Policy != tc.policy) {
				t.Errorf("decision %+v; want allowed %v, reason %s, policy %s", d, tc.allowed, tc.reason, tc.policy)
			}
			if d.Workload != tc.workload {
				t.Errorf("workload %q, want %q", d.Workload, tc.workload)
			}
			if note := strings.Join(d.Notes, "; "); tc.note == "" && note != "" || !strings.Contains(note, tc.note) {
				t.Errorf("notes %q, want %q", note, tc.note)
			}
			if d.PolicyVersion != 1 {
				t.Errorf("policy version %d", d.PolicyVersion)
			}
		})
	}
}

// TestDerivedExtensionsAreXDSs: for a workload with a unique identity, the
// decision from derived extensions is the decision from the extensions
// Garrison's xDS would have sent; the index holds exactly those.
func TestDerivedExtensionsAreXDSs(t *testing.T) {
	snap := bookinfoSnapshot(t)
	idx := newWorkloadIndex(snap, "")
	d, note := idx.lookup("spiffe://cluster.local/ns/default/sa/bookinfo-details")
	if note != "" {
		t.Fatalf("note %q", note)
	}
	got := map[string]string{}
	for _, e := range d.ext {
		got[e.key] = e.value
	}
	want := map[string]string{
		ExtNamespace: "default", ExtLabelPrefix + "app": "details", ExtLabelPrefix + "version": "v1",
		ExtServices: "details.default.svc.cluster.local", ExtWorkload: "Deployment/details-v1",
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("derived %v, want %v", got, want)
	}

	e, err := NewStatic(mustCompile(t, snap), snap)
	if err != nil {
		t.Fatal(err)
	}
	for _, method := range []string{"GET", "POST"} {
		derived, err1 := e.Decide(context.Background(), bookinfoRequest("bookinfo-productpage", "bookinfo-details", method, "/"))
		sent, err2 := e.Decide(context.Background(), withExtensions(bookinfoRequest("bookinfo-productpage", "bookinfo-details", method, "/"), want))
		if err1 != nil || err2 != nil {
			t.Fatal(err1, err2)
		}
		if fmt.Sprint(*derived) != fmt.Sprint(*sent) {
			t.Errorf("%s: derived %+v, sent %+v", method, derived, sent)
		}
	}

	// Other trust domains are not derived when one is configured.
	idx = newWorkloadIndex(snap, "cluster.local")
	if d, note := idx.lookup("spiffe://other.domain/ns/default/sa/bookinfo-details"); d != nil || !strings.Contains(note, "trust domain") {
		t.Errorf("other trust domain: %+v, %q", d, note)
	}
	for _, p := range []string{"", "spiffe://td/ns//sa/x", "spiffe://td/ns/a/sa/", "spiffe://td/ns/a/b/sa/c", "spiffe://td/a/sa/b", "https://td/ns/a/sa/b", "spiffe:///ns/a/sa/b"} {
		if d, note := idx.lookup(p); d != nil || note == "" {
			t.Errorf("principal %q: derived %+v, note %q", p, d, note)
		}
	}
}

func mustCompile(t testing.TB, snap *policies.Snapshot) *compile.Result {
	t.Helper()
	res, err := compile.Compile(snap, compile.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// bookinfoRequests are requests of every kind the bookinfo policies tell
// apart, with headers no policy reads.
func bookinfoRequests() []*authv3.CheckRequest {
	var out []*authv3.CheckRequest
	for _, from := range []string{"bookinfo-productpage", "bookinfo-reviews", "istio-ingressgateway", "sleep"} {
		for _, to := range []string{"bookinfo-details", "bookinfo-reviews", "bookinfo-ratings", "bookinfo-productpage"} {
			for _, method := range []string{"GET", "POST", "HEAD"} {
				for _, path := range []string{"/", "/health", "/login", "/a/../health?x=1"} {
					req := bookinfoRequest(from, to, method, path)
					req.Attributes.Request.Http.Headers["cookie"] = "s=1"
					req.Attributes.Request.Http.Headers["authorization"] = "Bearer x"
					out = append(out, req, withJWT(proto.Clone(req).(*authv3.CheckRequest)))
				}
			}
		}
	}
	return out
}

// TestHeaderFilterKeepsDecisions: the real compiler's header list leaves
// every decision as it is with all headers, on bookinfo and on policies
// that read headers.
func TestHeaderFilterKeepsDecisions(t *testing.T) {
	headerPolicy := `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: tenant, namespace: default}
spec:
  selector: {matchLabels: {app: details}}
  action: DENY
  rules:
  - when:
    - key: request.headers[X-Tenant]
      values: ["evil"]
`
	for name, resources := range map[string][]*policies.Resource{
		"bookinfo":       bookinfoResources(t),
		"header-reading": append(bookinfoResources(t), parseYAML(t, headerPolicy)...),
	} {
		t.Run(name, func(t *testing.T) {
			snap, _ := policies.NewSnapshot(1, resources, policies.SnapshotOptions{})
			res := mustCompile(t, snap)
			if res.Headers == nil {
				t.Fatal("the compiler reports no header list: nothing to test")
			}
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
			reqs := bookinfoRequests()
			reasons := map[string]int{}
			for i, req := range reqs {
				if i%3 == 0 {
					req.Attributes.Request.Http.Headers["x-tenant"] = "evil"
				}
				a, err1 := filtered.Decide(context.Background(), req)
				b, err2 := full.Decide(context.Background(), req)
				if err1 != nil || err2 != nil {
					t.Fatal(err1, err2)
				}
				if fmt.Sprint(*a) != fmt.Sprint(*b) {
					t.Fatalf("headers %v: filtered %+v, all %+v", res.Headers, a, b)
				}
				reasons[a.Reason+" "+a.Policy]++
			}
			if name == "header-reading" && reasons["denied default/tenant"] == 0 {
				t.Errorf("no request denied by the header policy: %v", reasons)
			}
			t.Logf("%d requests, headers kept %v, decisions %v", len(reqs), res.Headers, reasons)
		})
	}
}

// TestSwapUnderLoad: the real compiler on alternating snapshots, even
// versions denying what odd versions allow, while readers decide.
func TestSwapUnderLoad(t *testing.T) {
	deny := parseYAML(t, `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-get, namespace: default}
spec:
  selector: {matchLabels: {app: details}}
  action: DENY
  rules:
  - to: [{operation: {methods: ["GET"]}}]
`)
	base := bookinfoResources(t)
	store := policies.NewStore(policies.StoreConfig{})
	store.Update(base)
	e := runEngine(t, Config{}, store, 1)
	publish := func(v uint64) {
		if v%2 == 0 {
			store.Update(append(slices.Clone(base), deny...))
		} else {
			store.Update(base)
		}
	}
	testSwapUnderLoad(t, e, 24, publish, bookinfoRequest("bookinfo-productpage", "bookinfo-details", "GET", "/d"),
		func(d *Decision) error {
			if want := d.PolicyVersion%2 == 1; d.Allowed != want {
				return fmt.Errorf("version %d: %+v, want allowed %v", d.PolicyVersion, d, want)
			}
			return nil
		})
}

func TestExplain(t *testing.T) {
	snap := bookinfoSnapshot(t)
	e, err := NewStatic(mustCompile(t, snap), snap)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	req := bookinfoRequest("sleep", "bookinfo-details", "GET", "/details/0")
	x, err := e.Explain(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	d, err := e.Decide(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(*x.Decision) != fmt.Sprint(*d) {
		t.Errorf("explain decided %+v, decide %+v", x.Decision, d)
	}
	var names []string
	for _, m := range x.Matches["allow_policies"] {
		names = append(names, m.(map[string]any)["policy"].(string))
	}
	slices.Sort(names)
	if fmt.Sprint(names) != "[default/allow-nothing default/details-viewer]" {
		t.Errorf("allow_policies %v", x.Matches["allow_policies"])
	}
	if len(x.Matches["allow_matches"]) != 0 || len(x.Matches["deny_matches"]) != 0 {
		t.Errorf("matches %v", x.Matches)
	}
	if r, ok := x.EnvoyResponse.(map[string]any); !ok || r["allowed"] != false || r["body"] == nil {
		t.Errorf("envoy_response %v", x.EnvoyResponse)
	}
	if x.Input == nil {
		t.Error("no input")
	}

	x, err = e.Explain(ctx, bookinfoRequest("bookinfo-productpage", "bookinfo-details", "GET", "/"))
	if err != nil || !x.Decision.Allowed || len(x.Matches["allow_matches"]) != 1 {
		t.Errorf("allowed request: %+v, %v", x, err)
	}
	x, err = e.Explain(ctx, bookinfoRequest("bookinfo-productpage", "bookinfo-details", "GET", "/%00"))
	if err != nil || x.Decision.Status != 400 {
		t.Errorf("invalid path: %+v, %v", x, err)
	}
}

func TestExplainUndefinedWithStubRego(t *testing.T) {
	snap, _ := policies.NewSnapshot(1, parseYAML(t, stubWorkloads(1)), policies.SnapshotOptions{})
	res, _ := stubCompile(snap)
	e, err := NewStatic(res, snap)
	if err != nil {
		t.Fatal(err)
	}
	x, err := e.Explain(context.Background(), shopRequest("GET", "/admin", map[string]string{"x-stub": "undefined"}))
	if !errors.Is(err, ErrUndefined) || x == nil || x.Decision != nil || len(x.Matches["deny_matches"]) != 1 {
		t.Fatalf("%+v, %v", x, err)
	}
}

func TestNewStaticAndRun(t *testing.T) {
	if _, err := New(Config{}); err == nil {
		t.Error("New without a store")
	}
	if _, err := New(Config{Store: policies.NewStore(policies.StoreConfig{}), Encoding: 7}); err == nil {
		t.Error("New with an unknown encoding")
	}
	if _, err := NewStatic(nil, nil); err == nil {
		t.Error("NewStatic without a result")
	}
	if _, err := NewStatic(&compile.Result{Modules: map[string]string{"a.rego": "package"}}, nil); err == nil {
		t.Error("NewStatic with invalid Rego")
	}
	snap := bookinfoSnapshot(t)
	res := mustCompile(t, snap)
	e, err := NewStatic(res, nil) // no snapshot: nothing derived
	if err != nil {
		t.Fatal(err)
	}
	if !e.Ready() || e.Version() != res.SnapshotVersion {
		t.Errorf("ready %v, version %d", e.Ready(), e.Version())
	}
	if err := e.Run(context.Background()); err == nil {
		t.Error("Run of a static engine")
	}
	d, err := e.Decide(context.Background(), bookinfoRequest("bookinfo-productpage", "bookinfo-details", "GET", "/"))
	if err != nil || d.Reason != "no-policy" {
		t.Errorf("without extensions or a snapshot: %+v, %v", d, err)
	}

	store := policies.NewStore(policies.StoreConfig{})
	store.Update(bookinfoResources(t))
	e = runEngine(t, Config{}, store, 1) // running until the test ends
	if err := e.Run(context.Background()); err == nil {
		t.Error("second Run")
	}
}
