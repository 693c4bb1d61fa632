# Garrison's authorization library: the decision and the matching helpers
# that the generated policy modules call. See authz/CONTRACT.md.
#
# Every module, generated or hand-written, lives in package garrison.authz so
# that OPA's rule indexer sees all policies' rules together (CONTRACT section 3).
# The library reads generated rules through <name>: a rule
# that no module defines is then simply empty instead of a compile error.
#
# Semantics follow Istio's AuthorizationPolicy -> Envoy RBAC translation
# (pilot/pkg/security/authz/model and matcher) so that Garrison decides as
# Envoy would with Istio's RBAC filters.
package garrison.authz

# ---------------------------------------------------------------------------
# Request attributes (CONTRACT sections 1 and 2)
# ---------------------------------------------------------------------------

context_extensions := input.attributes.contextExtensions

# The destination workload's namespace; no policy applies without it.
workload_namespace := context_extensions["garrison.io/namespace"]

# The FQDNs of the services the destination workload backs.
workload_services contains s if {
	some s in split(context_extensions["garrison.io/services"], ",")
	s != ""
}

# The direct peer's address (Istio's source.ip and ipBlocks).
source_ip := input.attributes.source.address.socketAddress.address

destination_ip := input.attributes.destination.address.socketAddress.address

destination_port := input.attributes.destination.address.socketAddress.portValue

# Istio's remote.ip and remoteIpBlocks: the original client. With no trusted
# proxies (Istio's default) that is the peer itself; with N trusted proxies it
# is the N-th address from the right of x-forwarded-for, as Envoy's
# xff_num_trusted_hops picks it, falling back to the peer when the header has
# fewer entries.
remote_ip := ip if {
	n := num_trusted_proxies
	n > 0
	hops := [trim_space(h) | some h in split(request_headers["x-forwarded-for"], ",")]
	count(hops) >= n
	ip := hops[count(hops) - n]
} else := source_ip

num_trusted_proxies := n if {
	n := data.garrison.config.num_trusted_proxies
	is_number(n)
} else := 0

request_http := input.attributes.request.http

request_method := request_http.method

request_host := request_http.host

# hosts match case-insensitively: the compiler lower-cases the values.
request_host_lower := lower(request_host)

request_headers := request_http.headers

# The path that policies match: without query or fragment, as Envoy's RBAC
# url_path matcher sees it. The engine has already normalized it.
request_path := regex.replace(request_http.path, `[?#].*`, "")

# The TLS server name the client asked for (connection.sni).
sni := input.attributes.tlsSession.sni

# Dynamic metadata, by filter name.
filter_metadata := input.attributes.metadataContext.filterMetadata

# What authentication established, where Istio's authn filter puts it.
authn := filter_metadata.istio_authn

# The peer's identity without "spiffe://" (cluster.local/ns/default/sa/sleep):
# the form Istio's principals are written in. From the peer certificate; when
# the CheckRequest carries none, from what authentication recorded.
source_principal := trim_prefix(p, "spiffe://") if {
	p := input.attributes.source.principal
	startswith(p, "spiffe://")
} else := trim_prefix(p, "spiffe://") if {
	not input.attributes.source.principal
	p := authn["source.principal"]
	is_string(p)
}

# The trust domain of the peer identity: what precedes its first "/". Istio
# matches trustDomains against "spiffe://<td>/" prefixes.
source_trust_domain := td if {
	parts := split(source_principal, "/")
	count(parts) > 1
	td := parts[0]
}

# The namespace segment of the peer identity (legacy RBAC's source.namespace).
source_namespace := ns if {
	parts := split(source_principal, "/")
	parts[1] == "ns"
	ns := parts[2]
}

# The request's JWT payload, when authentication verified one.
jwt_claims := c if {
	c := authn["request.auth.claims"]
	is_object(c)
}

# iss and sub of the JWT; from its claims, else from request.auth.principal
# ("<iss>/<sub>", split at the last "/" since an issuer may be a URL).
jwt_issuer := iss if {
	iss := jwt_claims.iss
	is_string(iss)
} else := substring(p, 0, i) if {
	p := authn["request.auth.principal"]
	i := last_index(p, "/")
}

jwt_subject := sub if {
	sub := jwt_claims.sub
	is_string(sub)
} else := substring(p, i + 1, -1) if {
	p := authn["request.auth.principal"]
	i := last_index(p, "/")
}

# Istio's request.auth.principal.
request_principal := p if {
	p := authn["request.auth.principal"]
} else := concat("/", [jwt_issuer, jwt_subject])

