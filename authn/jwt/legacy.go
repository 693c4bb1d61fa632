package jwt

import (
	"cmp"
	"context"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/garrison-mesh/garrison/policies"
	"github.com/garrison-mesh/garrison/policies/legacy"
)

// Legacy authentication.istio.io/v1alpha1 Policy and MeshPolicy origins, as
// Istio 1.4/1.5 enforced them: pilot's v1alpha1 applier configured Envoy's
// jwt_authn to verify tokens without refusing any, and Istio's authn filter
// (istio/proxy src/envoy/http/authn) then decided with the policy's origins,
// triggerRules, originIsOptional and principalBinding.

// legacyTargets are the Policies naming one service: the oldest for all
// ports, and the oldest for each port selector.
type legacyTargets struct {
	all   *policies.Resource
	ports []legacyPortPolicy
}

type legacyPortPolicy struct {
	sel *legacy.PortSelector
	r   *policies.Resource
}

// legacyPolicy is a compiled Policy or MeshPolicy.
type legacyPolicy struct {
	r        *policies.Resource
	spec     *legacy.AuthenticationPolicy
	origins  []*provider
	optional bool
	binding  PrincipalSource
}

func (b *builder) indexLegacy() {
	var pols []*policies.Resource
	pols = append(pols, b.snap.List(policies.KindPolicy)...)
	// Istio took the oldest policy of a slot (sortConfigByCreationTime).
	slices.SortStableFunc(pols, func(x, y *policies.Resource) int {
		return cmp.Or(x.CreationTimestamp.Compare(y.CreationTimestamp), cmp.Compare(x.Namespace, y.Namespace), cmp.Compare(x.Name, y.Name))
	})
	for _, r := range pols {
		spec, ok := policies.SpecAs[*legacy.AuthenticationPolicy](r)
		if !ok {
			continue
		}
		if len(spec.Targets) == 0 {
			if b.legacyByNS[r.Namespace] == nil {
				b.legacyByNS[r.Namespace] = r
			}
			continue
		}
		for _, t := range spec.Targets {
			host := b.snap.FQDN(t.Name, r.Namespace)
			lt := b.legacyByHost[host]
			if lt == nil {
				lt = &legacyTargets{}
				b.legacyByHost[host] = lt
			}
			if len(t.Ports) == 0 {
				if lt.all == nil {
					lt.all = r
				}
				continue
			}
			for _, sel := range t.Ports {
				lt.ports = append(lt.ports, legacyPortPolicy{sel: sel, r: r})
			}
		}
	}
	if mesh := b.snap.Get(policies.KindMeshPolicy, "", "default"); mesh != nil {
		b.meshPolicy = mesh
	}
	for _, r := range pols {
		b.compileLegacy(r)
	}
	if b.meshPolicy != nil {
		b.compileLegacy(b.meshPolicy)
	}
}

// compileLegacy compiles a Policy's origins as Istio 1.5's v1alpha1
// applier did for Envoy's jwt_authn: tokens forwarded, headers read without
// prefix (but ingress-authorization, prefixed "istio"), the payload kept
// in metadata only.
func (b *builder) compileLegacy(r *policies.Resource) {
	spec, ok := policies.SpecAs[*legacy.AuthenticationPolicy](r)
	if !ok || b.legacy[r] != nil {
		return
	}
	lp := &legacyPolicy{r: r, spec: spec, optional: spec.OriginIsOptional, binding: PrincipalPeer}
	if spec.PrincipalBinding == legacy.UseOrigin {
		lp.binding = PrincipalOrigin
	}
	for i, o := range spec.Origins {
		if o == nil || o.Jwt == nil {
			continue
		}
		j := o.Jwt
		p := &provider{
			ref:     RuleRef{Kind: r.Kind, Namespace: r.Namespace, Name: r.Name, Index: i, Issuer: j.Issuer},
			issuer:  j.Issuer,
			forward: true,
		}
		p.audiences = sanitizedAudiences(j.Audiences)
		for _, h := range j.JwtHeaders {
			loc := location{kind: locHeader, name: strings.ToLower(h)}
			if loc.name == "ingress-authorization" {
				loc.prefix = "istio"
			}
			p.locations = append(p.locations, loc)
		}
		for _, q := range j.JwtParams {
			p.locations = append(p.locations, location{kind: locParam, name: q})
		}
		if len(p.locations) == 0 {
			p.locations = defaultLocations
		}
		for _, tr := range j.TriggerRules {
			if tr != nil {
				p.triggers = append(p.triggers, compileTrigger(tr))
			}
		}
		p.keys = b.keySource(p.ref, j.Jwks, j.JwksURI, j.Issuer, b.a.cfg.JWKSTimeout)
		b.finish(p)
		lp.origins = append(lp.origins, p)
	}
	b.legacy[r] = lp
}

