# Unit tests of the decision: the facts generated rules add (CONTRACT
# section 4) are mocked with `with`.
package garrison.authz_test

import data.garrison.authz

ap := "AuthorizationPolicy"

no_policy := {"allowed": true, "status": 200, "reason": "no-policy"}

no_allow_match := {"allowed": false, "status": 403, "reason": "no-allow-match"}

rbac_denied := {"allowed": false, "status": 403, "reason": "rbac-denied"}

deny_a := {"policy": "foo/deny-a", "kind": ap, "rule": 0}

deny_b := {"policy": "foo/deny-b", "kind": ap, "rule": 2}

allow_a := {"policy": "foo/allow-a", "kind": ap, "rule": 1}

# What the compiler generates for those matches and policies.
deny_fact(m) := [1, object.union({"allowed": false, "status": 403, "reason": "denied"}, m)]

allow_fact(m) := [2, object.union({"allowed": true, "status": 200, "reason": "allowed"}, m)]

allow_pol := [3, no_allow_match, ap, "foo/allow-a"]

deny_pol(name) := [5, no_policy, ap, name]

custom_a := [0, null, ap, "foo/ext", 0, "opa-ext"]

custom_pol_a := [4, no_policy, ap, "foo/ext", "opa-ext"]

audit_a := [9, no_policy, ap, "foo/audit", 0]

dry_a := [10, no_policy, "DENY", ap, "foo/dry", 0]

binding := [6, null, "foo/bind-viewer", "ServiceRoleBinding", "foo/bind-viewer", "foo/viewer", 0, 1]

enforced_on := [7, rbac_denied, "ClusterRbacConfig", "default", 0, "ON"]

permissive_on := [8, no_policy, "ClusterRbacConfig", "default", 0, "ON"]

test_no_policy_allows if {
	authz.decision == no_policy
}

test_no_fact_allows if {
	authz.decision == no_policy with data.garrison.authz.facts as set()
}

test_deny_wins_over_allow if {
	d := authz.decision with data.garrison.authz.facts as {deny_fact(deny_b), allow_fact(allow_a), allow_pol, deny_pol("foo/deny-b")}
	d == {"allowed": false, "status": 403, "reason": "denied", "policy": "foo/deny-b", "kind": ap, "rule": 2}
}

test_first_deny_is_deterministic if {
	d := authz.decision with data.garrison.authz.facts as {deny_fact(deny_b), deny_fact(deny_a)}
	d.policy == "foo/deny-a"
}

test_first_allow_is_the_least_rule if {
	r3 := {"policy": "foo/allow-a", "kind": ap, "rule": 3}
	b0 := {"policy": "foo/allow-b", "kind": ap, "rule": 0}
	d := authz.decision with data.garrison.authz.facts as {allow_fact(r3), allow_fact(allow_a), allow_fact(b0), allow_pol}
	d == {"allowed": true, "status": 200, "reason": "allowed", "policy": "foo/allow-a", "kind": ap, "rule": 1}
}

test_allow_match if {
	d := authz.decision with data.garrison.authz.facts as {allow_fact(allow_a), allow_pol}
	d == {"allowed": true, "status": 200, "reason": "allowed", "policy": "foo/allow-a", "kind": ap, "rule": 1}
}

test_allow_policy_without_match_denies if {
	d := authz.decision with data.garrison.authz.facts as {allow_pol}
	d == no_allow_match
}

test_deny_policy_without_match_allows if {
	d := authz.decision with data.garrison.authz.facts as {deny_pol("foo/deny-a")}
	d == no_policy
}

test_custom_delegates_before_deny if {
	d := authz.decision with data.garrison.authz.facts as {custom_a, custom_pol_a, deny_fact(deny_a), deny_pol("foo/deny-a")}
	d.allowed == false
	d.reason == "custom"
	d.policy == "foo/ext"
	d.rule == 0
	d.custom == {"provider": "opa-ext", "policy": "foo/ext"}
	d.after_custom == {"allowed": false, "status": 403, "reason": "denied", "policy": "foo/deny-a", "kind": ap, "rule": 0}
}

