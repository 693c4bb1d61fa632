package engine

import (
	"fmt"

	"github.com/open-policy-agent/opa/v1/ast"
)

// Decision is the outcome of one Check, as data.garrison.authz.decision
// states it (../CONTRACT.md section 5), plus what the engine adds.
type Decision struct {
	Allowed bool `json:"allowed"`
	// Status is the HTTP status of a denial: 403, 401 for an invalid JWT,
	// 400 when the engine rejected the request before any policy (Reason
	// ReasonInvalidPath or ReasonInvalidRequest). 200 when allowed.
	Status int    `json:"status"`
	Reason string `json:"reason"`
	Policy string `json:"policy,omitempty"`
	Kind   string `json:"kind,omitempty"`
	Rule   int    `json:"rule,omitempty"`
	// Custom, when set, delegates the decision to an extension provider.
	Custom *Custom `json:"custom,omitempty"`
	// AfterCustom, with Custom, is the decision that applies when the
	// provider allows the request (CONTRACT.md C3).
	AfterCustom *Decision `json:"after_custom,omitempty"`
	// Body is the deny body for Envoy (empty when details are turned off).
	Body           string           `json:"body,omitempty"`
	DryRun         []map[string]any `json:"dry_run,omitempty"`
	Audit          []map[string]any `json:"audit,omitempty"`
	RBACPermissive []map[string]any `json:"rbac_permissive,omitempty"`
	// PolicyVersion is the snapshot version the decision was made with.
	PolicyVersion uint64 `json:"policy_version"`
	// Workload is the destination workload (<kind>/<name>, comma-separated
	// when several share one identity and labels), from the request's
	// garrison.io/workload or derived from the snapshot; for logs.
	Workload string `json:"workload,omitempty"`
	// Notes say what the engine had to guess or refuse: context extensions
	// derived with the namespace only, why a request was rejected.
	Notes []string `json:"notes,omitempty"`
	// Authn is what origin (JWT) authentication made of the request; nil
	// when the engine authenticates nothing.
	Authn *Authn `json:"authn,omitempty"`
}

// Custom names the extension provider a CUSTOM policy delegates to.
type Custom struct {
	Provider string `json:"provider"`
	Policy   string `json:"policy"`
}

// Reasons the engine itself gives, besides those of the Rego library.
const (
	// ReasonInvalidPath: the path has %00 or an invalid escape (400).
	ReasonInvalidPath = "invalid-path"
	// ReasonInvalidRequest: opa-envoy-plugin could not build the input
	// either (an unparsable query or body, a bad content-length) and
	// answers 400; so does the engine.
	ReasonInvalidRequest = "invalid-request"
)

// Keys of the decision object, built once.
var (
	keyAllowed        = ast.StringTerm("allowed")
	keyStatus         = ast.StringTerm("status")
	keyReason         = ast.StringTerm("reason")
	keyPolicy         = ast.StringTerm("policy")
	keyKind           = ast.StringTerm("kind")
	keyRule           = ast.StringTerm("rule")
	keyCustom         = ast.StringTerm("custom")
	keyProvider       = ast.StringTerm("provider")
	keyAfterCustom    = ast.StringTerm("after_custom")
	keyDryRun         = ast.StringTerm("dry_run")
	keyAudit          = ast.StringTerm("audit")
	keyRBACPermissive = ast.StringTerm("rbac_permissive")
)

// decisionFrom reads the decision object. Only "allowed" is required; a
// value of the wrong type is an error rather than a guess, so that a
// library bug fails closed.
func decisionFrom(v ast.Value) (*Decision, error) {
	obj, ok := v.(ast.Object)
	if !ok {
		return nil, fmt.Errorf("decision is %s, not an object", ast.ValueName(v))
	}
	d := &Decision{}
	var allowed ast.Boolean
	t := obj.Get(keyAllowed)
	if t != nil {
		allowed, ok = t.Value.(ast.Boolean)
	}
	if t == nil || !ok {
		return nil, fmt.Errorf("decision has no boolean %q", "allowed")
	}
	d.Allowed = bool(allowed)
	d.Status = 403
	if d.Allowed {
		d.Status = 200
	}
	var err error
	if t := obj.Get(keyStatus); t != nil {
		if d.Status, err = intOf(t, "status"); err != nil {
			return nil, err
		}
	}
	if t := obj.Get(keyRule); t != nil {
		if d.Rule, err = intOf(t, "rule"); err != nil {
			return nil, err
		}
	}
	for _, f := range []struct {
		key *ast.Term
		dst *string
	}{{keyReason, &d.Reason}, {keyPolicy, &d.Policy}, {keyKind, &d.Kind}, {keyBody, &d.Body}} {
		if t := obj.Get(f.key); t != nil {
			s, ok := t.Value.(ast.String)
			if !ok {
				return nil, fmt.Errorf("decision %s is %s, not a string", f.key.Value, ast.ValueName(t.Value))
			}
			*f.dst = string(s)
		}
	}
	if t := obj.Get(keyCustom); t != nil {
		c, ok := t.Value.(ast.Object)
		if !ok {
			return nil, fmt.Errorf("decision custom is %s, not an object", ast.ValueName(t.Value))
		}
		d.Custom = &Custom{Provider: stringAt(c, keyProvider), Policy: stringAt(c, keyPolicy)}
		if d.Custom.Provider == "" {
			return nil, fmt.Errorf("decision custom names no provider")
		}
	}
	if t := obj.Get(keyAfterCustom); t != nil {
		if d.AfterCustom, err = decisionFrom(t.Value); err != nil {
			return nil, fmt.Errorf("decision after_custom: %w", err)
		}
	}
	for _, f := range []struct {
		key *ast.Term
		dst *[]map[string]any
	}{{keyDryRun, &d.DryRun}, {keyAudit, &d.Audit}, {keyRBACPermissive, &d.RBACPermissive}} {
		if t := obj.Get(f.key); t != nil {
			if *f.dst, err = records(t.Value); err != nil {
				return nil, fmt.Errorf("decision %s: %w", f.key.Value, err)
			}
		}
	}
	return d, nil
}

// stringAt is obj[key] when that is a string, else "".
func stringAt(obj ast.Object, key *ast.Term) string {
	if t := obj.Get(key); t != nil {
		if s, ok := t.Value.(ast.String); ok {
			return string(s)
		}
	}
	return ""
}

func intOf(t *ast.Term, name string) (int, error) {
	n, ok := t.Value.(ast.Number)
	if !ok {
		return 0, fmt.Errorf("decision %s is %s, not a number", name, ast.ValueName(t.Value))
	}
	i, ok := n.Int()
	if !ok {
		return 0, fmt.Errorf("decision %s %s is not an integer", name, n)
	}
	return i, nil
}

// records converts an array or set of objects (the origins of matches) for
// the decision. Only recorded matches take this path, never the common
// decision.
func records(v ast.Value) ([]map[string]any, error) {
	var out []map[string]any
	var err error
	add := func(t *ast.Term) {
		if err != nil {
			return
		}
		x, e := ast.JSON(t.Value)
		if e != nil {
			err = e
			return
		}
		m, ok := x.(map[string]any)
		if !ok {
			err = fmt.Errorf("element %s is not an object", t)
			return
		}
		out = append(out, m)
	}
	switch c := v.(type) {
	case *ast.Array:
		c.Foreach(add)
	case ast.Set:
		c.Foreach(add)
	default:
		return nil, fmt.Errorf("%s, not an array or set", ast.ValueName(v))
	}
	return out, err
}
