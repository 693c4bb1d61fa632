package compile

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"gopkg.in/yaml.v3"

	"github.com/garrison-mesh/garrison/authz/cases"
)

// Istio's own golden pairs for v1alpha1 (pilot/pkg/security/authz/builder/
// testdata/v1alpha1 at 1.4.0 and 1.5.0): legacy input -> the Envoy RBAC
// filter config Istio generated for service httpbin.foo.svc.cluster.local
// (labels app=httpbin, version=v1). The test evaluates that config with a
// small interpreter of Envoy's RBAC matchers and checks that the Rego
// compiled from the input decides every request of the input's request
// space the same way.

// legacyIstioDir is where the shared conformance data lives (../shared from
// the repository root).
var legacyIstioDir = filepath.Join("..", "..", "..", "shared", "conformance", "istio")

// legacyIstioBuilderCases are the golden pairs and the trust domain bundle
// Istio's builder_test.go used for each.
var legacyIstioBuilderCases = []struct {
	name        string
	trustDomain string
	aliases     []string
}{
	{name: "all-fields"},
	{name: "simple-policy-td-aliases", trustDomain: "td1", aliases: []string{"cluster.local"}},
	{name: "simple-policy-user-with-wildcard", trustDomain: "td1", aliases: []string{"foobar"}},
	{name: "td-aliases-source-principal", trustDomain: "new-td", aliases: []string{"old-td", "some-trustdomain"}},
}

func TestLegacyIstioBuilderGoldens(t *testing.T) {
	httpbin := legacyDestination{Namespace: "foo", Labels: map[string]string{"app": "httpbin", "version": "v1"},
		Services: []string{"httpbin.foo.svc.cluster.local"}, ServiceAccount: "httpbin"}
	for _, release := range []string{"istio@1.4.0", "istio@1.5.0"} {
		for _, tc := range legacyIstioBuilderCases {
			t.Run(release+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				dir := filepath.Join(legacyIstioDir, release, "pilot", "pkg", "security", "authz", "builder", "testdata", "v1alpha1")
				in, err := os.ReadFile(filepath.Join(dir, tc.name+"-in.yaml"))
				if err != nil {
					t.Skipf("conformance data not available: %v", err)
				}
				out, err := os.ReadFile(filepath.Join(dir, tc.name+"-out.yaml"))
				if err != nil {
					t.Fatal(err)
				}
				var filter legacyEnvoyFilter
				if err := yaml.Unmarshal(out, &filter); err != nil {
					t.Fatal(err)
				}
				snap := legacySnapshot(t, "istio-system", legacyResources(t, map[string][]byte{tc.name + "-in.yaml": in}))
				modules, _, err := compileLegacy(snap, Options{TrustDomain: tc.trustDomain, TrustDomainAliases: tc.aliases})
				if err != nil {
					t.Fatal(err)
				}
				ev := newLegacyEvaluator(t, modules, nil)
				// Istio 1.4 matched paths on the :path header, query
				// included; Garrison matches the path without its query,
				// as Istio 1.5 and CONTRACT §1 do: queries only for 1.5.
				space := legacySpace(snap, legacySpaceOptions{
					Destinations: []legacyDestination{httpbin},
					NoTCP:        true, // these are HTTP filter configs
					Queries:      release == "istio@1.5.0",
				})
				allowed := 0
				for _, r := range space {
					req, in := caseCheckRequest(t, r)
					want := filter.allows(req)
					d := ev.decide(t, in)
					if got, _ := d["allowed"].(bool); got != want {
						t.Errorf("request %s: Garrison allowed=%v, Istio's Envoy config allowed=%v", legacyJSON(r), got, want)
					}
					if want {
						allowed++
					}
				}
				t.Logf("%d requests, %d allowed by both", len(space), allowed)
				if allowed == 0 || allowed == len(space) {
					t.Errorf("the request space does not exercise the policy: %d of %d allowed", allowed, len(space))
				}
			})
		}
	}
}

// legacyJSON renders a request compactly for failure messages.
func legacyJSON(r cases.Request) string {
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Sprint(r)
	}
	return string(b)
}

// legacyEnvoyFilter is the part of envoy.filters.http.rbac's config Istio's
// goldens hold: ALLOW rules.
type legacyEnvoyFilter struct {
	Rules struct {
		Policies map[string]struct {
			Permissions []map[string]any `yaml:"permissions"`
			Principals  []map[string]any `yaml:"principals"`
		} `yaml:"policies"`
	} `yaml:"rules"`
}

// allows reports whether a policy's permissions and principals both match.
func (f legacyEnvoyFilter) allows(req *authv3.CheckRequest) bool {
	r := legacyEnvoyView(req)
	for _, p := range f.Rules.Policies {
		if legacyEnvoyAny(p.Permissions, r.permission) && legacyEnvoyAny(p.Principals, r.principal) {
			return true
		}
	}
	return false
}

func legacyEnvoyAny(nodes []map[string]any, match func(map[string]any) bool) bool {
	for _, n := range nodes {
		if match(n) {
			return true
		}
	}
	return false
}

// legacyEnvoyRequest is what Envoy's RBAC filter sees of a request.
type legacyEnvoyRequest struct {
	headers  map[string]string
	path     string
	srcIP    string
	dstIP    string
	dstPort  int
	metadata map[string]any
	sni      string
}

func legacyEnvoyView(req *authv3.CheckRequest) legacyEnvoyRequest {
	a := req.GetAttributes()
	h := a.GetRequest().GetHttp()
	r := legacyEnvoyRequest{
		headers: h.GetHeaders(),
		srcIP:   a.GetSource().GetAddress().GetSocketAddress().GetAddress(),
		dstIP:   a.GetDestination().GetAddress().GetSocketAddress().GetAddress(),
		dstPort: int(a.GetDestination().GetAddress().GetSocketAddress().GetPortValue()),
		sni:     a.GetTlsSession().GetSni(),
	}
	r.path, _, _ = strings.Cut(h.GetPath(), "?")
	r.metadata = map[string]any{}
	for name, s := range a.GetMetadataContext().GetFilterMetadata() {
		r.metadata[name] = s.AsMap()
	}
	return r
}

