package policies

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	networking "istio.io/api/networking/v1alpha3"
	typev1beta1 "istio.io/api/type/v1beta1"
)

// SnapshotOptions are the mesh-wide settings a snapshot is built with.
type SnapshotOptions struct {
	// RootNamespace holds mesh-wide policy (Istio's istio-system by default).
	RootNamespace string
	// DomainSuffix completes short service names (cluster.local by default).
	DomainSuffix string
}

// Defaults used when SnapshotOptions leave a field empty.
const (
	DefaultRootNamespace = "istio-system"
	DefaultDomainSuffix  = "cluster.local"
)

func (o SnapshotOptions) withDefaults() SnapshotOptions {
	if o.RootNamespace == "" {
		o.RootNamespace = DefaultRootNamespace
	}
	if o.DomainSuffix == "" {
		o.DomainSuffix = DefaultDomainSuffix
	}
	return o
}

// Snapshot is an immutable, versioned view of the whole mesh configuration
// with the indexes the planes query: by kind, by namespace, by the workload
// a selector picks, and by host. Nothing in it may be modified.
type Snapshot struct {
	version   uint64
	opts      SnapshotOptions
	resources []*Resource

	byKey    map[Key]*Resource
	byKind   map[GroupKind][]*Resource
	byKindNS map[GroupKind]map[string][]*Resource
	hosts    map[GroupKind]*hostIndex

	namespaces []string
	workloads  []*Workload
	services   []*Service
	svcByHost  map[string]*Service
}

// NewSnapshot indexes resources (which must not be modified afterwards) as
// snapshot version. It returns the problems found across resources: the
// same kind/namespace/name defined twice keeps the first and reports the
// second.
func NewSnapshot(version uint64, resources []*Resource, opts SnapshotOptions) (*Snapshot, Problems) {
	s := &Snapshot{
		version:   version,
		opts:      opts.withDefaults(),
		byKey:     make(map[Key]*Resource, len(resources)),
		byKind:    map[GroupKind][]*Resource{},
		byKindNS:  map[GroupKind]map[string][]*Resource{},
		hosts:     map[GroupKind]*hostIndex{},
		svcByHost: map[string]*Service{},
	}
	var problems Problems
	kept := make([]*Resource, 0, len(resources))
	for _, r := range resources {
		k := r.Key()
		if first, dup := s.byKey[k]; dup {
			problems = append(problems, &Problem{File: r.Source.File, Line: r.Source.Line, Kind: r.Kind.Kind,
				Namespace: r.Namespace, Name: r.Name, Severity: SeverityError,
				Message: fmt.Sprintf("already defined at %s", first.Source)})
			continue
		}
		s.byKey[k] = r
		kept = append(kept, r)
	}
	slices.SortFunc(kept, compareResources)
	s.resources = kept

	nsSeen := map[string]bool{}
	for _, r := range kept {
		s.byKind[r.Kind] = append(s.byKind[r.Kind], r)
		byNS := s.byKindNS[r.Kind]
		if byNS == nil {
			byNS = map[string][]*Resource{}
			s.byKindNS[r.Kind] = byNS
		}
		byNS[r.Namespace] = append(byNS[r.Namespace], r)
		if r.Namespace != "" {
			nsSeen[r.Namespace] = true
		}
		if r.Kind == KindNamespace {
			nsSeen[r.Name] = true
		}
	}
	for ns := range nsSeen {
		s.namespaces = append(s.namespaces, ns)
	}
	slices.Sort(s.namespaces)
	for _, gk := range []GroupKind{KindVirtualService, KindDestinationRule, KindServiceEntry, KindGateway} {
		s.hosts[gk] = s.indexHosts(s.byKind[gk])
	}
	s.buildWorkloads()
	s.buildServices()
	return s, problems
}

// kindOrder sorts kinds as the registry lists them.
var kindOrder = func() map[GroupKind]int {
	m := make(map[GroupKind]int, len(kinds))
	for i, k := range kinds {
		m[k.GroupKind] = i
	}
	return m
}()

func compareResources(a, b *Resource) int {
	return cmp.Or(
		cmp.Compare(kindOrder[a.Kind], kindOrder[b.Kind]),
		cmp.Compare(a.Namespace, b.Namespace),
		cmp.Compare(a.Name, b.Name),
	)
}

// Version increases with every snapshot a Store publishes.
func (s *Snapshot) Version() uint64 { return s.version }

// Options returns the mesh-wide settings the snapshot was built with.
func (s *Snapshot) Options() SnapshotOptions { return s.opts }

// RootNamespace is where mesh-wide policy lives.
func (s *Snapshot) RootNamespace() string { return s.opts.RootNamespace }

// Resources returns every resource, ordered by kind, namespace and name.
func (s *Snapshot) Resources() []*Resource { return s.resources }

// Len is the number of resources.
func (s *Snapshot) Len() int { return len(s.resources) }

// Get returns one resource, or nil.
func (s *Snapshot) Get(kind GroupKind, namespace, name string) *Resource {
	return s.byKey[Key{Kind: kind, Namespace: namespace, Name: name}]
}

// List returns every resource of a kind, ordered by namespace and name.
func (s *Snapshot) List(kind GroupKind) []*Resource { return s.byKind[kind] }

// InNamespace returns the resources of a kind in one namespace, by name.
// Cluster-scoped kinds live in the namespace "".
func (s *Snapshot) InNamespace(kind GroupKind, namespace string) []*Resource {
	return s.byKindNS[kind][namespace]
}