jwt_audiences := aud if {
	aud := jwt_claims.aud
} else := authn["request.auth.audiences"]

jwt_presenter := azp if {
	azp := jwt_claims.azp
} else := authn["request.auth.presenter"]

# last_index is the index of the last occurrence of sep in s; undefined when
# there is none.
last_index(s, sep) := idx[count(idx) - 1] if {
	is_string(s)
	idx := indexof_n(s, sep)
	count(idx) > 0
}

# ---------------------------------------------------------------------------
# Matching
#
# The compiler turns each list of Istio values ("exact", "prefix*",
# "*suffix", "*", path templates, namespaces, service accounts) into a
# matcher object, so that evaluation does no parsing of patterns:
#   {"exact": {...}, "prefix": [...], "suffix": [...], "regex": "...", "nonempty": true}
#
# Each attribute has its own function that reads the attribute itself: when
# the attribute is absent the function is undefined, so that "not f(m)"
# holds, as Envoy's not_id / not_rule do. (A call written f(attr, m) would
# not do: OPA makes a negated call with an undefined argument fail.)
# ---------------------------------------------------------------------------

# string_in reports whether the string s matches the matcher m.
string_in(s, m) if s in m.exact

string_in(s, m) if strings.any_prefix_match(s, m.prefix)

string_in(s, m) if strings.any_suffix_match(s, m.suffix)

string_in(s, m) if regex.match(m.regex, s)

string_in(s, m) if {
	m.nonempty
	nonempty(s)
}

# nonempty is Istio's "*" for most attributes (Envoy's regex ".+").
nonempty(s) if {
	is_string(s)
	s != ""
}

# ip_in reports whether ip is in one of the CIDRs.
ip_in(ip, cidrs) if {
	some c in cidrs
	net.cidr_contains(c, ip)
}

# principals, source.principal; also namespaces, serviceAccounts and
# source.serviceAccount, which Istio matches with regular expressions on the
# peer identity (".*/ns/<ns>/.*" and "spiffe://.+/ns/<ns>/(.+/|)sa/<sa>(/.+)?").
principal_in(m) if string_in(source_principal, m)

# trustDomains, source.trustDomain.
trust_domain_in(m) if string_in(source_trust_domain, m)

# ipBlocks, source.ip: the direct peer.
source_ip_in(cidrs) if ip_in(source_ip, cidrs)

# remoteIpBlocks, remote.ip: the original client.
remote_ip_in(cidrs) if ip_in(remote_ip, cidrs)

# requestPrincipals, request.auth.principal. Istio splits each "<iss>/<sub>"
# value at its last "/" and matches the JWT's iss and sub claims each on its
# own (model/generator.go, requestPrincipalGenerator): pairs holds one
# {"iss": matcher, "sub": matcher} per value.
request_principal_in(pairs) if {
	some p in pairs
	string_in(jwt_issuer, p.iss)
	string_in(jwt_subject, p.sub)
}

# hosts, case-insensitively (the compiler lower-cases the values).
host_in(m) if string_in(request_host_lower, m)

# methods.
method_in(m) if string_in(request_method, m)

# paths; templates ({*}, {**}) arrive as a regular expression.
path_in(m) if string_in(request_path, m)

# ports, destination.port.
port_in(ports) if destination_port in ports

# destination.ip.
destination_ip_in(cidrs) if ip_in(destination_ip, cidrs)

# connection.sni.
sni_in(m) if string_in(sni, m)

# request.headers[name]: the whole (comma-joined) value.
header_in(name, m) if string_in(request_headers[name], m)

# request.headers[name] with "*": present, even empty (Envoy's present_match).
header_present(name) if is_string(request_headers[name])

# request.experimental.inline.headers[name]: one of the comma-separated
# values of the header (RFC 7230), each on its own.
inline_header_in(name, m) if {
	some v in split(request_headers[name], ",")
	string_in(v, m)
}

# request.auth.claims[a][b] (path ["a", "b"]), request.auth.audiences and
# request.auth.presenter: a claim matches when it is a string that matches,
# or a list with such a string in it (MetadataListValueMatcherForJWTClaims).
claim_in(path, m) if claim_value_in(object.get(jwt_claims, path, null), m)

audience_in(m) if claim_value_in(jwt_audiences, m)

presenter_in(m) if claim_value_in(jwt_presenter, m)

claim_value_in(v, m) if {
	is_string(v)
	string_in(v, m)
}

claim_value_in(v, m) if {
	is_array(v)
	some e in v
	is_string(e)
	string_in(e, m)
}

