package jwt

import (
	"cmp"
	"context"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
	security "istio.io/api/security/v1beta1"

	"github.com/garrison-mesh/garrison/policies"
)

// builder compiles one snapshot: every JWT rule once, and rule sets (the
// combination of rules a workload is under) on demand, shared between the
// workloads they apply to.
type builder struct {
	a    *Authenticator
	snap *policies.Snapshot

	// fetchers are the key fetchers the snapshot's rules use, by URI.
	fetchers     map[string]*fetcher
	fetcherRules map[string][]RuleRef

	raProviders map[*policies.Resource][]*provider
	legacy      map[*policies.Resource]*legacyPolicy

	// Legacy Policy targets, resolved as Istio 1.4/1.5's pilot did
	// (PushContext.AuthenticationPolicyForWorkload).
	legacyByHost map[string]*legacyTargets
	legacyByNS   map[string]*policies.Resource
	meshPolicy   *policies.Resource
	servicesByNS map[string][]*policies.Service

	mu   sync.Mutex // guards sets: the request path may build a rule set
	sets map[string]*ruleSet
}

func newBuilder(a *Authenticator, snap *policies.Snapshot) *builder {
	b := &builder{
		a: a, snap: snap,
		fetchers:     map[string]*fetcher{},
		fetcherRules: map[string][]RuleRef{},
		raProviders:  map[*policies.Resource][]*provider{},
		legacy:       map[*policies.Resource]*legacyPolicy{},
		legacyByHost: map[string]*legacyTargets{},
		legacyByNS:   map[string]*policies.Resource{},
		servicesByNS: map[string][]*policies.Service{},
		sets:         map[string]*ruleSet{},
	}
	for _, r := range snap.List(policies.KindRequestAuthentication) {
		ra, ok := policies.SpecAs[*security.RequestAuthentication](r)
		if !ok {
			continue
		}
		ps := make([]*provider, 0, len(ra.GetJwtRules()))
		for i, rule := range ra.GetJwtRules() {
			if rule != nil {
				ps = append(ps, b.compileRule(r, i, rule))
			}
		}
		b.raProviders[r] = ps
	}
	b.indexLegacy()
	for _, svc := range snap.Services() {
		b.servicesByNS[svc.Namespace] = append(b.servicesByNS[svc.Namespace], svc)
	}
	return b
}

// compileRule turns one RequestAuthentication jwtRules entry into the Envoy
// JwtProvider Istio generates for it.
func (b *builder) compileRule(r *policies.Resource, i int, rule *security.JWTRule) *provider {
	p := &provider{
		ref:           RuleRef{Kind: r.Kind, Namespace: r.Namespace, Name: r.Name, Index: i, Issuer: rule.GetIssuer()},
		issuer:        rule.GetIssuer(),
		forward:       rule.GetForwardOriginalToken(),
		payloadHeader: strings.ToLower(rule.GetOutputPayloadToHeader()),
		required:      rule.GetPresence() == security.JWTRule_REQUIRED,
	}
	p.audiences = sanitizedAudiences(rule.GetAudiences())
	for _, h := range rule.GetFromHeaders() {
		p.locations = append(p.locations, location{kind: locHeader, name: strings.ToLower(h.GetName()), prefix: h.GetPrefix()})
	}
	for _, q := range rule.GetFromParams() {
		p.locations = append(p.locations, location{kind: locParam, name: q})
	}
	for _, c := range rule.GetFromCookies() {
		p.locations = append(p.locations, location{kind: locCookie, name: c})
	}
	if len(p.locations) == 0 {
		p.locations = defaultLocations
	}
	for _, ch := range rule.GetOutputClaimToHeaders() {
		if ch != nil {
			p.claimHeaders = append(p.claimHeaders, claimHeader{header: strings.ToLower(ch.GetHeader()), claim: ch.GetClaim()})
		}
	}
	// Istio's buildSpaceDelimitedClaims: scope and permission always.
	p.spaceDelimited = []string{"permission", "scope"}
	for _, c := range rule.GetSpaceDelimitedClaims() {
		if !slices.Contains(p.spaceDelimited, c) {
			p.spaceDelimited = append(p.spaceDelimited, c)
		}
	}
	timeout := b.a.cfg.JWKSTimeout
	if d := rule.GetTimeout(); d != nil && d.AsDuration() > 0 {
		timeout = d.AsDuration()
	}
	p.keys = b.keySource(p.ref, rule.GetJwks(), rule.GetJwksUri(), p.issuer, timeout)
	b.finish(p)
	return p
}