// legacyRuleSet resolves the legacy Policy of a workload: for the service
// that exposes the destination port (services by hostname, the first
// decides, as Istio built one inbound listener per port), a Policy naming
// the service and the port, else the service, else the namespace's
// "default" Policy, else the MeshPolicy.
func (b *builder) legacyRuleSet(ns string, labels map[string]string) *ruleSet {
	var svcs []*policies.Service
	for _, svc := range b.servicesByNS[ns] {
		if svc.Selector != nil && selectorMatches(svc.Selector, labels) {
			svcs = append(svcs, svc)
		}
	}
	resolve := func(port uint32) *policies.Resource {
		for _, svc := range svcs {
			var sp *policies.ServicePort
			if port != 0 {
				if sp = servicePortFor(svc, port); sp == nil {
					continue
				}
			}
			if lt := b.legacyByHost[svc.Hostname]; lt != nil {
				if sp != nil {
					for _, pp := range lt.ports {
						if pp.sel.Number != 0 && pp.sel.Number == sp.Number || pp.sel.Name != "" && pp.sel.Name == sp.Name {
							return pp.r
						}
					}
				}
				if lt.all != nil {
					return lt.all
				}
			}
			if port != 0 {
				break
			}
		}
		if r := b.legacyByNS[ns]; r != nil {
			return r
		}
		return b.meshPolicy
	}
	base := b.legacySet(resolve(0))
	var byPort map[uint32]*ruleSet
	for _, svc := range svcs {
		for _, sp := range svc.Ports {
			port := targetPort(sp)
			if port == 0 {
				continue
			}
			if rs := b.legacySet(resolve(port)); rs != base {
				if byPort == nil {
					byPort = map[uint32]*ruleSet{}
				}
				if _, done := byPort[port]; !done {
					byPort[port] = rs
				}
			}
		}
	}
	if byPort == nil {
		return base
	}
	// A copy of base that also knows the port-specific choices.
	cp := *base
	cp.byPort = byPort
	return &cp
}

func (b *builder) legacySet(r *policies.Resource) *ruleSet {
	if r == nil {
		return emptyRuleSet
	}
	lp := b.legacy[r]
	if lp == nil || len(lp.spec.Peers) == 0 && len(lp.spec.Origins) == 0 {
		// Istio generated no authn filter for such a policy.
		return emptyRuleSet
	}
	return b.shared("legacy|"+r.Kind.Kind+"|"+r.Namespace+"/"+r.Name, func() *ruleSet {
		rs := &ruleSet{providers: lp.origins, legacy: lp}
		if len(lp.origins) > 0 {
			root := legacyAnyNode{all: newExtractor(lp.origins)}
			root.providers = lp.origins
			rs.root = root
		}
		return rs
	})
}

// servicePortFor finds the service port whose target is the workload port.
func servicePortFor(svc *policies.Service, port uint32) *policies.ServicePort {
	for i := range svc.Ports {
		if targetPort(svc.Ports[i]) == port {
			return &svc.Ports[i]
		}
	}
	return nil
}

// targetPort is the workload port a service port sends to; 0 for a named
// target port, which only the pod spec could resolve.
func targetPort(sp policies.ServicePort) uint32 {
	if sp.TargetPort == "" || sp.TargetPort == "0" { // unset: the service port itself
		return sp.Number
	}
	n, err := strconv.ParseUint(sp.TargetPort, 10, 16)
	if err != nil {
		return 0
	}
	return uint32(n)
}