test_custom_then_allow if {
	d := authz.decision with data.garrison.authz.facts as {custom_a}
	d.after_custom == no_policy
}

test_custom_then_allow_policy if {
	d := authz.decision with data.garrison.authz.facts as {custom_a, custom_pol_a, allow_fact(allow_a), allow_pol}
	d.reason == "custom"
	d.after_custom.reason == "allowed"
}

test_custom_policy_without_match_does_not_delegate if {
	d := authz.decision with data.garrison.authz.facts as {custom_pol_a}
	d == no_policy
}

two_providers := {
	[4, no_policy, ap, "foo/a", "one"],
	[4, no_policy, ap, "foo/b", "two"],
}

test_custom_two_providers_deny_matches if {
	m := [0, null, ap, "foo/b", 0, "two"]
	d := authz.decision with data.garrison.authz.facts as two_providers | {m, allow_fact(allow_a), allow_pol}
	d == {"allowed": false, "status": 403, "reason": "custom-conflict", "policy": "foo/b", "kind": ap, "rule": 0}
}

test_custom_two_providers_pass_the_rest if {
	d := authz.decision with data.garrison.authz.facts as two_providers | {allow_fact(allow_a), allow_pol}
	d.reason == "allowed"
}

test_audit_and_dry_run_never_decide if {
	d := authz.decision with data.garrison.authz.facts as {audit_a, dry_a, deny_pol("foo/audit"), deny_pol("foo/dry")}
	d == {
		"allowed": true, "status": 200, "reason": "no-policy",
		"audit": [{"policy": "foo/audit", "kind": ap, "rule": 0}],
		"dry_run": [{"policy": "foo/dry", "kind": ap, "rule": 0, "action": "DENY"}],
	}
}

test_recorded_with_a_decision if {
	audit_b := [9, no_policy, ap, "foo/audit", 3]
	d := authz.decision with data.garrison.authz.facts as {audit_b, audit_a, deny_fact(deny_a), deny_pol("foo/audit")}
	d == {
		"allowed": false, "status": 403, "reason": "denied", "policy": "foo/deny-a", "kind": ap, "rule": 0,
		"audit": [{"policy": "foo/audit", "kind": ap, "rule": 0}, {"policy": "foo/audit", "kind": ap, "rule": 3}],
	}
}

test_recorded_with_custom if {
	d := authz.decision with data.garrison.authz.facts as {custom_a, custom_pol_a, dry_a}
	d.reason == "custom"
	d.dry_run == [{"policy": "foo/dry", "kind": ap, "rule": 0, "action": "DENY"}]
	not d.after_custom.dry_run
}

test_legacy_enforced_denies_by_default if {
	d := authz.decision with data.garrison.authz.facts as {enforced_on}
	d == rbac_denied
}

test_legacy_enforced_binding_allows if {
	d := authz.decision with data.garrison.authz.facts as {enforced_on, binding}
	d == {"allowed": true, "status": 200, "reason": "rbac-allowed", "policy": "foo/bind-viewer", "kind": "ServiceRoleBinding", "rule": 0}
}

test_legacy_binding_without_enforcement_does_not_decide if {
	d := authz.decision with data.garrison.authz.facts as {binding}
	d == no_policy
}

test_legacy_permissive_never_denies if {
	perm := [11, no_policy, "foo/bind-p", "ServiceRoleBinding", "foo/bind-p", "foo/viewer", 0, 0]
	d := authz.decision with data.garrison.authz.facts as {permissive_on, perm}
	d == {"allowed": true, "status": 200, "reason": "no-policy", "rbac_permissive": [{
		"policy": "foo/bind-p", "kind": "ServiceRoleBinding", "binding": "foo/bind-p",
		"role": "foo/viewer", "rule": 0, "subject": 0,
	}]}
}

