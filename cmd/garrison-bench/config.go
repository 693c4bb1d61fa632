package main

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
)

// The generated mesh: n AuthorizationPolicies over n/10 namespaces, each a
// copy of bookinfo (productpage, details, reviews v1-v3, ratings) with ten
// policies written the way Istio's bookinfo tasks write them, plus two
// namespace-wide ones. Every namespace is alike, so a request's decision
// does not depend on which namespace it goes to, and the cost of a
// decision can be compared across policy counts.

// policiesPerNamespace is the number of AuthorizationPolicies generated per
// namespace.
const policiesPerNamespace = 10

const (
	ingressPrincipal = "cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account"
	blockedCIDR      = "192.0.2.0/24"
)

// bookinfoWorkload is one Deployment of a namespace.
type bookinfoWorkload struct {
	app, version string
	sa           string
	ip           string // pod address, per namespace: 10.<ns/250>.<ns%250>.<ip>
}

var bookinfoWorkloads = []bookinfoWorkload{
	{app: "productpage", version: "v1", sa: "bookinfo-productpage", ip: "11"},
	{app: "details", version: "v1", sa: "bookinfo-details", ip: "12"},
	{app: "reviews", version: "v1", sa: "bookinfo-reviews", ip: "13"},
	{app: "reviews", version: "v2", sa: "bookinfo-reviews", ip: "14"},
	{app: "reviews", version: "v3", sa: "bookinfo-reviews", ip: "15"},
	{app: "ratings", version: "v1", sa: "bookinfo-ratings", ip: "16"},
}

func namespaceName(i int) string { return "bookinfo-" + strconv.Itoa(i) }

func namespaceCount(policies int) int {
	return max(1, (policies+policiesPerNamespace-1)/policiesPerNamespace)
}

// configFiles returns the YAML of a mesh of n policies, one file per
// namespace (name -> content).
func configFiles(n int) map[string]string {
	files := map[string]string{}
	for i := range namespaceCount(n) {
		ns := namespaceName(i)
		var b strings.Builder
		fmt.Fprintf(&b, "apiVersion: v1\nkind: Namespace\nmetadata: {name: %s}\n", ns)
		for _, w := range bookinfoWorkloads {
			if w.version == "v1" {
				fmt.Fprintf(&b, "---\napiVersion: v1\nkind: ServiceAccount\nmetadata: {name: %s, namespace: %s}\n", w.sa, ns)
			}
			fmt.Fprintf(&b, `---
apiVersion: apps/v1
kind: Deployment
metadata: {name: %[2]s-%[4]s, namespace: %[1]s}
spec:
  selector: {matchLabels: {app: %[2]s, version: %[4]s}}
  template:
    metadata: {labels: {app: %[2]s, version: %[4]s}}
    spec:
      serviceAccountName: %[3]s
      containers: [{name: %[2]s, image: "docker.io/istio/examples-bookinfo-%[2]s-%[4]s:1.20.2", ports: [{containerPort: 9080}]}]
`, ns, w.app, w.sa, w.version)
			if w.version == "v1" {
				fmt.Fprintf(&b, `---
apiVersion: v1
kind: Service
metadata: {name: %[2]s, namespace: %[1]s, labels: {app: %[2]s}}
spec:
  selector: {app: %[2]s}
  ports: [{name: http, port: 9080}]
`, ns, w.app)
			}
		}
		// How many of this namespace's ten policies to write: the last
		// namespace may hold fewer so that the total is n.
		want := min(policiesPerNamespace, n-i*policiesPerNamespace)
		for k, p := range namespacePolicies(ns) {
			if k >= want {
				break
			}
			b.WriteString("---\n" + p)
		}
		files[ns+".yaml"] = b.String()
	}
	return files
}

