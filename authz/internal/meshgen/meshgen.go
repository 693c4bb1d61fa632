// Package meshgen writes the synthetic meshes the authorization plane's
// benchmarks measure, so that the compiler's and the engine's figures are
// taken on the same policies.
package meshgen

import (
	"fmt"
	"strings"
)

// AuthorizationPolicies returns n AuthorizationPolicies over n/10
// namespaces (ns-0, ns-1, ...): per namespace one policy per app
// (app-0..app-9; principals, methods, paths, a header condition), every
// fifth a DENY, so that each workload has a few policies of its own among
// all of them. With workloads, each policy is followed by a Deployment of
// its app (service account app-N), so that context extensions can also be
// derived from a destination principal.
func AuthorizationPolicies(n int, workloads bool) string {
	var b strings.Builder
	for i := range n {
		ns, app := i/10, i%10
		action := "ALLOW"
		if i%5 == 4 {
			action = "DENY"
		}
		fmt.Fprintf(&b, `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: p%d
  namespace: ns-%d
spec:
  selector:
    matchLabels:
      app: app-%d
  action: %s
  rules:
  - from:
    - source:
        principals: ["cluster.local/ns/ns-%d/sa/client-*", "cluster.local/ns/shared/sa/gateway"]
    - source:
        namespaces: ["monitoring"]
    to:
    - operation:
        methods: ["GET", "HEAD"]
        paths: ["/api/v%d/*", "/healthz"]
    when:
    - key: request.headers[x-tenant]
      values: ["tenant-%d"]
  - to:
    - operation:
        paths: ["/public/*"]
---
`, i, ns, app, action, ns, app, ns)
		if workloads {
			fmt.Fprintf(&b, `apiVersion: apps/v1
kind: Deployment
metadata: {name: app-%d, namespace: ns-%d}
spec:
  template:
    metadata: {labels: {app: app-%d}}
    spec: {serviceAccountName: app-%d}
---
`, app, ns, app, app)
		}
	}
	return b.String()
}
