package peer

import (
	"cmp"
	"slices"

	security "istio.io/api/security/v1beta1"

	"github.com/garrison-mesh/garrison/policies"
)

// betaNS is what one namespace's workloads get from PeerAuthentication.
type betaNS struct {
	// base is the result for a workload no workload-scope policy selects:
	// the namespace policy over the mesh policy over the default.
	base WorkloadModes
	// applies is true when a namespace or mesh policy exists, which makes
	// PeerAuthentication apply to every workload of the namespace (and
	// shadows the legacy Policy, see legacy.go).
	applies bool
	// byLabel indexes the workload-scope policies by one label pair of
	// their selector, the rarest in the namespace: a lookup visits only the
	// policies that share a label pair with the workload. Each list is in
	// age order.
	byLabel map[string]map[string][]*workloadPolicy
}

// workloadPolicy is a PeerAuthentication with a selector, and the modes it
// gives the workloads it decides for.
type workloadPolicy struct {
	sel   map[string]string
	rank  int // position in age order; lower is older
	modes WorkloadModes
}

// match returns the oldest workload-scope policy whose selector picks
// labels, or nil.
func (ns *betaNS) match(labels map[string]string) *workloadPolicy {
	var best *workloadPolicy
	consider := func(list []*workloadPolicy) {
		for _, p := range list {
			if best != nil && p.rank >= best.rank {
				return // lists are in age order: nothing older follows
			}
			if selects(p.sel, labels) {
				best = p
				return
			}
		}
	}
	// Walk whichever of the two maps is smaller.
	if len(ns.byLabel) < len(labels) {
		for k, byValue := range ns.byLabel {
			if v, ok := labels[k]; ok {
				consider(byValue[v])
			}
		}
	} else {
		for k, v := range labels {
			consider(ns.byLabel[k][v])
		}
	}
	return best
}

// lookup returns the modes PeerAuthentication gives a workload, and false
// when no PeerAuthentication applies to it.
func (ns *betaNS) lookup(labels map[string]string) (*WorkloadModes, bool) {
	if p := ns.match(labels); p != nil {
		return &p.modes, true
	}
	return &ns.base, ns.applies
}

// betaIndex is every namespace's betaNS.
type betaIndex struct {
	byNS map[string]*betaNS
	// other serves namespaces that hold no PeerAuthentication: only the
	// mesh policy can reach them.
	other betaNS
}

func (b *betaIndex) namespace(ns string) *betaNS {
	if n := b.byNS[ns]; n != nil {
		return n
	}
	return &b.other
}

// newBetaIndex classifies the snapshot's PeerAuthentications by scope.
func newBetaIndex(snap *policies.Snapshot) *betaIndex {
	root := snap.RootNamespace()
	all := slices.Clone(snap.List(policies.KindPeerAuthentication))
	slices.SortFunc(all, compareAge)

	var mesh *policies.Resource
	nsPolicy := map[string]*policies.Resource{}
	workload := map[string][]*policies.Resource{}
	for _, r := range all {
		pa, ok := policies.SpecAs[*security.PeerAuthentication](r)
		if !ok {
			continue
		}
		if len(pa.GetSelector().GetMatchLabels()) == 0 {
			// No selector, or one with no labels: Istio's
			// addPeerAuthentication and ComposePeerAuthentication both
			// treat `selector: {}` as namespace-wide, and keep only the
			// oldest such policy of a namespace (the root namespace's is
			// the mesh policy).
			switch {
			case r.Namespace == root:
				if mesh == nil {
					mesh = r
				}
			case nsPolicy[r.Namespace] == nil:
				nsPolicy[r.Namespace] = r
			}
			continue
		}
		if r.Namespace == root {
			// ComposePeerAuthentication: "Workload-level configs should
			// not be in root namespace ... they will be safely ignored".
			// This holds for workloads of the root namespace too.
			continue
		}
		workload[r.Namespace] = append(workload[r.Namespace], r)
	}

	rank := make(map[*policies.Resource]int, len(all))
	for i, r := range all {
		rank[r] = i
	}

	meshEff := Effective{Mode: Permissive, Scope: ScopeDefault}
	if mesh != nil {
		meshEff = inherit(meshEff, mesh, ScopeMesh)
	}
	b := &betaIndex{
		byNS:  map[string]*betaNS{},
		other: betaNS{base: WorkloadModes{Default: meshEff}, applies: mesh != nil},
	}
	b.byNS[root] = &b.other
	for ns, r := range nsPolicy {
		b.byNS[ns] = &betaNS{base: WorkloadModes{Default: inherit(meshEff, r, ScopeNamespace)}, applies: true}
	}
	for ns, rs := range workload {
		n := b.byNS[ns]
		if n == nil {
			n = &betaNS{base: b.other.base, applies: b.other.applies}
			b.byNS[ns] = n
		}
		n.byLabel = indexBySelector(rs, rank, n.base.Default)
	}
	return b
}

