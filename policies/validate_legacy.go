package policies

import (
	"regexp"
	"strings"

	"github.com/garrison-mesh/garrison/policies/legacy"
)

// Validation of the legacy rbac.istio.io/v1alpha1 and
// authentication.istio.io/v1alpha1 kinds, after Istio 1.4/1.5's
// pkg/config/validation (ValidateServiceRole, ValidateServiceRoleBinding,
// ValidateClusterRbacConfig, ValidateRbacConfig,
// ValidateAuthenticationPolicy).

// legacyDefaultName is the name Istio required of the singletons
// (ClusterRbacConfig, RbacConfig, MeshPolicy) and of a namespace-wide Policy.
const legacyDefaultName = "default"

func validateServiceRole(c *check, r *Resource) {
	role := r.Spec.(*legacy.ServiceRole)
	rp := secSpec.Field("rules")
	if len(role.Rules) == 0 {
		c.errorf(rp, "at least one rule is required")
	}
	for i, rule := range role.Rules {
		legacyValidateAccessRule(c, rp.Index(i), rule, true)
	}
}

// legacyValidateAccessRule checks a ServiceRole rule, or an inline action of
// a binding (needServices false: Istio 1.2's inline roles apply to the
// binding's own workloads).
func legacyValidateAccessRule(c *check, p FieldPath, rule *legacy.AccessRule, needServices bool) {
	if needServices && len(rule.Services) == 0 {
		c.errorf(p.Field("services"), "at least 1 service must be specified (use [\"*\"] for every service in the namespace)")
	}
	if len(rule.Methods) > 0 && len(rule.NotMethods) > 0 {
		c.errorf(p.Field("notMethods"), "cannot set both methods and notMethods in one rule")
	}
	if len(rule.Ports) > 0 && len(rule.NotPorts) > 0 {
		c.errorf(p.Field("notPorts"), "cannot set both ports and notPorts in one rule")
	}
	for _, f := range []struct {
		name  string
		ports []int32
	}{{"ports", rule.Ports}, {"notPorts", rule.NotPorts}} {
		for k, port := range f.ports {
			if port < 0 || port > 65535 {
				c.errorf(p.Field(f.name).Index(k), "port must be between 0 and 65535, got %d", port)
			}
		}
	}
	cp := p.Field("constraints")
	for j, con := range rule.Constraints {
		jp := cp.Index(j)
		if con.Key == "" {
			c.errorf(jp.Field("key"), "key is required")
		}
		if len(con.Values) == 0 {
			c.errorf(jp.Field("values"), "at least 1 value must be specified")
		}
		for k, v := range con.Values {
			if v == "" {
				c.errorf(jp.Field("values").Index(k), "empty value is not allowed")
			}
		}
	}
}

func validateServiceRoleBinding(c *check, r *Resource) {
	b := r.Spec.(*legacy.ServiceRoleBinding)
	sp := secSpec.Field("subjects")
	if len(b.Subjects) == 0 {
		c.errorf(sp, "at least 1 subject must be specified")
	}
	for i, s := range b.Subjects {
		legacyValidateSubject(c, sp.Index(i), s)
	}

	set := 0
	var names []string
	if b.RoleRef != nil {
		set++
		names = append(names, "roleRef")
	}
	if b.Role != "" {
		set++
		names = append(names, "role")
	}
	if len(b.Actions) > 0 {
		set++
		names = append(names, "actions")
	}
	switch {
	case set == 0:
		c.errorf(secSpec.Field("roleRef"), "roleRef is required (kind: ServiceRole, name: <role>)")
	case set > 1:
		c.errorf(secSpec.Field(names[1]), "only one of roleRef, role and actions can be set, got %s", strings.Join(names, " and "))
	}
	if ref := b.RoleRef; ref != nil {
		rp := secSpec.Field("roleRef")
		if ref.Kind != "ServiceRole" {
			c.errorf(rp.Field("kind"), "kind must be \"ServiceRole\", the only kind a binding can refer to, got %q", ref.Kind)
		}
		if ref.Name == "" {
			c.errorf(rp.Field("name"), "name is required")
		} else if !IsDNS1123Subdomain(ref.Name) {
			c.errorf(rp.Field("name"), "name %q is not a valid ServiceRole name (a lowercase RFC 1123 subdomain)", ref.Name)
		}
	}
	if b.Role != "" {
		// A leading "/" names a ServiceRole of the root namespace.
		if name := strings.TrimPrefix(b.Role, "/"); !IsDNS1123Subdomain(name) {
			c.errorf(secSpec.Field("role"), "role %q is not a valid ServiceRole name (\"<name>\", or \"/<name>\" for the root namespace)", b.Role)
		}
	}
	for i, a := range b.Actions {
		legacyValidateAccessRule(c, secSpec.Field("actions").Index(i), a, false)
	}
}

