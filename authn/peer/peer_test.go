package peer_test

import (
	"strings"
	"sync"
	"testing"

	security "istio.io/api/security/v1beta1"

	"github.com/garrison-mesh/garrison/authn/peer"
	"github.com/garrison-mesh/garrison/policies"
)

func parse(t *testing.T, yaml string) []*policies.Resource {
	t.Helper()
	rs, problems := policies.Parse("test.yaml", []byte(yaml))
	if errs := problems.Errors(); len(errs) > 0 {
		t.Fatal(errs)
	}
	return rs
}

func snapshot(t *testing.T, rs []*policies.Resource) *policies.Snapshot {
	t.Helper()
	snap, problems := policies.NewSnapshot(1, rs, policies.SnapshotOptions{})
	if len(problems) > 0 {
		t.Fatal(problems)
	}
	return snap
}

// Garrison's validation (like Istio's webhook and CRD rules) rejects
// portLevelMtls without a selector, so no YAML case can carry one. Should
// such a resource reach the model anyway (a source that skips validation),
// it must be ignored as Istio ignores it: ComposePeerAuthentication reads
// portLevelMtls from the workload-scope policy only.
func TestPortLevelIgnoredWithoutSelector(t *testing.T) {
	t.Parallel()
	rs := parse(t, `
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: foo}
spec:
  selector:
    matchLabels: {app: a}
  mtls: {mode: STRICT}
  portLevelMtls:
    8080: {mode: DISABLE}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system}
spec:
  selector:
    matchLabels: {app: a}
  mtls: {mode: STRICT}
  portLevelMtls:
    9090: {mode: DISABLE}
`)
	// Not yet in a snapshot: still ours to change.
	for _, r := range rs {
		r.Spec.(*security.PeerAuthentication).Selector = nil
	}
	m := peer.New(snapshot(t, rs))
	for _, tc := range []struct {
		ns   string
		port uint32
		by   string
	}{
		{"foo", 8080, "PeerAuthentication foo/default"},
		{"bar", 9090, "PeerAuthentication istio-system/default"},
		{"istio-system", 9090, "PeerAuthentication istio-system/default"},
	} {
		got := m.For(tc.ns, map[string]string{"app": "a"}, tc.port)
		if got.Mode != peer.Strict || got.By() != tc.by || got.Scope == peer.ScopePort {
			t.Errorf("%s port %d: %s, want STRICT from %s, not port-level", tc.ns, tc.port, got, tc.by)
		}
		if wm := m.Workload(tc.ns, map[string]string{"app": "a"}); len(wm.Ports) != 0 {
			t.Errorf("%s: port exceptions %v, want none", tc.ns, wm.Ports)
		}
	}
}

// Equal timestamps from a source without files (equal File and Seq) fall
// back to Istio's own order: by name.
func TestEqualAgeWithoutFileOrderIsByName(t *testing.T) {
	t.Parallel()
	mk := func(name string, mode security.PeerAuthentication_MutualTLS_Mode) *policies.Resource {
		return &policies.Resource{
			Kind: policies.KindPeerAuthentication,
			Meta: policies.Meta{Name: name, Namespace: "foo"},
			Spec: &security.PeerAuthentication{Mtls: &security.PeerAuthentication_MutualTLS{Mode: mode}},
		}
	}
	m := peer.New(snapshot(t, []*policies.Resource{
		mk("zeta", security.PeerAuthentication_MutualTLS_DISABLE),
		mk("alpha", security.PeerAuthentication_MutualTLS_STRICT),
		mk("mu", security.PeerAuthentication_MutualTLS_PERMISSIVE),
	}))
	if got := m.For("foo", nil, 80); got.By() != "PeerAuthentication foo/alpha" || got.Mode != peer.Strict {
		t.Errorf("got %s, want STRICT from foo/alpha", got)
	}
}

func TestEffectiveString(t *testing.T) {
	t.Parallel()
	rs := parse(t, `
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: foo}
spec: {}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: a, namespace: foo}
spec:
  selector:
    matchLabels: {app: a}
  portLevelMtls:
    8080: {mode: STRICT}
---
apiVersion: v1
kind: Service
metadata: {name: b, namespace: foo}
spec:
  selector: {app: b}
  ports:
  - {name: http, port: 80, targetPort: 8080}
---
apiVersion: authentication.istio.io/v1alpha1
kind: MeshPolicy
metadata: {name: default}
spec:
  peers:
  - mtls: {}
---
apiVersion: authentication.istio.io/v1alpha1
kind: Policy
metadata: {name: b, namespace: bar}
spec:
  targets:
  - name: b
    ports:
    - number: 80
  peers:
  - mtls: {}
`)
	// Service b in bar too, for the legacy target.
	rs = append(rs, parse(t, `
apiVersion: v1
kind: Service
metadata: {name: b, namespace: bar}
spec:
  selector: {app: b}
  ports:
  - {name: http, port: 80, targetPort: 8080}
`)...)
	m := peer.New(snapshot(t, rs))
	for _, tc := range []struct {
		got  peer.Effective
		want string
	}{
		{m.For("foo", map[string]string{"app": "a"}, 8080), "STRICT: port 8080 of PeerAuthentication foo/a (test.yaml:7)"},
		{m.For("foo", map[string]string{"app": "a"}, 9090), "PERMISSIVE: default, no policy sets a mode; unset by PeerAuthentication foo/a (test.yaml:7), PeerAuthentication foo/default (test.yaml:2)"},
		{m.For("bar", map[string]string{"app": "b"}, 8080), "STRICT: port 80 of service b.bar.svc.cluster.local, Policy bar/b (test.yaml:31)"},
		{m.For("baz", nil, 8080), "STRICT: mesh MeshPolicy default (test.yaml:24)"},
	} {
		if s := tc.got.String(); s != tc.want {
			t.Errorf("got  %s\nwant %s", s, tc.want)
		}
	}
}

