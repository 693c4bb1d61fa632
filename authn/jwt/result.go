package jwt

import (
	"strconv"
	"strings"

	"github.com/garrison-mesh/garrison/policies"
)

// Request is what authentication needs to know about one HTTP request. The
// caller fills it from its own protocol (the ext_authz server from a
// CheckRequest); this package depends on no wire format.
type Request struct {
	// Namespace and Labels identify the destination workload, whose policies
	// apply.
	Namespace string
	Labels    map[string]string
	// Port is the destination port as the workload receives it; it selects
	// legacy Policy targets with ports. 0 when unknown.
	Port uint32
	// Method, Scheme ("http" or "https"), Host (the :authority) and Path
	// (with its query string, as sent).
	Method string
	Scheme string
	Host   string
	Path   string
	// Headers are keyed by lower-case name; a header sent several times has
	// its values joined with ",", as Envoy presents them.
	Headers map[string]string
}

// Outcome is the decision authentication takes on a request.
type Outcome uint8

const (
	// NoToken: the request goes on without an end-user identity (no token,
	// no rule for the workload, a CORS preflight, or a legacy origin that
	// is optional or not triggered).
	NoToken Outcome = iota
	// Verified: the request goes on with Result.Identity.
	Verified
	// Rejected: answer Result.Status with Result.WWWAuthenticate.
	Rejected
)

func (o Outcome) String() string {
	switch o {
	case NoToken:
		return "no_token"
	case Verified:
		return "verified"
	case Rejected:
		return "rejected"
	}
	return "unknown"
}

// PrincipalSource says where request.auth.principal comes from.
type PrincipalSource uint8

const (
	// PrincipalNone: the request has no request.auth.principal.
	PrincipalNone PrincipalSource = iota
	// PrincipalOrigin: the verified token's <iss>/<sub>; always the case for
	// RequestAuthentication, and legacy principalBinding USE_ORIGIN.
	PrincipalOrigin
	// PrincipalPeer: the peer (mTLS) identity, for a legacy Policy with
	// principalBinding USE_PEER (its default).
	PrincipalPeer
)

// Result is the decision on one request and what goes with it.
type Result struct {
	Outcome Outcome
	// Status is 401, or 403 when only the token's audience was refused (as
	// Envoy's jwt_authn answers); 0 unless Rejected.
	Status int
	// WWWAuthenticate is the header value Envoy's jwt_authn sends with a
	// rejection: Bearer realm="<scheme>://<host><path>", error="invalid_token"
	// (without error= when a required token is missing). Empty for a legacy
	// origin rejection: Istio's authn filter sent none.
	WWWAuthenticate string
	// Reason is Envoy's (or Istio's authn filter's) explanation, e.g.
	// "Jwt is expired"; it is the body a sidecar would answer with.
	Reason string
	// Identity is the verified end user when Outcome is Verified.
	Identity *Identity
	// Principal says which identity becomes request.auth.principal.
	Principal PrincipalSource
	// Headers are the changes to make to the request before it goes
	// upstream when it is allowed.
	Headers HeaderMutations
}

// Identity is what a verified token says about the end user.
type Identity struct {
	Issuer  string
	Subject string
	// Principal is "<iss>/<sub>", empty unless both claims are present.
	Principal string
	Audiences []string
	// Presenter is the azp claim.
	Presenter string
	// Claims is the payload, nested objects included; the claims Istio
	// treats as space-delimited (scope, permission and the rule's
	// spaceDelimitedClaims) are lists of their words, as Envoy's
	// normalize_payload_in_metadata leaves them for authorization. For a
	// legacy origin it is the payload as is (Metadata renders it as Istio
	// 1.5's authn filter did). It is shared: do not modify it.
	Claims map[string]any
	// RawClaims is the payload's JSON text.
	RawClaims string
	// Rule is the rule whose keys verified the token.
	Rule RuleRef

	legacy bool
}

