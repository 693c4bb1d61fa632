package compile

// Legacy RBAC: rbac.istio.io/v1alpha1 ClusterRbacConfig (or the older
// RbacConfig), ServiceRole and ServiceRoleBinding, compiled to Rego with the
// semantics of Istio 1.4/1.5's v1alpha1 RBAC filter generator
// (pilot/pkg/security/authz/policy/v1alpha1 and .../authz/model).
//
// Entry point, for Compile to wire:
//
//	func compileLegacy(snap *policies.Snapshot, opts Options) (modules map[string]string, headers []string, err error)
//
// modules maps bundle paths (ModulePath's) to Rego source, all in package
// garrison.authz:
//
//	garrison/authz/legacy.rego                                      helpers every legacy module uses (legacy_*)
//	garrison/authz/policies/_cluster/clusterrbacconfig-<name>.rego  facts of rbac_enforced_for
//	garrison/authz/policies/<ns>/rbacconfig-<name>.rego             facts of rbac_enforced_for (only without a ClusterRbacConfig)
//	garrison/authz/policies/<ns>/servicerole-<name>.rego            legacy_role_rule["<ns>/<name>"]
//	garrison/authz/policies/<ns>/servicerolebinding-<name>.rego     facts of rbac_allow_matches / rbac_permissive_matches
//
// headers lists, lower-cased and sorted, the request headers the legacy
// policies read. Both are empty when the snapshot holds no legacy resource.
// compileLegacyWarnings also returns warnings for Result.Warnings.
// The library combines three kinds of facts (facts.go; the library names
// them as CONTRACT section 4 does): rbac_enforced_for says RBAC is on for the
// destination (and whether it is ENFORCED or PERMISSIVE), rbac_allow_matches
// says an ENFORCED binding allows the request, rbac_permissive_matches
// records what a PERMISSIVE binding would have allowed.

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/garrison-mesh/garrison/policies"
	"github.com/garrison-mesh/garrison/policies/legacy"
)

// Input references the legacy rules read, per CONTRACT §1/§2.
const (
	legacyRefNamespace  = `input.attributes.contextExtensions["garrison.io/namespace"]`
	legacyRefLabelFmt   = `input.attributes.contextExtensions[%s]`
	legacyRefMethod     = `input.attributes.request.http.method`
	legacyRefHost       = `input.attributes.request.http.host`
	legacyRefHeaderFmt  = `input.attributes.request.http.headers[%s]`
	legacyRefSourceIP   = `input.attributes.source.address.socketAddress.address`
	legacyRefDestIP     = `input.attributes.destination.address.socketAddress.address`
	legacyRefDestPort   = `input.attributes.destination.address.socketAddress.portValue`
	legacyLabelKey      = "garrison.io/label/"
	legacyModule        = "garrison/authz/legacy.rego"
	legacyDefaultConfig = "default"
)

// compileLegacy compiles every legacy RBAC resource of snap to Rego. It
// never fails on content: like Istio, it skips what it cannot honour and
// says so in a comment of the generated module. The error is for broken
// invariants only.
func compileLegacy(snap *policies.Snapshot, opts Options) (map[string]string, []string, error) {
	modules, headers, _, err := compileLegacyWarnings(snap, opts)
	return modules, headers, err
}

// compileLegacyWarnings is compileLegacy that also returns, for
// Result.Warnings, what was compiled differently from what was written or
// not at all, each naming the resource and its file:line.
func compileLegacyWarnings(snap *policies.Snapshot, opts Options) (map[string]string, []string, []string, error) {
	c := &legacyCompiler{
		snap:         snap,
		opts:         opts,
		trustDomains: newTrustDomainBundle(opts.trustDomain(), opts.TrustDomainAliases),
		modules:      map[string]string{},
		headers:      map[string]bool{},
	}
	if err := c.compile(); err != nil {
		return nil, nil, nil, err
	}
	headers := make([]string, 0, len(c.headers))
	for h := range c.headers {
		headers = append(headers, h)
	}
	slices.Sort(headers)
	return c.modules, headers, c.warnings, nil
}

type legacyCompiler struct {
	snap *policies.Snapshot
	opts Options
	// trustDomains rewrites user and source.principal values as Istio
	// 1.4/1.5 did (not names: Istio left them as written).
	trustDomains trustDomainBundle
	modules      map[string]string
	headers      map[string]bool
	warnings     []string

	// config is the (Cluster)RbacConfig Istio would read; nil means RBAC off.
	config *policies.Resource
	// permissive is the config's enforcementMode PERMISSIVE: Istio then made
	// every binding a shadow rule.
	permissive bool
}