// Workload hands out its own copy of the port map: the xDS plane may edit
// it without changing what other callers see.
func TestWorkloadPortsAreTheCallers(t *testing.T) {
	t.Parallel()
	m := peer.New(snapshot(t, parse(t, `
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: a, namespace: foo}
spec:
  selector:
    matchLabels: {app: a}
  portLevelMtls:
    8080: {mode: STRICT}
`)))
	labels := map[string]string{"app": "a"}
	wm := m.Workload("foo", labels)
	delete(wm.Ports, 8080)
	if got := m.For("foo", labels, 8080); got.Mode != peer.Strict {
		t.Errorf("after editing a Workload result, For = %s", got)
	}
	if wm := m.Workload("foo", labels); len(wm.Ports) != 1 {
		t.Errorf("after editing a Workload result, Workload ports = %v", wm.Ports)
	}
}

func TestNilSnapshotIsAnEmptyMesh(t *testing.T) {
	t.Parallel()
	if got := peer.New(nil).For("foo", nil, 80); got.Mode != peer.Permissive || got.Scope != peer.ScopeDefault || got.Resource != nil {
		t.Errorf("got %s", got)
	}
}

func TestModeAndScopeNames(t *testing.T) {
	t.Parallel()
	for _, m := range []peer.Mode{peer.Disable, peer.Permissive, peer.Strict} {
		if back, ok := peer.ParseMode(m.String()); !ok || back != m {
			t.Errorf("ParseMode(%q) = %v, %v", m, back, ok)
		}
	}
	if s := peer.Mode(0).String(); !strings.HasPrefix(s, "Mode(") {
		t.Errorf("zero Mode prints as %q; it must not look like a mode", s)
	}
	for s := peer.ScopeDefault; s <= peer.ScopePort; s++ {
		if back, ok := peer.ParseScope(s.String()); !ok || back != s {
			t.Errorf("ParseScope(%q) = %v, %v", s, back, ok)
		}
	}
}

// A Modes is shared by every xDS and ext_authz goroutine.
func TestConcurrentLookups(t *testing.T) {
	t.Parallel()
	m := peer.New(snapshot(t, meshResources(200)))
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 500 {
				labels := map[string]string{"app": appName((g*31 + i) % 200), "version": "v1"}
				got := m.For(nsName((g*31+i)%200), labels, 8080)
				if want := peer.Disable; got.Mode != want && got.Mode != peer.Strict {
					t.Errorf("%v: %s, want the workload policy's mode", labels, got)
					return
				}
				_ = m.Workload(nsName(i%200), labels)
			}
		})
	}
	wg.Wait()
}

// TestAnyStrict: AnyStrict is false only when no resource can make a port
// STRICT (the cases check the other direction on every STRICT answer).
func TestAnyStrict(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		want       bool
	}{
		{"none", "", false},
		{"permissive mesh", `apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system}
spec: {mtls: {mode: PERMISSIVE}}
`, false},
		{"strict port only", `apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: p, namespace: foo}
spec:
  selector: {matchLabels: {app: a}}
  mtls: {mode: DISABLE}
  portLevelMtls: {"8080": {mode: STRICT}}
`, true},
		{"legacy mtls default", `apiVersion: authentication.istio.io/v1alpha1
kind: Policy
metadata: {name: default, namespace: foo}
spec: {peers: [{mtls: {}}]}
`, true},
		{"legacy permissive", `apiVersion: authentication.istio.io/v1alpha1
kind: Policy
metadata: {name: default, namespace: foo}
spec: {peers: [{mtls: {mode: PERMISSIVE}}]}
`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rs, problems := policies.Parse("t.yaml", []byte(tc.yaml))
			if errs := problems.Errors(); len(errs) > 0 {
				t.Fatal(errs)
			}
			snap, _ := policies.NewSnapshot(1, rs, policies.SnapshotOptions{})
			if got := peer.New(snap).AnyStrict(); got != tc.want {
				t.Errorf("AnyStrict = %t, want %t", got, tc.want)
			}
		})
	}
}
