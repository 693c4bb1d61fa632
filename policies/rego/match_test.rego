# Unit tests of the library's attribute extraction and Istio matchers.
package garrison.authz_test

import data.garrison.authz

# A request as opa-envoy-plugin's input shapes it (CONTRACT section 1).
req := {"attributes": {
	"contextExtensions": {
		"garrison.io/namespace": "foo",
		"garrison.io/label/app": "httpbin",
		"garrison.io/services": "httpbin.foo.svc.cluster.local,other.foo.svc.cluster.local",
	},
	"source": {
		"address": {"socketAddress": {"address": "10.0.0.1", "portValue": 43210}},
		"principal": "spiffe://cluster.local/ns/sleep-ns/sa/sleep",
	},
	"destination": {
		"address": {"socketAddress": {"address": "10.1.2.3", "portValue": 8000}},
		"principal": "spiffe://cluster.local/ns/foo/sa/httpbin",
	},
	"request": {"http": {
		"method": "GET",
		"host": "HttpBin.Example.com:8000",
		"path": "/api/v1/items?q=1#frag",
		"headers": {
			":authority": "HttpBin.Example.com:8000",
			"x-token": "secret-value",
			"x-empty": "",
			"x-list": "a, b,c",
			"x-forwarded-for": "203.0.113.9, 198.51.100.7",
		},
	}},
	"tlsSession": {"sni": "outbound_.8000_._.httpbin.foo.svc.cluster.local"},
	"metadataContext": {"filterMetadata": {
		"istio_authn": {
			"request.auth.principal": "https://accounts.example.com/user-1",
			"request.auth.claims": {
				"iss": "https://accounts.example.com",
				"sub": "user-1",
				"aud": ["web", "mobile"],
				"azp": "frontend",
				"groups": ["admins", "dev"],
				"nested": {"level": {"deep": "yes"}},
			},
		},
		"envoy.filters.a.b": {"c": "exact-value", "list": ["one", "two"]},
	}},
}}

# --- attributes -------------------------------------------------------------

test_attributes if {
	authz.workload_namespace == "foo" with input as req
	authz.workload_services == {"httpbin.foo.svc.cluster.local", "other.foo.svc.cluster.local"} with input as req
	authz.source_ip == "10.0.0.1" with input as req
	authz.destination_ip == "10.1.2.3" with input as req
	authz.destination_port == 8000 with input as req
	authz.source_principal == "cluster.local/ns/sleep-ns/sa/sleep" with input as req
	authz.source_namespace == "sleep-ns" with input as req
	authz.source_trust_domain == "cluster.local" with input as req
	authz.request_path == "/api/v1/items" with input as req
	authz.jwt_issuer == "https://accounts.example.com" with input as req
	authz.jwt_subject == "user-1" with input as req
	authz.request_principal == "https://accounts.example.com/user-1" with input as req
	authz.sni == "outbound_.8000_._.httpbin.foo.svc.cluster.local" with input as req
}

test_principal_without_spiffe_prefix_is_no_identity if {
	r := json.patch(req, [{"op": "replace", "path": "/attributes/source/principal", "value": "cluster.local/ns/x/sa/y"}])
	not authz.source_principal with input as r
	not authz.source_trust_domain with input as r
}

test_principal_falls_back_to_authn_metadata if {
	r := json.patch(req, [
		{"op": "remove", "path": "/attributes/source/principal"},
		{"op": "add", "path": "/attributes/metadataContext/filterMetadata/istio_authn/source.principal", "value": "cluster.local/ns/a/sa/b"},
	])
	authz.source_principal == "cluster.local/ns/a/sa/b" with input as r
}

test_jwt_from_principal_when_no_claims if {
	r := json.patch(req, [{"op": "remove", "path": "/attributes/metadataContext/filterMetadata/istio_authn/request.auth.claims"}])
	authz.jwt_issuer == "https://accounts.example.com" with input as r
	authz.jwt_subject == "user-1" with input as r
}

# req's destination (app: httpbin) is a sidecar unless a Gateway selects it.
gateway := {"gateway_selectors": [{"app": "httpbin"}]}

test_remote_ip_sidecar_is_last_forwarded_for if {
	authz.remote_ip == "198.51.100.7" with input as req
	authz.remote_ip == "198.51.100.7" with input as req with data.garrison.config.num_trusted_proxies as 2
}

test_remote_ip_sidecar_without_forwarded_for_is_source if {
	r := json.patch(req, [{"op": "remove", "path": "/attributes/request/http/headers/x-forwarded-for"}])
	authz.remote_ip == "10.0.0.1" with input as r
}

test_remote_ip_sidecar_ignores_an_entry_that_is_no_address if {
	r := json.patch(req, [{"op": "replace", "path": "/attributes/request/http/headers/x-forwarded-for", "value": "198.51.100.7, unknown"}])
	authz.remote_ip == "10.0.0.1" with input as r
	r6 := json.patch(req, [{"op": "replace", "path": "/attributes/request/http/headers/x-forwarded-for", "value": "2001:db8::7"}])
	authz.remote_ip == "2001:db8::7" with input as r6
}