test_legacy_ignored_when_v1beta1_present if {
	d := authz.decision with data.garrison.authz.facts as {enforced_on, deny_pol("foo/deny-a")}
	d == no_policy
}

test_legacy_ignored_under_allow_policy if {
	d := authz.decision with data.garrison.authz.facts as {enforced_on, binding, allow_fact(allow_a), allow_pol}
	d.reason == "allowed"
}

test_legacy_ignored_under_allow_policy_without_match if {
	d := authz.decision with data.garrison.authz.facts as {enforced_on, binding, allow_pol}
	d == no_allow_match
}

# --- the facts by kind ---------------------------------------------------------------

test_views if {
	fs := {
		custom_a, custom_pol_a, deny_fact(deny_a), allow_fact(allow_a), allow_pol,
		deny_pol("foo/deny-a"), binding, enforced_on, permissive_on, audit_a, dry_a,
	}
	authz.custom_matches == {{"policy": "foo/ext", "kind": ap, "rule": 0, "provider": "opa-ext"}} with data.garrison.authz.facts as fs
	authz.custom_policies == {{"policy": "foo/ext", "kind": ap, "provider": "opa-ext"}} with data.garrison.authz.facts as fs
	authz.deny_matches == {deny_a} with data.garrison.authz.facts as fs
	authz.allow_matches == {allow_a} with data.garrison.authz.facts as fs
	authz.allow_policies == {{"policy": "foo/allow-a", "kind": ap}} with data.garrison.authz.facts as fs
	authz.v1beta1_present with data.garrison.authz.facts as fs
	authz.rbac_allow_matches == {{
		"policy": "foo/bind-viewer", "kind": "ServiceRoleBinding", "binding": "foo/bind-viewer",
		"role": "foo/viewer", "rule": 0, "subject": 1,
	}} with data.garrison.authz.facts as fs
	authz.rbac_enforced_for == {
		{"policy": "default", "kind": "ClusterRbacConfig", "rule": 0, "mode": "ON", "enforcement": "ENFORCED"},
		{"policy": "default", "kind": "ClusterRbacConfig", "rule": 0, "mode": "ON", "enforcement": "PERMISSIVE"},
	} with data.garrison.authz.facts as fs
	authz.audit_matches == {{"policy": "foo/audit", "kind": ap, "rule": 0}} with data.garrison.authz.facts as fs
	authz.dry_run_matches == {{"policy": "foo/dry", "kind": ap, "rule": 0, "action": "DENY"}} with data.garrison.authz.facts as fs
	count(authz.rbac_permissive_matches) == 0 with data.garrison.authz.facts as fs
}

test_v1beta1_absent if {
	not authz.v1beta1_present with data.garrison.authz.facts as {enforced_on, binding}
}

# --- envoy_response -----------------------------------------------------------------

test_envoy_response_allowed if {
	authz.envoy_response == {"allowed": true, "headers": {"x-garrison-decision": "no-policy"}}
}

test_envoy_response_denied_names_policy if {
	r := authz.envoy_response with data.garrison.authz.facts as {deny_fact(deny_b)}
	r == {
		"allowed": false,
		"http_status": 403,
		"body": "RBAC: access denied by AuthorizationPolicy foo/deny-b rule 2",
		"headers": {"x-garrison-decision": "denied"},
	}
}

test_envoy_response_details_off if {
	r := authz.envoy_response with data.garrison.authz.facts as {deny_fact(deny_b)}
		with data.garrison.config.deny_body_details as false
	r.body == "RBAC: access denied"
}

test_envoy_response_no_allow_match if {
	r := authz.envoy_response with data.garrison.authz.facts as {allow_pol}
	r.body == "RBAC: access denied"
	r.http_status == 403
}

test_entry_point if {
	data.envoy.authz.allow == {"allowed": true, "headers": {"x-garrison-decision": "no-policy"}}
	r := data.envoy.authz.allow with data.garrison.authz.facts as {deny_fact(deny_a)}
	r.allowed == false
}