# experimental.envoy.filters.<filter>[<key>]: a string value against m, the
# elements of a list value against lm (values written "[v]").
metadata_in(filter, key, m, _) if {
	v := filter_metadata[filter][key]
	is_string(v)
	string_in(v, m)
}

metadata_in(filter, key, _, lm) if {
	v := filter_metadata[filter][key]
	is_array(v)
	some e in v
	is_string(e)
	string_in(e, lm)
}

# ---------------------------------------------------------------------------
# The decision (CONTRACT section 5)
# ---------------------------------------------------------------------------

# The generated rules are read by path (data.garrison.authz.<name>): one that
# no module defines is then undefined, which makes "count(...) > 0" fail,
# instead of a compile error. Evaluating one evaluates only the rule bodies
# whose indexed tests (namespace, labels) match the request.

# first picks a deterministic element of a set of matches.
first(s) := sort(s)[0]

# verdict builds a decision naming the match that decided it (its policy,
# kind and rule, whichever it has: a decision is never left undefined).
verdict(allowed, reason, m) := object.union(
	{"allowed": allowed, "status": status_of(allowed), "reason": reason},
	object.filter(m, ["policy", "kind", "rule"]),
)

status_of(true) := 200

status_of(false) := 403

# The DENY / ALLOW / legacy RBAC outcome: what the request gets when no CUSTOM
# policy matches, or when the CUSTOM provider let it through.
enforced := verdict(false, "denied", first(data.garrison.authz.deny_matches)) if {
	count(data.garrison.authz.deny_matches) > 0
} else := verdict(true, "allowed", first(data.garrison.authz.allow_matches)) if {
	count(data.garrison.authz.allow_matches) > 0
} else := {"allowed": false, "status": 403, "reason": "no-allow-match"} if {
	# ALLOW policies apply and none matched (spec: {} lands here).
	count(data.garrison.authz.allow_policies) > 0
} else := legacy if {
	# Istio 1.4+: a workload with any AuthorizationPolicy ignores legacy RBAC.
	not data.garrison.authz.v1beta1_present
	rbac_enforced
} else := {"allowed": true, "status": 200, "reason": "no-policy"}

# Legacy RBAC enforces for this workload (ENFORCED somewhere in its scope).
rbac_enforced if {
	some e in data.garrison.authz.rbac_enforced_for
	e.enforcement == "ENFORCED"
}

# Legacy RBAC where it is enforced: deny unless a binding grants access.
legacy := verdict(true, "rbac-allowed", first(data.garrison.authz.rbac_allow_matches)) if {
	count(data.garrison.authz.rbac_allow_matches) > 0
} else := {"allowed": false, "status": 403, "reason": "rbac-denied"}

# The outcome, CUSTOM first.
outcome := enforced if {
	not data.garrison.authz.custom_matches
} else := enforced if {
	count(data.garrison.authz.custom_matches) == 0
} else := verdict(false, "custom-conflict", first(data.garrison.authz.custom_matches)) if {
	# Istio supports one extension provider per workload: when the CUSTOM
	# policies that apply name several, it denies the requests their rules
	# match instead of asking any provider (builder golden custom-bad-out).
	count({p.provider | some p in data.garrison.authz.custom_policies}) > 1
} else := object.union(verdict(false, "custom", m), {
	"custom": {"provider": m.provider, "policy": m.policy},
	"after_custom": enforced,
}) if {
	m := first(data.garrison.authz.custom_matches)
}

# What is recorded but never decides.
recorded["dry_run"] := sort(data.garrison.authz.dry_run_matches) if count(data.garrison.authz.dry_run_matches) > 0

recorded["audit"] := sort(data.garrison.authz.audit_matches) if count(data.garrison.authz.audit_matches) > 0

recorded["rbac_permissive"] := sort(data.garrison.authz.rbac_permissive_matches) if count(data.garrison.authz.rbac_permissive_matches) > 0

# The decision the engine queries.
decision := object.union(outcome, recorded)

# ---------------------------------------------------------------------------
# The response opa-envoy-plugin sends back to Envoy
# ---------------------------------------------------------------------------

deny_body_details := d if {
	d := data.garrison.config.deny_body_details
	is_boolean(d)
} else := true

deny_body := sprintf("RBAC: access denied by %s %s rule %v", [decision.kind, decision.policy, decision.rule]) if {
	deny_body_details
	decision.policy
} else := "RBAC: access denied"

envoy_response := {
	"allowed": true,
	"headers": {"x-garrison-decision": decision.reason},
} if {
	decision.allowed
} else := {
	"allowed": false,
	"http_status": decision.status,
	"body": deny_body,
	"headers": {"x-garrison-decision": decision.reason},
}
