package jwt

import (
	"encoding/base64"
	"encoding/json"
	"math"
	"strings"
)

// parsedToken is a token read as Envoy's jwt_verify_lib reads it
// (Jwt::parseFromString), before any signature is checked. Its checks and
// their order decide which reason a rejection gives; the signature and the
// claims are then verified again by golang-jwt (verifier.go).
type parsedToken struct {
	raw        string
	payloadSeg string // the payload as sent, for outputPayloadToHeader
	alg, kid   string
	iss, sub   string
	aud        []string
	exp, nbf   uint64 // 0 when absent
	claims     map[string]any
	payload    string // the payload's JSON text
}

var b64 = base64.RawURLEncoding

// parseToken reads a token; on failure the status says why, in Envoy's
// words.
func parseToken(raw string) (*parsedToken, status) {
	hdrSeg, rest, ok := strings.Cut(raw, ".")
	if !ok {
		return nil, statusJwtBadFormat
	}
	paySeg, sigSeg, ok := strings.Cut(rest, ".")
	if !ok || strings.Contains(sigSeg, ".") {
		return nil, statusJwtBadFormat
	}
	t := &parsedToken{raw: raw, payloadSeg: paySeg}

	hdrJSON, err := b64.DecodeString(hdrSeg)
	if err != nil {
		return nil, statusJwtHeaderParseErrorBadBase64
	}
	var hdr map[string]any
	if err := json.Unmarshal(hdrJSON, &hdr); err != nil || hdr == nil {
		return nil, statusJwtHeaderParseErrorBadJSON
	}
	alg, ok := hdr["alg"].(string)
	if !ok {
		return nil, statusJwtHeaderBadAlg
	}
	if !supportedAlgs[alg] {
		return nil, statusJwtHeaderNotImplementedAlg
	}
	t.alg = alg
	if v, present := hdr["kid"]; present {
		kid, ok := v.(string)
		if !ok {
			return nil, statusJwtHeaderBadKid
		}
		t.kid = kid
	}

	payJSON, err := b64.DecodeString(paySeg)
	if err != nil {
		return nil, statusJwtPayloadParseErrorBadBase64
	}
	if err := json.Unmarshal(payJSON, &t.claims); err != nil || t.claims == nil {
		return nil, statusJwtPayloadParseErrorBadJSON
	}
	t.payload = string(payJSON)
	var st status
	if t.iss, st = stringClaim(t.claims, "iss", statusJwtPayloadParseErrorIssNotString); st != statusOK {
		return nil, st
	}
	if t.sub, st = stringClaim(t.claims, "sub", statusJwtPayloadParseErrorSubNotString); st != statusOK {
		return nil, st
	}
	if _, st = uintClaim(t.claims, "iat", statusJwtPayloadParseErrorIatNotInteger, statusJwtPayloadParseErrorIatOutOfRange); st != statusOK {
		return nil, st
	}
	if t.nbf, st = uintClaim(t.claims, "nbf", statusJwtPayloadParseErrorNbfNotInteger, statusJwtPayloadParseErrorNbfOutOfRange); st != statusOK {
		return nil, st
	}
	if t.exp, st = uintClaim(t.claims, "exp", statusJwtPayloadParseErrorExpNotInteger, statusJwtPayloadParseErrorExpOutOfRange); st != statusOK {
		return nil, st
	}
	if _, st = stringClaim(t.claims, "jti", statusJwtPayloadParseErrorJtiNotString); st != statusOK {
		return nil, st
	}
	switch aud := t.claims["aud"].(type) {
	case nil:
		if _, present := t.claims["aud"]; present {
			return nil, statusJwtPayloadParseErrorAudNotString
		}
	case string:
		t.aud = []string{aud}
	case []any:
		t.aud = make([]string, 0, len(aud))
		for _, a := range aud {
			s, ok := a.(string)
			if !ok {
				return nil, statusJwtPayloadParseErrorAudNotString
			}
			t.aud = append(t.aud, s)
		}
	default:
		return nil, statusJwtPayloadParseErrorAudNotString
	}

	if _, err := b64.DecodeString(sigSeg); err != nil {
		return nil, statusJwtSignatureParseErrorBadBase64
	}
	return t, statusOK
}

func stringClaim(claims map[string]any, name string, bad status) (string, status) {
	v, present := claims[name]
	if !present {
		return "", statusOK
	}
	s, ok := v.(string)
	if !ok {
		return "", bad
	}
	return s, statusOK
}

// uintClaim reads a NumericDate as Envoy's StructUtils::GetUInt64: a JSON
// number, not negative, below 2^64, its fraction dropped.
func uintClaim(claims map[string]any, name string, notInt, outOfRange status) (uint64, status) {
	v, present := claims[name]
	if !present {
		return 0, statusOK
	}
	f, ok := v.(float64)
	if !ok {
		return 0, notInt
	}
	if f < 0 || f >= math.MaxUint64 || math.IsNaN(f) {
		return 0, outOfRange
	}
	return uint64(f), statusOK
}

// verifyTime is jwt_verify_lib's Jwt::verifyTimeConstraint with whole
// seconds: a token is not yet valid while now+skew < nbf, and expired once
// now > exp+skew.
func (t *parsedToken) verifyTime(now, skew uint64) status {
	if now+skew < t.nbf {
		return statusJwtNotYetValid
	}
	if t.exp != 0 && now > t.exp+skew {
		return statusJwtExpired
	}
	return statusOK
}

// sanitizeAudience is jwt_verify_lib's: "https://a.example.com/" and
// "a.example.com" are the same audience.
func sanitizeAudience(aud string) string {
	if aud == "" {
		return aud
	}
	if s, ok := strings.CutPrefix(aud, "http://"); ok {
		aud = s
	} else if s, ok := strings.CutPrefix(aud, "https://"); ok {
		aud = s
	}
	return strings.TrimSuffix(aud, "/")
}
