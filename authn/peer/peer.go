package peer

import (
	security "istio.io/api/security/v1beta1"

	"github.com/garrison-mesh/garrison/policies"
	"github.com/garrison-mesh/garrison/policies/legacy"
)

// Modes answers, for one snapshot, which peer mTLS mode each workload port
// enforces. It is immutable and safe for concurrent use.
type Modes struct {
	beta *betaIndex
	// legacy is nil when the snapshot holds no Policy and no MeshPolicy.
	legacy *legacyIndex
	// anyStrict: some resource sets STRICT somewhere. Without one every
	// port is PERMISSIVE or DISABLE and callers that only enforce STRICT
	// (ext_authz) need not look anything up per request.
	anyStrict bool
}

// New indexes the peer authentication resources of snap. A nil snapshot
// is an empty mesh: every port is PERMISSIVE.
func New(snap *policies.Snapshot) *Modes {
	if snap == nil {
		snap, _ = policies.NewSnapshot(0, nil, policies.SnapshotOptions{})
	}
	m := &Modes{beta: newBetaIndex(snap), anyStrict: anyStrict(snap)}
	if len(snap.List(policies.KindPolicy)) > 0 || len(snap.List(policies.KindMeshPolicy)) > 0 {
		m.legacy = newLegacyIndex(snap)
	}
	return m
}

// AnyStrict reports whether any workload port of the snapshot may be
// STRICT; false means For never answers Strict.
func (m *Modes) AnyStrict() bool { return m.anyStrict }

func anyStrict(snap *policies.Snapshot) bool {
	for _, r := range snap.List(policies.KindPeerAuthentication) {
		pa, _ := policies.SpecAs[*security.PeerAuthentication](r)
		if pa.GetMtls().GetMode() == security.PeerAuthentication_MutualTLS_STRICT {
			return true
		}
		for _, pm := range pa.GetPortLevelMtls() {
			if pm.GetMode() == security.PeerAuthentication_MutualTLS_STRICT {
				return true
			}
		}
	}
	for _, kind := range []policies.GroupKind{policies.KindPolicy, policies.KindMeshPolicy} {
		for _, r := range snap.List(kind) {
			pol, _ := policies.SpecAs[*legacy.AuthenticationPolicy](r)
			for _, p := range pol.Peers {
				if p.Mtls != nil && p.Mtls.EffectiveMode() == legacy.MutualTLSStrict {
					return true
				}
			}
		}
	}
	return false
}

// For returns the mode a workload with labels in namespace enforces on
// port, its target (container) port; port 0 asks for the workload's
// default, ignoring port-level settings.
func (m *Modes) For(namespace string, labels map[string]string, port uint32) Effective {
	return m.lookup(namespace, labels, port, nil)
}

// ForWorkload is For for a workload (not nil) of the snapshot. Legacy Policies
// target service ports, and w's containers (or WorkloadEntry ports) say
// exactly which of its ports a named target port is.
func (m *Modes) ForWorkload(w *policies.Workload, port uint32) Effective {
	return m.lookup(w.Namespace, w.Labels, port, w)
}

func (m *Modes) lookup(namespace string, labels map[string]string, port uint32, w *policies.Workload) Effective {
	if wm, ok := m.beta.namespace(namespace).lookup(labels); ok || m.legacy == nil {
		return wm.At(port)
	}
	return m.legacy.lookup(namespace, labels, port, w)
}

// Workload returns a workload's default mode and its exceptions by port,
// what an inbound listener needs. The Ports map is the caller's.
func (m *Modes) Workload(namespace string, labels map[string]string) WorkloadModes {
	if wm, ok := m.beta.namespace(namespace).lookup(labels); ok || m.legacy == nil {
		return wm.clone()
	}
	return m.legacy.workload(namespace, labels)
}
