package compile

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage/inmem"

	"github.com/garrison-mesh/garrison/policies"
)

// testRequest describes a request compactly; input() builds from it the
// value opa-envoy-plugin would (CONTRACT sections 1 and 2). Zero fields take
// the defaults of withDefaults, so that a case names only what it is about.
type testRequest struct {
	// Namespace and Labels of the destination workload (context
	// extensions); default foo and app=httpbin, version=v1. NoWorkload
	// leaves the context extensions out.
	Namespace  string            `yaml:"namespace"`
	Labels     map[string]string `yaml:"labels"`
	NoWorkload bool              `yaml:"noWorkload"`
	Services   string            `yaml:"services"`

	SourceIP string `yaml:"sourceIP"`
	// Principal is the peer certificate's URI SAN (spiffe://...); empty =
	// plaintext.
	Principal     string `yaml:"principal"`
	DestinationIP string `yaml:"destinationIP"`
	Port          int    `yaml:"port"`
	SNI           string `yaml:"sni"`

	Method  string            `yaml:"method"`
	Host    string            `yaml:"host"`
	Path    string            `yaml:"path"`
	Headers map[string]string `yaml:"headers"`

	// JWT: what authentication recorded in istio_authn.
	RequestPrincipal string         `yaml:"requestPrincipal"`
	Claims           map[string]any `yaml:"claims"`
	// Metadata is more dynamic metadata, by filter name.
	Metadata map[string]any `yaml:"metadata"`
}

func (r testRequest) withDefaults() testRequest {
	if r.Namespace == "" {
		r.Namespace = "foo"
	}
	if r.Labels == nil {
		r.Labels = map[string]string{"app": "httpbin", "version": "v1"}
	}
	if r.SourceIP == "" {
		r.SourceIP = "10.0.0.1"
	}
	if r.DestinationIP == "" {
		r.DestinationIP = "10.1.0.1"
	}
	if r.Port == 0 {
		r.Port = 8000
	}
	if r.Method == "" {
		r.Method = "GET"
	}
	if r.Host == "" {
		r.Host = "httpbin.foo.svc.cluster.local"
	}
	if r.Path == "" {
		r.Path = "/"
	}
	return r
}

// input builds the protojson-shaped input of CONTRACT section 1.
func (r testRequest) input() map[string]any {
	r = r.withDefaults()
	headers := map[string]any{
		":authority": r.Host,
		":method":    r.Method,
		":path":      r.Path,
		":scheme":    "http",
	}
	for k, v := range r.Headers {
		headers[strings.ToLower(k)] = v
	}
	source := map[string]any{
		"address": map[string]any{"socketAddress": map[string]any{"address": r.SourceIP, "portValue": 43210}},
	}
	if r.Principal != "" {
		source["principal"] = r.Principal
	}
	attrs := map[string]any{
		"source": source,
		"destination": map[string]any{
			"address": map[string]any{"socketAddress": map[string]any{"address": r.DestinationIP, "portValue": r.Port}},
		},
		"request": map[string]any{"http": map[string]any{
			"id":       "4242",
			"method":   r.Method,
			"headers":  headers,
			"path":     r.Path,
			"host":     r.Host,
			"scheme":   "http",
			"protocol": "HTTP/1.1",
		}},
	}
	if !r.NoWorkload {
		ext := map[string]any{
			"garrison.io/namespace": r.Namespace,
			"garrison.io/workload":  "Deployment/" + r.Labels["app"],
		}
		for k, v := range r.Labels {
			ext["garrison.io/label/"+k] = v
		}
		if r.Services != "" {
			ext["garrison.io/services"] = r.Services
		}
		attrs["contextExtensions"] = ext
	}
	if r.SNI != "" {
		attrs["tlsSession"] = map[string]any{"sni": r.SNI}
	}
	meta := map[string]any{}
	for k, v := range r.Metadata {
		meta[k] = v
	}
	if r.RequestPrincipal != "" || r.Claims != nil {
		authn := map[string]any{}
		if r.RequestPrincipal != "" {
			authn["request.auth.principal"] = r.RequestPrincipal
		}
		if r.Claims != nil {
			authn["request.auth.claims"] = r.Claims
		}
		meta["istio_authn"] = authn
	}
	if len(meta) > 0 {
		attrs["metadataContext"] = map[string]any{"filterMetadata": meta}
	}
	path, query, _ := strings.Cut(r.Path, "?")
	parsedPath := []any{}
	for _, seg := range strings.Split(strings.TrimPrefix(path, "/"), "/") {
		parsedPath = append(parsedPath, seg)
	}
	parsedQuery := map[string]any{}
	for _, kv := range strings.Split(query, "&") {
		if kv == "" {
			continue
		}
		k, v, _ := strings.Cut(kv, "=")
		list, _ := parsedQuery[k].([]any)
		parsedQuery[k] = append(list, v)
	}
	return map[string]any{
		"attributes":     attrs,
		"version":        map[string]any{"ext_authz": "v3", "encoding": "protojson"},
		"parsed_path":    parsedPath,
		"parsed_query":   parsedQuery,
		"parsed_body":    nil,
		"truncated_body": false,
	}
}

