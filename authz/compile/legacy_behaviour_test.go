package compile

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// legacyCase is one behaviour case of testdata/legacy-behaviour/*.yaml:
// legacy policies, and requests with the decision each must get from the
// compiled modules and the library.
type legacyCase struct {
	Name string `yaml:"name"`
	// Root is the root namespace (default istio-system).
	Root               string   `yaml:"root"`
	TrustDomain        string   `yaml:"trustDomain"`
	TrustDomainAliases []string `yaml:"trustDomainAliases"`
	Policies           string   `yaml:"policies"`
	Requests           []struct {
		Name    string        `yaml:"name"`
		Request legacyRequest `yaml:",inline"`
		Want    legacyWant    `yaml:",inline"`
	} `yaml:"requests"`
}

// TestLegacyBehaviour evaluates every case with real OPA: the legacy modules
// compiled by compileLegacy and the library's decision (policies/rego).
func TestLegacyBehaviour(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "legacy-behaviour", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no cases: %v", err)
	}
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewDecoder(strings.NewReader(string(data)))
		dec.KnownFields(true)
		var cases []legacyCase
		if err := dec.Decode(&cases); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		for _, tc := range cases {
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
					d := ev.decide(t, r.Request.input())
					for _, e := range r.Want.check(d) {
						t.Errorf("%s: %s (decision %v)", r.Name, e, d)
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
	workload := func(app, version string) legacyRequest {
		return legacyRequest{Namespace: "default", Labels: map[string]string{"app": app, "version": version},
			Services: []string{app + ".default.svc.cluster.local"}, ServiceAccount: "bookinfo-" + app}
	}
	from := func(r legacyRequest, principal string) legacyRequest {
		r.Principal = principal
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
	mongodb.TCP, mongodb.Port = true, 27017
	steps := []struct {
		name     string
		files    []string
		requests map[string]struct {
			r    legacyRequest
			want string
		}
	}{
		{"rbac on: nothing is allowed", []string{"rbac-config-ON.yaml"}, map[string]struct {
			r    legacyRequest
			want string
		}{
			"gateway to productpage": {from(workload("productpage", "v1"), gateway), "deny"},
		}},
		{"namespace-level access", []string{"rbac-config-ON.yaml", "namespace-policy.yaml"}, map[string]struct {
			r    legacyRequest
			want string
		}{
			"gateway to productpage":           {from(workload("productpage", "v1"), gateway), "allow"},
			"productpage to reviews":           {from(workload("reviews", "v2"), productpage), "allow"},
			"other namespace to details":       {from(workload("details", "v1"), stranger), "deny"},
			"productpage to an app not listed": {from(workload("mongodb", "v1"), productpage), "deny"},
		}},
		{"service-level access", []string{"rbac-config-ON.yaml", "productpage-policy.yaml", "details-reviews-policy.yaml", "ratings-policy.yaml"}, map[string]struct {
			r    legacyRequest
			want string
		}{
			"anyone to productpage":  {from(workload("productpage", "v1"), ""), "allow"},
			"productpage to reviews": {from(workload("reviews", "v3"), productpage), "allow"},
			"gateway to reviews":     {from(workload("reviews", "v3"), gateway), "deny"},
			"reviews to ratings":     {from(workload("ratings", "v1"), reviews), "allow"},
			"productpage to ratings": {from(workload("ratings", "v1"), productpage), "deny"},
			"POST productpage":       {func() legacyRequest { r := workload("productpage", "v1"); r.Method = "POST"; return r }(), "deny"},
		}},
		{"permissive config", []string{"rbac-config-on-permissive.yaml", "details-reviews-policy.yaml"}, map[string]struct {
			r    legacyRequest
			want string
		}{
			"gateway to reviews is only logged": {from(workload("reviews", "v3"), gateway), "allow"},
		}},
		{"permissive binding", []string{"rbac-config-ON.yaml", "productpage-policy.yaml", "details-reviews-policy-permissive.yaml"}, map[string]struct {
			r    legacyRequest
			want string
		}{
			"productpage to reviews is only logged": {from(workload("reviews", "v3"), productpage), "deny"},
		}},
		{"TCP: mongodb", []string{"rbac-config-on-mongodb.yaml", "mongodb-policy.yaml"}, map[string]struct {
			r    legacyRequest
			want string
		}{
			"ratings-v2 to mongodb":         {from(mongodb, ratingsV2), "allow"},
			"reviews to mongodb":            {from(mongodb, reviews), "deny"},
			"ratings-v2 to another port":    {func() legacyRequest { r := from(mongodb, ratingsV2); r.Port = 27018; return r }(), "deny"},
			"productpage is not under RBAC": {from(workload("productpage", "v1"), ""), "allow"},
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
				d := ev.decide(t, c.r.input())
				for _, e := range (legacyWant{Want: c.want}).check(d) {
					t.Errorf("%s: %s (decision %v)", name, e, d)
				}
			}
		})
	}
}
