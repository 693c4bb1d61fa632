package compile

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/garrison-mesh/garrison/authz/cases"
	"github.com/garrison-mesh/garrison/policies"
)

// Converter equivalence: Istio's istioctl converted v1alpha1 RBAC to
// v1beta1 AuthorizationPolicies, and its test data holds the pairs. For
// each pair, the legacy input compiled by compileLegacy and the converted
// policies compiled by Compile must decide every request of the input's
// request space (legacy_space_test.go) the same way, each with the real
// library's decision. Where the converter does not preserve Istio's runtime
// semantics the difference is expected, and each pair names why; any other
// difference fails.

// legacyConverterPair is one converter test: legacy input files, the
// converted output, the Service files that map services to workload
// selectors, and the root namespace.
type legacyConverterPair struct {
	name     string
	dir      string
	inputs   []string
	want     string
	services []string
	root     string
	// divergences explain the expected differences; a request whose
	// decisions differ must be explained by one of them.
	divergences []legacyDivergence
}

// legacyDivergence is a known way the converter changes a decision.
type legacyDivergence struct {
	why string
	// explains reports whether the difference on r is this one.
	explains func(r cases.Request, legacyAllowed bool) bool
}

// The converter's known departures from Istio 1.4/1.5 runtime semantics.
var (
	// istioctl 1.5 converted with --allowNoClusterRbacConfig: without a
	// ClusterRbacConfig Istio enforced nothing, the converted ALLOW
	// policies do.
	legacyDivNoConfig = legacyDivergence{
		why: "no ClusterRbacConfig: Istio enforced no RBAC, the converted ALLOW policies deny what they do not allow",
		explains: func(_ cases.Request, legacyAllowed bool) bool {
			return legacyAllowed
		},
	}
	// The converter matched ServiceRole services against Service names
	// (short names, prefix and suffix included); Istio's RBAC filter
	// matched them against the service's FQDN, so "*-suffix" or a short
	// name never matched at runtime.
	legacyDivShortNames = func(patterns ...string) legacyDivergence {
		return legacyDivergence{
			why: fmt.Sprintf("services %q: the converter matched Service names, Istio matched the FQDN", patterns),
			explains: func(r cases.Request, legacyAllowed bool) bool {
				if legacyAllowed {
					return false
				}
				for _, svc := range r.Destination.Services {
					short := strings.Split(svc, ".")[0]
					for _, p := range patterns {
						if legacyStringMatch(short, p) && !legacyStringMatch(svc, p) {
							return true
						}
					}
				}
				return false
			},
		}
	}
)

func legacyConverterPairs() []legacyConverterPair {
	dir15 := filepath.Join(legacyIstioDir, "istio@1.5.0", "istioctl", "cmd", "testdata", "authz", "converter")
	svc15 := []string{"service-bookinfo.yaml", "service-httpbin.yaml"}
	pair15 := func(name string, divs ...legacyDivergence) legacyConverterPair {
		return legacyConverterPair{name: "1.5/" + name, dir: dir15, inputs: []string{name + ".yaml"}, want: name + "-want.yaml",
			services: svc15, root: "my-root-namespace", divergences: divs}
	}
	pairs := []legacyConverterPair{
		pair15("policy-clusterRbacConfig-exclusion-namespace"),
		pair15("policy-clusterRbacConfig-exclusion-service"),
		pair15("policy-clusterRbacConfig-inclusion-namespace"),
		pair15("policy-clusterRbacConfig-inclusion-service"),
		pair15("policy-clusterRbacConfig-off"),
		pair15("policy-destination-labels"),
		pair15("policy-ignore-no-clusterRbacConfig", legacyDivNoConfig),
		pair15("policy-multiple-bindings"),
		pair15("policy-multiple-roles"),
		pair15("policy-multiple-rules"),
		pair15("policy-multiple-services", legacyDivShortNames("*-suffix")),
		pair15("policy-simple"),
		pair15("policy-wildcard"),
	}
	// policy-multiple-want.yaml has no input of its own: it is the output
	// of policy-simple.yaml.
	multiple := pair15("policy-simple")
	multiple.name, multiple.want = "1.5/policy-multiple", "policy-multiple-want.yaml"
	pairs = append(pairs, multiple)

	// Istio 1.4's converter tests combined several inputs per golden; the
	// combinations are read off each golden (global-deny-all comes from
	// rbac-global-on.yaml, ns*-allow-all from the exclusion config...).
	dir14 := filepath.Join(legacyIstioDir, "istio@1.4.0", "istioctl", "cmd", "testdata", "authz", "converter")
	svc14 := []string{"svc-bookinfo.yaml", "svc-other.yaml", "svc-prefix-suffix.yaml"}
	pair14 := func(golden string, inputs []string, divs ...legacyDivergence) legacyConverterPair {
		return legacyConverterPair{name: "1.4/" + golden, dir: dir14, inputs: inputs, want: golden + ".golden.yaml",
			services: svc14, root: "my-root-namespace", divergences: divs}
	}
	pairs = append(pairs,
		pair14("rbac-global-on", []string{"rbac-global-on.yaml"}),
		pair14("cluster-rbac-config-on-with-exclusion", []string{"cluster-rbac-config-on-with-exclusion.yaml"}),
		pair14("cluster-rbac-config-on-with-inclusion", []string{"cluster-rbac-config-on-with-inclusion.yaml"}),
		pair14("one-rule-one-service", []string{"rbac-global-on.yaml", "one-rule-one-service.yaml", "one-subject.yaml"},
			legacyDivShortNames("productpage")),
		pair14("one-rule-multiple-services", []string{"rbac-global-on.yaml", "one-rule-multiple-services.yaml", "two-subjects.yaml"},
			legacyDivShortNames("productpage", "reviews")),
		pair14("one-rule-all-services", []string{"rbac-global-on.yaml", "one-rule-all-services.yaml", "two-subjects.yaml"}),
		pair14("one-rule-all-services-with-exclusion",
			[]string{"cluster-rbac-config-on-with-exclusion.yaml", "one-rule-all-services.yaml", "two-subjects.yaml"}),
		pair14("one-rule-all-services-with-inclusion",
			[]string{"cluster-rbac-config-on-with-inclusion.yaml", "one-rule-all-services.yaml", "two-subjects.yaml"}),
		pair14("one-rule-two-services-prefix-suffix",
			[]string{"rbac-global-on.yaml", "one-rule-two-services-prefix-suffix.yaml", "one-subject.yaml"}),
		// The converter of 1.4 did not need a ClusterRbacConfig: these two
		// goldens come from roles and bindings alone.
		pair14("multiple-access-rules-one-subject", []string{"multiple-access-rules.yaml", "one-subject.yaml"},
			legacyDivNoConfig),
		pair14("multiple-access-rules-two-subjects", []string{"multiple-access-rules.yaml", "two-subjects.yaml"},
			legacyDivNoConfig),
	)
	return pairs
}