test_remote_ip_gateway_default_is_source if {
	authz.remote_ip == "10.0.0.1" with input as req with data.garrison.config as gateway
}

test_remote_ip_gateway_trusted_proxies if {
	authz.remote_ip == "198.51.100.7" with input as req with data.garrison.config as object.union(gateway, {"num_trusted_proxies": 1})
	authz.remote_ip == "203.0.113.9" with input as req with data.garrison.config as object.union(gateway, {"num_trusted_proxies": 2})
	authz.remote_ip == "10.0.0.1" with input as req with data.garrison.config as object.union(gateway, {"num_trusted_proxies": 3})
}

test_gateway_from_the_proxy_extension if {
	gw := json.patch(req, [{"op": "add", "path": "/attributes/contextExtensions/garrison.io~1proxy", "value": "gateway"}])
	authz.is_gateway with input as gw
	sc := json.patch(req, [{"op": "add", "path": "/attributes/contextExtensions/garrison.io~1proxy", "value": "sidecar"}])
	not authz.is_gateway with input as sc with data.garrison.config as gateway
	not authz.is_gateway with input as req with data.garrison.config as {"gateway_selectors": [{"app": "httpbin", "istio": "ingressgateway"}]}
}

# --- matchers -------------------------------------------------------------------

test_string_in if {
	authz.string_in("abc", {"exact": {"abc", "x"}})
	not authz.string_in("abcd", {"exact": {"abc"}})
	authz.string_in("abcd", {"prefix": ["x", "ab"]})
	authz.string_in("ab", {"prefix": ["ab"]})
	not authz.string_in("xab", {"prefix": ["ab"]})
	authz.string_in("abcd", {"suffix": ["cd"]})
	not authz.string_in("cde", {"suffix": ["cd"]})
	authz.string_in("/a/b", {"regex": "^/a/[^/]+$"})
	not authz.string_in("/a/b/c", {"regex": "^/a/[^/]+$"})
	authz.string_in("x", {"nonempty": true})
	not authz.string_in("", {"nonempty": true})
	authz.string_in("b-x", {"exact": {"a"}, "prefix": ["b-"], "suffix": ["-c"]})
	authz.string_in("z-c", {"exact": {"a"}, "prefix": ["b-"], "suffix": ["-c"]})
	not authz.string_in("z", {"exact": {"a"}, "prefix": ["b-"], "suffix": ["-c"]})
	not authz.string_in("anything", {})
}

test_nonempty if {
	authz.nonempty("x")
	not authz.nonempty("")
	not authz.nonempty(5)
}

test_ip_in if {
	authz.source_ip_in(["10.0.0.0/8"]) with input as req
	authz.ip_in("10.0.0.1", ["192.168.0.0/16", "10.0.0.1/32"])
	not authz.ip_in("10.0.0.2", ["10.0.0.1/32"])
	authz.ip_in("2001:db8::5", ["2001:db8::/32"])
	not authz.ip_in("2001:db8::5", ["10.0.0.0/8"])
	authz.remote_ip_in(["198.51.100.7/32"]) with input as req
	authz.destination_ip_in(["10.1.2.0/24"]) with input as req
	not authz.destination_ip_in(["10.1.3.0/24"]) with input as req
}

test_trust_domain_needs_a_path if {
	r := json.patch(req, [{"op": "replace", "path": "/attributes/source/principal", "value": "spiffe://lonely"}])
	not authz.source_trust_domain with input as r
}

test_request_principal_in if {
	exact := {"iss": {"exact": {"https://accounts.example.com"}}, "sub": {"exact": {"user-1"}}}
	authz.request_principal_in([exact]) with input as req
	any := {"iss": {"nonempty": true}, "sub": {"nonempty": true}}
	authz.request_principal_in([any]) with input as req
	other := {"iss": {"exact": {"https://accounts.example.com"}}, "sub": {"exact": {"user-2"}}}
	not authz.request_principal_in([other]) with input as req
	authz.request_principal_in([other, exact]) with input as req
	issuer_only := {"iss": {"exact": {"https://accounts.example.com"}}, "sub": {"exact": {""}}}
	not authz.request_principal_in([issuer_only]) with input as req
}

test_request_principal_issuer_only if {
	r := json.patch(req, [{"op": "replace", "path": "/attributes/metadataContext/filterMetadata/istio_authn/request.auth.claims/sub", "value": ""}])
	issuer_only := {"iss": {"exact": {"https://accounts.example.com"}}, "sub": {"exact": {""}}}
	authz.request_principal_in([issuer_only]) with input as r
	not authz.request_principal_in([{"iss": {"nonempty": true}, "sub": {"nonempty": true}}]) with input as r
}

