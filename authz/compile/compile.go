// Package compile turns a policies.Snapshot into Rego: one generated module
// per authorization resource, the hand-written library, and the entry point
// opa-envoy-plugin queries. See ../CONTRACT.md.
//
// Every generated module is in package garrison.authz and every rule body
// starts with equality tests on the context extensions that name the
// destination workload (namespace, then selector labels), so that OPA's rule
// indexer evaluates only the rules of the policies that apply to a request:
// the cost of a decision does not grow with the number of policies.
//
// Result.Modules holds one module per resource (the bundle layout); OPA
// should be given Result.Merged(), the same rules in a few modules, because
// OPA's compiler costs modules x rules within a package (see Merged).
package compile

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"

	networking "istio.io/api/networking/v1alpha3"

	"github.com/garrison-mesh/garrison/policies"
	regolib "github.com/garrison-mesh/garrison/policies/rego"
)

// Options tune what is generated.
type Options struct {
	// TrustDomain is the mesh's SPIFFE trust domain (cluster.local when
	// empty). As in Istio, "cluster.local" in a policy's principals stands
	// for it and its aliases.
	TrustDomain string
	// TrustDomainAliases are the other trust domains the mesh treats as its
	// own (Istio's meshConfig.trustDomainAliases): principals naming the
	// trust domain or an alias match all of them.
	TrustDomainAliases []string
	// DenyBodyDetails names the deciding policy and rule in deny bodies.
	DenyBodyDetails bool
	// NumTrustedProxies is the number of proxies in front of the workload
	// whose x-forwarded-for entries are trusted to find remote.ip (Istio's
	// gatewayTopology.numTrustedProxies). 0, Istio's default, makes remote.ip
	// the peer's address.
	NumTrustedProxies int
}

// DefaultTrustDomain is Istio's default trust domain.
const DefaultTrustDomain = "cluster.local"

func (o Options) trustDomain() string {
	return cmp.Or(o.TrustDomain, DefaultTrustDomain)
}

// Query is what the engine evaluates: the decision of CONTRACT section 5.
const Query = "data.garrison.authz.decision"

// Result is a compiled policy set: everything an OPA needs to decide.
type Result struct {
	// Modules maps bundle paths (garrison/authz/library.rego, ...) to Rego
	// source, one module per resource. Load Merged() into OPA.
	Modules map[string]string
	// Data is the base document the modules read, rooted at data.
	Data map[string]any
	// Headers lists the lower-cased request headers some policy reads; the
	// engine may leave every other header out of the input. Nil means all.
	Headers []string
	// SnapshotVersion is the version of the snapshot compiled.
	SnapshotVersion uint64
	// Warnings name what was compiled differently from what was written, or
	// not at all (a rule Istio would skip, a policy for another kind of
	// proxy), each with the resource's file:line.
	Warnings []string
}

// Part is what one generator contributes to a Result.
type Part struct {
	// Modules maps bundle paths to generated Rego.
	Modules map[string]string
	// Headers are the lower-cased request headers the modules read.
	Headers []string
	// AllHeaders says the modules need every request header.
	AllHeaders bool
	// Warnings are added to Result.Warnings.
	Warnings []string
}

// step compiles the resources of some kinds of a snapshot.
type step struct {
	name string
	fn   func(*policies.Snapshot, Options) (*Part, error)
}

// steps are the generators Compile runs, one per family of kinds.
var steps = []step{
	{name: "AuthorizationPolicy", fn: compileAuthorizationPolicies},
	{name: "legacy RBAC", fn: compileLegacyPart},
}

// compileLegacyPart adapts compileLegacyWarnings (legacy.go: ServiceRole,
// ServiceRoleBinding, (Cluster)RbacConfig) to a Part.
func compileLegacyPart(snap *policies.Snapshot, opts Options) (*Part, error) {
	modules, headers, warnings, err := compileLegacyWarnings(snap, opts)
	if err != nil {
		return nil, err
	}
	return &Part{Modules: modules, Headers: headers, Warnings: warnings}, nil
}

// Compile generates the Rego for every authorization resource of snap.
func Compile(snap *policies.Snapshot, opts Options) (*Result, error) {
	if snap == nil {
		return nil, fmt.Errorf("compile: nil snapshot")
	}
	if opts.NumTrustedProxies < 0 {
		return nil, fmt.Errorf("compile: NumTrustedProxies must not be negative, got %d", opts.NumTrustedProxies)
	}
	res := &Result{
		Modules:         regolib.Modules(),
		SnapshotVersion: snap.Version(),
		Data: map[string]any{
			"garrison": map[string]any{
				"config": map[string]any{
					"deny_body_details":   opts.DenyBodyDetails,
					"num_trusted_proxies": opts.NumTrustedProxies,
					"gateway_selectors":   gatewaySelectors(snap),
				},
			},
		},
	}
	headers := map[string]bool{}
	allHeaders := false
	for _, g := range steps {
		part, err := g.fn(snap, opts)
		if err != nil {
			return nil, fmt.Errorf("compile %s: %w", g.name, err)
		}
		if part == nil {
			continue
		}
		for path, src := range part.Modules {
			if _, dup := res.Modules[path]; dup {
				return nil, fmt.Errorf("compile %s: module %s generated twice", g.name, path)
			}
			res.Modules[path] = src
		}
		for _, h := range part.Headers {
			headers[strings.ToLower(h)] = true
		}
		allHeaders = allHeaders || part.AllHeaders
		res.Warnings = append(res.Warnings, part.Warnings...)
	}
	if !allHeaders {
		// Empty but not nil: no policy reads a header.
		res.Headers = slices.Sorted(maps.Keys(headers))
		if res.Headers == nil {
			res.Headers = []string{}
		}
	}
	return res, nil
}

// gatewaySelectors lists the distinct non-empty selectors of the snapshot's
// Gateways, in a stable order. The library needs them for remote.ip when no
// garrison.io/proxy context extension says whether the destination is a
// gateway or a sidecar (their connection managers trust x-forwarded-for
// differently). An empty selector would make every sidecar a gateway; Istio
// applies such a Gateway to no sidecar either.
func gatewaySelectors(snap *policies.Snapshot) []any {
	type selector struct {
		key    string // k=v pairs, sorted: identity and order
		labels map[string]any
	}
	var sels []selector
	for _, r := range snap.List(policies.KindGateway) {
		gw, ok := policies.SpecAs[*networking.Gateway](r)
		if !ok || len(gw.GetSelector()) == 0 {
			continue
		}
		s := selector{labels: make(map[string]any, len(gw.GetSelector()))}
		pairs := make([]string, 0, len(gw.GetSelector()))
		for k, v := range gw.GetSelector() {
			s.labels[k] = v
			pairs = append(pairs, k+"="+v)
		}
		slices.Sort(pairs)
		s.key = strings.Join(pairs, ",")
		sels = append(sels, s)
	}
	slices.SortFunc(sels, func(a, b selector) int { return strings.Compare(a.key, b.key) })
	sels = slices.CompactFunc(sels, func(a, b selector) bool { return a.key == b.key })
	out := make([]any, 0, len(sels))
	for _, s := range sels {
		out = append(out, s.labels)
	}
	return out
}
