package engine

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/garrison-mesh/garrison/policies"
)

// Context extension keys Garrison's xDS puts on the ext_authz filter
// (CONTRACT.md section 2).
const (
	ExtNamespace   = "garrison.io/namespace"
	ExtLabelPrefix = "garrison.io/label/"
	ExtServices    = "garrison.io/services"
	ExtWorkload    = "garrison.io/workload"
)

// workloadIndex answers, for a destination identity, the context extensions
// a request without them should carry. It is built once per snapshot, so a
// request costs a principal parse and a map lookup.
type workloadIndex struct {
	trustDomain string // "" accepts any
	byID        map[nsSA]*derived
}

type nsSA struct{ ns, sa string }

// derived is the answer for one namespace/service account.
type derived struct {
	ext      []extEntry
	workload string // garrison.io/workload, for the decision
	// note is set when the answer is namespace only; it goes into the
	// decision so that an operator sees why selector policies did not apply.
	note string
}

// newWorkloadIndex groups snap's workloads by namespace and service
// account. A group whose workloads agree on their labels (a Deployment and
// its Pods, say) gets the full set of extensions; one whose workloads
// differ gets the namespace only, as the contract says: which workload's
// selector policies apply cannot be known from the identity.
func newWorkloadIndex(snap *policies.Snapshot, trustDomain string) *workloadIndex {
	idx := &workloadIndex{trustDomain: trustDomain, byID: map[nsSA]*derived{}}
	if snap == nil {
		return idx
	}
	groups := map[nsSA][]*policies.Workload{}
	for _, w := range snap.Workloads() {
		id := nsSA{w.Namespace, w.ServiceAccount}
		groups[id] = append(groups[id], w)
	}
	for id, ws := range groups {
		idx.byID[id] = deriveGroup(snap, id, ws)
	}
	return idx
}

func deriveGroup(snap *policies.Snapshot, id nsSA, ws []*policies.Workload) *derived {
	names := make([]string, len(ws))
	for i, w := range ws {
		names[i] = w.Kind.Kind + "/" + w.Name
	}
	slices.Sort(names)
	d := &derived{workload: strings.Join(names, ",")}
	for _, w := range ws[1:] {
		if !maps.Equal(w.Labels, ws[0].Labels) {
			d.ext = []extEntry{newExtEntry(ExtNamespace, id.ns)}
			d.workload = ""
			d.note = fmt.Sprintf("service account %s/%s runs %d workloads with different labels (%s): namespace only, selector policies skipped",
				id.ns, id.sa, len(ws), strings.Join(names, ", "))
			return d
		}
	}
	w := ws[0]
	d.ext = append(d.ext, newExtEntry(ExtNamespace, id.ns))
	for _, k := range slices.Sorted(maps.Keys(w.Labels)) {
		d.ext = append(d.ext, newExtEntry(ExtLabelPrefix+k, w.Labels[k]))
	}
	if svcs := snap.ServicesOf(w); len(svcs) > 0 {
		hosts := make([]string, len(svcs))
		for i, s := range svcs {
			hosts[i] = s.Hostname
		}
		slices.Sort(hosts)
		d.ext = append(d.ext, newExtEntry(ExtServices, strings.Join(slices.Compact(hosts), ",")))
	}
	d.ext = append(d.ext, newExtEntry(ExtWorkload, d.workload))
	return d
}

func newExtEntry(k, v string) extEntry {
	return extEntry{key: k, value: v, term: [2]*ast.Term{ast.StringTerm(k), ast.StringTerm(v)}}
}

// lookup returns the extensions for a destination principal, or nil with a
// note saying why there are none.
func (idx *workloadIndex) lookup(principal string) (*derived, string) {
	td, ns, sa, ok := parseSPIFFE(principal)
	if !ok {
		if principal == "" {
			return nil, "no " + ExtNamespace + " and no destination principal: only mesh-wide policies apply"
		}
		return nil, fmt.Sprintf("no %s and destination principal %q is not spiffe://<td>/ns/<ns>/sa/<sa>: only mesh-wide policies apply", ExtNamespace, principal)
	}
	if idx.trustDomain != "" && td != idx.trustDomain {
		return nil, fmt.Sprintf("no %s and destination principal %q is outside trust domain %q: only mesh-wide policies apply", ExtNamespace, principal, idx.trustDomain)
	}
	if d := idx.byID[nsSA{ns, sa}]; d != nil {
		return d, d.note
	}
	// No workload runs as this identity in the configuration (yet): its
	// namespace is still certain, so namespace-wide policies apply.
	return &derived{ext: []extEntry{newExtEntry(ExtNamespace, ns)}}, fmt.Sprintf("no workload runs as %s/%s: namespace only, selector policies skipped", ns, sa)
}

// parseSPIFFE splits spiffe://<td>/ns/<ns>/sa/<sa>.
func parseSPIFFE(id string) (td, ns, sa string, ok bool) {
	rest, found := strings.CutPrefix(id, "spiffe://")
	if !found {
		return "", "", "", false
	}
	td, rest, _ = strings.Cut(rest, "/")
	rest, found = strings.CutPrefix(rest, "ns/")
	if !found || td == "" {
		return "", "", "", false
	}
	ns, sa, found = strings.Cut(rest, "/sa/")
	if !found || ns == "" || sa == "" || strings.Contains(ns, "/") || strings.Contains(sa, "/") {
		return "", "", "", false
	}
	return td, ns, sa, true
}