func (c *legacyCompiler) compile() error {
	configs := append(slices.Clone(c.snap.List(policies.KindClusterRbacConfig)), c.snap.List(policies.KindRbacConfig)...)
	roles := c.snap.List(policies.KindServiceRole)
	bindings := c.snap.List(policies.KindServiceRoleBinding)
	if len(configs)+len(roles)+len(bindings) == 0 {
		return nil
	}
	c.config = c.effectiveConfig()
	if c.config != nil {
		cfg, err := legacySpec[*legacy.RbacConfig](c.config)
		if err != nil {
			return err
		}
		c.permissive = cfg.EnforcementMode.IsPermissive()
	}
	for _, r := range configs {
		if err := c.configModule(r); err != nil {
			return err
		}
	}
	for _, r := range roles {
		if err := c.roleModule(r); err != nil {
			return err
		}
	}
	for _, r := range bindings {
		if err := c.bindingModule(r); err != nil {
			return err
		}
	}
	c.modules[legacyModule] = legacyHelpers(c.snap.Options().DomainSuffix)
	return nil
}

// warn records a warning about r.
func (c *legacyCompiler) warn(r *policies.Resource, format string, args ...any) {
	c.warnings = append(c.warnings, fmt.Sprintf("%s: %s %s: ", r.Source, r.Kind.Kind, legacyPolicyID(r))+fmt.Sprintf(format, args...))
}

// effectiveConfig returns the ClusterRbacConfig named "default", else the
// first RbacConfig named "default" of any namespace, as Istio 1.4/1.5's
// GetAuthorizationPolicies did (RbacConfig being the deprecated older name).
func (c *legacyCompiler) effectiveConfig() *policies.Resource {
	if r := c.snap.Get(policies.KindClusterRbacConfig, "", legacyDefaultConfig); r != nil {
		return r
	}
	for _, r := range c.snap.List(policies.KindRbacConfig) {
		if r.Name == legacyDefaultConfig {
			return r
		}
	}
	return nil
}

// legacySpec returns r's spec as T; a mismatch is a broken invariant of the
// policies package.
func legacySpec[T any](r *policies.Resource) (T, error) {
	spec, ok := policies.SpecAs[T](r)
	if !ok {
		return spec, fmt.Errorf("compile: %s (%s) has spec %T", r.Key(), r.Source, r.Spec)
	}
	return spec, nil
}

// legacyPolicyID is the "<ns>/<name>" a produced element names its origin with
// (the bare name for cluster-scoped resources).
func legacyPolicyID(r *policies.Resource) string {
	if r.Namespace == "" {
		return r.Name
	}
	return r.Namespace + "/" + r.Name
}

// configModule emits rbac_enforced_for for the effective config, and a
// module that says why any other config is ignored.
func (c *legacyCompiler) configModule(r *policies.Resource) error {
	cfg, err := legacySpec[*legacy.RbacConfig](r)
	if err != nil {
		return err
	}
	w := newLegacyWriter(r)
	mode := cfg.EffectiveMode()
	enforcement := string(legacy.Enforced)
	if cfg.EnforcementMode.IsPermissive() {
		enforcement = string(legacy.Permissive)
	}
	if r != c.config {
		w.comment("Ignored, as Istio 1.4/1.5 ignored it: %s.", c.ignoredConfigReason(r))
		c.warn(r, "ignored, as Istio 1.4/1.5 ignored it: %s", c.ignoredConfigReason(r))
		c.modules[ModulePath(r)] = w.String()
		return nil
	}
	w.comment("Mode %s, enforcementMode %s: the one RBAC config of the mesh.", mode, enforcement)
	if enforcement == string(legacy.Permissive) {
		w.comment("PERMISSIVE: every ServiceRoleBinding is evaluated and logged, none denies.")
	}
	// The fact that RBAC is on for the workload (rbac_enforced_for): an
	// ENFORCED one denies what no binding allows, unless an
	// AuthorizationPolicy applies.
	rank, decision := rankRBACEnforced, decisionRBACDenied
	if enforcement == string(legacy.Permissive) {
		rank, decision = rankRBACPermissiveOn, decisionNoPolicy
	}
	head := factHead(rank, decision, legacyQuote(r.Kind.Kind), legacyQuote(legacyPolicyID(r)), "0", legacyQuote(string(mode)))
	switch mode {
	case legacy.RbacOff:
		w.blank()
		w.comment("RBAC is off: no rule.")
	case legacy.RbacOn:
		w.blank()
		w.comment("RBAC is on for every workload.")
		w.rule(head, legacyRefNamespace+` != ""`)
	case legacy.RbacOnWithInclusion:
		inc := cfg.Inclusion
		if inc == nil || len(inc.Namespaces)+len(inc.Services) == 0 {
			w.blank()
			w.comment("The inclusion list is empty: RBAC is on for no workload.")
		}
		if inc != nil {
			for _, ns := range inc.Namespaces {
				w.blank()
				w.comment("Included namespace %s.", legacyQuote(ns))
				w.rule(head, legacyRefNamespace+" == "+legacyQuote(ns))
			}
			for _, svc := range inc.Services {
				w.blank()
				w.comment("Included service %s.", legacyQuote(svc))
				w.rule(head, c.serviceTest(svc)...)
			}
		}
	case legacy.RbacOnWithExclusion:
		var nss, svcs []string
		if exc := cfg.Exclusion; exc != nil {
			nss, svcs = exc.Namespaces, exc.Services
		}
		w.blank()
		w.comment("RBAC is on for every workload but those of the excluded namespaces %s and those", legacyList(nss))
		w.comment("whose every service is excluded %s (a workload of no service stays under RBAC).", legacyList(svcs))
		body := []string{legacyRefNamespace + ` != ""`}
		if len(nss) > 0 {
			body = append(body, "not "+legacyRefNamespace+" in "+legacySet(nss))
		}
		if len(svcs) > 0 {
			body = append(body, "legacy_rbac_unexcluded_service")
		}
		w.rule(head, body...)
		if len(svcs) > 0 {
			w.blank()
			w.comment("legacy_rbac_unexcluded_service: the workload backs no service, or one not excluded.")
			w.rule("legacy_rbac_unexcluded_service", "count(legacy_services) == 0")
			w.blank()
			w.rule("legacy_rbac_unexcluded_service", "some svc in legacy_services", "not svc in "+legacySet(svcs))
		}
	default:
		return fmt.Errorf("compile: %s (%s) has unknown mode %q", r.Key(), r.Source, mode)
	}
	c.modules[ModulePath(r)] = w.String()
	return nil
}