// keySource picks where a rule's keys come from: inline jwks first (Istio
// ignores jwksUri then), jwksUri, else the issuer's OpenID discovery.
func (b *builder) keySource(ref RuleRef, jwks, uri, issuer string, timeout time.Duration) keySource {
	switch {
	case jwks != "":
		set, st, err := parseJWKS([]byte(jwks))
		if st != statusOK {
			b.a.log.Warn("inline jwks unusable: tokens of this rule are rejected", "rule", ref.String(), "reason", st.String(), "error", err)
		}
		return staticKeys{set: set, st: st}
	case uri != "":
		return b.fetcher(ref, uri, false, timeout)
	case issuer != "":
		return b.fetcher(ref, discoveryURL(issuer), true, timeout)
	}
	b.a.log.Warn("JWT rule has neither jwks, jwksUri nor issuer: its tokens are rejected", "rule", ref.String())
	return staticKeys{st: statusJwksFetchFail}
}

func (b *builder) fetcher(ref RuleRef, uri string, discovery bool, timeout time.Duration) *fetcher {
	b.fetcherRules[uri] = append(b.fetcherRules[uri], ref)
	f := b.fetchers[uri]
	if f == nil {
		f = b.a.fetchers[uri] // already running for the previous snapshot
		if f == nil {
			f = newFetcher(b.a, uri, discovery, timeout)
		}
		b.fetchers[uri] = f
		f.setTimeout(timeout)
	} else if timeout > f.getTimeout() {
		// Rules sharing a URI share a fetcher, with the longest timeout.
		f.setTimeout(timeout)
	}
	return f
}

// finish gives a provider its golang-jwt parsers and its extractor.
func (b *builder) finish(p *provider) {
	leeway := b.a.clockSkew + time.Second // see verifyTime: golang-jwt's exp bound is exclusive
	for k := range numKeyKinds {
		opts := []jwt.ParserOption{
			jwt.WithValidMethods(methodsFor[k]),
			jwt.WithLeeway(leeway),
			jwt.WithTimeFunc(b.a.now),
		}
		if p.issuer != "" {
			opts = append(opts, jwt.WithIssuer(p.issuer))
		}
		p.parsers[k] = jwt.NewParser(opts...)
	}
	p.extractor = newExtractor([]*provider{p})
}

func sanitizedAudiences(auds []string) map[string]bool {
	if len(auds) == 0 {
		return nil
	}
	m := make(map[string]bool, len(auds))
	for _, a := range auds {
		m[sanitizeAudience(a)] = true
	}
	return m
}

// now is the Clock in whole seconds, as Envoy compares times.
func (a *Authenticator) now() time.Time {
	return a.cfg.Clock().Truncate(time.Second)
}

// ruleSetFor assembles the rules of a workload. RequestAuthentications
// apply when any selects it (all of them merged, as Istio's
// newPolicyApplier does); only when none does, the legacy Policy that
// applies to its services, as Istio 1.5 fell back to v1alpha1.
func (b *builder) ruleSetFor(ns string, labels map[string]string) *ruleSet {
	var ras []*policies.Resource
	for _, r := range b.snap.ForWorkload(policies.KindRequestAuthentication, ns, labels) {
		if raApplies(r, labels) {
			ras = append(ras, r)
		}
	}
	if len(ras) > 0 {
		var sig strings.Builder
		sig.WriteString("ra")
		for _, r := range ras {
			sig.WriteString("|" + r.Namespace + "/" + r.Name)
		}
		return b.shared(sig.String(), func() *ruleSet {
			var ps []*provider
			for _, r := range ras {
				ps = append(ps, b.raProviders[r]...)
			}
			return newModernRuleSet(ps)
		})
	}
	return b.legacyRuleSet(ns, labels)
}

// raApplies leaves out the RequestAuthentications that target a gateway
// or a waypoint through targetRef(s) rather than a selector: they apply to
// the workload only when it is that Gateway's deployment.
func raApplies(r *policies.Resource, labels map[string]string) bool {
	ra, _ := policies.SpecAs[*security.RequestAuthentication](r)
	refs := ra.GetTargetRefs()
	if ref := ra.GetTargetRef(); ref != nil {
		refs = append(refs, ref)
	}
	if len(refs) == 0 {
		return true
	}
	for _, ref := range refs {
		if ref.GetKind() == "Gateway" && (ref.GetNamespace() == "" || ref.GetNamespace() == r.Namespace) &&
			labels["gateway.networking.k8s.io/gateway-name"] == ref.GetName() {
			return true
		}
	}
	return false
}

