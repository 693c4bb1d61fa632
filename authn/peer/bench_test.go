package peer_test

import (
	"fmt"
	"testing"

	security "istio.io/api/security/v1beta1"
	typev1beta1 "istio.io/api/type/v1beta1"

	"github.com/garrison-mesh/garrison/authn/peer"
	"github.com/garrison-mesh/garrison/policies"
)

const benchNamespaces = 10

func appName(i int) string { return fmt.Sprintf("app-%d", i) }
func nsName(i int) string  { return fmt.Sprintf("ns-%d", i%benchNamespaces) }

// meshResources is a mesh of n workload-scope PeerAuthentications spread
// over benchNamespaces namespaces (so up to n/10 in one namespace), each
// selecting {app: app-i, version: v1}, one in four with a port override,
// under a mesh policy and a policy per namespace. Every selector shares
// version: v1, which the index must not key on.
func meshResources(n int) []*policies.Resource {
	mtls := func(m security.PeerAuthentication_MutualTLS_Mode) *security.PeerAuthentication_MutualTLS {
		return &security.PeerAuthentication_MutualTLS{Mode: m}
	}
	pa := func(ns, name string, spec *security.PeerAuthentication) *policies.Resource {
		return &policies.Resource{Kind: policies.KindPeerAuthentication, APIVersion: "security.istio.io/v1",
			Meta: policies.Meta{Name: name, Namespace: ns}, Spec: spec}
	}
	rs := []*policies.Resource{pa(policies.DefaultRootNamespace, "default", &security.PeerAuthentication{Mtls: mtls(security.PeerAuthentication_MutualTLS_STRICT)})}
	for i := range benchNamespaces {
		rs = append(rs, pa(nsName(i), "default", &security.PeerAuthentication{Mtls: mtls(security.PeerAuthentication_MutualTLS_PERMISSIVE)}))
	}
	for i := range n {
		spec := &security.PeerAuthentication{
			Selector: &typev1beta1.WorkloadSelector{MatchLabels: map[string]string{"app": appName(i), "version": "v1"}},
			Mtls:     mtls(security.PeerAuthentication_MutualTLS_DISABLE),
		}
		if i%4 == 0 {
			spec.PortLevelMtls = map[uint32]*security.PeerAuthentication_MutualTLS{8080: mtls(security.PeerAuthentication_MutualTLS_STRICT)}
		}
		rs = append(rs, pa(nsName(i), fmt.Sprintf("wl-%d", i), spec))
	}
	return rs
}

var benchSizes = []int{10, 1_000, 10_000}

// BenchmarkFor shows that a lookup costs the same at 10 and at 10,000
// PeerAuthentications: it reads one namespace's index, and in it only the
// policies that share a label pair with the workload.
func BenchmarkFor(b *testing.B) {
	for _, n := range benchSizes {
		snap, _ := policies.NewSnapshot(1, meshResources(n), policies.SnapshotOptions{})
		m := peer.New(snap)
		k := n / 2 // a workload-scope policy in the middle of the mesh
		ns := nsName(k)
		hit := map[string]string{"app": appName(k), "version": "v1", "pod-template-hash": "7d4b9c"}
		miss := map[string]string{"app": "unselected", "version": "v1", "pod-template-hash": "7d4b9c"}
		for _, q := range []struct {
			name   string
			labels map[string]string
			want   peer.Scope
		}{
			{"hit", hit, peer.ScopeWorkload},
			{"miss", miss, peer.ScopeNamespace},
		} {
			if got := m.For(ns, q.labels, 9080); got.Scope != q.want {
				b.Fatalf("%s: %s, want scope %s", q.name, got, q.want)
			}
			b.Run(fmt.Sprintf("pa=%d/%s", n, q.name), func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					_ = m.For(ns, q.labels, 9080)
				}
			})
		}
	}
}

// BenchmarkNew is the cost of indexing a snapshot, paid once per snapshot.
func BenchmarkNew(b *testing.B) {
	for _, n := range benchSizes {
		snap, _ := policies.NewSnapshot(1, meshResources(n), policies.SnapshotOptions{})
		b.Run(fmt.Sprintf("pa=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_ = peer.New(snap)
			}
		})
	}
}