func (c *legacyCompiler) ignoredConfigReason(r *policies.Resource) string {
	switch {
	case r.Name != legacyDefaultConfig:
		return fmt.Sprintf("only the config named %q counts", legacyDefaultConfig)
	case c.config == nil:
		return "no config is in effect"
	default:
		return fmt.Sprintf("%s %s (%s) is the config in effect", c.config.Kind.Kind, legacyPolicyID(c.config), c.config.Source)
	}
}

// serviceTest tests that the destination backs svc. The namespace test comes
// first when the service's namespace is known, for OPA's rule index.
func (c *legacyCompiler) serviceTest(svc string) []string {
	var body []string
	if ns := c.serviceNamespace(svc); ns != "" {
		body = append(body, legacyRefNamespace+" == "+legacyQuote(ns))
	}
	return append(body, legacyQuote(svc)+" in legacy_services")
}

// serviceNamespace is the namespace of the workloads behind a service FQDN,
// or "" when unknown.
func (c *legacyCompiler) serviceNamespace(host string) string {
	if svc := c.snap.Service(host); svc != nil {
		return svc.Namespace
	}
	suffix := ".svc." + c.snap.Options().DomainSuffix
	if rest, ok := strings.CutSuffix(host, suffix); ok {
		if _, ns, ok := strings.Cut(rest, "."); ok && !strings.ContainsAny(ns, ".*") {
			return ns
		}
	}
	return ""
}

// roleModule emits one legacy_role_rule per rule of a ServiceRole. A role
// grants nothing by itself: the bindings that name it refer to these rules,
// in their own namespace.
func (c *legacyCompiler) roleModule(r *policies.Resource) error {
	role, err := legacySpec[*legacy.ServiceRole](r)
	if err != nil {
		return err
	}
	w := newLegacyWriter(r)
	w.comment("A role grants nothing by itself: legacy_role_rule[%s] holds the indexes of its rules", legacyQuote(legacyPolicyID(r)))
	w.comment("that match the request, and the ServiceRoleBindings naming the role allow on them.")
	c.accessRules(w, r, legacyPolicyID(r), role.Rules)
	c.modules[ModulePath(r)] = w.String()
	return nil
}

// accessRules emits legacy_role_rule[key] for each rule of r (a role, or a
// binding's inline actions).
func (c *legacyCompiler) accessRules(w *legacyWriter, r *policies.Resource, key string, rules []*legacy.AccessRule) {
	for i, rule := range rules {
		w.blank()
		body, http, notes := c.permission(rule)
		w.comment("Rule %d: %s", i, legacyDescribeRule(rule))
		for _, n := range notes {
			w.comment("%s", n)
			c.warn(r, "rule %d: %s", i, n)
		}
		if http {
			w.comment("Uses HTTP-only fields: Istio left the rule out for TCP, so it matches HTTP requests only.")
		}
		w.rule(fmt.Sprintf("legacy_role_rule[%s] contains %d", legacyQuote(key), i), body...)
	}
}

