package policies

import (
	"encoding/json"
	"strings"
	"testing"
)

func mustParse(t testing.TB, docs string) []*Resource {
	t.Helper()
	rs, problems := Parse("mesh.yaml", []byte(docs))
	if err := problems.Err(); err != nil {
		t.Fatalf("parse: %v", err)
	}
	return rs
}

const snapshotMesh = `
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: mesh-wide, namespace: istio-system}
spec: {}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: root-selected, namespace: istio-system}
spec:
  selector: {matchLabels: {app: reviews}}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ns-wide, namespace: default}
spec: {}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: reviews-only, namespace: default}
spec:
  selector: {matchLabels: {app: reviews, version: v2}}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: other-ns, namespace: foo}
spec: {}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: foo-com, namespace: default}
spec:
  hosts: ["*.foo.com"]
  location: MESH_EXTERNAL
  resolution: NONE
  ports: [{number: 80, name: http, protocol: HTTP}]
---
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: default}
spec:
  selector: {app: reviews}
  ports: [{name: http, port: 9080}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: reviews-v2, namespace: default}
spec:
  selector: {matchLabels: {app: reviews, version: v2}}
  template:
    metadata: {labels: {app: reviews, version: v2}}
    spec: {serviceAccountName: bookinfo-reviews}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: mysql-vm, namespace: default}
spec:
  address: 192.0.2.10
  labels: {app: mysql}
  serviceAccount: mysql
`

func TestSnapshotForWorkloadAttachesAsIstio(t *testing.T) {
	t.Parallel()
	s, problems := NewSnapshot(1, mustParse(t, snapshotMesh), SnapshotOptions{})
	if len(problems) > 0 {
		t.Fatal(problems)
	}
	names := func(rs []*Resource) string {
		var out []string
		for _, r := range rs {
			out = append(out, r.Namespace+"/"+r.Name)
		}
		return strings.Join(out, ",")
	}
	for _, tc := range []struct {
		ns     string
		labels map[string]string
		want   string
	}{
		{"default", map[string]string{"app": "reviews", "version": "v2"}, "istio-system/mesh-wide,istio-system/root-selected,default/ns-wide,default/reviews-only"},
		{"default", map[string]string{"app": "reviews", "version": "v1"}, "istio-system/mesh-wide,istio-system/root-selected,default/ns-wide"},
		{"default", map[string]string{"app": "ratings"}, "istio-system/mesh-wide,default/ns-wide"},
		{"foo", nil, "istio-system/mesh-wide,foo/other-ns"},
		{"istio-system", map[string]string{"app": "reviews"}, "istio-system/mesh-wide,istio-system/root-selected"},
	} {
		if got := names(s.ForWorkload(KindAuthorizationPolicy, tc.ns, tc.labels)); got != tc.want {
			t.Errorf("ForWorkload(%s, %v) = %s, want %s", tc.ns, tc.labels, got, tc.want)
		}
	}
}

func TestSnapshotHostIndex(t *testing.T) {
	t.Parallel()
	s, _ := NewSnapshot(1, mustParse(t, snapshotMesh), SnapshotOptions{DomainSuffix: "mesh.internal"})
	if got := s.ForHost(KindVirtualService, "reviews.default.svc.mesh.internal"); len(got) != 1 || got[0].Name != "reviews" {
		t.Errorf("short host not completed with namespace and domain suffix: %v", got)
	}
	if got := s.ForHost(KindServiceEntry, "api.foo.com"); len(got) != 1 || got[0].Name != "foo-com" {
		t.Errorf("wildcard host *.foo.com does not match api.foo.com: %v", got)
	}
	if got := s.ForHost(KindServiceEntry, "foo.com"); len(got) != 0 {
		t.Errorf("*.foo.com must not match foo.com itself: %v", got)
	}
}

func TestSnapshotWorkloadsAndServices(t *testing.T) {
	t.Parallel()
	s, _ := NewSnapshot(1, mustParse(t, snapshotMesh), SnapshotOptions{})
	if n := len(s.Workloads()); n != 2 {
		t.Fatalf("got %d workloads, want 2 (deployment + workload entry)", n)
	}
	var reviews *Workload
	for _, w := range s.Workloads() {
		if w.Name == "reviews-v2" {
			reviews = w
		}
	}
	if reviews == nil || reviews.SPIFFEID("cluster.local") != "spiffe://cluster.local/ns/default/sa/bookinfo-reviews" {
		t.Fatalf("reviews-v2 identity wrong: %+v", reviews)
	}
	svc := s.Service("reviews.default.svc.cluster.local")
	if svc == nil || len(svc.Ports) != 1 || svc.Ports[0].Protocol != "HTTP" {
		t.Fatalf("reviews service wrong: %+v", svc)
	}
	if got := s.WorkloadsOf(svc); len(got) != 1 || got[0] != reviews {
		t.Errorf("WorkloadsOf(reviews) = %v", got)
	}
	if got := s.ServicesOf(reviews); len(got) != 1 || got[0] != svc {
		t.Errorf("ServicesOf(reviews-v2) = %v", got)
	}
	if ext := s.Service("*.foo.com"); ext == nil || !ext.External {
		t.Errorf("ServiceEntry host not modelled as an external service: %+v", ext)
	}
}

func TestSnapshotDuplicateKeepsFirst(t *testing.T) {
	t.Parallel()
	a := mustParse(t, "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: a}\n")
	b, _ := Parse("other.yaml", []byte("\n\napiVersion: v1\nkind: ServiceAccount\nmetadata: {name: a, labels: {x: y}}\n"))
	s, problems := NewSnapshot(3, append(a, b...), SnapshotOptions{})
	if s.Len() != 1 || s.Get(KindServiceAccount, "default", "a").Source.File != "mesh.yaml" {
		t.Fatalf("duplicate displaced the first definition")
	}
	if len(problems) != 1 || problems[0].Error() != "other.yaml:3: ServiceAccount default/a: already defined at mesh.yaml:1" {
		t.Fatalf("problems = %v", problems)
	}
}

func TestResourceJSON(t *testing.T) {
	t.Parallel()
	s, _ := NewSnapshot(1, mustParse(t, snapshotMesh), SnapshotOptions{})
	out, err := json.Marshal(s.Get(KindService, "default", "reviews"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"kind":"Service"`, `"spec":{"selector":{"app":"reviews"}`, `"source":{"file":"mesh.yaml"`} {
		if !strings.Contains(string(out), want) {
			t.Errorf("%s missing from %s", want, out)
		}
	}
	out, _ = json.Marshal(s.Get(KindVirtualService, "default", "reviews"))
	if !strings.Contains(string(out), `"spec":{"hosts":["reviews"]`) {
		t.Errorf("proto spec not rendered with protojson: %s", out)
	}
}
