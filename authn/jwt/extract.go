package jwt

import (
	"cmp"
	"net/url"
	"slices"
	"strings"
)

// locationKind is where a token is looked for.
type locationKind uint8

const (
	locHeader locationKind = iota
	locParam
	locCookie
)

// location is one place a rule takes tokens from.
type location struct {
	kind locationKind
	// name is the lower-case header name, the query parameter or the cookie.
	name string
	// prefix precedes the token in a header value ("Bearer ").
	prefix string
}

// The default locations, when a rule names none: Envoy's extractor
// (source/extensions/filters/http/jwt_authn/extractor.cc) then reads
// "Authorization: Bearer <token>" and the access_token query parameter.
var defaultLocations = []location{
	{kind: locHeader, name: "authorization", prefix: "Bearer "},
	{kind: locParam, name: "access_token"},
}

// locationSpec is a location shared by the rules that name it, with the
// issuers whose tokens may come from it: a token from another issuer found
// there is "Jwt issuer is not configured".
type locationSpec struct {
	location
	issuers  []string
	allowAll bool // a rule without issuer names the location
}

func (l *locationSpec) issuerAllowed(iss string) bool {
	return l.allowAll || slices.Contains(l.issuers, iss)
}

// extractor finds the tokens of a set of rules in a request, in Envoy's
// order: header locations sorted by name and prefix, then query parameters
// sorted by name, then cookies sorted by name. Envoy verifies the tokens
// from the last one found to the first.
type extractor struct {
	headers, params, cookies []*locationSpec
	// sanitize lists the headers the rules write (outputPayloadToHeader,
	// outputClaimToHeaders): Envoy removes them from every request its
	// verifier sees, so a client cannot forge them.
	sanitize []string
}

func newExtractor(providers []*provider) *extractor {
	ex := &extractor{}
	byKey := map[string]*locationSpec{}
	for _, p := range providers {
		for _, loc := range p.locations {
			key := string(rune('0'+loc.kind)) + loc.name + "\x00" + loc.prefix
			spec := byKey[key]
			if spec == nil {
				spec = &locationSpec{location: loc}
				byKey[key] = spec
				switch loc.kind {
				case locHeader:
					ex.headers = append(ex.headers, spec)
				case locParam:
					ex.params = append(ex.params, spec)
				case locCookie:
					ex.cookies = append(ex.cookies, spec)
				}
			}
			if p.issuer == "" {
				spec.allowAll = true
			} else if !slices.Contains(spec.issuers, p.issuer) {
				spec.issuers = append(spec.issuers, p.issuer)
			}
		}
		if p.payloadHeader != "" {
			ex.sanitize = append(ex.sanitize, p.payloadHeader)
		}
		for _, ch := range p.claimHeaders {
			ex.sanitize = append(ex.sanitize, ch.header)
		}
	}
	// Envoy keys its header locations by name+prefix in a std::map.
	slices.SortFunc(ex.headers, func(a, b *locationSpec) int { return cmp.Compare(a.name+a.prefix, b.name+b.prefix) })
	slices.SortFunc(ex.params, func(a, b *locationSpec) int { return cmp.Compare(a.name, b.name) })
	slices.SortFunc(ex.cookies, func(a, b *locationSpec) int { return cmp.Compare(a.name, b.name) })
	return ex
}

// token is one token found in a request.
type token struct {
	raw string
	loc *locationSpec
}

// extract returns the tokens present in the request as hv shows it now.
func (ex *extractor) extract(hv *headerView, path string, dst []token) []token {
	for _, spec := range ex.headers {
		v, ok := hv.get(spec.name)
		if !ok {
			continue
		}
		if spec.prefix != "" {
			// Envoy looks for the prefix anywhere in the value, case
			// sensitively, and takes the base64url run that follows it.
			i := strings.Index(v, spec.prefix)
			if i < 0 {
				continue
			}
			v = extractJWT(v, i+len(spec.prefix))
		}
		dst = append(dst, token{raw: v, loc: spec})
	}
	if len(ex.params) > 0 {
		_, query, ok := strings.Cut(path, "?")
		if ok {
			query, _, _ = strings.Cut(query, "#")
			for _, spec := range ex.params {
				if v, ok := queryParam(query, spec.name); ok {
					dst = append(dst, token{raw: v, loc: spec})
				}
			}
		}
	}
	if len(ex.cookies) > 0 {
		if c, ok := hv.get("cookie"); ok {
			for _, spec := range ex.cookies {
				if v, ok := cookieValue(c, spec.name); ok {
					dst = append(dst, token{raw: v, loc: spec})
				}
			}
		}
	}
	return dst
}

