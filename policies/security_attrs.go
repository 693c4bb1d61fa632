package policies

// Value-level checks shared by the security.istio.io validators and the
// legacy RBAC/authentication ones: IPs and CIDRs, ports, service accounts,
// condition keys, path templates, JWKS URIs and header names. They follow
// Istio's pkg/config/security and the patterns of its CRD schemas.

import (
	"encoding/json"
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// secPortError explains why v is not a port number (0-65535, decimal), or
// returns "".
func secPortError(v string) string {
	p, err := strconv.ParseUint(v, 10, 32)
	if err != nil || p > 65535 {
		return fmt.Sprintf("invalid port %q: must be a number between 0 and 65535", v)
	}
	return ""
}

// secMaxServiceAccounts and secMaxServiceAccountLen are the CRD's limits on
// serviceAccounts and notServiceAccounts.
const (
	secMaxServiceAccounts   = 16
	secMaxServiceAccountLen = 320
)

// secServiceAccountError explains why v is not "<sa>" or "<ns>/<sa>", or
// returns "".
func secServiceAccountError(v string) string {
	switch {
	case v == "":
		return "empty value is not allowed"
	case strings.Contains(v, "*"):
		return fmt.Sprintf("service account %q: wildcards are not allowed", v)
	case len(v) > secMaxServiceAccountLen:
		return fmt.Sprintf("service account %q is longer than %d characters", truncate(v, 40), secMaxServiceAccountLen)
	case strings.Count(v, "/") > 1:
		return fmt.Sprintf("service account %q must be \"<serviceaccount>\" or \"<namespace>/<serviceaccount>\"", v)
	}
	if ns, sa, ok := strings.Cut(v, "/"); ok {
		if ns == "" {
			return fmt.Sprintf("service account %q has an empty namespace: use \"<namespace>/<serviceaccount>\"", v)
		}
		if sa == "" {
			return fmt.Sprintf("service account %q has an empty name: use \"<namespace>/<serviceaccount>\"", v)
		}
	}
	return ""
}

// Path templates, as Istio and Envoy's uri_template matcher accept them.
const (
	secMatchOneTemplate = "{*}"
	secMatchAnyTemplate = "{**}"
)

// secPathLiteral is an RFC 3986 pchar run (unreserved, pct-encoded,
// sub-delims, ':' and '@'), which every non-operator segment of a path
// template must be.
var secPathLiteral = regexp.MustCompile(`^[a-zA-Z0-9\-._~%!$&'()+,;:@=]+$`)

// secPathTemplateError explains why path is not a supported path, or
// returns "". Paths without {...} are exact/prefix/suffix matches and are
// not constrained.
func secPathTemplateError(path string) string {
	template := strings.Contains(path, secMatchOneTemplate) || strings.Contains(path, secMatchAnyTemplate)
	seenAny := false
	for _, seg := range strings.Split(strings.Trim(path, "/"), "/") {
		if seg == secMatchOneTemplate || seg == secMatchAnyTemplate {
			if seenAny {
				return fmt.Sprintf("invalid path template %q: {**} must be the last operator", path)
			}
			seenAny = seg == secMatchAnyTemplate
			continue
		}
		if strings.ContainsAny(seg, "{}") {
			return fmt.Sprintf("invalid path %q: '{' and '}' are allowed only in the whole-segment operators {*} and {**}", path)
		}
		if template && !secPathLiteral.MatchString(seg) {
			return fmt.Sprintf("invalid path template %q: segment %q must be non-empty and contain only URL path characters (no '*')", path, seg)
		}
	}
	return ""
}

// condKind says what the values of a condition key are.
type condKind int

const (
	condString condKind = iota
	condIP
	condPort
	condServiceAccount
)

// secConditionKeys lists the supported condition keys for messages.
const secConditionKeys = "request.headers[<name>], source.ip, remote.ip, source.namespace, source.principal, " +
	"source.serviceAccount, source.trustDomain, request.auth.principal, request.auth.audiences, " +
	"request.auth.presenter, request.auth.claims[<name>], destination.ip, destination.port, connection.sni, " +
	"experimental.envoy.filters.*[<key>]"

// secConditionKey classifies an AuthorizationPolicy condition key. It
// returns a message when the key is not supported.
func secConditionKey(key string) (condKind, string) {
	switch key {
	case "source.ip", "remote.ip", "destination.ip":
		return condIP, ""
	case "destination.port":
		return condPort, ""
	case "source.serviceAccount":
		return condServiceAccount, ""
	case "source.namespace", "source.principal", "source.trustDomain", "request.auth.principal",
		"request.auth.audiences", "request.auth.presenter", "connection.sni":
		return condString, ""
	case "destination.namespace":
		return 0, "condition key destination.namespace is not supported: the policy applies to its own namespace (metadata.namespace)"
	case "destination.name", "destination.user":
		return 0, fmt.Sprintf("condition key %s was only supported by v1alpha1 RBAC", key)
	}
	for _, prefix := range []string{"request.headers", "request.experimental.inline.headers"} {
		if rest, ok := strings.CutPrefix(key, prefix); ok && (rest == "" || rest[0] == '[') {
			if secBracketGroups(rest) != 1 {
				return 0, fmt.Sprintf("condition key %q must have the form %s[<header-name>]", key, prefix)
			}
			return condString, ""
		}
	}
	if rest, ok := strings.CutPrefix(key, "request.auth.claims"); ok && (rest == "" || rest[0] == '[') {
		if secBracketGroups(rest) < 1 {
			return 0, fmt.Sprintf("condition key %q must have the form request.auth.claims[<claim>] (nested: [<claim>][<field>])", key)
		}
		return condString, ""
	}
	if rest, ok := strings.CutPrefix(key, "experimental.envoy.filters."); ok {
		open := strings.IndexByte(rest, '[')
		if open <= 0 || secBracketGroups(rest[open:]) < 1 {
			return 0, fmt.Sprintf("condition key %q must have the form experimental.envoy.filters.<filter>[<key>]", key)
		}
		return condString, ""
	}
	if strings.HasPrefix(key, "destination.labels") {
		return 0, "condition key destination.labels is not supported: select workloads with spec.selector"
	}
	return 0, fmt.Sprintf("unknown condition key %q; supported keys are %s", key, secConditionKeys)
}

// secBracketGroups counts the [name] groups s is made of, each name
// non-empty and without brackets; -1 when s is anything else.
func secBracketGroups(s string) int {
	n := 0
	for s != "" {
		if s[0] != '[' {
			return -1
		}
		end := strings.IndexByte(s, ']')
		if end <= 1 || strings.IndexByte(s[1:end], '[') >= 0 {
			return -1
		}
		s = s[end+1:]
		n++
	}
	return n
}

// secValueError checks one condition value of the given kind.
func secValueError(kind condKind, v string) string {
	if v == "" {
		return "empty value is not allowed"
	}
	switch kind {
	case condIP:
		if err := validateIPOrCIDR(v); err != nil {
			return err.Error()
		}
		return ""
	case condPort:
		return secPortError(v)
	case condServiceAccount:
		return secServiceAccountError(v)
	}
	return ""
}

// secMaxJwksURILen is the CRD's limit on jwksUri.
const secMaxJwksURILen = 2048

// secJwksURIError explains why u cannot be fetched as a JWKS, or returns "".
// Istio accepts only http and https.
func secJwksURIError(u string) string {
	if len(u) > secMaxJwksURILen {
		return fmt.Sprintf("jwksUri is longer than %d characters", secMaxJwksURILen)
	}
	parsed, err := url.Parse(u)
	if err != nil {
		return fmt.Sprintf("jwksUri %q is not a valid URL", u)
	}
	if parsed.Scheme != "http" && parsed.Scheme != "https" {
		return fmt.Sprintf("jwksUri %q must have scheme http:// or https://", u)
	}
	if parsed.Host == "" {
		return fmt.Sprintf("jwksUri %q has no host", u)
	}
	if p := parsed.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return fmt.Sprintf("jwksUri %q has an invalid port", u)
		}
	}
	return ""
}

