package policies

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"gopkg.in/yaml.v3"
	networking "istio.io/api/networking/v1alpha3"
	security "istio.io/api/security/v1beta1"
)

// benchMesh writes n resources of the kinds a real mesh is made of, spread
// over namespaces of 100 services each: per service a Service, a
// Deployment, a VirtualService, a DestinationRule and an
// AuthorizationPolicy, plus a PeerAuthentication per namespace.
func benchMesh(n int) []byte {
	var b strings.Builder
	count := 0
	emit := func(format string, args ...any) {
		fmt.Fprintf(&b, "---\n"+format, args...)
		count++
	}
	for i := 0; count < n; i++ {
		ns := fmt.Sprintf("team-%d", i/100)
		svc := fmt.Sprintf("svc-%d", i)
		if i%100 == 0 {
			emit("apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: default, namespace: %s}\nspec:\n  mtls: {mode: STRICT}\n", ns)
		}
		emit(`apiVersion: v1
kind: Service
metadata: {name: %[1]s, namespace: %[2]s, labels: {app: %[1]s}}
spec:
  selector: {app: %[1]s}
  ports: [{name: http, port: 8080, targetPort: 8080}]
`, svc, ns)
		emit(`apiVersion: apps/v1
kind: Deployment
metadata: {name: %[1]s-v1, namespace: %[2]s}
spec:
  selector: {matchLabels: {app: %[1]s, version: v1}}
  template:
    metadata: {labels: {app: %[1]s, version: v1}}
    spec:
      serviceAccountName: %[1]s
      containers: [{name: app, image: example/app:1, ports: [{containerPort: 8080}]}]
`, svc, ns)
		emit(`apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: %[1]s, namespace: %[2]s}
spec:
  hosts: [%[1]s]
  http:
  - match: [{headers: {end-user: {exact: jason}}}]
    route: [{destination: {host: %[1]s, subset: v2}}]
  - route:
    - {destination: {host: %[1]s, subset: v1}, weight: 90}
    - {destination: {host: %[1]s, subset: v2}, weight: 10}
    timeout: 2s
    retries: {attempts: 3, perTryTimeout: 0.5s, retryOn: "5xx,connect-failure"}
`, svc, ns)
		emit(`apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: %[1]s, namespace: %[2]s}
spec:
  host: %[1]s
  trafficPolicy:
    connectionPool: {http: {http1MaxPendingRequests: 100, maxRequestsPerConnection: 10}}
    outlierDetection: {consecutive5xxErrors: 5, interval: 10s, baseEjectionTime: 30s}
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
`, svc, ns)
		emit(`apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: %[1]s, namespace: %[2]s}
spec:
  selector: {matchLabels: {app: %[1]s}}
  rules:
  - from: [{source: {principals: ["cluster.local/ns/%[2]s/sa/frontend"]}}]
    to: [{operation: {methods: ["GET", "HEAD"], paths: ["/api/*"]}}]
    when: [{key: "request.headers[x-tenant]", values: ["%[2]s"]}]
`, svc, ns)
	}
	return []byte(b.String())
}

// BenchmarkParseValidateSnapshot measures the whole path from bytes to a
// live snapshot for a 10,000-resource mesh.
func BenchmarkParseValidateSnapshot(b *testing.B) {
	const n = 10000
	data := benchMesh(n)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		rs, problems := Parse("mesh.yaml", data)
		if err := problems.Err(); err != nil {
			b.Fatal(err)
		}
		if len(rs) < n {
			b.Fatalf("got %d resources, want %d", len(rs), n)
		}
		if _, problems := NewSnapshot(1, rs, SnapshotOptions{}); len(problems) > 0 {
			b.Fatal(problems)
		}
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "resources/s")
}

// TestBenchMeshIsValid keeps the benchmark honest: its input must be valid,
// or the benchmark would measure the error path.
func TestBenchMeshIsValid(t *testing.T) {
	t.Parallel()
	rs, problems := Parse("mesh.yaml", benchMesh(600))
	if err := problems.Err(); err != nil {
		t.Fatal(err)
	}
	if len(rs) < 600 {
		t.Fatalf("got %d resources", len(rs))
	}
}

// BenchmarkPeerIstioDecode is the peer for BenchmarkParseValidateSnapshot:
// the path Istio's own tools take from YAML to typed specs (YAML to a map, to
// JSON, to protojson), with no positions, no validation and no snapshot.
func BenchmarkPeerIstioDecode(b *testing.B) {
	const n = 10000
	data := benchMesh(n)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		dec := yaml.NewDecoder(bytes.NewReader(data))
		count := 0
		for {
			var obj map[string]any
			if err := dec.Decode(&obj); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				b.Fatal(err)
			}
			if obj == nil {
				continue
			}
			count++
			var spec proto.Message
			switch obj["kind"] {
			case "VirtualService":
				spec = &networking.VirtualService{}
			case "DestinationRule":
				spec = &networking.DestinationRule{}
			case "AuthorizationPolicy":
				spec = &security.AuthorizationPolicy{}
			case "PeerAuthentication":
				spec = &security.PeerAuthentication{}
			default:
				continue // Kubernetes objects stay maps
			}
			js, err := json.Marshal(obj["spec"])
			if err != nil {
				b.Fatal(err)
			}
			if err := (protojson.UnmarshalOptions{}).Unmarshal(js, spec); err != nil {
				b.Fatal(err)
			}
		}
		if count < n {
			b.Fatalf("decoded %d", count)
		}
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "resources/s")
}

// BenchmarkFloorYAMLNodes is the floor: yaml.v3 building its node trees,
// which both paths above pay before anything else.
func BenchmarkFloorYAMLNodes(b *testing.B) {
	const n = 10000
	data := benchMesh(n)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		dec := yaml.NewDecoder(bytes.NewReader(data))
		for {
			var doc yaml.Node
			if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "resources/s")
}
