package policies_test

import (
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	networking "istio.io/api/networking/v1alpha3"
	security "istio.io/api/security/v1beta1"

	"github.com/garrison-mesh/garrison/policies"
	"github.com/garrison-mesh/garrison/policies/kubeobj"
	"github.com/garrison-mesh/garrison/policies/legacy"
	"github.com/garrison-mesh/garrison/policies/source/file"
)

// examplesDir holds the example meshes the README points users at.
const examplesDir = "../deploy/examples"

// skippedWarning is the one warning an example may produce: a kind Garrison
// does not act on (a Problem's Error() adds "warning: " before it).
const skippedWarning = "not used by Garrison; skipped"

// parsedFile is one example file and what Parse made of it.
type parsedFile struct {
	path      string
	resources []*policies.Resource
	problems  policies.Problems
}

// parseExamples parses every configuration file under dir.
func parseExamples(t *testing.T, dir string) []parsedFile {
	t.Helper()
	var out []parsedFile
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		// The files the file source reads; README.md and the like are not,
		// nor the decision tests of garrison policy test (*_test.yaml).
		if d.IsDir() || !slices.Contains([]string{".yaml", ".yml", ".json"}, filepath.Ext(path)) || file.IsTestFile(path) {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		resources, problems := policies.Parse(path, data)
		out = append(out, parsedFile{path: path, resources: resources, problems: problems})
		return nil
	})
	if err != nil {
		t.Fatalf("walking %s: %v", dir, err)
	}
	if len(out) == 0 {
		t.Fatalf("no configuration files under %s", dir)
	}
	return out
}

// exampleResources returns every resource of the example in dir; problems
// are TestExamplesParse's to report.
func exampleResources(t *testing.T, dir string) []*policies.Resource {
	t.Helper()
	var out []*policies.Resource
	for _, f := range parseExamples(t, dir) {
		out = append(out, f.resources...)
	}
	return out
}

// mustFind returns the resource of kind gk named ns/name, failing the test when
// there is none.
func mustFind(t *testing.T, rs []*policies.Resource, gk policies.GroupKind, ns, name string) *policies.Resource {
	t.Helper()
	for _, r := range rs {
		if r.Kind == gk && r.Namespace == ns && r.Name == name {
			return r
		}
	}
	t.Fatalf("no %s %s/%s in the example", gk, ns, name)
	return nil
}

func mustFindSpec[T any](t *testing.T, rs []*policies.Resource, gk policies.GroupKind, ns, name string) T {
	t.Helper()
	r := mustFind(t, rs, gk, ns, name)
	spec, ok := policies.SpecAs[T](r)
	if !ok {
		t.Fatalf("%s %s/%s: spec is %T", gk, ns, name, r.Spec)
	}
	return spec
}

// TestExamplesParse requires every example to parse with no error and no
// warning other than a kind Garrison skips: they are what users start from.
func TestExamplesParse(t *testing.T) {
	t.Parallel()
	examples := map[string]bool{}
	for _, f := range parseExamples(t, examplesDir) {
		rel, _ := filepath.Rel(examplesDir, f.path)
		example, _, _ := strings.Cut(filepath.ToSlash(rel), "/")
		examples[example] = true
		for _, p := range f.problems {
			switch {
			case p.Severity == policies.SeverityError:
				t.Errorf("%s", p.Error())
			case !strings.Contains(p.Message, skippedWarning):
				t.Errorf("unexpected %s", p.Error())
			}
		}
		if len(f.resources) == 0 && len(f.problems.Errors()) == 0 {
			t.Errorf("%s: no resources", f.path)
		}
	}
	if !examples["bookinfo"] {
		t.Errorf("no bookinfo example under %s", examplesDir)
	}
}

