// Package engine evaluates compiled policy sets with embedded OPA: it
// prepares queries off the request path whenever a new snapshot arrives,
// swaps them in atomically, converts each CheckRequest straight into an OPA
// value, and fails closed. See ../CONTRACT.md.
package engine

// Decision is the outcome of one Check, as data.garrison.authz.decision
// states it (../CONTRACT.md section 5), plus what the engine adds.
type Decision struct {
	Allowed bool   `json:"allowed"`
	Status  int    `json:"status"`
	Reason  string `json:"reason"`
	Policy  string `json:"policy,omitempty"`
	Kind    string `json:"kind,omitempty"`
	Rule    int    `json:"rule,omitempty"`
	// Custom, when set, delegates the decision to an extension provider.
	Custom *Custom `json:"custom,omitempty"`
	// Body is the deny body for Envoy (empty when details are turned off).
	Body           string           `json:"body,omitempty"`
	DryRun         []map[string]any `json:"dry_run,omitempty"`
	Audit          []map[string]any `json:"audit,omitempty"`
	RBACPermissive []map[string]any `json:"rbac_permissive,omitempty"`
	// PolicyVersion is the snapshot version the decision was made with.
	PolicyVersion uint64 `json:"policy_version"`
}

// Custom names the extension provider a CUSTOM policy delegates to.
type Custom struct {
	Provider string `json:"provider"`
	Policy   string `json:"policy"`
}
