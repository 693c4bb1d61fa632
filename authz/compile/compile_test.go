package compile

import (
	"bytes"
	"encoding/json"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/garrison-mesh/garrison/authz/cases"
	"github.com/garrison-mesh/garrison/policies"
	regolib "github.com/garrison-mesh/garrison/policies/rego"
)

// updateGolden rewrites the golden files instead of comparing with them.
var updateGolden = os.Getenv("GARRISON_UPDATE_GOLDEN") == "1"

// goldenOptions reads a case's options from a first line
// "# options: {json}" of its input, else the defaults.
func goldenOptions(t *testing.T, data []byte) Options {
	t.Helper()
	opts := Options{DenyBodyDetails: true}
	first, _, _ := bytes.Cut(data, []byte("\n"))
	if rest, ok := bytes.CutPrefix(first, []byte("# options:")); ok {
		dec := json.NewDecoder(bytes.NewReader(rest))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&opts); err != nil {
			t.Fatalf("options: %v", err)
		}
	}
	return opts
}

// TestGolden compiles testdata/<case>-in.yaml, which holds one
// AuthorizationPolicy (so that the output is one valid module), and compares
// the module with testdata/<case>-out.rego. GARRISON_UPDATE_GOLDEN=1
// rewrites the golden files.
func TestGolden(t *testing.T) {
	inputs, err := filepath.Glob("testdata/*-in.yaml")
	if err != nil {
		t.Fatal(err)
	}
	inputs = slices.DeleteFunc(inputs, func(p string) bool {
		return strings.HasPrefix(filepath.Base(p), "legacy") // the legacy RBAC generator's cases
	})
	if len(inputs) < 10 {
		t.Fatalf("only %d golden cases", len(inputs))
	}
	for _, in := range inputs {
		name := strings.TrimSuffix(filepath.Base(in), "-in.yaml")
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			data, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			snap := parseSnapshot(t, in, data)
			aps := snap.List(policies.KindAuthorizationPolicy)
			if len(aps) != 1 {
				t.Fatalf("a golden case holds one AuthorizationPolicy, got %d", len(aps))
			}
			res, err := Compile(snap, goldenOptions(t, data))
			if err != nil {
				t.Fatal(err)
			}
			compileModules(t, res.Modules)
			got := res.Modules[ModulePath(aps[0])]
			outPath := filepath.Join("testdata", name+"-out.rego")
			if updateGolden {
				if err := os.WriteFile(outPath, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(outPath)
			if err != nil {
				t.Fatalf("%v (run with GARRISON_UPDATE_GOLDEN=1 to create it)", err)
			}
			if got != string(want) {
				t.Errorf("%s differs from the generated module (GARRISON_UPDATE_GOLDEN=1 to refresh); got:\n%s", outPath, got)
			}
		})
	}
}