// legacyValidateSubject checks one ServiceRoleBinding subject.
func legacyValidateSubject(c *check, p FieldPath, s *legacy.Subject) {
	if s.User == "" && s.Group == "" && len(s.Properties) == 0 &&
		len(s.Names)+len(s.NotNames)+len(s.Groups)+len(s.NotGroups)+len(s.Namespaces)+
			len(s.NotNamespaces)+len(s.Ips)+len(s.NotIps) == 0 {
		c.errorf(p, "subject must not be empty: set user, group or properties (an empty subject would match every request)")
		return
	}
	for _, f := range []struct {
		name string
		ips  []string
	}{{"ips", s.Ips}, {"notIps", s.NotIps}} {
		for k, ip := range f.ips {
			if err := validateIPOrCIDR(ip); err != nil {
				c.errorf(p.Field(f.name).Index(k), "%v", err)
			}
		}
	}
	if ip, ok := s.Properties["source.ip"]; ok {
		if err := validateIPOrCIDR(ip); err != nil {
			c.errorf(p.Field("properties").Key("source.ip"), "%v", err)
		}
	}
	for _, k := range sortedKeys(s.Properties) {
		if k == "" {
			c.errorf(p.Field("properties").Key(k), "property name must not be empty")
		}
	}
}

func validateRbacConfig(c *check, r *Resource) {
	c.warnf("kind", "RbacConfig is deprecated: Istio 1.1+ reads ClusterRbacConfig instead")
	legacyValidateRbacConfig(c, r, "RbacConfig")
}

func validateClusterRbacConfig(c *check, r *Resource) {
	legacyValidateRbacConfig(c, r, "ClusterRbacConfig")
}

func legacyValidateRbacConfig(c *check, r *Resource, kind string) {
	cfg := r.Spec.(*legacy.RbacConfig)
	if r.Name != legacyDefaultName {
		c.errorf("metadata.name", "%s is a singleton: its name must be %q, got %q", kind, legacyDefaultName, r.Name)
	}
	mode := cfg.EffectiveMode()
	switch {
	case mode == legacy.RbacOnWithInclusion && cfg.Inclusion == nil:
		c.errorf(secSpec.Field("inclusion"), "inclusion cannot be null (use 'inclusion: {}' for none) when mode is ON_WITH_INCLUSION")
	case mode != legacy.RbacOnWithInclusion && cfg.Inclusion != nil:
		c.warnf(secSpec.Field("inclusion"), "inclusion is ignored unless mode is ON_WITH_INCLUSION (mode is %s)", mode)
	}
	switch {
	case mode == legacy.RbacOnWithExclusion && cfg.Exclusion == nil:
		c.errorf(secSpec.Field("exclusion"), "exclusion cannot be null (use 'exclusion: {}' for none) when mode is ON_WITH_EXCLUSION")
	case mode != legacy.RbacOnWithExclusion && cfg.Exclusion != nil:
		c.warnf(secSpec.Field("exclusion"), "exclusion is ignored unless mode is ON_WITH_EXCLUSION (mode is %s)", mode)
	}
	for _, t := range []struct {
		name   string
		target *legacy.RbacTarget
	}{{"inclusion", cfg.Inclusion}, {"exclusion", cfg.Exclusion}} {
		if t.target == nil {
			continue
		}
		for k, ns := range t.target.Namespaces {
			if !IsDNS1123Label(ns) {
				c.errorf(secSpec.Field(t.name).Field("namespaces").Index(k), "namespace %q must be a lowercase RFC 1123 label", ns)
			}
		}
		for k, svc := range t.target.Services {
			if svc == "" {
				c.errorf(secSpec.Field(t.name).Field("services").Index(k), "empty service is not allowed")
			}
		}
	}
}

