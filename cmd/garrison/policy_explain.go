package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/garrison-mesh/garrison/authn/jwt"

	"github.com/spf13/cobra"
	"gopkg.in/yaml.v3"
	security "istio.io/api/security/v1beta1"

	"github.com/garrison-mesh/garrison/authz/cases"
	"github.com/garrison-mesh/garrison/authz/engine"
	"github.com/garrison-mesh/garrison/policies"
	"github.com/garrison-mesh/garrison/policies/legacy"
)

// explainReport is the -o json output of garrison policy explain.
type explainReport struct {
	// Case is the name of the case explained, when the request was one.
	Case string `json:"case,omitempty"`
	// Expectation is whether the case's expectation is met, when it has
	// one.
	Expectation *expectation     `json:"expectation,omitempty"`
	Decision    *engine.Decision `json:"decision"`
	// Workload is the destination workload the policies were chosen for:
	// the request's context extensions, or those the engine derived.
	Workload explainWorkload `json:"workload"`
	// Policies are the AuthorizationPolicies that apply to the workload,
	// root namespace first, with the rules that matched.
	Policies []appliedPolicy `json:"policies"`
	// LegacyRBAC is present when the workload's namespace has legacy
	// ServiceRoleBindings or legacy RBAC is on for it.
	LegacyRBAC *legacyRBAC `json:"legacy_rbac,omitempty"`
	// Matches are Engine.Explain's: every rule of engine.ExplainRules that
	// produced anything.
	Matches map[string][]any `json:"matches"`
	// EnvoyResponse is what opa-envoy-plugin answers with the bundle of
	// `garrison policy compile`.
	EnvoyResponse any `json:"envoy_response,omitempty"`
	// Input is the OPA input evaluated.
	Input any `json:"input,omitempty"`
}

type expectation struct {
	Met     bool   `json:"met"`
	Failure string `json:"failure,omitempty"`
}

type explainWorkload struct {
	Namespace string            `json:"namespace,omitempty"`
	Labels    map[string]string `json:"labels,omitempty"`
	Services  []string          `json:"services,omitempty"`
	Workload  string            `json:"workload,omitempty"`
}

type appliedPolicy struct {
	Kind     string `json:"kind"`
	Policy   string `json:"policy"`
	Action   string `json:"action"`
	Provider string `json:"provider,omitempty"`
	DryRun   bool   `json:"dry_run,omitempty"`
	Source   string `json:"source"`
	Rules    int    `json:"rules"`
	// Matched are the indexes of the rules that matched the request.
	Matched []int `json:"matched_rules"`
	// Note says why the policy is special: it allows nothing, it is not
	// compiled.
	Note string `json:"note,omitempty"`
}

type legacyRBAC struct {
	// Enforced lists the rbac_enforced_for elements: which config puts
	// the workload under RBAC, and how.
	Enforced []any `json:"enforced_for"`
	// Ignored: an AuthorizationPolicy applies to the workload, so Istio
	// 1.4+ ignores legacy RBAC for it.
	Ignored  bool            `json:"ignored"`
	Bindings []legacyBinding `json:"bindings"`
}

type legacyBinding struct {
	Binding string `json:"binding"`
	Role    string `json:"role"`
	Source  string `json:"source"`
	// Matches are the (role rule, subject) pairs that matched; Permissive
	// when the binding only logs.
	Matches []bindingMatch `json:"matches"`
}

type bindingMatch struct {
	Rule       int  `json:"rule"`
	Subject    int  `json:"subject"`
	Permissive bool `json:"permissive,omitempty"`
}

