package compile

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage/inmem"

	"github.com/garrison-mesh/garrison/authz/cases"
	"github.com/garrison-mesh/garrison/policies"
)

// The tests of this package write requests as authz/cases does (the format
// of `garrison policy test`) and evaluate the input the engine builds for
// them (engine.NewInputBuilder: CONTRACT sections 1 and 2), so that a case
// decides here what it decides in Garrison. authz/engine imports this
// package, so these tests cannot import it: TestMain, in the external test
// package (main_test.go), hands the builder over before any test runs.
var inputBuilder func(*authv3.CheckRequest) (ast.Value, error)

// SetInputBuilder is exported, in a test file, for TestMain of package
// compile_test.
func SetInputBuilder(build func(*authv3.CheckRequest) (ast.Value, error)) { inputBuilder = build }

// caseInput is the input the engine evaluates r with (CONTRACT sections 1
// and 2): r's CheckRequest, built by the engine's input builder.
func caseInput(t testing.TB, r cases.Request) ast.Value {
	t.Helper()
	_, in := caseCheckRequest(t, r)
	return in
}

// caseCheckRequest is r's CheckRequest and its input.
func caseCheckRequest(t testing.TB, r cases.Request) (*authv3.CheckRequest, ast.Value) {
	t.Helper()
	if inputBuilder == nil {
		t.Fatal("no input builder: TestMain (main_test.go) sets it")
	}
	req, err := r.CheckRequest()
	if err != nil {
		t.Fatalf("request: %v", err)
	}
	in, err := inputBuilder(req)
	if err != nil {
		t.Fatalf("input of %v: %v", req, err)
	}
	return req, in
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

// decide evaluates one input and returns the decision object.
func (e *evaluator) decide(t testing.TB, in ast.Value) map[string]any {
	t.Helper()
	rs, err := e.query.Eval(context.Background(), rego.EvalParsedInput(in))
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

// mismatch compares a decision object of the library with a case's
// expectation: what cases.Expect checks of a Complete decision, and what
// every case here holds the library to besides: status 200 when allowed and
// 403 when denied (unless the case expects another), and no delegation to a
// provider the case does not name.
func mismatch(e cases.Expect, d map[string]any) string {
	got := caseDecision(d)
	diffs := statusAndDelegation(e, got)
	if m := e.Mismatch(got); m != "" {
		diffs = append(diffs, m)
	}
	return strings.Join(diffs, "; ")
}

func statusAndDelegation(e cases.Expect, got cases.Decision) []string {
	var diffs []string
	if e.Allowed == nil {
		diffs = append(diffs, "the case has no expect.allowed")
	}
	switch {
	case got.Allowed && got.Status != 200:
		diffs = append(diffs, fmt.Sprintf("status: got %d, want 200", got.Status))
	case !got.Allowed && e.Status == 0 && got.Status != 403:
		diffs = append(diffs, fmt.Sprintf("status: got %d, want 403", got.Status))
	}
	if e.Provider == "" && got.Provider != "" {
		diffs = append(diffs, "delegated to provider "+got.Provider+", the case names none")
	}
	if e.AfterCustom != nil && got.AfterCustom != nil {
		for _, diff := range statusAndDelegation(*e.AfterCustom, *got.AfterCustom) {
			diffs = append(diffs, "afterCustom: "+diff)
		}
	}
	return diffs
}

// caseDecision reads a decision object (CONTRACT section 5) in the terms of
// cases.Decision: all of it, so Complete.
func caseDecision(d map[string]any) cases.Decision {
	out := cases.Decision{Complete: true, DryRun: []string{}, Audit: []string{}, Permissive: []string{}}
	out.Allowed, _ = d["allowed"].(bool)
	out.Status = decisionInt(d["status"])
	out.Reason, _ = d["reason"].(string)
	out.Policy, _ = d["policy"].(string)
	if _, ok := d["rule"]; ok {
		rule := decisionInt(d["rule"])
		out.Rule = &rule
	}
	if c, ok := d["custom"].(map[string]any); ok {
		out.Provider = fmt.Sprint(c["provider"])
	}
	if after, ok := d["after_custom"].(map[string]any); ok {
		a := caseDecision(after)
		out.AfterCustom = &a
	}
	for _, e := range recorded(d["dry_run"]) {
		out.DryRun = append(out.DryRun, fmt.Sprint(e["policy"], " ", e["action"]))
	}
	for _, e := range recorded(d["audit"]) {
		out.Audit = append(out.Audit, fmt.Sprint(e["policy"]))
	}
	for _, e := range recorded(d["rbac_permissive"]) {
		out.Permissive = append(out.Permissive, fmt.Sprint(e["binding"]))
	}
	return out
}

// decisionInt reads a number of a decision object (json.Number from OPA),
// -1 when it is not one.
func decisionInt(v any) int {
	n, err := strconv.Atoi(fmt.Sprint(v))
	if err != nil {
		return -1
	}
	return n
}

func recorded(v any) []map[string]any {
	list, _ := v.([]any)
	var out []map[string]any
	for _, e := range list {
		m, _ := e.(map[string]any)
		out = append(out, m)
	}
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
