# Garrison's authorization library: the decision and the matching helpers
# that the generated policy modules call. See authz/CONTRACT.md.
#
# Every module, generated or hand-written, lives in package garrison.authz so
# that OPA's rule indexer sees all policies' rules together (CONTRACT section 3).
# The generated rules add to one partial set, facts, that the decision reads
# (see "The decision" below).
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

# Istio's remote.ip and remoteIpBlocks: the original client, as Envoy's
# connection manager finds it with the settings Istio gives it.
#   - A gateway (use_remote_address: true, xff_num_trusted_hops from
#     gatewayTopology.numTrustedProxies): the peer itself, or with N trusted
#     proxies the N-th address from the right of x-forwarded-for; the peer when
#     the header has fewer entries or that entry is not an IP address.
#   - A sidecar (use_remote_address: false, no trusted hops): the last
#     (rightmost) address of x-forwarded-for, the peer when there is none or
#     it is not an IP address.
remote_ip := ip if {
	is_gateway
	n := num_trusted_proxies
	n > 0
	hops := forwarded_for
	count(hops) >= n
	ip := hops[count(hops) - n]
	is_ip(ip)
} else := ip if {
	not is_gateway
	hops := forwarded_for
	ip := hops[count(hops) - 1]
	is_ip(ip)
} else := source_ip

forwarded_for := [trim_space(h) | some h in split(request_headers["x-forwarded-for"], ",")]

# Whether the destination is a gateway (Istio's router proxy), whose
# connection manager trusts x-forwarded-for differently from a sidecar's.
# Garrison's xDS says which in garrison.io/proxy; without it, a workload that
# a Gateway resource selects is a gateway (data.garrison.config.gateway_selectors,
# non-empty selectors, matched in any namespace as Istio does by default).
is_gateway if context_extensions["garrison.io/proxy"] == "gateway"

is_gateway if {
	not context_extensions["garrison.io/proxy"]
	some selector in data.garrison.config.gateway_selectors
	every key, value in selector {
		context_extensions[concat("", ["garrison.io/label/", key])] == value
	}
}

# An IPv4 or IPv6 address (Envoy ignores an x-forwarded-for entry that is not).
is_ip(s) if net.cidr_is_valid(concat("/", [s, "32"]))

num_trusted_proxies := n if {
	n := data.garrison.config.num_trusted_proxies
	is_number(n)
} else := 0

request_method := input.attributes.request.http.method

request_host := input.attributes.request.http.host

# hosts match case-insensitively: the compiler lower-cases the values.
request_host_lower := lower(request_host)

request_headers := input.attributes.request.http.headers

# The path that policies match: without query or fragment, as Envoy's RBAC
# url_path matcher sees it. The engine has already normalized it.
request_path := regex.replace(input.attributes.request.http.path, `[?#].*`, "")

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
# The decision (CONTRACT sections 4 and 5)
#
# Every generated rule adds to one partial set, facts: which policies apply
# to the destination workload and which of their rules match. Evaluating it
# evaluates only the rule bodies whose indexed tests (namespace, labels)
# match the request, so the decision takes one indexed evaluation whatever
# the number of policies. A fact is an array [rank, decision, origin...]:
#
#   rank  fact                                 array
#    0    a CUSTOM rule matches                [0, null, kind, policy, rule, provider]
#    1    a DENY rule matches                  [1, {denied decision}]
#    2    an ALLOW rule matches                [2, {allowed decision}]
#    3    an ALLOW policy applies              [3, NO_ALLOW_MATCH, kind, policy]
#    4    a CUSTOM policy applies              [4, NO_POLICY, kind, policy, provider]
#    5    another AuthorizationPolicy applies  [5, NO_POLICY, kind, policy]
#         (DENY, AUDIT, or any dry-run policy)
#    6    an ENFORCED legacy binding allows    [6, null, binding, kind, policy, role, rule, subject]
#    7    legacy RBAC is ENFORCED here         [7, RBAC_DENIED, kind, policy, rule, mode]
#    8    legacy RBAC is PERMISSIVE here       [8, NO_POLICY, kind, policy, rule, mode]
#    9    an AUDIT rule matches                [9, NO_POLICY, kind, policy, rule]
#   10    a dry-run rule matches               [10, NO_POLICY, action, kind, policy, rule]
#   11    a PERMISSIVE legacy binding allows   [11, NO_POLICY, binding, kind, policy, role, rule, subject]
#
# Ranks follow Istio's order (CUSTOM, DENY, ALLOW, then legacy RBAC only for
# workloads without an AuthorizationPolicy), and within a rank arrays compare
# as the objects they stand for (by kind, policy, rule, ...), so the least
# fact, min(facts), is what decides. Its decision (slot 1) is the whole
# decision object, written into the generated rule head as a constant, so
# the common case builds nothing: the least fact's decision, when nothing is
# recorded (no fact of rank 9 or more). null marks the two facts whose
# decision depends on other facts: a CUSTOM match (one provider or several)
# and a legacy binding (RBAC enforced here or not).
# ---------------------------------------------------------------------------