func newPolicyExplainCommand(f *policyFlags) *cobra.Command {
	var (
		output   string
		request  string
		caseName string
		verbose  bool
	)
	cmd := &cobra.Command{
		Use:   "explain DIR|FILE ... --request REQUEST.yaml",
		Short: "Explain how the policies decide one request",
		Long: "Explain reads the configuration as validate does, compiles it and decides one request, then\n" +
			"shows the decision, the AuthorizationPolicies that apply to the destination workload with the\n" +
			"rules that matched, legacy RBAC's bindings and whether it is enforced, what is only recorded\n" +
			"(dry run, audit, permissive RBAC) and the response opa-envoy-plugin would give with the\n" +
			"compiled bundle.\n\n" +
			"--request names a YAML file (- for standard input) holding a request in the authz/cases\n" +
			"format, a case (name, request, expect), or a list of cases (a *_test.yaml file) with --case\n" +
			"naming the one to explain. When the case has an expectation, explain says whether it is\n" +
			"met and exits 1 when it is not.",
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if output != "text" && output != "json" {
				return fmt.Errorf("-o must be text or json, got %q", output)
			}
			if request == "" {
				return errors.New("--request is required")
			}
			c, hasExpect, err := readExplainRequest(request, cmd.InOrStdin(), caseName)
			if err != nil {
				return fmt.Errorf("--request %s: %w", request, err)
			}
			ps, err := loadPolicySet(args, f)
			if err != nil {
				return err
			}
			if ps.res == nil {
				writeProblems(cmd.ErrOrStderr(), ps)
				return exitError{code: 1}
			}
			req, err := c.Request.CheckRequest()
			if err != nil {
				return fmt.Errorf("--request %s: %w", request, err)
			}
			eng, closeEngine, err := staticEngine(ps)
			if err != nil {
				return err
			}
			defer closeEngine()
			x, err := eng.Explain(cmd.Context(), req)
			if err != nil {
				return err
			}
			rep := buildExplainReport(ps.snap, c, hasExpect, x)
			if output == "json" {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				if err := enc.Encode(rep); err != nil {
					return err
				}
			} else if err := writeExplainText(cmd.OutOrStdout(), c, rep, verbose); err != nil {
				return err
			}
			if rep.Expectation != nil && !rep.Expectation.Met {
				return exitError{code: 1}
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVarP(&output, "output", "o", "text", "output format: text or json")
	fl.StringVar(&request, "request", "", "YAML file with the request, a case or a list of cases (- for standard input)")
	fl.StringVar(&caseName, "case", "", "the case to explain, when --request holds several")
	fl.BoolVarP(&verbose, "verbose", "v", false, "also show the OPA input evaluated")
	return cmd
}

// readExplainRequest reads a request, a case or a list of cases (picking
// caseName). hasExpect says whether the case states an expectation.
func readExplainRequest(name string, stdin io.Reader, caseName string) (cases.Case, bool, error) {
	var data []byte
	var err error
	if name == "-" {
		data, err = io.ReadAll(stdin)
	} else {
		data, err = os.ReadFile(name)
	}
	if err != nil {
		return cases.Case{}, false, err
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return cases.Case{}, false, err
	}
	if len(doc.Content) != 1 {
		return cases.Case{}, false, errors.New("want one YAML document: a request, a case or a list of cases")
	}
	root := doc.Content[0]
	strict := func(v any) error {
		dec := yaml.NewDecoder(bytes.NewReader(data))
		dec.KnownFields(true)
		return dec.Decode(v)
	}
	switch {
	case root.Kind == yaml.SequenceNode:
		cs, err := cases.Decode(bytes.NewReader(data))
		if err != nil {
			return cases.Case{}, false, err
		}
		var names []string
		for _, c := range cs {
			if c.Name == caseName || (caseName == "" && len(cs) == 1) {
				return c, true, nil
			}
			names = append(names, strconv.Quote(c.Name))
		}
		if caseName == "" {
			return cases.Case{}, false, fmt.Errorf("%d cases: name one with --case (%s)", len(cs), strings.Join(names, ", "))
		}
		return cases.Case{}, false, fmt.Errorf("no case named %q", caseName)
	case root.Kind == yaml.MappingNode && hasKey(root, "request"):
		var c cases.Case
		if err := strict(&c); err != nil {
			return cases.Case{}, false, err
		}
		return c, hasKey(root, "expect"), nil
	case root.Kind == yaml.MappingNode:
		var c cases.Case
		if err := strict(&c.Request); err != nil {
			return cases.Case{}, false, err
		}
		return c, false, nil
	}
	return cases.Case{}, false, errors.New("want a request, a case or a list of cases")
}

func hasKey(m *yaml.Node, key string) bool {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return true
		}
	}
	return false
}