func validateAuthenticationPolicy(c *check, r *Resource) {
	pol := r.Spec.(*legacy.AuthenticationPolicy)
	tp := secSpec.Field("targets")
	switch {
	case len(pol.Targets) == 0 && r.Name != legacyDefaultName:
		c.errorf("metadata.name", "a Policy without targets applies to the whole namespace and must be named %q, got %q", legacyDefaultName, r.Name)
	case len(pol.Targets) > 0 && r.Name == legacyDefaultName:
		c.errorf(tp, "the namespace-wide Policy %q must not have targets", legacyDefaultName)
	}
	for i, t := range pol.Targets {
		legacyValidateTarget(c, tp.Index(i), t)
	}
	legacyValidateAuthnMethods(c, pol)
}

func validateMeshPolicy(c *check, r *Resource) {
	pol := r.Spec.(*legacy.AuthenticationPolicy)
	if r.Name != legacyDefaultName {
		c.errorf("metadata.name", "MeshPolicy is a singleton: its name must be %q, got %q", legacyDefaultName, r.Name)
	}
	if len(pol.Targets) > 0 {
		c.errorf(secSpec.Field("targets"), "MeshPolicy must not have targets: it applies to the whole mesh")
	}
	legacyValidateAuthnMethods(c, pol)
}

// legacyValidateTarget checks a Policy target: a service short name and
// optional ports.
func legacyValidateTarget(c *check, p FieldPath, t *legacy.TargetSelector) {
	switch {
	case t.Name == "":
		c.errorf(p.Field("name"), "target name is required")
	case !IsDNS1123Label(t.Name):
		c.errorf(p.Field("name"), "target name %q must be a valid label: the short name of a service in the policy's namespace (no dots)", t.Name)
	}
	validateLabels(c, p.Field("labels"), t.Labels)
	for k, port := range t.Ports {
		pp := p.Field("ports").Index(k)
		switch {
		case port.Number != 0 && port.Name != "":
			c.errorf(pp, "only one of number and name can be set")
		case port.Number == 0 && port.Name == "":
			c.errorf(pp, "number or name is required")
		case port.Number > 65535:
			c.errorf(pp.Field("number"), "port number must be between 1 and 65535, got %d", port.Number)
		case port.Name != "" && !IsDNS1123Label(port.Name):
			c.errorf(pp.Field("name"), "port name %q must be a lowercase RFC 1123 label", port.Name)
		}
	}
}