func TestLegacyConverterEquivalence(t *testing.T) {
	pairs := legacyConverterPairs()
	if _, err := os.Stat(legacyIstioDir); err != nil {
		t.Skipf("conformance data not available: %v", err)
	}
	total, mismatches := 0, 0
	for _, p := range pairs {
		t.Run(p.name, func(t *testing.T) {
			read := func(names ...string) map[string][]byte {
				files := map[string][]byte{}
				for _, n := range names {
					data, err := os.ReadFile(filepath.Join(p.dir, n))
					if err != nil {
						t.Fatal(err)
					}
					files[n] = data
				}
				return files
			}
			legacySnap := legacySnapshot(t, p.root, legacyResources(t, read(slices.Concat(p.inputs, p.services)...)))
			betaSnap := legacySnapshot(t, p.root, legacyResources(t, read(slices.Concat([]string{p.want}, p.services)...)))
			if n := len(betaSnap.List(policies.KindAuthorizationPolicy)); n == 0 {
				t.Fatalf("%s holds no AuthorizationPolicy", p.want)
			}

			modules, _, err := compileLegacy(legacySnap, legacyTestOptions)
			if err != nil {
				t.Fatal(err)
			}
			legacyEval := newLegacyEvaluator(t, modules, nil)
			// The same through Compile, to check the wiring.
			resLegacy, err := Compile(legacySnap, legacyTestOptions)
			if err != nil {
				t.Fatalf("Compile of the legacy policies: %v", err)
			}
			for path, src := range modules {
				if resLegacy.Modules[path] != src {
					t.Fatalf("Compile's %s is not compileLegacy's", path)
				}
			}
			viaCompile := newLegacyEvaluator(t, resLegacy.Modules, resLegacy.Data)
			res, err := Compile(betaSnap, legacyTestOptions)
			if err != nil {
				t.Fatalf("Compile of the converted policies: %v", err)
			}
			betaEval := newLegacyEvaluator(t, res.Modules, res.Data)

			space := legacySpace(legacySnap, legacySpaceOptions{Queries: true})
			explained := map[string]int{}
			allowed := 0
			for _, r := range space {
				in := caseInput(t, r)
				l, _ := legacyEval.decide(t, in)["allowed"].(bool)
				if c, _ := viaCompile.decide(t, in)["allowed"].(bool); c != l {
					t.Errorf("request %s: Compile's legacy bundle allowed=%v, compileLegacy's %v", legacyJSON(r), c, l)
				}
				b, _ := betaEval.decide(t, in)["allowed"].(bool)
				if l {
					allowed++
				}
				if l == b {
					continue
				}
				why := ""
				for _, d := range p.divergences {
					if d.explains(r, l) {
						why = d.why
						break
					}
				}
				if why == "" {
					t.Errorf("request %s: legacy allowed=%v, converted allowed=%v", legacyJSON(r), l, b)
					continue
				}
				explained[why]++
			}
			t.Logf("%d requests, %d allowed by the legacy policies", len(space), allowed)
			for _, why := range slices.Sorted(maps.Keys(explained)) {
				t.Logf("%d expected differences: %s", explained[why], why)
			}
			for _, d := range p.divergences {
				if explained[d.why] == 0 {
					t.Errorf("expected difference never seen (the request space misses it?): %s", d.why)
				}
			}
			total += len(space)
			for _, n := range explained {
				mismatches += n
			}
		})
	}
	t.Logf("%d pairs, %d requests, %d expected differences", len(pairs), total, mismatches)
}