func buildExplainReport(snap *policies.Snapshot, c cases.Case, hasExpect bool, x *engine.Explanation) *explainReport {
	rep := &explainReport{
		Case:          c.Name,
		Decision:      x.Decision,
		Matches:       x.Matches,
		EnvoyResponse: x.EnvoyResponse,
		Input:         x.Input,
		Policies:      []appliedPolicy{},
	}
	if rep.Matches == nil {
		rep.Matches = map[string][]any{}
	}
	if hasExpect && x.Decision != nil {
		failure := c.Expect.Mismatch(caseDecision(x.Decision))
		rep.Expectation = &expectation{Met: failure == "", Failure: failure}
	}
	rep.Workload = workloadOf(x)
	if x.Decision != nil && x.Decision.Status == 400 && x.Input == nil {
		return rep // rejected before any policy
	}

	// Rules that matched, by policy, from every partial set of matches.
	matched := map[string][]int{}
	for _, set := range []string{"custom_matches", "deny_matches", "allow_matches", "audit_matches", "dry_run_matches"} {
		for _, m := range x.Matches[set] {
			obj, _ := m.(map[string]any)
			p, _ := obj["policy"].(string)
			if r, ok := intOf(obj["rule"]); ok && p != "" && !slices.Contains(matched[p], r) {
				matched[p] = append(matched[p], r)
			}
		}
	}
	ns := rep.Workload.Namespace
	for _, r := range snap.ForWorkload(policies.KindAuthorizationPolicy, ns, rep.Workload.Labels) {
		spec, ok := policies.SpecAs[*security.AuthorizationPolicy](r)
		if !ok {
			continue
		}
		id := r.Namespace + "/" + r.Name
		ap := appliedPolicy{
			Kind:     r.Kind.Kind,
			Policy:   id,
			Action:   spec.GetAction().String(),
			Provider: spec.GetProvider().GetName(),
			DryRun:   r.DryRun(),
			Source:   r.Source.String(),
			Rules:    len(spec.GetRules()),
			Matched:  slices.Sorted(slices.Values(matched[id])),
		}
		if ap.Matched == nil {
			ap.Matched = []int{}
		}
		switch {
		case spec.GetTargetRef() != nil || len(spec.GetTargetRefs()) > 0:
			ap.Note = "not compiled: targetRef(s) attach it to gateways and waypoints"
		case ap.Rules == 0 && spec.GetAction() == security.AuthorizationPolicy_ALLOW:
			ap.Note = "no rules: allows nothing"
		case ap.Rules == 0:
			ap.Note = "no rules: matches nothing"
		}
		rep.Policies = append(rep.Policies, ap)
	}
	rep.LegacyRBAC = legacyReport(snap, ns, x)
	return rep
}

// workloadOf reads the destination workload from the context extensions of
// the input evaluated (derived ones included).
func workloadOf(x *engine.Explanation) explainWorkload {
	var w explainWorkload
	in, _ := x.Input.(map[string]any)
	attrs, _ := in["attributes"].(map[string]any)
	ext, _ := attrs["contextExtensions"].(map[string]any)
	for k, v := range ext {
		s, _ := v.(string)
		switch {
		case k == engine.ExtNamespace:
			w.Namespace = s
		case k == engine.ExtServices && s != "":
			w.Services = strings.Split(s, ",")
		case k == engine.ExtWorkload:
			w.Workload = s
		case strings.HasPrefix(k, engine.ExtLabelPrefix):
			if w.Labels == nil {
				w.Labels = map[string]string{}
			}
			w.Labels[strings.TrimPrefix(k, engine.ExtLabelPrefix)] = s
		}
	}
	if w.Workload == "" && x.Decision != nil {
		w.Workload = x.Decision.Workload
	}
	return w
}