func (b *builder) shared(sig string, build func() *ruleSet) *ruleSet {
	b.mu.Lock()
	defer b.mu.Unlock()
	if rs := b.sets[sig]; rs != nil {
		return rs
	}
	rs := build()
	b.sets[sig] = rs
	return rs
}

// ruleSet is what one workload is under.
type ruleSet struct {
	providers []*provider // Istio's order: by issuer
	root      node
	// legacy is set when the rules come from a legacy Policy.
	legacy *legacyPolicy
	// byPort chooses among legacy Policies by destination port; when set,
	// the ruleSet itself is the choice for other ports.
	byPort map[uint32]*ruleSet
}

var emptyRuleSet = &ruleSet{}

// newModernRuleSet builds the requirement tree of Istio's
// convertToEnvoyJwtConfig: each provider OR allow_missing; with several,
// OR of {P1, ..., Pn, AND of each (Pi OR allow_missing)}, the single
// providers helping when they share a location (where the AND always fails).
func newModernRuleSet(ps []*provider) *ruleSet {
	ps = slices.Clone(ps)
	slices.SortStableFunc(ps, func(x, y *provider) int { return cmp.Compare(x.issuer, y.issuer) })
	rs := &ruleSet{providers: ps}
	if len(ps) == 0 {
		return rs
	}
	inner := make(allNode, len(ps))
	outer := anyNode{children: make([]node, 0, len(ps)+1)}
	anyRequired := false
	for i, p := range ps {
		if p.required {
			// presence: REQUIRED (istio.io/api v1.32) drops allow_missing:
			// a request without this token is refused.
			inner[i] = providerNode{p}
			anyRequired = true
		} else {
			inner[i] = anyNode{children: []node{providerNode{p}}, allowMissing: true}
		}
		outer.children = append(outer.children, providerNode{p})
	}
	switch {
	case len(ps) == 1:
		rs.root = inner[0]
	case anyRequired:
		// A single provider passing must not excuse a required one.
		rs.root = inner
	default:
		outer.children = append(outer.children, inner)
		rs.root = outer
	}
	return rs
}

func (rs *ruleSet) findByIssuer(iss string) *provider {
	for _, p := range rs.providers {
		if p.issuer == iss {
			return p
		}
	}
	if iss != "" {
		for _, p := range rs.providers {
			if p.issuer == "" {
				return p
			}
		}
	}
	return nil
}

// authenticate decides one request under the rule set.
func (rs *ruleSet) authenticate(ctx context.Context, a *Authenticator, req *Request) *Result {
	if rs.byPort != nil {
		if p := rs.byPort[req.Port]; p != nil {
			rs = p
		}
	}
	if rs.legacy != nil {
		return rs.authenticateLegacy(ctx, a, req)
	}
	if rs.root == nil || isCORSPreflight(req) {
		return &Result{Outcome: NoToken}
	}
	c := rs.newCtx(ctx, a, req)
	st := rs.root.verify(c)
	res := &Result{Headers: c.hv.mutations()}
	if st != statusOK {
		reject(res, req, st)
		return res
	}
	if n := len(c.verified); n > 0 {
		v := c.verified[n-1]
		res.Outcome, res.Principal = Verified, PrincipalOrigin
		res.Identity = v.t.identity(v.p, false)
	}
	return res
}

func (rs *ruleSet) newCtx(ctx context.Context, a *Authenticator, req *Request) *evalCtx {
	return &evalCtx{ctx: ctx, a: a, rs: rs, req: req, hv: headerView{base: req.Headers}, now: uint64(max(a.now().Unix(), 0))}
}

// reject fills a rejection as Envoy's jwt_authn filter answers it.
func reject(res *Result, req *Request, st status) {
	*res = Result{Outcome: Rejected, Status: 401, Reason: st.String()}
	if st == statusJwtAudienceNotAllowed {
		res.Status = 403
	}
	res.WWWAuthenticate = `Bearer realm="` + realm(req) + `"`
	if st != statusJwtMissed {
		res.WWWAuthenticate += `, error="invalid_token"`
	}
}