// secJwksError explains why s is not a JSON Web Key Set (or a single JSON
// Web Key, which Istio's parser also takes), or returns "".
func secJwksError(s string) string {
	var doc map[string]json.RawMessage
	if err := json.Unmarshal([]byte(s), &doc); err != nil {
		return fmt.Sprintf("jwks is not a JSON object: %v", err)
	}
	if raw, ok := doc["keys"]; ok {
		var keys []map[string]json.RawMessage
		if err := json.Unmarshal(raw, &keys); err != nil {
			return "jwks \"keys\" must be a list of JSON Web Keys"
		}
		for i, k := range keys {
			if _, ok := k["kty"]; !ok {
				return fmt.Sprintf("jwks key %d has no \"kty\"", i)
			}
		}
		return ""
	}
	if _, ok := doc["kty"]; ok {
		return ""
	}
	return "jwks must be a JSON Web Key Set ({\"keys\": [...]})"
}

// secStrictHeaderName is what Istio's webhook accepts for headers it
// creates (outputClaimToHeaders): letters, digits and '-'.
var secStrictHeaderName = regexp.MustCompile(`^[-A-Za-z0-9]+$`)

// secHeaderToken is an RFC 7230 token, what Envoy accepts as a header name.
var secHeaderToken = regexp.MustCompile("^[!#$%&'*+\\-.^_`|~A-Za-z0-9]+$")

// secStandardMethods are the HTTP methods a request can carry in upper case.
var secStandardMethods = []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "CONNECT", "OPTIONS", "TRACE"}

// secMethodWarning flags a method written in the wrong case: methods match
// case-sensitively, so "get" never matches a GET request.
func secMethodWarning(m string) string {
	up := strings.ToUpper(m)
	if m != up && slices.Contains(secStandardMethods, up) {
		return fmt.Sprintf("method %q never matches: HTTP methods are case-sensitive, use %q", m, up)
	}
	return ""
}
