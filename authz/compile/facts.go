package compile

// The facts every generated rule adds to (CONTRACT section 4 and the
// library's "The decision"): one partial set, so that a decision evaluates
// one indexed set whatever the number of policies. A fact is an array
// [rank, decision, origin...]; the rank orders facts as Istio orders
// actions, and the decision (slot 1) is the whole decision object the fact
// makes when it is the least one, written as a constant so that deciding
// builds nothing. Keep these in step with policies/rego/library.rego.

import (
	"strconv"
	"strings"
)

// factsRule is the partial set the generated rules add to.
const factsRule = "facts"

// Ranks of facts.
const (
	rankCustomMatch      = 0  // [0, null, kind, policy, rule, provider]
	rankDenyMatch        = 1  // [1, {denied decision}]
	rankAllowMatch       = 2  // [2, {allowed decision}]
	rankAllowPolicy      = 3  // [3, NO_ALLOW_MATCH, kind, policy]
	rankCustomPolicy     = 4  // [4, NO_POLICY, kind, policy, provider]
	rankOtherPolicy      = 5  // [5, NO_POLICY, kind, policy]
	rankRBACAllow        = 6  // [6, null, binding, kind, policy, role, rule, subject]
	rankRBACEnforced     = 7  // [7, RBAC_DENIED, kind, policy, rule, mode]
	rankRBACPermissiveOn = 8  // [8, NO_POLICY, kind, policy, rule, mode]
	rankAuditMatch       = 9  // [9, NO_POLICY, kind, policy, rule]
	rankDryRunMatch      = 10 // [10, NO_POLICY, action, kind, policy, rule]
	rankRBACPermissive   = 11 // [11, NO_POLICY, binding, kind, policy, role, rule, subject]
)

// Decisions facts carry, as Rego.
const (
	decisionNoPolicy     = `{"allowed": true, "status": 200, "reason": "no-policy"}`
	decisionNoAllowMatch = `{"allowed": false, "status": 403, "reason": "no-allow-match"}`
	decisionRBACDenied   = `{"allowed": false, "status": 403, "reason": "rbac-denied"}`
	decisionComputed     = "null"
)

// verdictRego is the decision object that names the rule that decided, as
// the library's decision states it.
func verdictRego(allowed bool, reason, policy, kind string, rule int) string {
	status := "403"
	if allowed {
		status = "200"
	}
	return `{"allowed": ` + strconv.FormatBool(allowed) + `, "status": ` + status + `, "reason": ` + apQuote(reason) +
		`, "policy": ` + apQuote(policy) + `, "kind": ` + apQuote(kind) + `, "rule": ` + strconv.Itoa(rule) + `}`
}

// factHead renders "facts contains [rank, decision, terms...]"; terms are
// Rego terms already.
func factHead(rank int, decision string, terms ...string) string {
	return factsRule + " contains [" + strings.Join(append([]string{strconv.Itoa(rank), decision}, terms...), ", ") + "]"
}