// legacyReport lists the namespace's ServiceRoleBindings and what of them
// matched; nil when legacy RBAC plays no part for the workload.
func legacyReport(snap *policies.Snapshot, ns string, x *engine.Explanation) *legacyRBAC {
	bindings := snap.InNamespace(policies.KindServiceRoleBinding, ns)
	enforced := x.Matches["rbac_enforced_for"]
	if len(bindings) == 0 && len(enforced) == 0 {
		return nil
	}
	l := &legacyRBAC{Enforced: enforced, Bindings: []legacyBinding{}}
	if l.Enforced == nil {
		l.Enforced = []any{}
	}
	for _, v := range x.Matches["v1beta1_present"] {
		if b, ok := v.(bool); ok && b {
			l.Ignored = true
		}
	}
	byBinding := map[string][]bindingMatch{}
	for set, permissive := range map[string]bool{"rbac_allow_matches": false, "rbac_permissive_matches": true} {
		for _, m := range x.Matches[set] {
			obj, _ := m.(map[string]any)
			b, _ := obj["binding"].(string)
			rule, _ := intOf(obj["rule"])
			subject, _ := intOf(obj["subject"])
			byBinding[b] = append(byBinding[b], bindingMatch{Rule: rule, Subject: subject, Permissive: permissive})
		}
	}
	for _, r := range bindings {
		id := r.Namespace + "/" + r.Name
		lb := legacyBinding{Binding: id, Source: r.Source.String(), Matches: byBinding[id]}
		if spec, ok := policies.SpecAs[*legacy.ServiceRoleBinding](r); ok {
			switch {
			case spec.RoleRef != nil && spec.RoleRef.Name != "":
				lb.Role = spec.RoleRef.Name
			case spec.Role != "":
				lb.Role = spec.Role
			case len(spec.Actions) > 0:
				lb.Role = "(inline actions)"
			}
		}
		if lb.Matches == nil {
			lb.Matches = []bindingMatch{}
		}
		slices.SortFunc(lb.Matches, func(a, b bindingMatch) int {
			if a.Rule != b.Rule {
				return a.Rule - b.Rule
			}
			return a.Subject - b.Subject
		})
		l.Bindings = append(l.Bindings, lb)
	}
	return l
}

// intOf reads a number of an explanation (json.Number or float64).
func intOf(v any) (int, bool) {
	switch n := v.(type) {
	case json.Number:
		i, err := n.Int64()
		return int(i), err == nil
	case float64:
		return int(n), true
	case int:
		return n, true
	case int64:
		return int(n), true
	}
	return 0, false
}

