# Unit tests of the decision: generated rules are mocked with `with`.
package garrison.authz_test

import data.garrison.authz

deny_a := {"policy": "foo/deny-a", "kind": "AuthorizationPolicy", "rule": 0}

deny_b := {"policy": "foo/deny-b", "kind": "AuthorizationPolicy", "rule": 2}

allow_a := {"policy": "foo/allow-a", "kind": "AuthorizationPolicy", "rule": 1}

allow_pol := {"policy": "foo/allow-a", "kind": "AuthorizationPolicy"}

custom_a := {"policy": "foo/ext", "kind": "AuthorizationPolicy", "rule": 0, "provider": "opa-ext"}

audit_a := {"policy": "foo/audit", "kind": "AuthorizationPolicy", "rule": 0}

dry_a := {"policy": "foo/dry", "kind": "AuthorizationPolicy", "rule": 0, "action": "DENY"}

binding := {"policy": "foo/bind-viewer", "kind": "ServiceRoleBinding", "rule": 0, "binding": "foo/bind-viewer", "role": "foo/viewer"}

enforced_on := {"mode": "ON", "enforcement": "ENFORCED"}

permissive_on := {"mode": "ON", "enforcement": "PERMISSIVE"}

test_no_policy_allows if {
	authz.decision == {"allowed": true, "status": 200, "reason": "no-policy"}
}

test_deny_wins_over_allow if {
	d := authz.decision with data.garrison.authz.deny_matches as {deny_b}
		with data.garrison.authz.allow_matches as {allow_a}
		with data.garrison.authz.allow_policies as {allow_pol}
	d == {"allowed": false, "status": 403, "reason": "denied", "policy": "foo/deny-b", "kind": "AuthorizationPolicy", "rule": 2}
}

test_first_deny_is_deterministic if {
	d := authz.decision with data.garrison.authz.deny_matches as {deny_b, deny_a}
	d.policy == "foo/deny-a"
}

test_allow_match if {
	d := authz.decision with data.garrison.authz.allow_matches as {allow_a}
		with data.garrison.authz.allow_policies as {allow_pol}
	d == {"allowed": true, "status": 200, "reason": "allowed", "policy": "foo/allow-a", "kind": "AuthorizationPolicy", "rule": 1}
}

test_allow_policy_without_match_denies if {
	d := authz.decision with data.garrison.authz.allow_policies as {allow_pol}
	d == {"allowed": false, "status": 403, "reason": "no-allow-match"}
}

test_custom_delegates_before_deny if {
	d := authz.decision with data.garrison.authz.custom_matches as {custom_a}
		with data.garrison.authz.custom_policies as {{"policy": "foo/ext", "kind": "AuthorizationPolicy", "provider": "opa-ext"}}
		with data.garrison.authz.deny_matches as {deny_a}
	d.allowed == false
	d.reason == "custom"
	d.policy == "foo/ext"
	d.custom == {"provider": "opa-ext", "policy": "foo/ext"}
	d.after_custom == {"allowed": false, "status": 403, "reason": "denied", "policy": "foo/deny-a", "kind": "AuthorizationPolicy", "rule": 0}
}

test_custom_then_allow if {
	d := authz.decision with data.garrison.authz.custom_matches as {custom_a}
	d.after_custom == {"allowed": true, "status": 200, "reason": "no-policy"}
}

test_custom_policy_without_match_does_not_delegate if {
	d := authz.decision with data.garrison.authz.custom_policies as {{"policy": "foo/ext", "kind": "AuthorizationPolicy", "provider": "opa-ext"}}
	d == {"allowed": true, "status": 200, "reason": "no-policy"}
}

two_providers := {
	{"policy": "foo/a", "kind": "AuthorizationPolicy", "provider": "one"},
	{"policy": "foo/b", "kind": "AuthorizationPolicy", "provider": "two"},
}