// bindingModule emits the rbac_allow_matches (or rbac_permissive_matches)
// facts of a ServiceRoleBinding and one legacy_subject rule per subject.
func (c *legacyCompiler) bindingModule(r *policies.Resource) error {
	b, err := legacySpec[*legacy.ServiceRoleBinding](r)
	if err != nil {
		return err
	}
	w := newLegacyWriter(r)
	id := legacyPolicyID(r)
	roleKey, roleDesc, found := c.bindingRole(r, b)
	permissive := b.Mode.IsPermissive() || c.permissive
	rank, decision := rankRBACAllow, decisionComputed
	switch {
	case b.Mode.IsPermissive():
		rank, decision = rankRBACPermissive, decisionNoPolicy
		w.comment("Mode PERMISSIVE: evaluated and logged in the decision's rbac_permissive, never decides.")
	case permissive:
		rank, decision = rankRBACPermissive, decisionNoPolicy
		w.comment("The RBAC config's enforcementMode is PERMISSIVE: evaluated and logged in the decision's")
		w.comment("rbac_permissive, never decides.")
	}
	w.comment("Grants %s to %d subject(s), in namespace %s.", roleDesc, len(b.Subjects), legacyQuote(r.Namespace))
	w.comment("A request matches when one rule of the role and one subject match (Istio ORs them independently).")

	if !found {
		w.blank()
		w.comment("Grants nothing, as in Istio: %s.", c.missingRoleReason(r, b))
		c.warn(r, "grants nothing, as in Istio: %s", c.missingRoleReason(r, b))
		c.modules[ModulePath(r)] = w.String()
		return nil
	}
	if b.Actions != nil {
		c.accessRules(w, r, roleKey, b.Actions)
	}

	subjects := 0
	var subjectRules strings.Builder
	sw := &legacyWriter{b: &subjectRules}
	for j, s := range b.Subjects {
		sw.blank()
		body, http, notes, never := c.subject(s)
		sw.comment("Subject %d: %s", j, legacyDescribeSubject(s))
		for _, n := range notes {
			sw.comment("%s", n)
			c.warn(r, "subject %d: %s", j, n)
		}
		if never {
			sw.comment("Never matches, as in Istio: no rule.")
			c.warn(r, "subject %d never matches a request, as in Istio", j)
			continue
		}
		if http {
			sw.comment("Uses HTTP-only attributes: Istio left the subject out for TCP, so it matches HTTP requests only.")
		}
		subjects++
		sw.rule(fmt.Sprintf("legacy_subject[%s] contains %d", legacyQuote(id), j), body...)
	}

	w.blank()
	if subjects == 0 {
		w.comment("No subject can match: the binding grants nothing.")
		c.warn(r, "no subject can match: the binding grants nothing")
	} else {
		w.comment("The binding applies to the workloads of its own namespace.")
		w.rule(factHead(rank, decision, legacyQuote(id), legacyQuote(r.Kind.Kind), legacyQuote(id), legacyQuote(roleKey), "rule", "subject"),
			legacyRefNamespace+" == "+legacyQuote(r.Namespace),
			fmt.Sprintf("some rule in legacy_role_rule[%s]", legacyQuote(roleKey)),
			fmt.Sprintf("some subject in legacy_subject[%s]", legacyQuote(id)))
	}
	w.b.WriteString(subjectRules.String())
	c.modules[ModulePath(r)] = w.String()
	return nil
}

// bindingRole resolves the role a binding grants: roleRef (same
// namespace), role ("name" in the same namespace, "/name" in the root
// namespace; Istio 1.2/1.3's hidden field) or inline actions. It returns
// the key of the role's legacy_role_rule, a description, and whether the
// role exists.
func (c *legacyCompiler) bindingRole(r *policies.Resource, b *legacy.ServiceRoleBinding) (key, desc string, found bool) {
	ns, name := r.Namespace, ""
	switch {
	case b.RoleRef != nil:
		name = b.RoleRef.Name
	case b.Role != "":
		name = b.Role
		if rest, ok := strings.CutPrefix(b.Role, "/"); ok {
			ns, name = c.snap.RootNamespace(), rest
		}
	case len(b.Actions) > 0:
		return "inline:" + legacyPolicyID(r), fmt.Sprintf("its %d inline action(s)", len(b.Actions)), true
	default:
		return "", "no role", false
	}
	key = ns + "/" + name
	desc = "ServiceRole " + legacyQuote(key)
	role := c.snap.Get(policies.KindServiceRole, ns, name)
	if role == nil {
		return key, desc, false
	}
	return key, fmt.Sprintf("%s (%s)", desc, legacyComment(role.Source.String())), true
}