// legacyValidateAuthnMethods checks peers and origins of a Policy or
// MeshPolicy.
func legacyValidateAuthnMethods(c *check, pol *legacy.AuthenticationPolicy) {
	issuers := map[string]string{}
	checkIssuer := func(p FieldPath, jwt *legacy.Jwt) {
		if jwt.Issuer == "" {
			return
		}
		if prev, dup := issuers[jwt.Issuer]; dup {
			c.errorf(p.Field("issuer"), "jwt with issuer %q is already defined at %s", jwt.Issuer, FieldPath(prev))
			return
		}
		issuers[jwt.Issuer] = string(p)
	}
	mtls := -1
	pp := secSpec.Field("peers")
	for i, m := range pol.Peers {
		mp := pp.Index(i)
		switch {
		case m.Mtls != nil && m.Jwt != nil:
			c.errorf(mp, "only one of mtls and jwt can be set in a peer method")
		case m.Mtls == nil && m.Jwt == nil:
			c.errorf(mp, "peer method must set mtls or jwt")
		}
		if m.Mtls != nil {
			if mtls >= 0 {
				c.errorf(mp.Field("mtls"), "at most one mtls peer method is allowed (already set at peers[%d])", mtls)
			} else {
				mtls = i
			}
		}
		if m.Jwt != nil {
			c.warnf(mp.Field("jwt"), "jwt as a peer method was never supported by Envoy and Istio ignored it: use origins")
			legacyValidateJwt(c, mp.Field("jwt"), m.Jwt)
			checkIssuer(mp.Field("jwt"), m.Jwt)
		}
	}
	op := secSpec.Field("origins")
	for i, o := range pol.Origins {
		jp := op.Index(i).Field("jwt")
		if o.Jwt == nil {
			c.errorf(jp, "jwt is required in an origin method")
			continue
		}
		legacyValidateJwt(c, jp, o.Jwt)
		checkIssuer(jp, o.Jwt)
	}
	if pol.PrincipalBinding == legacy.UseOrigin && len(pol.Origins) == 0 {
		c.warnf(secSpec.Field("principalBinding"), "principalBinding USE_ORIGIN without origins leaves requests without a principal")
	}
}

// legacyValidateJwt checks a v1alpha1 Jwt.
func legacyValidateJwt(c *check, p FieldPath, jwt *legacy.Jwt) {
	if jwt.Issuer == "" {
		c.errorf(p.Field("issuer"), "issuer is required")
	}
	for k, aud := range jwt.Audiences {
		if aud == "" {
			c.errorf(p.Field("audiences").Index(k), "audience must not be empty")
		}
	}
	if jwt.JwksURI != "" {
		if msg := secJwksURIError(jwt.JwksURI); msg != "" {
			c.errorf(p.Field("jwksUri"), "%s", msg)
		}
	}
	if jwt.Jwks != "" {
		if msg := secJwksError(jwt.Jwks); msg != "" {
			c.errorf(p.Field("jwks"), "%s", msg)
		}
		if jwt.JwksURI != "" {
			c.warnf(p.Field("jwks"), "both jwks and jwksUri are set: the inline jwks is used")
		}
	}
	for k, h := range jwt.JwtHeaders {
		if h == "" {
			c.errorf(p.Field("jwtHeaders").Index(k), "header name must not be empty")
		}
	}
	for k, q := range jwt.JwtParams {
		if q == "" {
			c.errorf(p.Field("jwtParams").Index(k), "query parameter name must not be empty")
		}
	}
	for i, tr := range jwt.TriggerRules {
		tp := p.Field("triggerRules").Index(i)
		for k, m := range tr.IncludedPaths {
			legacyValidateStringMatch(c, tp.Field("includedPaths").Index(k), m)
		}
		for k, m := range tr.ExcludedPaths {
			legacyValidateStringMatch(c, tp.Field("excludedPaths").Index(k), m)
		}
	}
}

// legacyValidateStringMatch checks that exactly one of exact, prefix,
// suffix and regex is set, and that a regex compiles (RE2, as in Envoy).
func legacyValidateStringMatch(c *check, p FieldPath, m *legacy.StringMatch) {
	var set []string
	for _, f := range []struct{ name, value string }{
		{"exact", m.Exact}, {"prefix", m.Prefix}, {"suffix", m.Suffix}, {"regex", m.Regex},
	} {
		if f.value != "" {
			set = append(set, f.name)
		}
	}
	switch len(set) {
	case 0:
		c.errorf(p, "one of exact, prefix, suffix or regex is required")
	case 1:
	default:
		c.errorf(p.Field(set[1]), "only one of exact, prefix, suffix and regex can be set, got %s", strings.Join(set, " and "))
	}
	if m.Regex != "" {
		if _, err := regexp.Compile(m.Regex); err != nil {
			c.errorf(p.Field("regex"), "regex %q does not compile (RE2 syntax): %v", m.Regex, err)
		}
	}
}