// namespacePolicies are the ten AuthorizationPolicies of a namespace,
// ALLOW and DENY, by selector and namespace-wide.
func namespacePolicies(ns string) []string {
	principal := func(sa string) string { return "cluster.local/ns/" + ns + "/sa/" + sa }
	ap := func(name, selector, action, rules string) string {
		sel := ""
		if selector != "" {
			sel = "  selector:\n    matchLabels: {" + selector + "}\n"
		}
		return fmt.Sprintf("apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: %s, namespace: %s}\nspec:\n%s  action: %s\n  rules:\n%s",
			name, ns, sel, action, rules)
	}
	return []string{
		ap("productpage-viewer", "app: productpage", "ALLOW", fmt.Sprintf(`  - from:
    - source: {principals: [%q]}
    to:
    - operation:
        methods: ["GET", "HEAD"]
        paths: ["/", "/productpage", "/static/*", "/api/v1/products*"]
`, ingressPrincipal)),
		ap("productpage-login", "app: productpage", "ALLOW", fmt.Sprintf(`  - from:
    - source: {principals: [%q]}
    to:
    - operation: {methods: ["POST"], paths: ["/login", "/logout"]}
`, ingressPrincipal)),
		ap("details-viewer", "app: details", "ALLOW", fmt.Sprintf(`  - from:
    - source: {principals: [%q]}
    to:
    - operation: {methods: ["GET"], paths: ["/details/*", "/health"]}
`, principal("bookinfo-productpage"))),
		ap("reviews-viewer", "app: reviews", "ALLOW", fmt.Sprintf(`  - from:
    - source: {principals: [%q]}
    to:
    - operation: {methods: ["GET"], paths: ["/reviews/*", "/health"]}
`, principal("bookinfo-productpage"))),
		ap("ratings-viewer", "app: ratings", "ALLOW", fmt.Sprintf(`  - from:
    - source: {principals: [%q]}
    to:
    - operation: {methods: ["GET"], paths: ["/ratings/*"]}
    when:
    - key: request.headers[x-bookinfo-tenant]
      values: [%q]
`, principal("bookinfo-reviews"), ns)),
		ap("ratings-writer", "app: ratings", "ALLOW", fmt.Sprintf(`  - from:
    - source: {principals: [%q]}
    to:
    - operation: {methods: ["POST"], paths: ["/ratings/*"]}
`, principal("bookinfo-reviews"))),
		ap("deny-admin", "", "DENY", `  - to:
    - operation: {paths: ["/admin", "/admin/*", "/debug/*"]}
`),
		ap("deny-blocked", "app: productpage", "DENY", fmt.Sprintf(`  - from:
    - source: {ipBlocks: [%q]}
`, blockedCIDR)),
		ap("reviews-canary", "app: reviews, version: v3", "ALLOW", fmt.Sprintf(`  - from:
    - source: {principals: [%q]}
    to:
    - operation: {methods: ["GET"], paths: ["/reviews/*"]}
`, principal("canary-tester"))),
		ap("metrics-scrape", "", "ALLOW", `  - from:
    - source: {namespaces: ["monitoring"]}
    to:
    - operation: {methods: ["GET"], paths: ["/metrics", "/stats/prometheus"]}
`),
	}
}

// template is one kind of request, with the decision the policies give it
// and how often it is sent.
type template struct {
	name     string
	weight   int
	to       string // app
	version  string
	from     string // principal; "<ns>" is replaced by the namespace
	sourceIP string // "" for the caller's pod address
	method   string
	path     string
	headers  map[string]string
	allowed  bool
}

var templates = []template{
	{name: "productpage page", weight: 3, to: "productpage", from: ingressPrincipal, method: "GET", path: "/productpage?u=normal", allowed: true},
	{name: "productpage static", weight: 2, to: "productpage", from: ingressPrincipal, method: "GET", path: "/static/bootstrap/css/bootstrap.min.css", allowed: true},
	{name: "productpage login", weight: 1, to: "productpage", from: ingressPrincipal, method: "POST", path: "/login",
		headers: map[string]string{"content-type": "application/x-www-form-urlencoded", "content-length": "0"}, allowed: true},
	{name: "productpage admin", weight: 1, to: "productpage", from: ingressPrincipal, method: "GET", path: "/admin/settings", allowed: false},
	{name: "productpage blocked ip", weight: 1, to: "productpage", from: ingressPrincipal, sourceIP: "192.0.2.7", method: "GET", path: "/productpage", allowed: false},
	{name: "details", weight: 2, to: "details", from: "cluster.local/ns/<ns>/sa/bookinfo-productpage", method: "GET", path: "/details/0", allowed: true},
	{name: "details from reviews", weight: 1, to: "details", from: "cluster.local/ns/<ns>/sa/bookinfo-reviews", method: "GET", path: "/details/0", allowed: false},
	{name: "reviews", weight: 3, to: "reviews", version: "v2", from: "cluster.local/ns/<ns>/sa/bookinfo-productpage", method: "GET", path: "/reviews/0", allowed: true},
	{name: "reviews delete", weight: 1, to: "reviews", version: "v1", from: "cluster.local/ns/<ns>/sa/bookinfo-productpage", method: "DELETE", path: "/reviews/0", allowed: false},
	{name: "ratings", weight: 2, to: "ratings", from: "cluster.local/ns/<ns>/sa/bookinfo-reviews", method: "GET", path: "/ratings/0",
		headers: map[string]string{"x-bookinfo-tenant": "<ns>"}, allowed: true},
	{name: "ratings from productpage", weight: 1, to: "ratings", from: "cluster.local/ns/<ns>/sa/bookinfo-productpage", method: "GET", path: "/ratings/0", allowed: false},
	{name: "ratings write", weight: 1, to: "ratings", from: "cluster.local/ns/<ns>/sa/bookinfo-reviews", method: "POST", path: "/ratings/0",
		headers: map[string]string{"content-type": "application/json", "content-length": "0"}, allowed: true},
	{name: "metrics scrape", weight: 1, to: "reviews", version: "v3", from: "cluster.local/ns/monitoring/sa/prometheus", method: "GET", path: "/metrics", allowed: true},
}

