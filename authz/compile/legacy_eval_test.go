package compile

import (
	"context"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage/inmem"

	regolib "github.com/garrison-mesh/garrison/policies/rego"
)

// legacyEvaluator evaluates the decision of CONTRACT §5 with real OPA.
type legacyEvaluator struct {
	query rego.PreparedEvalQuery
}

// newLegacyEvaluator prepares data.garrison.authz.decision over modules and
// the library (policies/rego, the real one).
func newLegacyEvaluator(t testing.TB, modules map[string]string, data map[string]any) *legacyEvaluator {
	t.Helper()
	all := regolib.Modules()
	for path, src := range modules {
		if _, dup := all[path]; !dup {
			all[path] = src
		}
	}
	compiler := legacyStrictCompile(t, all)
	if data == nil {
		data = map[string]any{}
	}
	q, err := rego.New(
		rego.Query("data.garrison.authz.decision"),
		rego.Compiler(compiler),
		rego.Store(inmem.NewFromObject(data)),
	).PrepareForEval(context.Background())
	if err != nil {
		t.Fatalf("prepare: %v", err)
	}
	return &legacyEvaluator{query: q}
}

// decide returns the decision object.
func (e *legacyEvaluator) decide(t testing.TB, in ast.Value) map[string]any {
	t.Helper()
	rs, err := e.query.Eval(context.Background(), rego.EvalParsedInput(in))
	if err != nil {
		t.Fatalf("eval: %v", err)
	}
	if len(rs) != 1 || len(rs[0].Expressions) != 1 {
		t.Fatalf("decision undefined for input %v", in)
	}
	d, ok := rs[0].Expressions[0].Value.(map[string]any)
	if !ok {
		t.Fatalf("decision is %T", rs[0].Expressions[0].Value)
	}
	return d
}
