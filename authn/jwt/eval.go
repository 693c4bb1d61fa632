package jwt

import (
	"context"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// provider is one compiled JWT rule: a RequestAuthentication jwtRules entry
// or a legacy origin, the equivalent of one Envoy JwtProvider.
type provider struct {
	ref       RuleRef
	issuer    string
	audiences map[string]bool // sanitized; empty accepts any audience
	locations []location
	forward   bool
	// payloadHeader is outputPayloadToHeader, lower case.
	payloadHeader  string
	claimHeaders   []claimHeader
	spaceDelimited []string
	keys           keySource
	// parsers verify signature and claims with golang-jwt, one per key
	// kind, each pinned to the algorithms of that kind.
	parsers [numKeyKinds]*jwt.Parser
	// extractor reads this provider's locations only (a provider_name
	// requirement).
	extractor *extractor
	// required is presence: REQUIRED: no allow_missing for this rule.
	required bool
	// Legacy origins only.
	triggers []triggerRule
}

// claimHeader is one outputClaimToHeaders entry.
type claimHeader struct {
	header string // lower case
	claim  string // dotted path into the payload
}

func (p *provider) audienceAllowed(aud []string) bool {
	if len(p.audiences) == 0 {
		return true
	}
	for _, a := range aud {
		if p.audiences[sanitizeAudience(a)] {
			return true
		}
	}
	return false
}

// node is one requirement of Envoy's JwtRequirement tree
// (source/extensions/filters/http/jwt_authn/verifier.cc).
type node interface {
	verify(c *evalCtx) status
}

// providerNode is a provider_name requirement: every token at the
// provider's locations must verify with the provider, and there must be one.
type providerNode struct{ p *provider }

func (n providerNode) verify(c *evalCtx) status {
	c.sanitize(n.p.extractor)
	return c.authenticate(n.p.extractor, n.p, false)
}

// anyNode is requires_any as Envoy has implemented it since 1.17 (PR
// #13839, what Istio's current sidecars run): the first child that passes
// decides; otherwise the children's failures are aggregated, a real error
// preferred (the last one) over "issuer not configured", preferred over
// "missing"; an allow_missing member then turns "missing" into a pass.
type anyNode struct {
	children     []node
	allowMissing bool
}

func (n anyNode) verify(c *evalCtx) status {
	final := statusJwtMissed
	for _, child := range n.children {
		st := child.verify(c)
		if st == statusOK {
			return st
		}
		if st != statusJwtMissed && st != statusJwtUnknownIssuer || final == statusJwtMissed {
			final = st
		}
	}
	if n.allowMissing && final == statusJwtMissed {
		return statusOK
	}
	return final
}

// allNode is requires_all: the first failure decides.
type allNode []node

func (n allNode) verify(c *evalCtx) status {
	for _, child := range n {
		if st := child.verify(c); st != statusOK {
			return st
		}
	}
	return statusOK
}

// legacyAnyNode is requires_any ending in allow_missing_or_failed, as the
// Envoy of Istio 1.4/1.5 ran it for v1alpha1 origins (before Envoy PR
// #13839): the providers in order until one passes, then an allow-failed
// verifier over all of their locations that tries every token, verified
// with the provider of its issuer, and never fails.
type legacyAnyNode struct {
	providers []*provider
	all       *extractor
}

func (n legacyAnyNode) verify(c *evalCtx) status {
	for _, p := range n.providers {
		// That Envoy (before PR #12089) let a provider pass on the first
		// token that verified, trying them from the last found.
		tokens := p.extractor.extract(&c.hv, c.req.Path, c.tmp[:0])
		c.tmp = tokens[:0]
		for i := len(tokens) - 1; i >= 0; i-- {
			if c.verifyToken(tokens[i], p) == statusOK {
				return statusOK
			}
		}
	}
	c.sanitize(n.all)
	c.authenticate(n.all, nil, true)
	return statusOK
}

// evalCtx is the state of one request's verification.
type evalCtx struct {
	ctx  context.Context
	a    *Authenticator
	rs   *ruleSet
	req  *Request
	hv   headerView
	now  uint64 // unix seconds
	tmp  []token
	seen []*seenToken
	// verified holds every token that passed, in order; Envoy's metadata
	// keeps the last one (all of Istio's providers write the same key).
	verified []verifiedToken
}

// seenToken memoizes a token's parse and its verification with each
// provider: Envoy re-runs providers in the requires_all branch, and caches
// verified tokens per provider.
type seenToken struct {
	raw    string
	parsed *parsedToken
	st     status
	byProv []provStatus
}

type provStatus struct {
	p  *provider
	st status
}

type verifiedToken struct {
	p *provider
	t *parsedToken
}

func (c *evalCtx) sanitize(ex *extractor) {
	for _, h := range ex.sanitize {
		c.hv.remove(h)
	}
}

func (c *evalCtx) parse(raw string) (*seenToken, status) {
	for _, s := range c.seen {
		if s.raw == raw {
			return s, s.st
		}
	}
	// The size is checked before anything is decoded.
	s := &seenToken{raw: raw, st: statusJwtTooLarge}
	if len(raw) <= c.a.maxTokenSize {
		s.parsed, s.st = parseToken(raw)
	}
	c.seen = append(c.seen, s)
	return s, s.st
}

// authenticate is Envoy's AuthenticatorImpl for the tokens ex finds: they
// are verified from the last found to the first, and all must pass (Envoy
// PR #12089: a request with a good and a bad token is refused); the first
// failure ends it. With allowFailed (legacy allow_missing_or_failed) every
// token is tried and nothing fails.
func (c *evalCtx) authenticate(ex *extractor, fixed *provider, allowFailed bool) status {
	tokens := ex.extract(&c.hv, c.req.Path, c.tmp[:0])
	c.tmp = tokens[:0]
	if len(tokens) == 0 {
		if allowFailed {
			return statusOK
		}
		return statusJwtMissed
	}
	for i := len(tokens) - 1; i >= 0; i-- {
		if st := c.verifyToken(tokens[i], fixed); st != statusOK && !allowFailed {
			return st
		}
	}
	return statusOK
}

// verifyToken is AuthenticatorImpl::startVerify for one token.
func (c *evalCtx) verifyToken(tok token, fixed *provider) status {
	seen, st := c.parse(tok.raw)
	if st != statusOK {
		return st
	}
	t := seen.parsed
	if !tok.loc.issuerAllowed(t.iss) {
		return statusJwtUnknownIssuer
	}
	p := fixed
	if p == nil {
		if p = c.rs.findByIssuer(t.iss); p == nil {
			return statusJwtUnknownIssuer
		}
	}
	for _, ps := range seen.byProv {
		if ps.p == p {
			if ps.st == statusOK {
				c.good(p, t, tok)
			}
			return ps.st
		}
	}
	st = c.verifyWith(p, t)
	seen.byProv = append(seen.byProv, provStatus{p: p, st: st})
	if st == statusOK {
		c.good(p, t, tok)
	}
	return st
}

func (c *evalCtx) verifyWith(p *provider, t *parsedToken) status {
	skew := uint64(c.a.clockSkew / time.Second)
	if st := t.verifyTime(c.now, skew); st != statusOK {
		return st
	}
	if !p.audienceAllowed(t.aud) {
		return statusJwtAudienceNotAllowed
	}
	set, st := p.keys.current(c.ctx)
	if st != statusOK {
		return st
	}
	st = p.verifySignature(t, set)
	if st == statusJwksKidAlgMismatch {
		// The issuer may have rotated to a key we have not fetched yet.
		if fresh, ok := p.keys.refetch(c.ctx); ok {
			st = p.verifySignature(t, fresh)
		}
	}
	return st
}

// verifySignature is jwt_verify_lib's verifyJwtWithoutTimeChecking: keys
// whose kid or alg differ from the token's are skipped; the others are
// tried in order. The check itself is golang-jwt's, with the algorithm
// pinned to the key's kind and the claims validated again.
func (p *provider) verifySignature(t *parsedToken, set *keySet) status {
	if _, ok := set.verified.Get(verifiedKey{p, t.raw}); ok {
		return statusOK
	}
	matched := false
	for _, k := range set.keys {
		if t.kid != "" && k.kid != "" && k.kid != t.kid {
			continue
		}
		if k.alg != "" && k.alg != t.alg {
			continue
		}
		matched = true
		key := k.key
		_, err := p.parsers[k.kind].ParseWithClaims(t.raw, jwt.MapClaims{}, func(*jwt.Token) (any, error) { return key, nil })
		if err == nil {
			set.verified.Put(verifiedKey{p, t.raw}, struct{}{})
			return statusOK
		}
	}
	if matched {
		return statusJwtVerificationFail
	}
	return statusJwksKidAlgMismatch
}

// good is AuthenticatorImpl::handleGoodJwt: the payload and claim headers
// are written, the token removed unless forwarded, the payload recorded.
func (c *evalCtx) good(p *provider, t *parsedToken, tok token) {
	if p.payloadHeader != "" {
		c.hv.add(p.payloadHeader, t.payloadSeg)
	}
	for _, ch := range p.claimHeaders {
		if v, ok := claimHeaderValue(t.claims, ch.claim); ok {
			c.hv.add(ch.header, v)
		}
	}
	// Envoy removes a token only from a header (query parameters and
	// cookies are left as they are: TODOs in its extractor).
	if !p.forward && tok.loc.kind == locHeader {
		c.hv.remove(tok.loc.name)
	}
	c.verified = append(c.verified, verifiedToken{p: p, t: t})
}