func (c *legacyCompiler) missingRoleReason(r *policies.Resource, b *legacy.ServiceRoleBinding) string {
	if b.RoleRef == nil && b.Role == "" && len(b.Actions) == 0 {
		return "the binding names no role"
	}
	key, _, _ := c.bindingRole(r, b)
	return fmt.Sprintf("ServiceRole %s does not exist", legacyQuote(key))
}

// permission compiles an AccessRule to the body of a rule, as Istio's
// Permission.Match (services and the destination.* constraints, which Istio
// checked against the service when generating the filter) and
// Permission.Generate (everything Envoy checked per request) did; http says
// the rule uses HTTP-only fields, notes say what Istio ignored. No
// services (inline actions may leave them out) means every service, as
// Istio skipped the check when the list was empty.
func (c *legacyCompiler) permission(rule *legacy.AccessRule) (body []string, http bool, notes []string) {
	cons, consNotes := legacyDedupeConstraints(rule.Constraints)
	notes = append(notes, consNotes...)

	// Services and destination.name are properties of the one service
	// the request is for: test them on the same element of
	// legacy_services.
	var nameValues []string
	for _, con := range cons {
		if con.Key == "destination.name" {
			nameValues = con.Values
		}
	}
	anyService := slices.Contains(rule.Services, "*") || len(rule.Services) == 0
	switch {
	case anyService && nameValues == nil:
	case anyService:
		body = append(body, "some svc in legacy_services", legacyMatchExpr("legacy_service_name(svc)", nameValues))
	case nameValues == nil && len(rule.Services) == 1 && legacyIsExact(rule.Services[0]):
		body = append(body, legacyQuote(rule.Services[0])+" in legacy_services")
	default:
		body = append(body, "some svc in legacy_services", legacyMatchExpr("svc", rule.Services))
		if nameValues != nil {
			body = append(body, legacyMatchExpr("legacy_service_name(svc)", nameValues))
		}
	}

	// conds are in Istio's order; http says one of them is HTTP-only.
	var conds []string
	http = len(rule.Hosts)+len(rule.NotHosts)+len(rule.Methods)+len(rule.NotMethods)+len(rule.Paths)+len(rule.NotPaths) > 0
	if len(rule.Hosts) > 0 {
		conds = append(conds, legacyMatchExpr(legacyRefHost, rule.Hosts))
	}
	if len(rule.NotHosts) > 0 {
		conds = append(conds, "not "+legacyMatchExpr(legacyRefHost, rule.NotHosts))
	}
	if len(rule.Methods) > 0 {
		conds = append(conds, legacyMatchExpr(legacyRefMethod, rule.Methods))
	}
	if len(rule.NotMethods) > 0 {
		conds = append(conds, "not "+legacyMatchExpr(legacyRefMethod, rule.NotMethods))
	}
	if len(rule.Paths) > 0 {
		conds = append(conds, legacyMatchExpr("legacy_path", rule.Paths))
	}
	if len(rule.NotPaths) > 0 {
		conds = append(conds, "not "+legacyMatchExpr("legacy_path", rule.NotPaths))
	}
	if len(rule.Ports) > 0 {
		conds = append(conds, legacyRefDestPort+" in "+legacyIntSet(rule.Ports))
	}
	if len(rule.NotPorts) > 0 {
		conds = append(conds, "not "+legacyRefDestPort+" in "+legacyIntSet(rule.NotPorts))
	}

	for _, con := range cons {
		key, values := con.Key, con.Values
		switch {
		case key == "destination.name":
			// Tested with the services above.
		case key == "destination.namespace":
			conds = append(conds, legacyMatchExpr(legacyRefNamespace, values))
		case key == "destination.user":
			conds = append(conds, legacyMatchExpr("legacy_destination_user", values))
		case strings.HasPrefix(key, "destination.labels"):
			label, ok := legacyBracketName(strings.TrimPrefix(key, "destination.labels"))
			if !ok {
				notes = append(notes, fmt.Sprintf("Constraint %s ignored, as Istio did: expected destination.labels[<name>].", legacyQuote(key)))
				continue
			}
			conds = append(conds, legacyMatchExpr(fmt.Sprintf(legacyRefLabelFmt, legacyQuote(legacyLabelKey+label)), values))
		case key == "destination.ip":
			cidrs, bad := legacyParseCIDRs(values)
			notes = append(notes, legacyInvalidValuesNote(key, bad, len(cidrs) == 0)...)
			if len(cidrs) > 0 {
				conds = append(conds, fmt.Sprintf("legacy_ip_match(%s, %s)", legacyRefDestIP, legacyList(cidrs)))
			}
		case key == "destination.port":
			ports, bad := legacyParsePorts(values)
			notes = append(notes, legacyInvalidValuesNote(key, bad, len(ports) == 0)...)
			if len(ports) > 0 {
				conds = append(conds, legacyRefDestPort+" in "+legacyIntSet(ports))
			}
		case key == "connection.sni":
			conds = append(conds, legacyMatchExpr("legacy_sni", values))
		case strings.HasPrefix(key, "request.headers"):
			name, ok := legacyBracketName(strings.TrimPrefix(key, "request.headers"))
			if !ok {
				notes = append(notes, fmt.Sprintf("Constraint %s ignored, as Istio did: expected request.headers[<name>].", legacyQuote(key)))
				continue
			}
			http = true
			conds = append(conds, c.headerMatch(name, values))
		case strings.HasPrefix(key, "experimental.envoy.filters."):
			filter, mkey, ok := legacyMetadataKey(key)
			if !ok {
				notes = append(notes, fmt.Sprintf("Constraint %s ignored, as Istio did: expected experimental.envoy.filters.<filter>[<key>].", legacyQuote(key)))
				continue
			}
			conds = append(conds, fmt.Sprintf("legacy_metadata_match(%s, %s, %s)", legacyQuote(filter), legacyQuote(mkey), legacyList(values)))
		default:
			notes = append(notes, fmt.Sprintf("Constraint %s ignored, as Istio 1.4/1.5 ignored unsupported constraints.", legacyQuote(key)))
		}
	}
	if http {
		body = append(body, "legacy_http")
	}
	body = append(body, conds...)
	return body, http, notes
}