func (r legacyEnvoyRequest) permission(n map[string]any) bool {
	for k, v := range n {
		switch k {
		case "andRules":
			for _, c := range legacyEnvoyList(v, "rules") {
				if !r.permission(c) {
					return false
				}
			}
			return true
		case "orRules":
			for _, c := range legacyEnvoyList(v, "rules") {
				if r.permission(c) {
					return true
				}
			}
			return false
		case "notRule":
			return !r.permission(v.(map[string]any))
		case "any":
			return v == true
		case "header":
			return r.header(v.(map[string]any))
		case "urlPath":
			return legacyEnvoyString(v.(map[string]any)["path"].(map[string]any), r.path, true)
		case "destinationIp":
			return legacyEnvoyCIDR(v.(map[string]any), r.dstIP)
		case "destinationPort":
			return v.(int) == r.dstPort
		case "metadata":
			return r.metadataMatch(v.(map[string]any))
		case "requestedServerName":
			return legacyEnvoyString(v.(map[string]any), r.sni, true)
		}
		panic("unsupported permission " + k)
	}
	panic("empty permission")
}

func (r legacyEnvoyRequest) principal(n map[string]any) bool {
	for k, v := range n {
		switch k {
		case "andIds":
			for _, c := range legacyEnvoyList(v, "ids") {
				if !r.principal(c) {
					return false
				}
			}
			return true
		case "orIds":
			for _, c := range legacyEnvoyList(v, "ids") {
				if r.principal(c) {
					return true
				}
			}
			return false
		case "notId":
			return !r.principal(v.(map[string]any))
		case "any":
			return v == true
		case "header":
			return r.header(v.(map[string]any))
		case "sourceIp":
			return legacyEnvoyCIDR(v.(map[string]any), r.srcIP)
		case "metadata":
			return r.metadataMatch(v.(map[string]any))
		}
		panic("unsupported principal " + k)
	}
	panic("empty principal")
}

func legacyEnvoyList(v any, key string) []map[string]any {
	var out []map[string]any
	for _, e := range v.(map[string]any)[key].([]any) {
		out = append(out, e.(map[string]any))
	}
	return out
}

// header is Envoy's HeaderMatcher (names are case-insensitive).
func (r legacyEnvoyRequest) header(m map[string]any) bool {
	s, present := r.headers[strings.ToLower(m["name"].(string))]
	switch {
	case m["presentMatch"] != nil:
		return present == m["presentMatch"].(bool)
	case !present:
		return false
	case m["exactMatch"] != nil:
		return s == m["exactMatch"]
	case m["prefixMatch"] != nil:
		return strings.HasPrefix(s, m["prefixMatch"].(string))
	case m["suffixMatch"] != nil:
		return strings.HasSuffix(s, m["suffixMatch"].(string))
	}
	panic(fmt.Sprintf("unsupported header matcher %v", m))
}

// legacyEnvoyString is Envoy's StringMatcher; present is false when the value
// does not exist (nothing matches it).
func legacyEnvoyString(m map[string]any, s string, present bool) bool {
	if !present {
		return false
	}
	switch {
	case m["exact"] != nil:
		return s == m["exact"]
	case m["prefix"] != nil:
		return strings.HasPrefix(s, m["prefix"].(string))
	case m["suffix"] != nil:
		return strings.HasSuffix(s, m["suffix"].(string))
	case m["regex"] != nil:
		return regexp.MustCompile("^(?:" + m["regex"].(string) + ")$").MatchString(s)
	case m["safeRegex"] != nil:
		re := m["safeRegex"].(map[string]any)["regex"].(string)
		return regexp.MustCompile("^(?:" + re + ")$").MatchString(s)
	}
	panic(fmt.Sprintf("unsupported string matcher %v", m))
}

func legacyEnvoyCIDR(m map[string]any, addr string) bool {
	p, err := netip.ParsePrefix(fmt.Sprintf("%s/%d", m["addressPrefix"], m["prefixLen"]))
	if err != nil {
		panic(err)
	}
	a, err := netip.ParseAddr(addr)
	return err == nil && p.Masked().Contains(a)
}

// metadataMatch is Envoy's MetadataMatcher on dynamic metadata.
func (r legacyEnvoyRequest) metadataMatch(m map[string]any) bool {
	var v any = r.metadata[m["filter"].(string)]
	for _, seg := range m["path"].([]any) {
		obj, ok := v.(map[string]any)
		if !ok {
			return false
		}
		v, ok = obj[seg.(map[string]any)["key"].(string)]
		if !ok {
			return false
		}
	}
	return legacyEnvoyValue(m["value"].(map[string]any), v)
}

// legacyEnvoyValue is Envoy's ValueMatcher: a string matcher needs a string, a
// list matcher a list with a matching element.
func legacyEnvoyValue(m map[string]any, v any) bool {
	switch {
	case m["stringMatch"] != nil:
		s, ok := v.(string)
		return legacyEnvoyString(m["stringMatch"].(map[string]any), s, ok)
	case m["listMatch"] != nil:
		list, ok := v.([]any)
		if !ok {
			return false
		}
		one := m["listMatch"].(map[string]any)["oneOf"].(map[string]any)
		for _, e := range list {
			if legacyEnvoyValue(one, e) {
				return true
			}
		}
		return false
	}
	panic(fmt.Sprintf("unsupported value matcher %v", m))
}