func writeExplainText(w io.Writer, c cases.Case, rep *explainReport, verbose bool) error {
	var b strings.Builder
	if c.Name != "" {
		fmt.Fprintf(&b, "case:      %s\n", c.Name)
	}
	fmt.Fprintf(&b, "request:   %s\n", describeRequest(c.Request))
	fmt.Fprintf(&b, "workload:  %s\n", describeWorkload(rep.Workload))
	d := rep.Decision
	if d == nil {
		b.WriteString("decision:  none\n")
	} else {
		verdict := "ALLOW"
		if !d.Allowed {
			verdict = "DENY " + strconv.Itoa(d.Status)
		}
		fmt.Fprintf(&b, "decision:  %s (%s)\n", verdict, decidedBy(d, false))
		if d.Custom != nil && d.AfterCustom != nil {
			after := "ALLOW"
			if !d.AfterCustom.Allowed {
				after = "DENY " + strconv.Itoa(d.AfterCustom.Status)
			}
			fmt.Fprintf(&b, "           if provider %s allows: %s (%s)\n", d.Custom.Provider, after, decidedBy(d.AfterCustom, false))
		}
		if a := d.Authn; a != nil && a.Outcome != jwt.NoToken.String() {
			line := a.Outcome
			if a.Principal != "" {
				line += " " + a.Principal
			}
			if a.Rule != "" {
				line += " by " + a.Rule
			}
			if a.Reason != "" {
				line += ": " + a.Reason
			}
			fmt.Fprintf(&b, "jwt:       %s\n", line)
		}
	}
	if e := rep.Expectation; e != nil {
		if e.Met {
			b.WriteString("expected:  met\n")
		} else {
			fmt.Fprintf(&b, "expected:  NOT met: %s\n", e.Failure)
		}
	}

	b.WriteString("\nAuthorizationPolicies that apply to the workload:\n")
	if len(rep.Policies) == 0 {
		b.WriteString("  none\n")
	}
	for _, p := range rep.Policies {
		action := p.Action
		if p.Provider != "" {
			action += " (provider " + p.Provider + ")"
		}
		if p.DryRun {
			action += " dry-run"
		}
		fmt.Fprintf(&b, "  %s %s  %s\n", action, p.Policy, p.Source)
		if p.Note != "" {
			fmt.Fprintf(&b, "      %s\n", p.Note)
			continue
		}
		for i := range p.Rules {
			state := "no match"
			if slices.Contains(p.Matched, i) {
				state = "MATCH"
			}
			fmt.Fprintf(&b, "      rule %d: %s\n", i, state)
		}
	}

	if l := rep.LegacyRBAC; l != nil {
		b.WriteString("\nLegacy RBAC (rbac.istio.io): ")
		switch {
		case l.Ignored:
			b.WriteString("ignored, an AuthorizationPolicy applies to the workload (Istio 1.4+)\n")
		case len(l.Enforced) == 0:
			b.WriteString("off for the workload\n")
		default:
			var parts []string
			for _, e := range l.Enforced {
				obj, _ := e.(map[string]any)
				parts = append(parts, fmt.Sprintf("%v by %v %v (mode %v)", obj["enforcement"], obj["kind"], obj["policy"], obj["mode"]))
			}
			b.WriteString(strings.Join(parts, "; ") + "\n")
		}
		for _, lb := range l.Bindings {
			fmt.Fprintf(&b, "  %s -> %s  %s\n", lb.Binding, lb.Role, lb.Source)
			if len(lb.Matches) == 0 {
				b.WriteString("      no match\n")
			}
			for _, m := range lb.Matches {
				suffix := ""
				if m.Permissive {
					suffix = " (permissive: logged only)"
				}
				fmt.Fprintf(&b, "      role rule %d, subject %d: MATCH%s\n", m.Rule, m.Subject, suffix)
			}
		}
	}

	if d != nil && (len(d.DryRun) > 0 || len(d.Audit) > 0 || len(d.RBACPermissive) > 0) {
		b.WriteString("\nRecorded, never decides:\n")
		for _, r := range []struct {
			name string
			recs []map[string]any
		}{{"dry run", d.DryRun}, {"audit", d.Audit}, {"rbac permissive", d.RBACPermissive}} {
			for _, rec := range r.recs {
				fmt.Fprintf(&b, "  %s: %s\n", r.name, describeRecord(rec))
			}
		}
	}
	if d != nil && len(d.Notes) > 0 {
		b.WriteString("\nNotes:\n")
		for _, n := range d.Notes {
			fmt.Fprintf(&b, "  %s\n", n)
		}
	}
	if rep.EnvoyResponse != nil {
		out, err := json.Marshal(rep.EnvoyResponse)
		if err != nil {
			return err
		}
		fmt.Fprintf(&b, "\nopa-envoy-plugin with the compiled bundle answers: %s\n", out)
	}
	if verbose && rep.Input != nil {
		out, err := json.MarshalIndent(rep.Input, "", "  ")
		if err != nil {
			return err
		}
		fmt.Fprintf(&b, "\nInput:\n%s\n", out)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func describeRequest(r cases.Request) string {
	method := r.Method
	if method == "" {
		method = "GET"
	}
	path := r.Path
	if path == "" {
		path = "/"
	}
	s := method + " " + path
	if r.Host != "" {
		s += " (host " + r.Host + ")"
	}
	switch {
	case r.Source.Principal != "":
		s += " from " + r.Source.Principal
	case r.Source.IP != "":
		s += " from " + r.Source.IP + " (no mTLS identity)"
	default:
		s += " from no mTLS identity"
	}
	if r.Auth != nil && r.Auth.Principal != "" {
		s += ", request principal " + r.Auth.Principal
	}
	if r.Destination.Principal != "" {
		s += " to " + r.Destination.Principal
	}
	return s
}

func describeWorkload(w explainWorkload) string {
	if w.Namespace == "" {
		return "unknown (no namespace: only mesh-wide policies apply)"
	}
	s := "namespace " + w.Namespace
	if len(w.Labels) > 0 {
		var kv []string
		for _, k := range slices.Sorted(maps.Keys(w.Labels)) {
			kv = append(kv, k+"="+w.Labels[k])
		}
		s += ", labels " + strings.Join(kv, ",")
	}
	if len(w.Services) > 0 {
		s += ", services " + strings.Join(w.Services, ",")
	}
	if w.Workload != "" {
		s += " (" + w.Workload + ")"
	}
	return s
}

func describeRecord(rec map[string]any) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(rec)) {
		parts = append(parts, fmt.Sprintf("%s=%v", k, rec[k]))
	}
	return strings.Join(parts, " ")
}
