package compile

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"

	"github.com/garrison-mesh/garrison/authz/cases"
	"github.com/garrison-mesh/garrison/authz/internal/meshgen"
	"github.com/garrison-mesh/garrison/policies"
)

func benchSnapshot(b *testing.B, n int) *policies.Snapshot {
	b.Helper()
	rs, problems := policies.Parse("bench.yaml", []byte(meshgen.AuthorizationPolicies(n, false)))
	if err := problems.Err(); err != nil {
		b.Fatal(err)
	}
	snap, _ := policies.NewSnapshot(1, rs, policies.SnapshotOptions{})
	if got := len(snap.List(policies.KindAuthorizationPolicy)); got != n {
		b.Fatalf("%d policies, want %d", got, n)
	}
	return snap
}

// BenchmarkCompile10k compiles 10,000 AuthorizationPolicies to Rego
// (generation only; OPA's own compilation is PrepareForEval, measured by
// BenchmarkDecide as prepare-ms).
func BenchmarkCompile10k(b *testing.B) {
	snap := benchSnapshot(b, 10_000)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Compile(snap, Options{DenyBodyDetails: true}); err != nil {
			b.Fatal(err)
		}
	}
}

// benchRequest goes to workload app-3 of ns-0, which has policies of its
// own: its ALLOW policy p3 allows it.
var benchRequest = cases.Request{
	Destination: cases.Destination{Namespace: "ns-0", Labels: map[string]string{"app": "app-3"}, IP: "10.1.0.1", Port: 8000},
	Source:      cases.Peer{Principal: "spiffe://cluster.local/ns/ns-0/sa/client-web"},
	Host:        "httpbin.foo.svc.cluster.local",
	Path:        "/api/v3/items",
	Headers:     map[string]string{"x-tenant": "tenant-0"},
}

// BenchmarkEvalFloor is OPA's own floor: a prepared query that only reads
// the input, with the same input value as BenchmarkDecide. Ratios against
// it factor out the machine.
func BenchmarkEvalFloor(b *testing.B) {
	q, err := rego.New(rego.Query("input.attributes.request.http.method"), rego.SetRegoVersion(ast.RegoV1)).
		PrepareForEval(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	in := caseInput(b, benchRequest)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := q.Eval(ctx, rego.EvalParsedInput(in)); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecide evaluates the decision with a prepared query and a
// prebuilt ast.Value input, at 10, 1,000 and 10,000 policies, for a request
// to a workload that has policies of its own (allowed by its ALLOW policy).
// Thanks to OPA's rule indexing on the context extensions the cost should
// not grow with the number of policies.
func BenchmarkDecide(b *testing.B) {
	for _, n := range []int{10, 1_000, 10_000} {
		b.Run(fmt.Sprintf("policies=%d", n), func(b *testing.B) {
			res, err := Compile(benchSnapshot(b, n), Options{DenyBodyDetails: true})
			if err != nil {
				b.Fatal(err)
			}
			opts := []func(*rego.Rego){rego.Query(Query), rego.SetRegoVersion(ast.RegoV1)}
			for path, src := range res.Merged() {
				opts = append(opts, rego.Module(path, src))
			}
			start := time.Now()
			q, err := rego.New(opts...).PrepareForEval(context.Background())
			if err != nil {
				b.Fatal(err)
			}
			prepare := time.Since(start)

			in := caseInput(b, benchRequest)
			ctx := context.Background()
			rs, err := q.Eval(ctx, rego.EvalParsedInput(in))
			if err != nil || len(rs) != 1 {
				b.Fatalf("eval: %v %v", rs, err)
			}
			if d := rs[0].Expressions[0].Value.(map[string]any); d["allowed"] != true || d["policy"] != "ns-0/p3" {
				b.Fatalf("unexpected decision %v", d)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if _, err := q.Eval(ctx, rego.EvalParsedInput(in)); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(prepare.Milliseconds()), "prepare-ms")
		})
	}
}