test_custom_two_providers_deny_matches if {
	m := {"policy": "foo/b", "kind": "AuthorizationPolicy", "rule": 0, "provider": "two"}
	d := authz.decision with data.garrison.authz.custom_policies as two_providers
		with data.garrison.authz.custom_matches as {m}
		with data.garrison.authz.allow_matches as {allow_a}
		with data.garrison.authz.allow_policies as {allow_pol}
	d == {"allowed": false, "status": 403, "reason": "custom-conflict", "policy": "foo/b", "kind": "AuthorizationPolicy", "rule": 0}
}

test_custom_two_providers_pass_the_rest if {
	d := authz.decision with data.garrison.authz.custom_policies as two_providers
		with data.garrison.authz.allow_matches as {allow_a}
		with data.garrison.authz.allow_policies as {allow_pol}
	d.reason == "allowed"
}

test_audit_and_dry_run_never_decide if {
	d := authz.decision with data.garrison.authz.audit_matches as {audit_a}
		with data.garrison.authz.dry_run_matches as {dry_a}
	d == {"allowed": true, "status": 200, "reason": "no-policy", "audit": [audit_a], "dry_run": [dry_a]}
}

test_legacy_enforced_denies_by_default if {
	d := authz.decision with data.garrison.authz.rbac_enforced_for as {enforced_on}
	d == {"allowed": false, "status": 403, "reason": "rbac-denied"}
}

test_legacy_enforced_binding_allows if {
	d := authz.decision with data.garrison.authz.rbac_enforced_for as {enforced_on}
		with data.garrison.authz.rbac_allow_matches as {binding}
	d == {"allowed": true, "status": 200, "reason": "rbac-allowed", "policy": "foo/bind-viewer", "kind": "ServiceRoleBinding", "rule": 0}
}

test_legacy_permissive_never_denies if {
	perm := {"policy": "foo/bind-p", "kind": "ServiceRoleBinding", "rule": 0}
	d := authz.decision with data.garrison.authz.rbac_enforced_for as {permissive_on}
		with data.garrison.authz.rbac_permissive_matches as {perm}
	d == {"allowed": true, "status": 200, "reason": "no-policy", "rbac_permissive": [perm]}
}

test_legacy_ignored_when_v1beta1_present if {
	d := authz.decision with data.garrison.authz.rbac_enforced_for as {enforced_on}
		with data.garrison.authz.v1beta1_present as true
	d == {"allowed": true, "status": 200, "reason": "no-policy"}
}

test_legacy_ignored_under_allow_policy if {
	d := authz.decision with data.garrison.authz.rbac_enforced_for as {enforced_on}
		with data.garrison.authz.v1beta1_present as true
		with data.garrison.authz.allow_matches as {allow_a}
		with data.garrison.authz.allow_policies as {allow_pol}
	d.reason == "allowed"
}

# --- envoy_response -----------------------------------------------------------------

test_envoy_response_allowed if {
	authz.envoy_response == {"allowed": true, "headers": {"x-garrison-decision": "no-policy"}}
}

test_envoy_response_denied_names_policy if {
	r := authz.envoy_response with data.garrison.authz.deny_matches as {deny_b}
	r == {
		"allowed": false,
		"http_status": 403,
		"body": "RBAC: access denied by AuthorizationPolicy foo/deny-b rule 2",
		"headers": {"x-garrison-decision": "denied"},
	}
}

test_envoy_response_details_off if {
	r := authz.envoy_response with data.garrison.authz.deny_matches as {deny_b}
		with data.garrison.config.deny_body_details as false
	r.body == "RBAC: access denied"
}

test_envoy_response_no_allow_match if {
	r := authz.envoy_response with data.garrison.authz.allow_policies as {allow_pol}
	r.body == "RBAC: access denied"
	r.http_status == 403
}

test_entry_point if {
	data.envoy.authz.allow == {"allowed": true, "headers": {"x-garrison-decision": "no-policy"}}
	r := data.envoy.authz.allow with data.garrison.authz.deny_matches as {deny_a}
	r.allowed == false
}