// TestBookinfoExample checks that deploy/examples/bookinfo still teaches
// what its README says it does. Conformance cases are built on this content.
func TestBookinfoExample(t *testing.T) {
	t.Parallel()
	rs := exampleResources(t, filepath.Join(examplesDir, "bookinfo"))
	const ns = "default"

	t.Run("workloads", func(t *testing.T) {
		nsObj := mustFind(t, rs, policies.KindNamespace, "", "default")
		if got := nsObj.Labels["istio-injection"]; got != "enabled" {
			t.Errorf("namespace default: istio-injection=%q, want enabled", got)
		}
		for _, svc := range []string{"productpage", "details", "reviews", "ratings"} {
			mustFind(t, rs, policies.KindService, ns, svc)
			mustFind(t, rs, policies.KindServiceAccount, ns, "bookinfo-"+svc)
		}
		deployments := map[string]string{
			"productpage-v1": "bookinfo-productpage", "details-v1": "bookinfo-details", "ratings-v1": "bookinfo-ratings",
			"reviews-v1": "bookinfo-reviews", "reviews-v2": "bookinfo-reviews", "reviews-v3": "bookinfo-reviews",
		}
		for name, sa := range deployments {
			w := mustFindSpec[*kubeobj.Workload](t, rs, policies.KindDeployment, ns, name)
			if got := w.Spec.Template.Spec.ServiceAccountOrDefault(); got != sa {
				t.Errorf("deployment %s runs as %q, want %q", name, got, sa)
			}
			if _, version, _ := strings.Cut(name, "-"); w.Spec.Template.Metadata.Labels["version"] != version {
				t.Errorf("deployment %s: version label %q, want %q", name, w.Spec.Template.Metadata.Labels["version"], version)
			}
		}
		we := mustFindSpec[*networking.WorkloadEntry](t, rs, policies.KindWorkloadEntry, ns, "mysqldb-vm-1")
		if !strings.HasPrefix(we.GetAddress(), "192.0.2.") || we.GetServiceAccount() == "" {
			t.Errorf("WorkloadEntry mysqldb-vm-1: address %q, serviceAccount %q", we.GetAddress(), we.GetServiceAccount())
		}
		se := mustFindSpec[*networking.ServiceEntry](t, rs, policies.KindServiceEntry, ns, "mysqldb")
		if se.GetWorkloadSelector().GetLabels()["app"] != we.GetLabels()["app"] || se.GetLocation() != networking.ServiceEntry_MESH_INTERNAL {
			t.Errorf("ServiceEntry mysqldb does not select the VM as a mesh-internal service: %v", se)
		}
	})

	t.Run("destination rules", func(t *testing.T) {
		lbs := map[networking.LoadBalancerSettings_SimpleLB]bool{}
		for _, host := range []string{"productpage", "reviews", "ratings", "details"} {
			dr := mustFindSpec[*networking.DestinationRule](t, rs, policies.KindDestinationRule, ns, host)
			if dr.GetTrafficPolicy().GetTls().GetMode() != networking.ClientTLSSettings_ISTIO_MUTUAL {
				t.Errorf("DestinationRule %s: tls mode %v, want ISTIO_MUTUAL", host, dr.GetTrafficPolicy().GetTls().GetMode())
			}
			if len(dr.GetSubsets()) == 0 || dr.GetSubsets()[0].GetLabels()["version"] != "v1" {
				t.Errorf("DestinationRule %s: no subset v1 by version label", host)
			}
			if lb := dr.GetTrafficPolicy().GetLoadBalancer(); lb != nil {
				lbs[lb.GetSimple()] = true
			}
		}
		if !lbs[networking.LoadBalancerSettings_RANDOM] || !lbs[networking.LoadBalancerSettings_ROUND_ROBIN] {
			t.Errorf("want one DestinationRule with RANDOM and one with ROUND_ROBIN, got %v", lbs)
		}
		reviews := mustFindSpec[*networking.DestinationRule](t, rs, policies.KindDestinationRule, ns, "reviews")
		if len(reviews.GetSubsets()) != 3 {
			t.Errorf("DestinationRule reviews: %d subsets, want v1, v2, v3", len(reviews.GetSubsets()))
		}
		cp := reviews.GetTrafficPolicy().GetConnectionPool()
		if cp.GetTcp().GetMaxConnections() == 0 || cp.GetHttp().GetHttp1MaxPendingRequests() == 0 || cp.GetHttp().GetMaxRequestsPerConnection() == 0 {
			t.Errorf("DestinationRule reviews: connection pool %v lacks maxConnections, http1MaxPendingRequests or maxRequestsPerConnection", cp)
		}
		if od := reviews.GetTrafficPolicy().GetOutlierDetection(); od.GetConsecutive_5XxErrors().GetValue() == 0 || od.GetBaseEjectionTime() == nil {
			t.Errorf("DestinationRule reviews: outlier detection %v", od)
		}
	})

	t.Run("reviews routing", func(t *testing.T) {
		vs := mustFindSpec[*networking.VirtualService](t, rs, policies.KindVirtualService, ns, "reviews")
		var cookie, split, timeout, retries bool
		for _, h := range vs.GetHttp() {
			for _, m := range h.GetMatch() {
				if m.GetHeaders()["cookie"].GetRegex() == "^(.*?;)?(user=jason)(;.*)?$" && h.GetRoute()[0].GetDestination().GetSubset() == "v2" {
					cookie = true
				}
			}
			if ws := routeWeights(h); slices.Equal(ws, []int32{99, 1}) {
				split = true
			}
			timeout = timeout || h.GetTimeout().AsDuration().Milliseconds() == 500
			if r := h.GetRetries(); r.GetAttempts() == 3 && r.GetPerTryTimeout().AsDuration().Seconds() == 2 && r.GetRetryOn() == "5xx,connect-failure" {
				retries = true
			}
		}
		if !cookie || !split || !timeout || !retries {
			t.Errorf("VirtualService reviews: cookie route to v2 %v, 99/1 split %v, 0.5s timeout %v, retries %v; want all", cookie, split, timeout, retries)
		}
	})

	t.Run("fault injection", func(t *testing.T) {
		vs := mustFindSpec[*networking.VirtualService](t, rs, policies.KindVirtualService, ns, "ratings")
		var delay, abort bool
		for _, h := range vs.GetHttp() {
			f := h.GetFault()
			if d := f.GetDelay(); d != nil && d.GetFixedDelay().AsDuration().Seconds() == 7 && d.GetPercentage().GetValue() == 100 {
				delay = len(h.GetMatch()) > 0 && h.GetMatch()[0].GetSourceLabels()["app"] == "reviews"
			}
			if a := f.GetAbort(); a != nil && a.GetHttpStatus() == 500 && a.GetPercentage().GetValue() == 10 {
				abort = len(h.GetMatch()) > 0
			}
		}
		if !delay || !abort {
			t.Errorf("VirtualService ratings: 7s delay for reviews %v, 10%% abort 500 %v; want both", delay, abort)
		}
	})

	t.Run("edge", func(t *testing.T) {
		gw := mustFindSpec[*networking.Gateway](t, rs, policies.KindGateway, ns, "bookinfo-gateway")
		var redirect, https bool
		for _, s := range gw.GetServers() {
			redirect = redirect || (s.GetPort().GetNumber() == 80 && s.GetTls().GetHttpsRedirect())
			https = https || (s.GetPort().GetNumber() == 443 && s.GetTls().GetMode() == networking.ServerTLSSettings_SIMPLE && s.GetTls().GetCredentialName() != "")
		}
		if !redirect || !https {
			t.Errorf("Gateway bookinfo-gateway: httpsRedirect on 80 %v, SIMPLE TLS on 443 %v; want both", redirect, https)
		}
		vs := mustFindSpec[*networking.VirtualService](t, rs, policies.KindVirtualService, ns, "bookinfo")
		if !slices.Contains(vs.GetGateways(), "bookinfo-gateway") {
			t.Errorf("VirtualService bookinfo is not bound to bookinfo-gateway: %v", vs.GetGateways())
		}
		var wildcard bool
		for _, r := range rs {
			if se, ok := policies.SpecAs[*networking.ServiceEntry](r); ok && slices.Contains(se.GetHosts(), "*.foo.com") {
				wildcard = se.GetLocation() == networking.ServiceEntry_MESH_EXTERNAL && se.GetResolution() == networking.ServiceEntry_NONE
			}
		}
		if !wildcard {
			t.Errorf("no MESH_EXTERNAL ServiceEntry for *.foo.com with resolution NONE")
		}
	})

	t.Run("authentication", func(t *testing.T) {
		mesh := mustFindSpec[*legacy.AuthenticationPolicy](t, rs, policies.KindMeshPolicy, "", "default")
		if len(mesh.Peers) != 1 || mesh.Peers[0].Mtls.EffectiveMode() != legacy.MutualTLSPermissive {
			t.Errorf("MeshPolicy default: want PERMISSIVE mtls, got %+v", mesh.Peers)
		}
		nsPolicy := mustFindSpec[*legacy.AuthenticationPolicy](t, rs, policies.KindPolicy, ns, "default")
		if len(nsPolicy.Targets) != 0 || len(nsPolicy.Peers) != 1 || nsPolicy.Peers[0].Mtls.EffectiveMode() != legacy.MutualTLSStrict {
			t.Errorf("Policy default/default: want namespace-wide STRICT mtls, got %+v", nsPolicy)
		}
		jwt := mustFindSpec[*legacy.AuthenticationPolicy](t, rs, policies.KindPolicy, ns, "productpage-jwt")
		if len(jwt.Targets) != 1 || jwt.Targets[0].Name != "productpage" || len(jwt.Origins) != 1 ||
			jwt.Origins[0].Jwt.Issuer != "testing@secure.istio.io" || jwt.PrincipalBinding != legacy.UseOrigin ||
			len(jwt.Origins[0].Jwt.TriggerRules) != 1 || jwt.Origins[0].Jwt.TriggerRules[0].ExcludedPaths[0].Exact != "/health" {
			t.Errorf("Policy productpage-jwt: %+v", jwt)
		}
	})

	t.Run("rbac", func(t *testing.T) {
		cfg := mustFindSpec[*legacy.RbacConfig](t, rs, policies.KindClusterRbacConfig, "", "default")
		if cfg.Mode != legacy.RbacOnWithInclusion || cfg.Inclusion == nil || !slices.Equal(cfg.Inclusion.Namespaces, []string{"default"}) {
			t.Errorf("ClusterRbacConfig default: %+v", cfg)
		}
		viewer := mustFindSpec[*legacy.ServiceRole](t, rs, policies.KindServiceRole, ns, "products-viewer")
		if len(viewer.Rules) != 1 || !slices.Equal(viewer.Rules[0].Methods, []string{"GET", "HEAD"}) ||
			!slices.Equal(viewer.Rules[0].Services, []string{"productpage.default.svc.cluster.local"}) {
			t.Errorf("ServiceRole products-viewer: %+v", viewer.Rules)
		}
		constrained := mustFindSpec[*legacy.ServiceRole](t, rs, policies.KindServiceRole, ns, "products-viewer-version")
		if len(constrained.Rules) != 1 || len(constrained.Rules[0].Constraints) != 1 ||
			constrained.Rules[0].Constraints[0].Key != "destination.labels[version]" ||
			!slices.Equal(constrained.Rules[0].Constraints[0].Values, []string{"v1", "v2"}) {
			t.Errorf("ServiceRole products-viewer-version: want a destination.labels[version] constraint, got %+v", constrained.Rules)
		}
		for _, role := range []string{"details-reviews-viewer", "ratings-viewer", "mysqldb-viewer"} {
			mustFind(t, rs, policies.KindServiceRole, ns, role)
		}
		bindings := map[string]struct{ role, user, property string }{
			"bind-productpage-viewer": {role: "products-viewer", user: "*"},
			"bind-details-reviews":    {role: "details-reviews-viewer", user: "cluster.local/ns/default/sa/bookinfo-productpage"},
			"bind-ratings":            {role: "ratings-viewer", user: "cluster.local/ns/default/sa/bookinfo-reviews"},
			"bind-mysqldb-viewer":     {role: "mysqldb-viewer", user: "cluster.local/ns/default/sa/bookinfo-ratings"},
			"bind-productpage-login":  {role: "products-viewer-version", property: "source.namespace"},
		}
		for name, want := range bindings {
			b := mustFindSpec[*legacy.ServiceRoleBinding](t, rs, policies.KindServiceRoleBinding, ns, name)
			if b.RoleRef == nil || b.RoleRef.Kind != "ServiceRole" || b.RoleRef.Name != want.role {
				t.Errorf("ServiceRoleBinding %s: roleRef %+v, want ServiceRole %s", name, b.RoleRef, want.role)
			}
			if len(b.Subjects) != 1 || b.Subjects[0].User != want.user || (want.property != "" && b.Subjects[0].Properties[want.property] == "") {
				t.Errorf("ServiceRoleBinding %s: subjects %+v, want user %q property %q", name, b.Subjects, want.user, want.property)
			}
		}
	})

	t.Run("snapshot", func(t *testing.T) {
		snap, problems := policies.NewSnapshot(1, rs, policies.SnapshotOptions{})
		for _, p := range problems {
			t.Errorf("%s", p.Error())
		}
		want := map[string]int{
			"productpage.default.svc.cluster.local": 1, "details.default.svc.cluster.local": 1,
			"reviews.default.svc.cluster.local": 3, "ratings.default.svc.cluster.local": 1,
			"mysqldb.default.svc.cluster.local": 1,
		}
		for host, n := range want {
			svc := snap.Service(host)
			if svc == nil {
				t.Errorf("no service %s", host)
				continue
			}
			if got := len(snap.WorkloadsOf(svc)); got != n {
				t.Errorf("service %s: %d workloads, want %d", host, got, n)
			}
		}
		if vm := snap.Service("mysqldb.default.svc.cluster.local"); vm != nil {
			for _, w := range snap.WorkloadsOf(vm) {
				if w.Kind != policies.KindWorkloadEntry || w.SPIFFEID("cluster.local") != "spiffe://cluster.local/ns/default/sa/bookinfo-mysqldb" {
					t.Errorf("mysqldb is served by %s %s as %s, want the VM's WorkloadEntry", w.Kind, w.Name, w.SPIFFEID("cluster.local"))
				}
			}
		}
	})

	t.Run("api versions", func(t *testing.T) {
		versions := map[string]bool{}
		for _, r := range rs {
			if r.Kind.Group == policies.GroupNetworking {
				versions[r.APIVersion] = true
			}
		}
		if !versions["networking.istio.io/v1alpha3"] || !versions["networking.istio.io/v1"] {
			t.Errorf("want networking kinds written as both v1alpha3 and v1, got %v", versions)
		}
	})
}

