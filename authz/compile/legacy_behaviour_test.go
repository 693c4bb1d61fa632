package compile

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/garrison-mesh/garrison/authz/cases"
)

// legacyCase is one behaviour case of testdata/legacy-behaviour/*.yaml:
// legacy policies, and requests with the decision each must get from the
// compiled modules and the library.
type legacyCase struct {
	Name string `yaml:"name"`
	// Root is the root namespace (default istio-system).
	Root               string       `yaml:"root"`
	TrustDomain        string       `yaml:"trustDomain"`
	TrustDomainAliases []string     `yaml:"trustDomainAliases"`
	Policies           string       `yaml:"policies"`
	Requests           []cases.Case `yaml:"requests"`
}

// TestLegacyBehaviour evaluates every case with real OPA: the legacy modules
// compiled by compileLegacy and the library's decision (policies/rego).
func TestLegacyBehaviour(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "legacy-behaviour", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no cases: %v", err)
	}
	for _, file := range files {
		for _, tc := range loadCases[legacyCase](t, file) {
			t.Run(strings.TrimSuffix(filepath.Base(file), ".yaml")+"/"+tc.Name, func(t *testing.T) {
				t.Parallel()
				root := tc.Root
				if root == "" {
					root = "istio-system"
				}
				snap := legacySnapshot(t, root, legacyResources(t, map[string][]byte{tc.Name + ".yaml": []byte(tc.Policies)}))
				opts := Options{TrustDomain: tc.TrustDomain, TrustDomainAliases: tc.TrustDomainAliases}
				modules, _, err := compileLegacy(snap, opts)
				if err != nil {
					t.Fatal(err)
				}
				ev := newLegacyEvaluator(t, modules, nil)
				if len(tc.Requests) == 0 {
					t.Fatal("a case needs requests")
				}
				for _, r := range tc.Requests {
					d := ev.decide(t, caseInput(t, r.Request))
					if m := mismatch(r.Expect, d); m != "" {
						t.Errorf("%s: %s (decision %v)", r.Name, m, d)
					}
				}
			})
		}
	}
}

// TestLegacyBookinfo replays Istio 1.4's "Authorization for HTTP services"
// and "for TCP services" tasks with the bookinfo RBAC samples of Istio 1.5
// (samples/bookinfo/platform/kube/rbac), with the outcomes the tasks state.
func TestLegacyBookinfo(t *testing.T) {
	dir := filepath.Join(legacyIstioDir, "istio@1.5.0", "samples", "bookinfo", "platform", "kube", "rbac")
	if _, err := os.Stat(dir); err != nil {
		t.Skipf("conformance data not available: %v", err)
	}
	workload := func(app, version string) cases.Request {
		return legacyRequestTo(legacyDestination{Namespace: "default", Labels: map[string]string{"app": app, "version": version},
			Services: []string{app + ".default.svc.cluster.local"}, ServiceAccount: "bookinfo-" + app})
	}
	from := func(r cases.Request, principal string) cases.Request {
		legacySetPrincipal(&r, principal)
		return r
	}
	const (
		gateway     = "cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account"
		productpage = "cluster.local/ns/default/sa/bookinfo-productpage"
		reviews     = "cluster.local/ns/default/sa/bookinfo-reviews"
		ratingsV2   = "cluster.local/ns/default/sa/bookinfo-ratings-v2"
		stranger    = "cluster.local/ns/other/sa/sleep"
	)
	mongodb := workload("mongodb", "v1")
	mongodb.TCP, mongodb.Destination.Port = true, 27017
	steps := []struct {
		name     string
		files    []string
		requests map[string]struct {
			r    cases.Request
			want bool
		}
	}{
		{"rbac on: nothing is allowed", []string{"rbac-config-ON.yaml"}, map[string]struct {
			r    cases.Request
			want bool
		}{
			"gateway to productpage": {from(workload("productpage", "v1"), gateway), false},
		}},
		{"namespace-level access", []string{"rbac-config-ON.yaml", "namespace-policy.yaml"}, map[string]struct {
			r    cases.Request
			want bool
		}{
			"gateway to productpage":           {from(workload("productpage", "v1"), gateway), true},
			"productpage to reviews":           {from(workload("reviews", "v2"), productpage), true},
			"other namespace to details":       {from(workload("details", "v1"), stranger), false},
			"productpage to an app not listed": {from(workload("mongodb", "v1"), productpage), false},
		}},
		{"service-level access", []string{"rbac-config-ON.yaml", "productpage-policy.yaml", "details-reviews-policy.yaml", "ratings-policy.yaml"}, map[string]struct {
			r    cases.Request
			want bool
		}{
			"anyone to productpage":  {from(workload("productpage", "v1"), ""), true},
			"productpage to reviews": {from(workload("reviews", "v3"), productpage), true},
			"gateway to reviews":     {from(workload("reviews", "v3"), gateway), false},
			"reviews to ratings":     {from(workload("ratings", "v1"), reviews), true},
			"productpage to ratings": {from(workload("ratings", "v1"), productpage), false},
			"POST productpage":       {func() cases.Request { r := workload("productpage", "v1"); r.Method = "POST"; return r }(), false},
		}},
		{"permissive config", []string{"rbac-config-on-permissive.yaml", "details-reviews-policy.yaml"}, map[string]struct {
			r    cases.Request
			want bool
		}{
			"gateway to reviews is only logged": {from(workload("reviews", "v3"), gateway), true},
		}},
		{"permissive binding", []string{"rbac-config-ON.yaml", "productpage-policy.yaml", "details-reviews-policy-permissive.yaml"}, map[string]struct {
			r    cases.Request
			want bool
		}{
			"productpage to reviews is only logged": {from(workload("reviews", "v3"), productpage), false},
		}},
		{"TCP: mongodb", []string{"rbac-config-on-mongodb.yaml", "mongodb-policy.yaml"}, map[string]struct {
			r    cases.Request
			want bool
		}{
			"ratings-v2 to mongodb":         {from(mongodb, ratingsV2), true},
			"reviews to mongodb":            {from(mongodb, reviews), false},
			"ratings-v2 to another port":    {func() cases.Request { r := from(mongodb, ratingsV2); r.Destination.Port = 27018; return r }(), false},
			"productpage is not under RBAC": {from(workload("productpage", "v1"), ""), true},
		}},
	}
	for _, step := range steps {
		t.Run(step.name, func(t *testing.T) {
			files := map[string][]byte{}
			for _, f := range step.files {
				data, err := os.ReadFile(filepath.Join(dir, f))
				if err != nil {
					t.Fatal(err)
				}
				files[f] = data
			}
			snap := legacySnapshot(t, "istio-system", legacyResources(t, files))
			modules, _, err := compileLegacy(snap, legacyTestOptions)
			if err != nil {
				t.Fatal(err)
			}
			ev := newLegacyEvaluator(t, modules, nil)
			for name, c := range step.requests {
				d := ev.decide(t, caseInput(t, legacyFinish(c.r)))
				if m := mismatch(cases.Expect{Allowed: &c.want}, d); m != "" {
					t.Errorf("%s: %s (decision %v)", name, m, d)
				}
			}
		})
	}
}