// RuleRef names one JWT rule: jwtRules[Index] of a RequestAuthentication,
// or origins[Index] of a legacy Policy or MeshPolicy.
type RuleRef struct {
	Kind      policies.GroupKind
	Namespace string
	Name      string
	Index     int
	Issuer    string
}

func (r RuleRef) String() string {
	field := "jwtRules"
	if r.Kind != policies.KindRequestAuthentication {
		field = "origins"
	}
	ref := r.Kind.Kind + " " + r.Name
	if r.Namespace != "" {
		ref = r.Kind.Kind + " " + r.Namespace + "/" + r.Name
	}
	return ref + " " + field + "[" + strconv.Itoa(r.Index) + "]"
}

// HeaderMutations are the request header changes Envoy's jwt_authn makes
// before the request goes upstream: the token removed (unless forwarded),
// and the payload and claim headers written after removing whatever the
// client sent under those names. Remove and Set never name the same header,
// so that ext_authz (which applies headers before headers_to_remove) can
// take them as they are: Remove to headers_to_remove, each name of Set with
// its first value overwriting and its further values appended.
type HeaderMutations struct {
	Remove []string
	Set    []Header
}

// Header is one header value, its name in lower case.
type Header struct {
	Name  string
	Value string
}

// Metadata returns the authentication attributes with the keys Istio's
// authn filter put under the istio_authn filter metadata (authz/CONTRACT.md
// §2): request.auth.principal, .audiences, .presenter, .claims and
// .raw_claims. peerPrincipal is the peer identity without "spiffe://"; it
// becomes request.auth.principal only where a legacy Policy binds the
// principal to the peer. It returns nil when there is nothing to record.
func (r *Result) Metadata(peerPrincipal string) map[string]any {
	if r == nil || r.Outcome == Rejected {
		return nil
	}
	out := map[string]any{}
	switch r.Principal {
	case PrincipalOrigin:
		if r.Identity != nil && r.Identity.Principal != "" {
			out["request.auth.principal"] = r.Identity.Principal
		}
	case PrincipalPeer:
		if peerPrincipal != "" {
			out["request.auth.principal"] = strings.TrimPrefix(peerPrincipal, "spiffe://")
		}
	}
	if id := r.Identity; id != nil {
		if id.legacy {
			id.legacyMetadata(out)
		} else {
			if len(id.Audiences) > 0 {
				auds := make([]any, len(id.Audiences))
				for i, a := range id.Audiences {
					auds[i] = a
				}
				out["request.auth.audiences"] = auds
			}
			if id.Presenter != "" {
				out["request.auth.presenter"] = id.Presenter
			}
			if len(id.Claims) > 0 {
				out["request.auth.claims"] = id.Claims
			}
		}
		if id.RawClaims != "" {
			out["request.auth.raw_claims"] = id.RawClaims
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// legacyMetadata renders the origin as Istio 1.4/1.5's authn filter did
// (AuthnUtils::ProcessJwtPayload, SaveAuthAttributesToStruct): every string
// claim split on spaces into a list, lists of strings kept, other claims
// dropped, and only the first audience recorded.
func (id *Identity) legacyMetadata(out map[string]any) {
	claims := map[string]any{}
	for k, v := range id.Claims {
		switch t := v.(type) {
		case string:
			words := splitSpaces(t)
			if len(words) == 0 {
				continue
			}
			l := make([]any, len(words))
			for i, w := range words {
				l[i] = w
			}
			claims[k] = l
		case []any:
			var l []any
			for _, e := range t {
				if s, ok := e.(string); ok {
					l = append(l, s)
				}
			}
			if len(l) > 0 {
				claims[k] = l
			}
		}
	}
	if len(id.Audiences) > 0 {
		out["request.auth.audiences"] = id.Audiences[0]
	}
	if id.Presenter != "" {
		out["request.auth.presenter"] = id.Presenter
	}
	if len(claims) > 0 {
		out["request.auth.claims"] = claims
	}
}