// headerMatch tests a request header as Envoy's HeaderMatcher did: "*" is
// present with any value.
func (c *legacyCompiler) headerMatch(name string, values []string) string {
	lower := strings.ToLower(name)
	c.headers[lower] = true
	return legacyMatchExpr(fmt.Sprintf(legacyRefHeaderFmt, legacyQuote(lower)), values)
}

// subject compiles a binding subject as Istio's Principal.Generate did:
// every field set must match. http says it uses HTTP-only attributes,
// notes say what Istio ignored, never is true when Istio's principal could
// match no request.
func (c *legacyCompiler) subject(s *legacy.Subject) (body []string, http bool, notes []string, never bool) {
	// conds are in Istio's order; http says one of them is HTTP-only.
	var conds []string
	principal := func(values []string, negate bool) {
		expr, any := legacyPrincipalMatch(values)
		switch {
		case any && negate:
			never = true
		case any:
		case negate:
			conds = append(conds, "not "+expr)
		default:
			conds = append(conds, expr)
		}
	}
	groups := func(values []string, negate bool) {
		http = true
		expr := fmt.Sprintf("legacy_claim_match(%s, %s)", legacyQuote("groups"), legacyList(values))
		if negate {
			expr = "not " + expr
		}
		conds = append(conds, expr)
	}
	ips := func(key string, values []string, negate bool) {
		cidrs, bad := legacyParseCIDRs(values)
		notes = append(notes, legacyInvalidValuesNote(key, bad, len(cidrs) == 0)...)
		if len(cidrs) == 0 {
			return
		}
		expr := fmt.Sprintf("legacy_ip_match(%s, %s)", legacyRefSourceIP, legacyList(cidrs))
		if negate {
			expr = "not " + expr
		}
		conds = append(conds, expr)
	}
	namespaces := func(values []string, negate bool) {
		expr := fmt.Sprintf("legacy_source_namespace_match(%s)", legacyList(values))
		if negate {
			expr = "not " + expr
		}
		conds = append(conds, expr)
	}

	if s.User != "" {
		principal(c.trustDomains.replaceTrustDomainAliases([]string{s.User}), false)
	}
	if len(s.Names) > 0 {
		principal(s.Names, false)
	}
	if len(s.NotNames) > 0 {
		principal(s.NotNames, true)
	}
	if s.Group != "" {
		groups([]string{s.Group}, false)
	}
	if len(s.Groups) > 0 {
		groups(s.Groups, false)
	}
	if len(s.NotGroups) > 0 {
		groups(s.NotGroups, true)
	}
	if len(s.Namespaces) > 0 {
		namespaces(s.Namespaces, false)
	}
	if len(s.NotNamespaces) > 0 {
		namespaces(s.NotNamespaces, true)
	}
	if len(s.Ips) > 0 {
		ips("ips", s.Ips, false)
	}
	if len(s.NotIps) > 0 {
		ips("notIps", s.NotIps, true)
	}
	keys := make([]string, 0, len(s.Properties))
	for k := range s.Properties {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		v := s.Properties[k]
		switch {
		case k == "source.ip":
			ips(k, []string{v}, false)
		case k == "source.namespace":
			namespaces([]string{v}, false)
		case k == "source.principal":
			principal(c.trustDomains.replaceTrustDomainAliases([]string{v}), false)
		case k == "request.auth.principal" || k == "request.auth.audiences" || k == "request.auth.presenter":
			http = true
			conds = append(conds, fmt.Sprintf("legacy_authn_match(%s, %s)", legacyQuote(k), legacyList([]string{v})))
		case k == "source.user":
			http = true
			conds = append(conds, legacyMatchExpr("legacy_source_user", []string{v}))
		case strings.HasPrefix(k, "request.headers"):
			name, ok := legacyBracketName(strings.TrimPrefix(k, "request.headers"))
			if !ok {
				notes = append(notes, fmt.Sprintf("Property %s ignored, as Istio did: expected request.headers[<name>].", legacyQuote(k)))
				continue
			}
			http = true
			conds = append(conds, c.headerMatch(name, []string{v}))
		case strings.HasPrefix(k, "request.auth.claims"):
			claim, ok := legacyBracketName(strings.TrimPrefix(k, "request.auth.claims"))
			if !ok {
				notes = append(notes, fmt.Sprintf("Property %s ignored, as Istio did: expected request.auth.claims[<name>].", legacyQuote(k)))
				continue
			}
			http = true
			conds = append(conds, fmt.Sprintf("legacy_claim_match(%s, %s)", legacyQuote(claim), legacyList([]string{v})))
		default:
			// Istio generated a matcher on the RBAC filter's own dynamic
			// metadata, which holds no such key: the subject never matched.
			notes = append(notes, fmt.Sprintf("Property %s is not a source attribute: Istio matched it against metadata that never holds it.", legacyQuote(k)))
			never = true
		}
	}
	if http {
		body = append(body, "legacy_http")
	}
	body = append(body, conds...)
	if len(conds) == 0 && !never && !legacySubjectHasAny(s) {
		// Istio made a subject with nothing to match match nothing.
		never = true
		notes = append(notes, "An empty subject matched nothing in Istio.")
	}
	return body, http, notes, never
}