// TestCompileResult checks the parts of a Result other than the policy
// modules: library, entry point, data, headers, version.
func TestCompileResult(t *testing.T) {
	snap := parseSnapshot(t, "result.yaml", []byte(`
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: headers, namespace: foo}
spec:
  rules:
  - from:
    - source: {remoteIpBlocks: ["1.2.3.4"]}
    when:
    - key: request.headers[X-Token]
      values: ["a"]
    - key: request.experimental.inline.headers[Accept]
      values: ["text/html"]
`))
	res, err := Compile(snap, Options{DenyBodyDetails: true, NumTrustedProxies: 2})
	if err != nil {
		t.Fatal(err)
	}
	for path, src := range regolib.Modules() {
		if res.Modules[path] != src {
			t.Errorf("module %s is not the embedded library", path)
		}
	}
	if !slices.Equal(res.Headers, []string{"accept", "x-forwarded-for", "x-token"}) {
		t.Errorf("Headers = %v", res.Headers)
	}
	cfg := res.Data["garrison"].(map[string]any)["config"].(map[string]any)
	if cfg["deny_body_details"] != true || cfg["num_trusted_proxies"] != 2 {
		t.Errorf("Data = %v", res.Data)
	}
	if res.SnapshotVersion != snap.Version() {
		t.Errorf("SnapshotVersion = %d", res.SnapshotVersion)
	}

	empty, err := Compile(parseSnapshot(t, "empty.yaml", nil), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if empty.Headers == nil || len(empty.Headers) != 0 {
		t.Errorf("no policy: Headers = %#v, want empty and not nil", empty.Headers)
	}
	if len(empty.Modules) != len(regolib.Modules()) {
		t.Errorf("no policy: modules %d", len(empty.Modules))
	}
	compileModules(t, empty.Modules)

	if _, err := Compile(nil, Options{}); err == nil {
		t.Error("nil snapshot compiled")
	}
	if _, err := Compile(snap, Options{NumTrustedProxies: -1}); err == nil {
		t.Error("negative NumTrustedProxies accepted")
	}
}

// TestTargetRefSkipped: policies attached with targetRef(s) are for gateways
// and waypoints; they are not compiled and a warning says so.
func TestTargetRefSkipped(t *testing.T) {
	snap := parseSnapshot(t, "targetref.yaml", []byte(`
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: waypoint, namespace: foo}
spec:
  targetRefs:
  - kind: Service
    group: ""
    name: httpbin
  action: DENY
  rules: [{}]
`))
	res, err := Compile(snap, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Modules) != len(regolib.Modules()) {
		t.Errorf("targetRef policy compiled: %v", res.Modules)
	}
	if len(res.Warnings) != 1 || !strings.Contains(res.Warnings[0], "targetref.yaml:2: AuthorizationPolicy foo/waypoint") {
		t.Errorf("Warnings = %q", res.Warnings)
	}
}

// TestTrustDomainAliases pins Istio's ReplaceTrustDomainAliases on the
// cases of its bundle tests and builder golden files.
func TestTrustDomainAliases(t *testing.T) {
	for _, tc := range []struct {
		td      string
		aliases []string
		in      []string
		want    []string
	}{
		{"td1", []string{"cluster.local"}, []string{"cluster.local/ns/a/sa/b"}, []string{"td1/ns/a/sa/b", "cluster.local/ns/a/sa/b"}},
		{"td1", []string{"cluster.local", "some-td"}, []string{"some-td/ns/a/sa/b"}, []string{"td1/ns/a/sa/b", "cluster.local/ns/a/sa/b", "some-td/ns/a/sa/b"}},
		{"td1", []string{"foobar"}, []string{"*bar/ns/foo/sa/x"}, []string{"td1/ns/foo/sa/x", "*bar/ns/foo/sa/x"}},
		{"new-td", []string{"old-td", "some-trustdomain"}, []string{"*-td/ns/foo/sa/x"}, []string{"*-td/ns/foo/sa/x", "some-trustdomain/ns/foo/sa/x"}},
		{"new-td", []string{"old-td"}, []string{"*/ns/foo/sa/x", "*", "other/ns/a/sa/b", "bad/format"}, []string{"*/ns/foo/sa/x", "*", "other/ns/a/sa/b", "bad/format"}},
		// Without aliases "cluster.local" means the local trust domain.
		{"example.org", nil, []string{"cluster.local/ns/a/sa/b"}, []string{"example.org/ns/a/sa/b"}},
		{"cluster.local", nil, []string{"cluster.local/ns/a/sa/b"}, []string{"cluster.local/ns/a/sa/b"}},
	} {
		got := newTrustDomainBundle(tc.td, tc.aliases).replaceTrustDomainAliases(tc.in)
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s %v %v: got %v, want %v", tc.td, tc.aliases, tc.in, got, tc.want)
		}
	}
}

