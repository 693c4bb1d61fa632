package jwt

import (
	"encoding/base64"
	"encoding/json"
	"maps"
	"math"
	"strconv"
	"strings"
)

// identity is what a verified token tells about the end user, with the
// claims as authorization sees them.
func (t *parsedToken) identity(p *provider, legacy bool) *Identity {
	id := &Identity{
		Issuer: t.iss, Subject: t.sub, Audiences: t.aud,
		Claims: t.claims, RawClaims: t.payload, Rule: p.ref, legacy: legacy,
	}
	if t.iss != "" && t.sub != "" {
		id.Principal = t.iss + "/" + t.sub
	}
	if azp, ok := t.claims["azp"].(string); ok {
		id.Presenter = azp
	}
	if !legacy {
		id.Claims = normalizeClaims(t.claims, p.spaceDelimited)
	}
	return id
}

// normalizeClaims is Envoy's normalize_payload_in_metadata: each named
// top-level claim holding a string becomes the list of its space-separated
// words (a string with no word stays as it is). Istio names scope,
// permission and the rule's spaceDelimitedClaims.
func normalizeClaims(claims map[string]any, names []string) map[string]any {
	out, copied := claims, false
	for _, name := range names {
		s, ok := claims[name].(string)
		if !ok {
			continue
		}
		words := splitSpaces(s)
		if len(words) == 0 {
			continue
		}
		if !copied {
			// The parsed claims are shared by every rule that verifies the
			// token: normalize a copy.
			out, copied = maps.Clone(claims), true
		}
		l := make([]any, len(words))
		for i, w := range words {
			l[i] = w
		}
		out[name] = l
	}
	return out
}

// splitSpaces is absl::StrSplit(s, ' ', absl::SkipEmpty()).
func splitSpaces(s string) []string {
	var out []string
	for _, w := range strings.Split(s, " ") {
		if w != "" {
			out = append(out, w)
		}
	}
	return out
}

// claimHeaderValue renders a claim for outputClaimToHeaders as Envoy's
// addJWTClaimToHeader: the claim is a dotted path; strings as they are,
// numbers as integers when whole (else printf %f), booleans as true/false,
// objects and lists as base64 of their JSON. Nothing for other values or
// an empty result.
func claimHeaderValue(claims map[string]any, path string) (string, bool) {
	var v any = claims
	for _, part := range strings.Split(path, ".") {
		m, ok := v.(map[string]any)
		if !ok {
			return "", false
		}
		if v, ok = m[part]; !ok {
			return "", false
		}
	}
	var s string
	switch t := v.(type) {
	case string:
		s = t
	case float64:
		if _, frac := math.Modf(t); t < 0 || t >= math.MaxUint64 || frac != 0 {
			s = strconv.FormatFloat(t, 'f', 6, 64)
		} else {
			s = strconv.FormatUint(uint64(t), 10)
		}
	case bool:
		s = strconv.FormatBool(t)
	case map[string]any, []any:
		js, err := json.Marshal(t)
		if err != nil {
			return "", false
		}
		s = base64.StdEncoding.EncodeToString(js)
	}
	return s, s != ""
}