// legacySubjectHasAny reports whether a subject sets a field: one whose every
// value was a wildcard then matches any request.
func legacySubjectHasAny(s *legacy.Subject) bool {
	return s.User != "" || len(s.Names) > 0 || len(s.Properties) > 0
}

// legacyPrincipalMatch tests the peer identity as Istio's source.principal: "*"
// and "allUsers" match any request (even without identity),
// "allAuthenticatedUsers" any identity.
func legacyPrincipalMatch(values []string) (expr string, any bool) {
	var pats []string
	for _, v := range values {
		switch v {
		case "*", "allUsers":
			return "", true
		case "allAuthenticatedUsers":
			v = "*"
		}
		pats = append(pats, v)
	}
	return legacyMatchExpr("legacy_source_principal", pats), false
}

// legacyConstraint is one constraint key and its values.
type legacyConstraint struct {
	Key    string
	Values []string
}

// legacyDedupeConstraints keeps the last values of a key written twice: Istio
// stored constraints in a map.
func legacyDedupeConstraints(in []*legacy.Constraint) ([]legacyConstraint, []string) {
	var out []legacyConstraint
	var notes []string
	index := map[string]int{}
	for _, con := range in {
		if con == nil {
			continue
		}
		if i, dup := index[con.Key]; dup {
			notes = append(notes, fmt.Sprintf("Constraint %s is written twice: the last values count, as in Istio.", legacyQuote(con.Key)))
			out[i].Values = con.Values
			continue
		}
		index[con.Key] = len(out)
		out = append(out, legacyConstraint{Key: con.Key, Values: con.Values})
	}
	return out, notes
}

// legacyBracketName returns name from "[name]", as Istio's extractNameInBrackets.
func legacyBracketName(s string) (string, bool) {
	if !strings.HasPrefix(s, "[") || !strings.HasSuffix(s, "]") || len(s) < 2 {
		return "", false
	}
	return s[1 : len(s)-1], true
}

// legacyMetadataKey splits experimental.envoy.filters.<filter>[<key>] into the
// filter name (envoy.filters.<filter>) and the key.
func legacyMetadataKey(key string) (filter, mkey string, ok bool) {
	rest := strings.TrimPrefix(key, "experimental.")
	if !strings.HasSuffix(rest, "]") {
		return "", "", false
	}
	filter, mkey, ok = strings.Cut(strings.TrimSuffix(rest, "]"), "[")
	if !ok || filter == "envoy.filters." || mkey == "" {
		return "", "", false
	}
	return filter, mkey, true
}