// isTokenChar reports the characters of base64url and the dot.
func isTokenChar(c byte) bool {
	return 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.'
}

// extractJWT is Envoy's ExtractorImpl::extractJWT: skip to the first
// base64url-or-dot character after the prefix and take the run of such
// characters; with none, the value is returned as is.
func extractJWT(v string, after int) string {
	start := -1
	for i := after; i < len(v); i++ {
		if isTokenChar(v[i]) {
			start = i
			break
		}
	}
	if start < 0 {
		return v
	}
	end := start
	for end < len(v) && isTokenChar(v[end]) {
		end++
	}
	return v[start:end]
}

// queryParam returns the first value of a query parameter, decoded, as
// Envoy's parseAndDecodeQueryString keeps the first occurrence.
func queryParam(query, name string) (string, bool) {
	for query != "" {
		var kv string
		kv, query, _ = strings.Cut(query, "&")
		k, v, _ := strings.Cut(kv, "=")
		if k != name {
			if dk, err := url.QueryUnescape(k); err != nil || dk != name {
				continue
			}
		}
		if dv, err := url.PathUnescape(v); err == nil {
			v = dv
		}
		return v, true
	}
	return "", false
}

// cookieValue returns the first value of a cookie in the Cookie header, its
// surrounding quotes removed (Envoy's Utility::parseCookies). Several
// Cookie headers may arrive joined with "," rather than "; ": both separate
// cookies, as no cookie value may hold either (RFC 6265 cookie-octet).
func cookieValue(header, name string) (string, bool) {
	for header != "" {
		var part string
		if i := strings.IndexAny(header, ";,"); i >= 0 {
			part, header = header[:i], header[i+1:]
		} else {
			part, header = header, ""
		}
		part = strings.TrimLeft(part, " ")
		k, v, ok := strings.Cut(part, "=")
		if !ok || k != name {
			continue
		}
		if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
			v = v[1 : len(v)-1]
		}
		return v, true
	}
	return "", false
}

// headerView is the request's headers as Envoy's filter chain sees them
// while it verifies: verifiers remove tokens and write payload headers as
// they go, and later extractions see those changes.
type headerView struct {
	base  map[string]string
	edits []headerEdit
}

type headerEdit struct {
	name    string
	removed bool
	added   []string
}

func (hv *headerView) edit(name string) *headerEdit {
	for i := range hv.edits {
		if hv.edits[i].name == name {
			return &hv.edits[i]
		}
	}
	hv.edits = append(hv.edits, headerEdit{name: name})
	return &hv.edits[len(hv.edits)-1]
}

func (hv *headerView) get(name string) (string, bool) {
	for i := range hv.edits {
		if e := &hv.edits[i]; e.name == name {
			if len(e.added) > 0 {
				vals := e.added
				if !e.removed {
					if v, ok := hv.base[name]; ok {
						vals = append([]string{v}, vals...)
					}
				}
				return strings.Join(vals, ","), true
			}
			if e.removed {
				return "", false
			}
		}
	}
	v, ok := hv.base[name]
	return v, ok
}

func (hv *headerView) remove(name string) {
	e := hv.edit(name)
	e.removed = true
	e.added = nil
}

func (hv *headerView) add(name, value string) {
	e := hv.edit(name)
	e.added = append(e.added, value)
}

// mutations turns the edits into what the caller applies upstream. Every
// header a rule writes was removed first (sanitized), so written values
// replace the request's.
func (hv *headerView) mutations() HeaderMutations {
	var m HeaderMutations
	for _, e := range hv.edits {
		switch {
		case len(e.added) > 0:
			for _, v := range e.added {
				m.Set = append(m.Set, Header{Name: e.name, Value: v})
			}
		case e.removed:
			m.Remove = append(m.Remove, e.name)
		}
	}
	return m
}