// Namespaces lists every namespace that holds a resource or is declared.
func (s *Snapshot) Namespaces() []string { return s.namespaces }

// NamespaceLabels returns the labels of a declared Namespace, or nil.
func (s *Snapshot) NamespaceLabels(ns string) map[string]string {
	if r := s.Get(KindNamespace, "", ns); r != nil {
		return r.Labels
	}
	return nil
}

// CountByKind returns how many resources of each kind the snapshot holds.
func (s *Snapshot) CountByKind() map[GroupKind]int {
	out := make(map[GroupKind]int, len(s.byKind))
	for k, rs := range s.byKind {
		out[k] = len(rs)
	}
	return out
}

// ForWorkload returns the resources of a selector-scoped kind
// (AuthorizationPolicy, PeerAuthentication, RequestAuthentication, Sidecar)
// that apply to a workload with the given labels in namespace ns, in
// Istio's attachment order: root-namespace resources first, then the
// workload's namespace, each by name. A resource without a selector applies
// to every workload of its namespace (of the mesh, in the root namespace).
// Only the two namespaces involved are visited, never the whole mesh.
func (s *Snapshot) ForWorkload(kind GroupKind, ns string, labels map[string]string) []*Resource {
	var out []*Resource
	pick := func(namespace string) {
		for _, r := range s.byKindNS[kind][namespace] {
			if sel, ok := WorkloadSelector(r); !ok || selectorMatches(sel, labels) {
				out = append(out, r)
			}
		}
	}
	if root := s.opts.RootNamespace; root != ns {
		pick(root)
	}
	pick(ns)
	return out
}

// WorkloadSelector returns the match labels by which r picks workloads, and
// false when r has no selector (it then applies namespace-wide). An empty
// selector ({}) is a selector that matches every workload.
func WorkloadSelector(r *Resource) (map[string]string, bool) {
	var sel *typev1beta1.WorkloadSelector
	switch spec := r.Spec.(type) {
	case interface {
		GetSelector() *typev1beta1.WorkloadSelector
	}:
		sel = spec.GetSelector()
	case *networking.Sidecar:
		if ws := spec.GetWorkloadSelector(); ws != nil {
			return ws.GetLabels(), true
		}
		return nil, false
	case *networking.Gateway:
		return spec.GetSelector(), spec.GetSelector() != nil
	}
	if sel == nil {
		return nil, false
	}
	return sel.GetMatchLabels(), true
}

// selectorMatches reports whether labels carry every key/value of sel.
func selectorMatches(sel, labels map[string]string) bool {
	for k, v := range sel {
		if got, ok := labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// hostIndex finds the resources that name a host, exactly or by wildcard.
type hostIndex struct {
	exact    map[string][]*Resource
	wildcard []hostEntry // "*.example.com" and "*", most specific first
}

type hostEntry struct {
	suffix string // ".example.com"; "" for "*"
	r      *Resource
}

func (s *Snapshot) indexHosts(rs []*Resource) *hostIndex {
	idx := &hostIndex{exact: map[string][]*Resource{}}
	for _, r := range rs {
		for _, h := range resourceHosts(r) {
			fq := s.FQDN(h, r.Namespace)
			if strings.HasPrefix(fq, "*") {
				idx.wildcard = append(idx.wildcard, hostEntry{suffix: fq[1:], r: r})
				continue
			}
			if !slices.Contains(idx.exact[fq], r) {
				idx.exact[fq] = append(idx.exact[fq], r)
			}
		}
	}
	slices.SortStableFunc(idx.wildcard, func(a, b hostEntry) int { return cmp.Compare(len(b.suffix), len(a.suffix)) })
	return idx
}

// resourceHosts returns the hosts a routing resource is about.
func resourceHosts(r *Resource) []string {
	switch spec := r.Spec.(type) {
	case *networking.VirtualService:
		return spec.GetHosts()
	case *networking.DestinationRule:
		return []string{spec.GetHost()}
	case *networking.ServiceEntry:
		return spec.GetHosts()
	case *networking.Gateway:
		var out []string
		for _, srv := range spec.GetServers() {
			for _, h := range srv.GetHosts() {
				// Gateway hosts may be namespace-qualified: "ns/host".
				if _, host, ok := strings.Cut(h, "/"); ok {
					h = host
				}
				out = append(out, h)
			}
		}
		return out
	}
	return nil
}

// ForHost returns the resources of kind (VirtualService, DestinationRule,
// ServiceEntry or Gateway) that name host, a fully qualified name: exact
// matches first, then wildcard ones from the most specific.
func (s *Snapshot) ForHost(kind GroupKind, host string) []*Resource {
	idx := s.hosts[kind]
	if idx == nil {
		return nil
	}
	out := slices.Clone(idx.exact[host])
	for _, e := range idx.wildcard {
		if strings.HasSuffix(host, e.suffix) && len(host) > len(e.suffix) && !slices.Contains(out, e.r) {
			out = append(out, e.r)
		}
	}
	return out
}

// FQDN completes a short host name as Istio does: "reviews" written in
// namespace "default" is reviews.default.svc.cluster.local. Names with a
// dot, wildcards and "*" are kept as written.
func (s *Snapshot) FQDN(host, namespace string) string {
	if host == "" || host == "*" || strings.Contains(host, ".") || namespace == "" {
		return host
	}
	return host + "." + namespace + ".svc." + s.opts.DomainSuffix
}
