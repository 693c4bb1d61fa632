package peer

import (
	"github.com/garrison-mesh/garrison/policies"
)

// Modes answers, for one snapshot, which peer mTLS mode each workload port
// enforces. It is immutable and safe for concurrent use.
type Modes struct {
	beta *betaIndex
	// legacy is nil when the snapshot holds no Policy and no MeshPolicy.
	legacy *legacyIndex
}

// New indexes the peer authentication resources of snap. A nil snapshot
// is an empty mesh: every port is PERMISSIVE.
func New(snap *policies.Snapshot) *Modes {
	if snap == nil {
		snap, _ = policies.NewSnapshot(0, nil, policies.SnapshotOptions{})
	}
	m := &Modes{beta: newBetaIndex(snap)}
	if len(snap.List(policies.KindPolicy)) > 0 || len(snap.List(policies.KindMeshPolicy)) > 0 {
		m.legacy = newLegacyIndex(snap)
	}
	return m
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