// TestBookinfoModernExample checks deploy/examples/bookinfo-modern: the
// security.istio.io rewrite of bookinfo's legacy security rules.
func TestBookinfoModernExample(t *testing.T) {
	t.Parallel()
	// The workloads are copies, so that the example stands alone; they must
	// not drift from bookinfo's.
	for _, f := range []string{"workloads/namespace.yaml", "workloads/bookinfo.yaml"} {
		legacyCopy, err := os.ReadFile(filepath.Join(examplesDir, "bookinfo", f))
		if err != nil {
			t.Fatal(err)
		}
		modernCopy, err := os.ReadFile(filepath.Join(examplesDir, "bookinfo-modern", f))
		if err != nil {
			t.Fatal(err)
		}
		if string(legacyCopy) != string(modernCopy) {
			t.Errorf("bookinfo-modern/%s differs from bookinfo/%s: copy it again", f, f)
		}
	}

	rs := exampleResources(t, filepath.Join(examplesDir, "bookinfo-modern"))
	if _, problems := policies.NewSnapshot(1, rs, policies.SnapshotOptions{}); len(problems) > 0 {
		t.Errorf("bookinfo-modern:\n%s", problems.Error())
	}
	const ns = "default"
	mesh := mustFindSpec[*security.PeerAuthentication](t, rs, policies.KindPeerAuthentication, "istio-system", "default")
	if mesh.GetMtls().GetMode() != security.PeerAuthentication_MutualTLS_PERMISSIVE {
		t.Errorf("PeerAuthentication istio-system/default: mode %v, want PERMISSIVE", mesh.GetMtls().GetMode())
	}
	strict := mustFindSpec[*security.PeerAuthentication](t, rs, policies.KindPeerAuthentication, ns, "default")
	if strict.GetMtls().GetMode() != security.PeerAuthentication_MutualTLS_STRICT {
		t.Errorf("PeerAuthentication default/default: mode %v, want STRICT", strict.GetMtls().GetMode())
	}
	ra := mustFindSpec[*security.RequestAuthentication](t, rs, policies.KindRequestAuthentication, ns, "productpage-jwt")
	if len(ra.GetJwtRules()) != 1 || ra.GetJwtRules()[0].GetIssuer() != "testing@secure.istio.io" {
		t.Errorf("RequestAuthentication productpage-jwt: %v", ra.GetJwtRules())
	}
	deny := mustFindSpec[*security.AuthorizationPolicy](t, rs, policies.KindAuthorizationPolicy, ns, "productpage-require-jwt")
	if deny.GetAction() != security.AuthorizationPolicy_DENY || len(deny.GetRules()) != 1 ||
		!slices.Equal(deny.GetRules()[0].GetTo()[0].GetOperation().GetNotPaths(), []string{"/health"}) {
		t.Errorf("AuthorizationPolicy productpage-require-jwt: %v", deny)
	}
	if none := mustFindSpec[*security.AuthorizationPolicy](t, rs, policies.KindAuthorizationPolicy, ns, "allow-nothing"); len(none.GetRules()) != 0 || none.GetSelector() != nil {
		t.Errorf("AuthorizationPolicy allow-nothing must have an empty spec: %v", none)
	}
	viewer := mustFindSpec[*security.AuthorizationPolicy](t, rs, policies.KindAuthorizationPolicy, ns, "products-viewer")
	if len(viewer.GetRules()) != 1 || len(viewer.GetRules()[0].GetFrom()) != 0 ||
		!slices.Equal(viewer.GetRules()[0].GetTo()[0].GetOperation().GetMethods(), []string{"GET", "HEAD"}) {
		t.Errorf("AuthorizationPolicy products-viewer: %v", viewer)
	}
	for name, principal := range map[string]string{
		"details-viewer": "cluster.local/ns/default/sa/bookinfo-productpage",
		"reviews-viewer": "cluster.local/ns/default/sa/bookinfo-productpage",
		"ratings-viewer": "cluster.local/ns/default/sa/bookinfo-reviews",
	} {
		ap := mustFindSpec[*security.AuthorizationPolicy](t, rs, policies.KindAuthorizationPolicy, ns, name)
		if len(ap.GetRules()) != 1 || !slices.Equal(ap.GetRules()[0].GetFrom()[0].GetSource().GetPrincipals(), []string{principal}) {
			t.Errorf("AuthorizationPolicy %s: want principal %s, got %v", name, principal, ap.GetRules())
		}
	}
}

// routeWeights lists the weights of a route's destinations.
func routeWeights(h *networking.HTTPRoute) []int32 {
	var out []int32
	for _, d := range h.GetRoute() {
		out = append(out, d.GetWeight())
	}
	return out
}