// request is a prepared CheckRequest and what it should get.
type request struct {
	tmpl    *template
	req     *authv3.CheckRequest
	allowed bool
}

// requests builds count requests over the namespaces of a mesh of n
// policies, templates chosen by weight, namespaces uniformly. The
// expectations assume every namespace holds all ten policies: with n not a
// multiple of ten, requests go to the full namespaces only.
func requests(n, count int, rng *rand.Rand) []request {
	full := max(1, n/policiesPerNamespace)
	var weighted []*template
	for i := range templates {
		for range templates[i].weight {
			weighted = append(weighted, &templates[i])
		}
	}
	out := make([]request, 0, count)
	for range count {
		t := weighted[rng.IntN(len(weighted))]
		out = append(out, request{tmpl: t, req: checkRequest(t, rng.IntN(full), rng), allowed: t.allowed})
	}
	return out
}

func hexID(rng *rand.Rand, n int) string {
	const digits = "0123456789abcdef"
	b := make([]byte, n)
	for i := range b {
		b[i] = digits[rng.IntN(16)]
	}
	return string(b)
}

// checkRequest is what an inbound sidecar's ext_authz filter sends for t
// to namespace i: about fifteen headers, the peer identities of mTLS, and
// the context extensions Garrison's xDS puts on the listener.
func checkRequest(t *template, i int, rng *rand.Rand) *authv3.CheckRequest {
	ns := namespaceName(i)
	version := t.version
	if version == "" {
		version = "v1"
	}
	var dst bookinfoWorkload
	for _, w := range bookinfoWorkloads {
		if w.app == t.to && w.version == version {
			dst = w
		}
	}
	podNet := fmt.Sprintf("10.%d.%d.", i/250, i%250)
	srcIP := t.sourceIP
	if srcIP == "" {
		srcIP = podNet + strconv.Itoa(100+rng.IntN(100))
	}
	from := strings.ReplaceAll(t.from, "<ns>", ns)
	host := t.to + "." + ns + ".svc.cluster.local:9080"
	if t.to == "productpage" {
		host = "bookinfo.example.com"
	}
	traceID := hexID(rng, 32)
	h := map[string]string{
		":authority":            host,
		":method":               t.method,
		":path":                 t.path,
		":scheme":               "http",
		"accept":                "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
		"accept-encoding":       "gzip, deflate, br",
		"accept-language":       "en-US,en;q=0.5",
		"user-agent":            "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
		"x-request-id":          hexID(rng, 8) + "-" + hexID(rng, 4) + "-4" + hexID(rng, 3) + "-a" + hexID(rng, 3) + "-" + hexID(rng, 12),
		"x-b3-traceid":          traceID,
		"x-b3-spanid":           traceID[:16],
		"x-b3-parentspanid":     hexID(rng, 16),
		"x-b3-sampled":          "1",
		"x-forwarded-proto":     "http",
		"x-envoy-attempt-count": "1",
		"x-forwarded-client-cert": "By=spiffe://cluster.local/ns/" + ns + "/sa/" + dst.sa + ";Hash=" + hexID(rng, 64) +
			";Subject=\"\";URI=spiffe://" + from,
	}
	for k, v := range t.headers {
		h[k] = strings.ReplaceAll(v, "<ns>", ns)
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source: &authv3.AttributeContext_Peer{
			Address:   socketAddress(srcIP, uint32(30000+rng.IntN(30000))),
			Principal: "spiffe://" + from,
		},
		Destination: &authv3.AttributeContext_Peer{
			Address:   socketAddress(podNet+dst.ip, 9080),
			Principal: "spiffe://cluster.local/ns/" + ns + "/sa/" + dst.sa,
		},
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Id:       strconv.FormatUint(rng.Uint64(), 10),
			Method:   t.method,
			Headers:  h,
			Path:     t.path,
			Host:     host,
			Scheme:   "http",
			Protocol: "HTTP/1.1",
		}},
		ContextExtensions: map[string]string{
			"garrison.io/namespace":     ns,
			"garrison.io/label/app":     t.to,
			"garrison.io/label/version": version,
			"garrison.io/services":      t.to + "." + ns + ".svc.cluster.local",
			"garrison.io/workload":      "Deployment/" + t.to + "-" + version,
		},
	}}
}

func socketAddress(ip string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address:       ip,
		PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
	}}}
}