// TestAllGoldenTogether compiles every golden input in one snapshot: the
// modules must pass the strict compile together (one package, rules of the
// same name in many modules) and decide without an evaluation error.
func TestAllGoldenTogether(t *testing.T) {
	inputs, err := filepath.Glob("testdata/*-in.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var all []*policies.Resource
	for _, in := range inputs {
		if strings.HasPrefix(filepath.Base(in), "legacy") {
			continue
		}
		data, err := os.ReadFile(in)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, parseSnapshot(t, in, data).Resources()...)
	}
	snap, problems := policies.NewSnapshot(1, all, policies.SnapshotOptions{})
	if len(problems) > 0 {
		t.Fatal(problems)
	}
	res, err := Compile(snap, Options{DenyBodyDetails: true})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := len(res.Modules), len(inputs)+len(regolib.Modules()); got != want {
		t.Errorf("%d modules, want %d", got, want)
	}
	// Merged (what the engine loads) and one module per resource decide alike.
	merged := newEvaluator(t, res)
	separate := newEvaluatorFor(t, res.Modules, res.Data)
	httpbin := cases.Destination{Namespace: "foo", Labels: map[string]string{"app": "httpbin", "version": "v1"}, IP: "10.1.0.1", Port: 8000}
	const host = "httpbin.foo.svc.cluster.local"
	for _, r := range []cases.Request{
		{Destination: httpbin, Host: host},
		{Destination: httpbin, Host: host, Source: cases.Peer{Principal: "spiffe://cluster.local/ns/foo/sa/a"}, Path: "/admin/x", Method: "POST"},
		{Destination: httpbin, Host: host, Source: cases.Peer{Principal: "spiffe://cluster.local/ns/sleep/sa/sleep"}, Path: "/headers"},
		{Destination: cases.Destination{Namespace: "bar", Labels: map[string]string{"istio": "ingressgateway"}, IP: "10.1.0.1", Port: 8000}, Host: host},
		{Destination: cases.Destination{IP: "10.1.0.1", Port: 8000}, Host: host},
	} {
		in := caseInput(t, r)
		d := merged.decide(t, in)
		if _, ok := d["allowed"].(bool); !ok {
			t.Errorf("%+v: decision %v", r, d)
		}
		if d2 := separate.decide(t, in); !reflect.DeepEqual(d, d2) {
			t.Errorf("%+v: merged decides %v, separate modules %v", r, d, d2)
		}
	}
}

// TestMerged checks the layout of Result.Merged.
func TestMerged(t *testing.T) {
	res := &Result{Modules: regolib.Modules()}
	res.Modules["garrison/authz/policies/foo/a.rego"] = "# a\npackage garrison.authz\n\nx := 1\n"
	res.Modules["garrison/authz/policies/foo/b.rego"] = "# b\npackage garrison.authz\n\ny := 2"
	res.Modules["garrison/authz/other.rego"] = "package garrison.authz\n\nimport data.z\n\nw := z\n"
	res.Modules["garrison/other/c.rego"] = "package garrison.other\n\nv := 3\n"
	m := res.Merged()
	want := []string{regolib.EntryPath, "garrison/authz/other.rego", MergedPath, regolib.LibraryPath, "garrison/other/c.rego"}
	if got := slices.Sorted(maps.Keys(m)); !slices.Equal(got, slices.Sorted(slices.Values(want))) {
		t.Fatalf("merged paths %v, want %v", got, want)
	}
	wantMerged := `# Code generated by Garrison (authz/compile). DO NOT EDIT.
# Every generated module of package garrison.authz, one section each (compile.Result.Merged).
package garrison.authz

# ==== garrison/authz/policies/foo/a.rego
# a

x := 1

# ==== garrison/authz/policies/foo/b.rego
# b

y := 2
`
	if m[MergedPath] != wantMerged {
		t.Errorf("merged module:\n%s", m[MergedPath])
	}
	compileModules(t, m)
	if len((&Result{Modules: regolib.Modules()}).Merged()) != 2 {
		t.Error("no generated module: Merged must hold the library only")
	}
}
