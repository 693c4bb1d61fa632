package peer

import (
	"slices"
	"strconv"

	networking "istio.io/api/networking/v1alpha3"

	"github.com/garrison-mesh/garrison/policies"
	"github.com/garrison-mesh/garrison/policies/kubeobj"
	"github.com/garrison-mesh/garrison/policies/legacy"
)

// The retired authentication.istio.io/v1alpha1 Policy and MeshPolicy, as
// Istio 1.4 and 1.5 applied them.
//
// Lookup (Istio 1.5 pilot/pkg/model/push_context.go, initAuthnPolicies and
// AuthenticationPolicyForWorkload; 1.4 is the same): Policies are taken
// oldest first (sortConfigByCreationTime). Each target adds an entry under
// the target's hostname (its short name completed in the policy's
// namespace), one per listed port or one without port; a Policy without
// targets adds one entry under its namespace. For a service and one of its
// ports, the first entry whose port selector matches the service port (by
// number, or by name: model.Port.Match) wins; failing that, the first
// entry without port. Then the same over the namespace's entries, then the
// MeshPolicy named "default". Target labels were never matched (Istio's
// "TODO ... add support for authn policy label matching").
//
// Mode (the v1alpha1 authn applier's GetMutualTLS and setupFilterChains,
// pilot/pkg/networking/plugin/authn before 1.4, security/authn/v1alpha1
// after): the first peer method that is mtls decides, STRICT when its mode
// is unset (`- mtls:` or `- mtls: {}`); a policy with no mtls peer asks
// for no mTLS.
//
// Coexistence with PeerAuthentication (Istio 1.5
// pilot/pkg/security/authn/v1beta1/policy_applier.go, InboundFilterChain;
// its NewPolicyApplier takes the workload's PeerAuthentications and the
// alpha Policy found for the service instance, as 1.4's factory did):
//
//	if a.consolidatedPeerPolicy == nil && a.hasAlphaMTLSPolicy {
//		return a.alphaApplier.InboundFilterChain(...)
//	}
//	effectiveMTLSMode := model.MTLSPermissive ...
//
// consolidatedPeerPolicy is nil only when no PeerAuthentication applies to
// the workload (none in its namespace or the mesh without selector, none
// whose selector picks it outside the root namespace), and hasAlphaMTLSPolicy
// is true only when the Policy found has an mtls peer. So PeerAuthentication
// wins wherever one applies; otherwise the legacy Policy decides if it sets
// mTLS; and a legacy Policy without an mtls peer yields PERMISSIVE (1.5's
// default), not the plaintext it meant in 1.4. Such a Policy still stops
// the lookup (a broader Policy is not consulted), which Effective.Unset
// records.
//
// Services reach workloads through their selector, and a legacy setting is
// per service port, while a workload is asked about by target port. Istio
// built one inbound listener per endpoint port from the service instance
// seen first, in registry order; Garrison makes that deterministic: among
// the targeted services that pick the workload, by hostname, the first
// service port whose target port is the port asked about decides. A port
// no service lands on (Istio built no inbound listener for it) gets the
// namespace Policy or the MeshPolicy, as every untargeted service port
// does.

// legacyIndex answers for workloads no PeerAuthentication applies to.
type legacyIndex struct {
	// mesh is the MeshPolicy's result, for namespaces with no Policy.
	mesh Effective
	byNS map[string]*legacyNS
}

type legacyNS struct {
	// def is the namespace Policy's result, else the MeshPolicy's.
	def Effective
	// services are the services of the namespace that some Policy
	// targets, by hostname. Any other service gives def.
	services []*legacyService
}

type legacyService struct {
	hostname string
	selector map[string]string
	ports    []legacyPort
}

type legacyPort struct {
	sp policies.ServicePort
	// targets are the workload ports this service port may land on, for a
	// lookup without a workload: the declared numeric target port, and the
	// named one resolved over the service's workloads in the snapshot.
	targets []uint32
	eff     Effective
}