// indexBySelector builds a namespace's label index of workload-scope
// policies (rs, in age order) under the namespace's own result, parent.
func indexBySelector(rs []*policies.Resource, rank map[*policies.Resource]int, parent Effective) map[string]map[string][]*workloadPolicy {
	type pair struct{ k, v string }
	count := map[pair]int{}
	for _, r := range rs {
		for k, v := range selectorOf(r) {
			count[pair{k, v}]++
		}
	}
	idx := map[string]map[string][]*workloadPolicy{}
	for _, r := range rs {
		sel := selectorOf(r)
		// The rarest pair keeps the lists short when many policies share
		// a label (version: v1); ties go to the smaller key, so the index
		// does not depend on map order.
		var best pair
		chosen := false
		for k, v := range sel {
			p := pair{k, v}
			if !chosen || cmp.Or(cmp.Compare(count[p], count[best]), cmp.Compare(k, best.k)) < 0 {
				best, chosen = p, true
			}
		}
		byValue := idx[best.k]
		if byValue == nil {
			byValue = map[string][]*workloadPolicy{}
			idx[best.k] = byValue
		}
		byValue[best.v] = append(byValue[best.v], &workloadPolicy{sel: sel, rank: rank[r], modes: workloadModes(r, parent)})
	}
	return idx
}

func selectorOf(r *policies.Resource) map[string]string {
	pa, _ := policies.SpecAs[*security.PeerAuthentication](r)
	return pa.GetSelector().GetMatchLabels()
}

// workloadModes is what a workload-scope policy r gives the workloads it
// decides for, under the namespace's result parent. As in Istio's
// ComposePeerAuthentication, portLevelMtls is read only here (never from a
// namespace or mesh policy), and a port whose mode is UNSET takes the
// workload's resolved mode: it stays in Ports because Istio's PerPort map
// keeps it.
func workloadModes(r *policies.Resource, parent Effective) WorkloadModes {
	pa, _ := policies.SpecAs[*security.PeerAuthentication](r)
	wm := WorkloadModes{Default: inherit(parent, r, ScopeWorkload)}
	if len(pa.GetPortLevelMtls()) == 0 {
		return wm
	}
	wm.Ports = make(map[uint32]Effective, len(pa.GetPortLevelMtls()))
	for port, mtls := range pa.GetPortLevelMtls() {
		if m, ok := betaMode(mtls); ok {
			wm.Ports[port] = Effective{Mode: m, Scope: ScopePort, Resource: r, Port: port}
		} else {
			wm.Ports[port] = wm.Default
		}
	}
	return wm
}

// inherit applies the policy r of a scope over the parent scope's result:
// its mode if it sets one, else the parent's, noting r as unset.
func inherit(parent Effective, r *policies.Resource, scope Scope) Effective {
	pa, _ := policies.SpecAs[*security.PeerAuthentication](r)
	if m, ok := betaMode(pa.GetMtls()); ok {
		return Effective{Mode: m, Scope: scope, Resource: r}
	}
	parent.Unset = append([]*policies.Resource{r}, parent.Unset...)
	return parent
}

// betaMode converts a PeerAuthentication mtls setting, false when it is
// UNSET or absent (Istio's isMtlsModeUnset).
func betaMode(mtls *security.PeerAuthentication_MutualTLS) (Mode, bool) {
	switch mtls.GetMode() {
	case security.PeerAuthentication_MutualTLS_DISABLE:
		return Disable, true
	case security.PeerAuthentication_MutualTLS_PERMISSIVE:
		return Permissive, true
	case security.PeerAuthentication_MutualTLS_STRICT:
		return Strict, true
	}
	return 0, false
}