test_no_jwt if {
	r := json.patch(req, [{"op": "remove", "path": "/attributes/metadataContext/filterMetadata/istio_authn"}])
	not authz.request_principal_in([{"iss": {"nonempty": true}, "sub": {"nonempty": true}}]) with input as r
	not authz.audience_in({"nonempty": true}) with input as r
	not authz.claim_in(["groups"], {"nonempty": true}) with input as r
}

test_non_string_claims_do_not_match if {
	r := json.patch(req, [{"op": "replace", "path": "/attributes/metadataContext/filterMetadata/istio_authn/request.auth.claims/sub", "value": 42}])
	not authz.jwt_subject == 42 with input as r
	not authz.claim_value_in(42, {"exact": {"42"}})
	not authz.claim_value_in([42], {"exact": {"42"}})
	not authz.claim_value_in({"a": "b"}, {"nonempty": true})
}

test_claim_in if {
	authz.claim_in(["groups"], {"exact": {"admins"}}) with input as req
	authz.claim_in(["groups"], {"prefix": ["adm"]}) with input as req
	authz.claim_in(["nested", "level", "deep"], {"exact": {"yes"}}) with input as req
	not authz.claim_in(["nested", "level"], {"nonempty": true}) with input as req
	not authz.claim_in(["groups"], {"exact": {"ops"}}) with input as req
	authz.audience_in({"exact": {"mobile"}}) with input as req
	not authz.audience_in({"exact": {"tv"}}) with input as req
	authz.presenter_in({"prefix": ["front"]}) with input as req
}

test_host_lower if {
	authz.request_host_lower == "httpbin.example.com:8000" with input as req
}

test_attribute_matchers if {
	authz.principal_in({"exact": {"cluster.local/ns/sleep-ns/sa/sleep"}}) with input as req
	authz.principal_in({"regex": "^.*/ns/sleep-ns/.*$"}) with input as req
	authz.trust_domain_in({"suffix": [".local"]}) with input as req
	authz.host_in({"exact": {"httpbin.example.com:8000"}}) with input as req
	not authz.host_in({"exact": {"httpbin.example.com"}}) with input as req
	authz.method_in({"exact": {"GET"}}) with input as req
	authz.path_in({"exact": {"/api/v1/items"}}) with input as req
	authz.port_in([80, 8000]) with input as req
	not authz.port_in([80]) with input as req
	authz.sni_in({"suffix": [".svc.cluster.local"]}) with input as req
	authz.header_in("x-token", {"prefix": ["secret"]}) with input as req
	not authz.header_in("x-token", {"exact": {"secret"}}) with input as req
	authz.header_present("x-empty") with input as req
	not authz.header_present("x-missing") with input as req
}

# Absent attributes make the matchers undefined, so that their negation holds
# (a call with an undefined argument would not: see the library's comment).
test_absent_attributes_negate if {
	r := {"attributes": {"request": {"http": {"headers": {}}}}}
	not authz.principal_in({"nonempty": true}) with input as r
	not authz.trust_domain_in({"nonempty": true}) with input as r
	not authz.source_ip_in(["0.0.0.0/0"]) with input as r
	not authz.request_principal_in([{"iss": {"nonempty": true}, "sub": {"nonempty": true}}]) with input as r
	not authz.host_in({"nonempty": true}) with input as r
	not authz.method_in({"nonempty": true}) with input as r
	not authz.path_in({"nonempty": true}) with input as r
	not authz.port_in([0]) with input as r
	not authz.sni_in({"nonempty": true}) with input as r
	not authz.header_in("x", {"nonempty": true}) with input as r
	not authz.header_present("x") with input as r
	not authz.inline_header_in("x", {"nonempty": true}) with input as r
	not authz.claim_in(["a"], {"nonempty": true}) with input as r
	not authz.audience_in({"nonempty": true}) with input as r
	not authz.presenter_in({"nonempty": true}) with input as r
	not authz.metadata_in("f", "k", {"nonempty": true}, {"nonempty": true}) with input as r
}

test_inline_header_in if {
	authz.inline_header_in("x-list", {"exact": {"c"}}) with input as req
	authz.inline_header_in("x-list", {"exact": {"a"}}) with input as req
	authz.inline_header_in("x-list", {"exact": {" b"}}) with input as req
	not authz.inline_header_in("x-list", {"exact": {"b"}}) with input as req
}

test_metadata_in if {
	authz.metadata_in("envoy.filters.a.b", "c", {"exact": {"exact-value"}}, {}) with input as req
	authz.metadata_in("envoy.filters.a.b", "c", {"prefix": ["exact-"]}, {}) with input as req
	not authz.metadata_in("envoy.filters.a.b", "c", {}, {"exact": {"exact-value"}}) with input as req
	authz.metadata_in("envoy.filters.a.b", "list", {}, {"exact": {"two"}}) with input as req
	not authz.metadata_in("envoy.filters.a.b", "list", {"exact": {"two"}}, {}) with input as req
}