func selectorMatches(sel, labels map[string]string) bool {
	for k, v := range sel {
		if got, ok := labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// triggerRule is a legacy origin's triggerRules entry.
type triggerRule struct {
	included, excluded []stringMatch
}

type stringMatch struct {
	exact, prefix, suffix string
	kind                  uint8 // 0 exact, 1 prefix, 2 suffix, 3 regex, 4 never
	re                    *regexp.Regexp
}

func compileTrigger(tr *legacy.TriggerRule) triggerRule {
	var t triggerRule
	for _, m := range tr.IncludedPaths {
		t.included = append(t.included, compileStringMatch(m))
	}
	for _, m := range tr.ExcludedPaths {
		t.excluded = append(t.excluded, compileStringMatch(m))
	}
	return t
}

func compileStringMatch(m *legacy.StringMatch) stringMatch {
	switch {
	case m == nil:
		return stringMatch{kind: 4}
	case m.Exact != "":
		return stringMatch{kind: 0, exact: m.Exact}
	case m.Prefix != "":
		return stringMatch{kind: 1, prefix: m.Prefix}
	case m.Suffix != "":
		return stringMatch{kind: 2, suffix: m.Suffix}
	case m.Regex != "":
		// std::regex_match: the whole path must match.
		re, err := regexp.Compile(`^(?:` + m.Regex + `)$`)
		if err != nil {
			return stringMatch{kind: 4}
		}
		return stringMatch{kind: 3, re: re}
	}
	return stringMatch{kind: 4}
}

func (m stringMatch) match(s string) bool {
	switch m.kind {
	case 0:
		return s == m.exact
	case 1:
		return strings.HasPrefix(s, m.prefix)
	case 2:
		return strings.HasSuffix(s, m.suffix)
	case 3:
		return m.re.MatchString(s)
	}
	return false
}

// triggered is AuthnUtils::ShouldValidateJwtPerPath: no trigger rules (or
// no path) always triggers; otherwise some rule must match: none of its
// excluded paths and, when it has included paths, one of them.
func (p *provider) triggered(path string) bool {
	if path == "" || len(p.triggers) == 0 {
		return true
	}
	for _, t := range p.triggers {
		if t.matches(path) {
			return true
		}
	}
	return false
}

func (t triggerRule) matches(path string) bool {
	for _, m := range t.excluded {
		if m.match(path) {
			return false
		}
	}
	if len(t.included) == 0 {
		return true
	}
	for _, m := range t.included {
		if m.match(path) {
			return true
		}
	}
	return false
}

// authenticateLegacy runs Envoy's jwt_authn as Istio 1.5 configured it for
// a v1alpha1 Policy (every token verified, none refused), then the origin
// authenticator of Istio's authn filter (OriginAuthenticator::run).
func (rs *ruleSet) authenticateLegacy(ctx context.Context, a *Authenticator, req *Request) *Result {
	lp := rs.legacy
	res := &Result{Outcome: NoToken}
	var c *evalCtx
	if rs.root != nil {
		c = rs.newCtx(ctx, a, req)
		rs.root.verify(c)
		res.Headers = c.hv.mutations()
	}
	ok, id := rs.origin(c, req)
	if !ok {
		if lp.optional {
			return res // allowed, but the filter recorded no principal
		}
		*res = Result{Outcome: Rejected, Status: 401, Reason: statusOriginFailed.String()}
		return res
	}
	if id != nil {
		res.Outcome, res.Identity = Verified, id
	}
	res.Principal = lp.binding
	if isCORSPreflight(req) {
		res.Principal = PrincipalNone
	}
	return res
}

// origin decides the legacy origin methods: an origin is checked when its
// trigger rules match the path (query and fragment removed), and succeeds
// when Envoy verified a token of its issuer; the first success gives the
// identity.
func (rs *ruleSet) origin(c *evalCtx, req *Request) (bool, *Identity) {
	lp := rs.legacy
	if len(lp.origins) == 0 && len(lp.spec.Origins) == 0 && lp.binding == PrincipalOrigin {
		// USE_ORIGIN without origins: Istio's filter failed such requests.
		return false, nil
	}
	if isCORSPreflight(req) {
		return true, nil
	}
	path := req.Path
	if i := strings.IndexAny(path, "?#"); i >= 0 {
		path = path[:i]
	}
	triggered := false
	for _, p := range lp.origins {
		if !p.triggered(path) {
			continue
		}
		triggered = true
		if c == nil {
			continue
		}
		// Envoy keyed payloads by issuer, the last verified winning.
		for i := len(c.verified) - 1; i >= 0; i-- {
			if v := c.verified[i]; v.p.issuer == p.issuer {
				return true, v.t.identity(p, true)
			}
		}
	}
	return !triggered, nil
}