# The library adds no fact of its own: this rule's test never holds (context
# extensions are strings) and OPA's rule index never evaluates it. It makes
# facts an empty set, not undefined, when no policy is compiled.
facts contains [] if input.attributes.contextExtensions["garrison.io/namespace"] == null

# The decision the engine queries.
decision := d if {
	fs := facts
	m := min(fs)
	d := m[1]
	d != null
	max(fs)[0] < 9
} else := {"allowed": true, "status": 200, "reason": "no-policy"} if {
	count(facts) == 0
} else := object.union(outcome(facts), recorded(facts))

# outcome is the decision of a set of facts, CUSTOM first.
outcome(fs) := custom_outcome(fs, m) if {
	m := min(fs)
	m[0] == 0
} else := enforced(fs)

# enforced is the DENY / ALLOW / legacy RBAC outcome: what the request gets
# when no CUSTOM rule matches, or when the CUSTOM provider let it through.
enforced(fs) := d if {
	d := min(fs)[1]
	d != null
} else := {"allowed": true, "status": 200, "reason": "rbac-allowed", "policy": m[4], "kind": m[3], "rule": m[6]} if {
	# No AuthorizationPolicy applies (ranks 3-5 would be less), an
	# ENFORCED binding allows, and RBAC is enforced for the workload.
	m := min(fs)
	m[0] == 6
	some f in fs
	f[0] == 7
} else := {"allowed": true, "status": 200, "reason": "no-policy"}

# A CUSTOM rule matches (m). Istio supports one extension provider per
# workload: when the CUSTOM policies that apply name several, it denies the
# requests their rules match instead of asking any provider (builder golden
# custom-bad-out). Otherwise the provider decides, and after_custom is what
# applies when it allows.
custom_outcome(fs, m) := {"allowed": false, "status": 403, "reason": "custom-conflict", "policy": m[3], "kind": m[2], "rule": m[4]} if {
	count({f[4] | some f in fs; f[0] == 4}) > 1
} else := {
	"allowed": false, "status": 403, "reason": "custom",
	"policy": m[3], "kind": m[2], "rule": m[4],
	"custom": {"provider": m[5], "policy": m[3]},
	"after_custom": enforced({f | some f in fs; f[0] > 0}),
}

# What is recorded but never decides: sorted, present only when not empty.
recorded(fs) := {name: r |
	some name, rank in {"audit": 9, "dry_run": 10, "rbac_permissive": 11}
	r := sort([record(f) | some f in fs; f[0] == rank])
	count(r) > 0
}

record(f) := {"policy": f[3], "kind": f[2], "rule": f[4]} if f[0] == 9

record(f) := {"policy": f[4], "kind": f[3], "rule": f[5], "action": f[2]} if f[0] == 10

record(f) := {"policy": f[4], "kind": f[3], "binding": f[2], "role": f[5], "rule": f[6], "subject": f[7]} if f[0] in {6, 11}

# ---------------------------------------------------------------------------
# The facts by kind, as CONTRACT section 4 names them: for explain, tests and
# `opa eval`. The decision never reads them.
# ---------------------------------------------------------------------------

custom_matches contains {"policy": f[3], "kind": f[2], "rule": f[4], "provider": f[5]} if {
	some f in fact_list
	f[0] == 0
}

deny_matches contains object.filter(f[1], ["policy", "kind", "rule"]) if {
	some f in fact_list
	f[0] == 1
}

allow_matches contains object.filter(f[1], ["policy", "kind", "rule"]) if {
	some f in fact_list
	f[0] == 2
}

allow_policies contains {"policy": f[3], "kind": f[2]} if {
	some f in fact_list
	f[0] == 3
}

custom_policies contains {"policy": f[3], "kind": f[2], "provider": f[4]} if {
	some f in fact_list
	f[0] == 4
}

# Any AuthorizationPolicy applies: Istio 1.4+ then ignores legacy RBAC.
v1beta1_present if {
	some f in fact_list
	f[0] in {3, 4, 5}
}

rbac_allow_matches contains record(f) if {
	some f in fact_list
	f[0] == 6
}

rbac_enforced_for contains {"policy": f[3], "kind": f[2], "rule": f[4], "mode": f[5], "enforcement": enforcement} if {
	some f in fact_list
	some rank, enforcement in {7: "ENFORCED", 8: "PERMISSIVE"}
	f[0] == rank
}

audit_matches contains record(f) if {
	some f in fact_list
	f[0] == 9
}

dry_run_matches contains record(f) if {
	some f in fact_list
	f[0] == 10
}

rbac_permissive_matches contains record(f) if {
	some f in fact_list
	f[0] == 11
}

# facts as a list of untyped elements, so that the views above may read
# slots that the compiled policy set happens to generate no fact with.
fact_list := sort(facts)

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