// legacyEntry is one (Policy, target port) of a hostname or a namespace.
type legacyEntry struct {
	r    *policies.Resource
	port *legacy.PortSelector // nil: every port
}

func newLegacyIndex(snap *policies.Snapshot) *legacyIndex {
	def := Effective{Mode: Permissive, Scope: ScopeDefault}
	l := &legacyIndex{mesh: def, byNS: map[string]*legacyNS{}}
	if mp := snap.Get(policies.KindMeshPolicy, "", "default"); mp != nil {
		l.mesh = legacyDecide(mp, ScopeMesh, 0, "")
	}

	pols := slices.Clone(snap.List(policies.KindPolicy))
	slices.SortFunc(pols, compareAge)
	nsPolicy := map[string]*policies.Resource{}
	byHost := map[string][]legacyEntry{}
	var hosts []string
	for _, r := range pols {
		pol, ok := policies.SpecAs[*legacy.AuthenticationPolicy](r)
		if !ok {
			continue
		}
		if len(pol.Targets) == 0 {
			if nsPolicy[r.Namespace] == nil {
				nsPolicy[r.Namespace] = r
			}
			continue
		}
		for _, t := range pol.Targets {
			host := snap.FQDN(t.Name, r.Namespace)
			if byHost[host] == nil {
				hosts = append(hosts, host)
			}
			if len(t.Ports) == 0 {
				byHost[host] = append(byHost[host], legacyEntry{r: r})
			}
			for _, p := range t.Ports {
				byHost[host] = append(byHost[host], legacyEntry{r: r, port: p})
			}
		}
	}

	ns := func(name string) *legacyNS {
		n := l.byNS[name]
		if n == nil {
			n = &legacyNS{def: l.mesh}
			if r := nsPolicy[name]; r != nil {
				n.def = legacyDecide(r, ScopeNamespace, 0, "")
			}
			l.byNS[name] = n
		}
		return n
	}
	for name := range nsPolicy {
		ns(name)
	}
	slices.Sort(hosts)
	for _, host := range hosts {
		svc := snap.Service(host)
		if svc == nil || svc.Selector == nil {
			continue // no workload is behind it
		}
		n := ns(svc.Namespace)
		ls := &legacyService{hostname: host, selector: svc.Selector}
		behind := snap.WorkloadsOf(svc)
		for _, sp := range svc.Ports {
			lp := legacyPort{sp: sp, eff: n.def}
			if e, scope, ok := legacyMatch(byHost[host], sp); ok {
				port := uint32(0)
				if scope == ScopePort {
					port = sp.Number
				}
				lp.eff = legacyDecide(e.r, scope, port, host)
			}
			if number, name := declaredTarget(sp); name == "" {
				lp.targets = append(lp.targets, number)
			}
			for _, w := range behind {
				if t, ok := targetOf(w, sp); ok && !slices.Contains(lp.targets, t) {
					lp.targets = append(lp.targets, t)
				}
			}
			ls.ports = append(ls.ports, lp)
		}
		n.services = append(n.services, ls)
	}
	return l
}

// legacyMatch finds the entry deciding for a service port: the first
// whose port selector matches, else the first without port.
func legacyMatch(entries []legacyEntry, sp policies.ServicePort) (legacyEntry, Scope, bool) {
	var first *legacyEntry
	for i, e := range entries {
		switch {
		case e.port == nil:
			if first == nil {
				first = &entries[i]
			}
		case e.port.Name != "" && e.port.Name == sp.Name, e.port.Name == "" && e.port.Number == sp.Number:
			return e, ScopePort, true
		}
	}
	if first == nil {
		return legacyEntry{}, 0, false
	}
	return *first, ScopeService, true
}