// parseSnapshot parses YAML documents into a snapshot; any error problem
// fails the test, since cases must hold valid configuration.
func parseSnapshot(t testing.TB, file string, data []byte) *policies.Snapshot {
	t.Helper()
	rs, problems := policies.Parse(file, data)
	for _, p := range problems {
		if p.Severity == policies.SeverityError {
			t.Fatalf("invalid case configuration: %v", p)
		}
	}
	snap, problems := policies.NewSnapshot(1, rs, policies.SnapshotOptions{})
	if len(problems) > 0 {
		t.Fatalf("snapshot: %v", problems)
	}
	return snap
}

// compileModules parses and compiles modules as `opa check --strict` does,
// failing the test on any error.
func compileModules(t testing.TB, modules map[string]string) map[string]*ast.Module {
	t.Helper()
	mods := map[string]*ast.Module{}
	for path, src := range modules {
		m, err := ast.ParseModuleWithOpts(path, src, ast.ParserOptions{RegoVersion: ast.RegoV1})
		if err != nil {
			t.Fatalf("parse %s: %v\n%s", path, err, src)
		}
		mods[path] = m
	}
	c := ast.NewCompiler().WithStrict(true).WithDefaultRegoVersion(ast.RegoV1)
	if c.Compile(mods); c.Failed() {
		t.Fatalf("strict compile: %v", c.Errors)
	}
	return mods
}

// evaluator is a prepared decision query over a compiled result.
type evaluator struct {
	query rego.PreparedEvalQuery
}

// newEvaluator prepares the decision over res's merged modules (what the
// engine loads), after checking its modules one per resource in strict mode.
func newEvaluator(t testing.TB, res *Result) *evaluator {
	t.Helper()
	compileModules(t, res.Modules)
	return newEvaluatorFor(t, res.Merged(), res.Data)
}

func newEvaluatorFor(t testing.TB, modules map[string]string, data map[string]any) *evaluator {
	t.Helper()
	opts := []func(*rego.Rego){
		rego.Query(Query),
		rego.Store(inmem.NewFromObject(data)),
		rego.SetRegoVersion(ast.RegoV1),
		rego.StrictBuiltinErrors(true),
	}
	for _, path := range slices.Sorted(maps.Keys(modules)) {
		opts = append(opts, rego.Module(path, modules[path]))
	}
	q, err := rego.New(opts...).PrepareForEval(context.Background())
	if err != nil {
		t.Fatalf("prepare: %v", err)
	}
	return &evaluator{query: q}
}

// decide evaluates one request and returns the decision object.
func (e *evaluator) decide(t testing.TB, in map[string]any) map[string]any {
	t.Helper()
	rs, err := e.query.Eval(context.Background(), rego.EvalInput(in))
	if err != nil {
		t.Fatalf("eval: %v", err)
	}
	if len(rs) != 1 || len(rs[0].Expressions) != 1 {
		t.Fatalf("decision undefined: %v", rs)
	}
	d, ok := rs[0].Expressions[0].Value.(map[string]any)
	if !ok {
		t.Fatalf("decision is %T", rs[0].Expressions[0].Value)
	}
	return d
}