// legacyParseCIDRs turns IPs and CIDRs into CIDRs as Istio's CidrRange did (an IP
// is a /32 or /128); it returns the values it could not parse.
func legacyParseCIDRs(values []string) (cidrs, bad []string) {
	for _, v := range values {
		if strings.Contains(v, "/") {
			p, err := netip.ParsePrefix(v)
			if err != nil {
				bad = append(bad, v)
				continue
			}
			cidrs = append(cidrs, p.Masked().String())
			continue
		}
		a, err := netip.ParseAddr(v)
		if err != nil {
			bad = append(bad, v)
			continue
		}
		cidrs = append(cidrs, netip.PrefixFrom(a, a.BitLen()).String())
	}
	return cidrs, bad
}

// legacyParsePorts parses destination.port values; Istio ignored invalid ones.
func legacyParsePorts(values []string) (ports []int32, bad []string) {
	for _, v := range values {
		p, err := strconv.ParseUint(v, 10, 32)
		if err != nil || p > 65535 {
			bad = append(bad, v)
			continue
		}
		ports = append(ports, int32(p))
	}
	return ports, bad
}

func legacyInvalidValuesNote(key string, bad []string, none bool) []string {
	if len(bad) == 0 {
		return nil
	}
	note := fmt.Sprintf("Invalid %s values %s ignored, as Istio did", key, legacyList(bad))
	if none {
		note += "; none is left, so Istio dropped the whole condition"
	}
	return []string{note + "."}
}

// legacyIsExact reports whether an Istio pattern is a plain string.
func legacyIsExact(p string) bool {
	return !strings.HasPrefix(p, "*") && !strings.HasSuffix(p, "*")
}

// legacyMatchExpr tests x against Istio string patterns (exact, "prefix*",
// "*suffix", "*" for any value). One pattern or exact ones become plain
// builtins and equality, which read better, cost less than a call of
// legacy_match and let OPA index equality.
func legacyMatchExpr(x string, patterns []string) string {
	if len(patterns) == 1 {
		switch p := patterns[0]; {
		case p == "*":
			return "is_string(" + x + ")"
		case strings.HasPrefix(p, "*"):
			return fmt.Sprintf("endswith(%s, %s)", x, legacyQuote(p[1:]))
		case strings.HasSuffix(p, "*"):
			return fmt.Sprintf("startswith(%s, %s)", x, legacyQuote(strings.TrimSuffix(p, "*")))
		default:
			return x + " == " + legacyQuote(p)
		}
	}
	exact := true
	for _, p := range patterns {
		exact = exact && legacyIsExact(p)
	}
	if exact {
		return x + " in " + legacySet(patterns)
	}
	return fmt.Sprintf("legacy_match(%s, %s)", x, legacyList(patterns))
}

func legacyDescribeRule(r *legacy.AccessRule) string {
	var parts []string
	add := func(name string, values []string) {
		if len(values) > 0 {
			parts = append(parts, name+" "+legacyList(values))
		}
	}
	add("services", r.Services)
	add("hosts", r.Hosts)
	add("notHosts", r.NotHosts)
	add("methods", r.Methods)
	add("notMethods", r.NotMethods)
	add("paths", r.Paths)
	add("notPaths", r.NotPaths)
	if len(r.Ports) > 0 {
		parts = append(parts, "ports ["+strings.Join(legacyInt32Strings(r.Ports), ", ")+"]")
	}
	if len(r.NotPorts) > 0 {
		parts = append(parts, "notPorts ["+strings.Join(legacyInt32Strings(r.NotPorts), ", ")+"]")
	}
	for _, con := range r.Constraints {
		if con != nil {
			add(legacyQuote(con.Key), con.Values)
		}
	}
	if len(parts) == 0 {
		return "any request"
	}
	return strings.Join(parts, ", ")
}

func legacyDescribeSubject(s *legacy.Subject) string {
	var parts []string
	add := func(name string, values []string) {
		if len(values) > 0 {
			parts = append(parts, name+" "+legacyList(values))
		}
	}
	if s.User != "" {
		parts = append(parts, "user "+legacyQuote(s.User))
	}
	if s.Group != "" {
		parts = append(parts, "group "+legacyQuote(s.Group))
	}
	add("names", s.Names)
	add("notNames", s.NotNames)
	add("groups", s.Groups)
	add("notGroups", s.NotGroups)
	add("namespaces", s.Namespaces)
	add("notNamespaces", s.NotNamespaces)
	add("ips", s.Ips)
	add("notIps", s.NotIps)
	keys := make([]string, 0, len(s.Properties))
	for k := range s.Properties {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		parts = append(parts, legacyQuote(k)+": "+legacyQuote(s.Properties[k]))
	}
	if len(parts) == 0 {
		return "empty"
	}
	return strings.Join(parts, ", ")
}

func legacyInt32Strings(ns []int32) []string {
	out := make([]string, len(ns))
	for i, n := range ns {
		out[i] = strconv.Itoa(int(n))
	}
	return out
}