// legacyDecide is the result of the Policy or MeshPolicy r found for a
// workload at scope.
func legacyDecide(r *policies.Resource, scope Scope, port uint32, service string) Effective {
	pol, _ := policies.SpecAs[*legacy.AuthenticationPolicy](r)
	for _, p := range pol.Peers {
		if p.Mtls == nil {
			continue // a jwt peer method: Envoy never supported it
		}
		m := Strict
		if p.Mtls.EffectiveMode() == legacy.MutualTLSPermissive {
			m = Permissive
		}
		return Effective{Mode: m, Scope: scope, Resource: r, Port: port, Service: service}
	}
	// No mtls peer: Istio 1.5 falls through to its default (see above).
	return Effective{Mode: Permissive, Scope: ScopeDefault, Unset: []*policies.Resource{r}}
}

func (l *legacyIndex) namespace(ns string) *legacyNS {
	if n := l.byNS[ns]; n != nil {
		return n
	}
	return &legacyNS{def: l.mesh}
}

// lookup is the legacy result for one port of a workload; w, when known,
// resolves named and WorkloadEntry target ports exactly.
func (l *legacyIndex) lookup(ns string, labels map[string]string, port uint32, w *policies.Workload) Effective {
	n := l.byNS[ns]
	if n == nil {
		return l.mesh
	}
	if port != 0 {
		for _, s := range n.services {
			if !selects(s.selector, labels) {
				continue
			}
			for i := range s.ports {
				if s.ports[i].lands(port, w) {
					return s.ports[i].eff
				}
			}
		}
	}
	return n.def
}

// workload lists the ports where a workload's legacy result differs from
// its namespace's.
func (l *legacyIndex) workload(ns string, labels map[string]string) WorkloadModes {
	n := l.namespace(ns)
	wm := WorkloadModes{Default: n.def}
	seen := map[uint32]bool{}
	for _, s := range n.services {
		if !selects(s.selector, labels) {
			continue
		}
		for _, p := range s.ports {
			for _, t := range p.targets {
				if seen[t] {
					continue // an earlier service port landed there first
				}
				seen[t] = true
				if !p.eff.equal(wm.Default) {
					if wm.Ports == nil {
						wm.Ports = map[uint32]Effective{}
					}
					wm.Ports[t] = p.eff
				}
			}
		}
	}
	return wm
}

func (p *legacyPort) lands(port uint32, w *policies.Workload) bool {
	if w != nil {
		t, ok := targetOf(w, p.sp)
		return ok && t == port
	}
	return slices.Contains(p.targets, port)
}

// declaredTarget reads a service port's target port: a number (the service
// port itself when unset, as Kubernetes defaults it), or a name.
func declaredTarget(sp policies.ServicePort) (uint32, string) {
	if sp.TargetPort == "" || sp.TargetPort == "0" {
		return sp.Number, ""
	}
	if n, err := strconv.ParseUint(sp.TargetPort, 10, 16); err == nil {
		return uint32(n), ""
	}
	return 0, sp.TargetPort
}

// targetOf is the port of workload w that service port sp lands on: a
// WorkloadEntry's ports map (service port name -> endpoint port) first,
// then the declared number, then the container port of that name.
func targetOf(w *policies.Workload, sp policies.ServicePort) (uint32, bool) {
	var containers []kubeobj.Container
	var spec any
	if w.Source != nil {
		spec = w.Source.Spec
	}
	switch spec := spec.(type) {
	case *networking.WorkloadEntry:
		if n, ok := spec.GetPorts()[sp.Name]; ok && n != 0 {
			return n, true
		}
	case *kubeobj.Pod:
		containers = spec.Spec.Containers
	case *kubeobj.Workload:
		containers = spec.Spec.Template.Spec.Containers
	}
	n, name := declaredTarget(sp)
	if name == "" {
		return n, true
	}
	for _, c := range containers {
		for _, cp := range c.Ports {
			if cp.Name == name && cp.ContainerPort > 0 {
				return uint32(cp.ContainerPort), true
			}
		}
	}
	return 0, false
}