// want is the part of a decision a case checks; unset fields are not
// checked, except that Allowed is required.
type want struct {
	Allowed *bool  `yaml:"allowed"`
	Reason  string `yaml:"reason"`
	Policy  string `yaml:"policy"`
	Rule    *int   `yaml:"rule"`
	// Provider is the CUSTOM provider asked; AfterCustom what applies if it
	// allows.
	Provider    string `yaml:"provider"`
	AfterCustom *want  `yaml:"afterCustom"`
	// DryRun and Audit list "<policy> <action>" / "<policy>" of what was
	// recorded; present means checked exactly (empty: nothing recorded).
	DryRun *[]string `yaml:"dryRun"`
	Audit  *[]string `yaml:"audit"`
}

// check compares a decision with w and returns the differences.
func (w want) check(d map[string]any) []string {
	var diffs []string
	if w.Allowed == nil {
		return []string{"case has no allowed"}
	}
	if d["allowed"] != *w.Allowed {
		diffs = append(diffs, fmt.Sprintf("allowed = %v, want %v", d["allowed"], *w.Allowed))
	}
	wantStatus := 403
	if *w.Allowed {
		wantStatus = 200
	}
	if fmt.Sprint(d["status"]) != fmt.Sprint(wantStatus) {
		diffs = append(diffs, fmt.Sprintf("status = %v, want %d", d["status"], wantStatus))
	}
	if w.Reason != "" && d["reason"] != w.Reason {
		diffs = append(diffs, fmt.Sprintf("reason = %v, want %s", d["reason"], w.Reason))
	}
	if w.Policy != "" && d["policy"] != w.Policy {
		diffs = append(diffs, fmt.Sprintf("policy = %v, want %s", d["policy"], w.Policy))
	}
	if w.Rule != nil && fmt.Sprint(d["rule"]) != fmt.Sprint(*w.Rule) {
		diffs = append(diffs, fmt.Sprintf("rule = %v, want %d", d["rule"], *w.Rule))
	}
	if w.Provider != "" {
		c, _ := d["custom"].(map[string]any)
		if c["provider"] != w.Provider {
			diffs = append(diffs, fmt.Sprintf("custom = %v, want provider %s", d["custom"], w.Provider))
		}
	} else if _, ok := d["custom"]; ok {
		diffs = append(diffs, fmt.Sprintf("unexpected custom %v", d["custom"]))
	}
	if w.AfterCustom != nil {
		after, _ := d["after_custom"].(map[string]any)
		for _, diff := range w.AfterCustom.check(after) {
			diffs = append(diffs, "after_custom: "+diff)
		}
	}
	if w.DryRun != nil {
		got := recordedNames(d["dry_run"], true)
		if !slices.Equal(got, sorted(*w.DryRun)) {
			diffs = append(diffs, fmt.Sprintf("dry_run = %v, want %v", got, *w.DryRun))
		}
	}
	if w.Audit != nil {
		got := recordedNames(d["audit"], false)
		if !slices.Equal(got, sorted(*w.Audit)) {
			diffs = append(diffs, fmt.Sprintf("audit = %v, want %v", got, *w.Audit))
		}
	}
	return diffs
}

func recordedNames(v any, withAction bool) []string {
	list, _ := v.([]any)
	out := []string{}
	for _, e := range list {
		m, _ := e.(map[string]any)
		name := fmt.Sprint(m["policy"])
		if withAction {
			name += " " + fmt.Sprint(m["action"])
		}
		if !slices.Contains(out, name) {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

func sorted(s []string) []string {
	out := slices.Clone(s)
	if out == nil {
		out = []string{}
	}
	sort.Strings(out)
	return out
}

// istioHTTPDir holds Istio's AuthorizationPolicy -> Envoy RBAC golden pairs
// (shared/conformance/istio, beside the repository).
const istioHTTPDir = "../../../shared/conformance/istio/istio@HEAD/pilot/pkg/security/authz/builder/testdata/http"

func readIstioFile(t testing.TB, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(istioHTTPDir, name))
	if err != nil {
		t.Fatalf("Istio conformance data not found (shared/conformance/istio beside the repository): %v", err)
	}
	return data
}
