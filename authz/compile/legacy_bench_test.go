package compile

import (
	"fmt"
	"strings"
	"testing"
)

// BenchmarkLegacyDecision decides one request against n namespaces, each
// with a role and a binding, to show that OPA's rule index keeps the cost of
// a legacy decision flat (CONTRACT §3): only the bindings of the request's
// namespace are evaluated.
func BenchmarkLegacyDecision(b *testing.B) {
	for _, n := range []int{10, 1000} {
		b.Run(fmt.Sprintf("namespaces=%d", n), func(b *testing.B) {
			var y strings.Builder
			y.WriteString("apiVersion: rbac.istio.io/v1alpha1\nkind: ClusterRbacConfig\nmetadata: {name: default}\nspec: {mode: \"ON\"}\n")
			for i := range n {
				fmt.Fprintf(&y, `---
apiVersion: rbac.istio.io/v1alpha1
kind: ServiceRole
metadata: {name: viewer, namespace: ns%d}
spec:
  rules:
  - services: ["httpbin.ns%d.svc.cluster.local"]
    methods: ["GET"]
    paths: ["/api/*"]
---
apiVersion: rbac.istio.io/v1alpha1
kind: ServiceRoleBinding
metadata: {name: viewer, namespace: ns%d}
spec:
  subjects:
  - user: cluster.local/ns/ns%d/sa/client
  - properties: {source.namespace: istio-system}
  roleRef: {kind: ServiceRole, name: viewer}
`, i, i, i, i)
			}
			snap := legacySnapshot(b, "istio-system", legacyResources(b, map[string][]byte{"bench.yaml": []byte(y.String())}))
			modules, _, err := compileLegacy(snap, legacyTestOptions)
			if err != nil {
				b.Fatal(err)
			}
			ev := newLegacyEvaluator(b, modules, nil)
			r := legacyRequestTo(legacyDestination{Namespace: "ns7", Labels: map[string]string{"app": "httpbin"},
				Services: []string{"httpbin.ns7.svc.cluster.local"}, ServiceAccount: "httpbin"})
			legacySetPrincipal(&r, "cluster.local/ns/ns7/sa/client")
			r.Path = "/api/x"
			in := caseInput(b, legacyFinish(r))
			if d := ev.decide(b, in); d["allowed"] != true {
				b.Fatalf("decision %v", d)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				ev.decide(b, in)
			}
		})
	}
}
