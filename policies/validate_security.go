package policies

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	security "istio.io/api/security/v1beta1"
	typev1beta1 "istio.io/api/type/v1beta1"
)

// Validation of security.istio.io kinds, after Istio's
// pkg/config/validation and the CEL rules of its CRDs.

const secSpec FieldPath = "spec"

// CRD limits (kubebuilder MaxItems / MaxProperties).
const (
	secMaxRules       = 512
	secMaxFrom        = 512
	secMaxTargetRefs  = 16
	secMaxJwtRules    = 4096
	secMaxMatchLabels = 4096
	secMaxDelimClaims = 64
	secMaxLabelValue  = 63
	secMaxRefGroupLen = 253
	secMaxRefKindLen  = 63
	secMaxRefNameLen  = 253
)

func validateAuthorizationPolicy(c *check, r *Resource) {
	ap := r.Spec.(*security.AuthorizationPolicy)
	secValidateDryRun(c, r, true, ap.Action)
	secValidateTargets(c, ap.Selector, ap.TargetRef, ap.TargetRefs)

	action := ap.Action
	provider := ap.GetProvider()
	switch action {
	case security.AuthorizationPolicy_CUSTOM:
		if ap.Rules == nil {
			c.errorf(secSpec.Field("action"), "CUSTOM action without rules never triggers: add an empty rule (rules: [{}]) to apply it to every request")
		}
		switch {
		case provider == nil:
			c.errorf(secSpec.Field("provider"), "CUSTOM action requires provider.name, the extension provider declared in the mesh config")
		case provider.Name == "":
			c.errorf(secSpec.Field("provider").Field("name"), "provider.name must not be empty")
		}
	case security.AuthorizationPolicy_DENY:
		if ap.Rules == nil {
			c.errorf(secSpec.Field("action"), "DENY action without rules never triggers: add an empty rule (rules: [{}]) to deny every request")
		}
	case security.AuthorizationPolicy_AUDIT:
		if ap.Rules == nil {
			c.warnf(secSpec.Field("action"), "AUDIT action without rules never triggers: add an empty rule (rules: [{}]) to audit every request")
		}
	}
	if provider != nil && action != security.AuthorizationPolicy_CUSTOM {
		c.errorf(secSpec.Field("provider"), "provider is only allowed with action CUSTOM, not %s", action)
	}

	rulesPath := secSpec.Field("rules")
	if len(ap.Rules) > secMaxRules {
		c.errorf(rulesPath, "at most %d rules are allowed, got %d", secMaxRules, len(ap.Rules))
	}
	for i, rule := range ap.Rules {
		if rule == nil {
			c.errorf(rulesPath.Index(i), "rule must not be null")
			continue
		}
		secValidateRule(c, rulesPath.Index(i), rule, action)
	}
}

// secValidateRule checks one rule of an AuthorizationPolicy.
func secValidateRule(c *check, p FieldPath, rule *security.Rule, action security.AuthorizationPolicy_Action) {
	custom := action == security.AuthorizationPolicy_CUSTOM
	fromPath, toPath, whenPath := p.Field("from"), p.Field("to"), p.Field("when")
	// "from: []" would decode as "any source": Istio rejects it.
	for _, l := range []FieldPath{fromPath, toPath, whenPath} {
		if c.writtenEmpty(l) {
			c.errorf(l, "must not be empty: leave it out to match any request, or list at least one entry")
		}
	}
	if len(rule.From) > secMaxFrom {
		c.errorf(fromPath, "at most %d sources are allowed, got %d", secMaxFrom, len(rule.From))
	}
	hasFrom, tcpFrom := false, false
	for j, from := range rule.From {
		fp := fromPath.Index(j)
		if from == nil || from.Source == nil {
			c.errorf(fp, "source is required: write \"- source: {...}\"")
			continue
		}
		hasFrom = true
		if secValidateSource(c, fp.Field("source"), from.Source, custom) {
			tcpFrom = true
		}
	}
	hasTo, tcpTo := false, false
	for j, to := range rule.To {
		tp := toPath.Index(j)
		if to == nil || to.Operation == nil {
			c.errorf(tp, "operation is required: write \"- operation: {...}\"")
			continue
		}
		hasTo = true
		op := to.Operation
		secValidateOperation(c, tp.Field("operation"), op)
		if len(op.Ports) > 0 || len(op.NotPorts) > 0 {
			tcpTo = true
		}
	}
	for j, cond := range rule.When {
		wp := whenPath.Index(j)
		if cond == nil {
			c.errorf(wp, "condition must not be null")
			continue
		}
		secValidateCondition(c, wp, cond, custom)
	}
	if action == security.AuthorizationPolicy_DENY && ((hasFrom && !hasTo && !tcpFrom) || (hasTo && !tcpTo)) {
		c.warnf(p, "this DENY rule uses only HTTP attributes, so it denies all TCP traffic in its scope: add ports to the operation to limit it")
	}
}

// secSourceField is one list field of a Source.
type secSourceField struct {
	name   string
	values []string
	// tcp says the field can be matched on a TCP connection.
	tcp bool
	// custom says the field is supported with the CUSTOM action.
	custom bool
	kind   condKind
}

func secSourceFields(s *security.Source) []secSourceField {
	return []secSourceField{
		{"principals", s.Principals, true, false, condString},
		{"notPrincipals", s.NotPrincipals, true, false, condString},
		{"requestPrincipals", s.RequestPrincipals, false, false, condString},
		{"notRequestPrincipals", s.NotRequestPrincipals, false, false, condString},
		{"namespaces", s.Namespaces, true, false, condString},
		{"notNamespaces", s.NotNamespaces, true, false, condString},
		{"serviceAccounts", s.ServiceAccounts, true, false, condServiceAccount},
		{"notServiceAccounts", s.NotServiceAccounts, true, false, condServiceAccount},
		{"ipBlocks", s.IpBlocks, true, true, condIP},
		{"notIpBlocks", s.NotIpBlocks, true, true, condIP},
		{"remoteIpBlocks", s.RemoteIpBlocks, true, true, condIP},
		{"notRemoteIpBlocks", s.NotRemoteIpBlocks, true, true, condIP},
		{"trustDomains", s.TrustDomains, true, true, condString},
		{"notTrustDomains", s.NotTrustDomains, true, true, condString},
	}
}

// secValidateSource checks a rule source and reports whether it matches
// TCP attributes.
func secValidateSource(c *check, p FieldPath, s *security.Source, custom bool) (tcp bool) {
	fields := secSourceFields(s)
	empty := true
	for _, f := range fields {
		if len(f.values) == 0 {
			continue
		}
		empty = false
		tcp = tcp || f.tcp
		fp := p.Field(f.name)
		if custom && !f.custom {
			c.errorf(fp, "%s is not supported with the CUSTOM action", f.name)
		}
		if f.kind == condServiceAccount && len(f.values) > secMaxServiceAccounts {
			c.errorf(fp, "at most %d service accounts are allowed, got %d", secMaxServiceAccounts, len(f.values))
		}
		for k, v := range f.values {
			if msg := secValueError(f.kind, v); msg != "" {
				c.errorf(fp.Index(k), "%s", msg)
			}
		}
	}
	if empty {
		c.errorf(p, "at least one field must be set in source (principals, namespaces, serviceAccounts, ipBlocks, ...); remove it to match any source")
	}
	if len(s.ServiceAccounts)+len(s.NotServiceAccounts) > 0 &&
		len(s.Principals)+len(s.NotPrincipals)+len(s.Namespaces)+len(s.NotNamespaces) > 0 {
		field := "serviceAccounts"
		if len(s.ServiceAccounts) == 0 {
			field = "notServiceAccounts"
		}
		c.errorf(p.Field(field), "cannot set serviceAccounts with namespaces or principals: use separate sources")
	}
	return tcp
}

// secValidateOperation checks a rule operation.
func secValidateOperation(c *check, p FieldPath, op *security.Operation) {
	fields := []struct {
		name   string
		values []string
	}{
		{"hosts", op.Hosts}, {"notHosts", op.NotHosts},
		{"ports", op.Ports}, {"notPorts", op.NotPorts},
		{"methods", op.Methods}, {"notMethods", op.NotMethods},
		{"paths", op.Paths}, {"notPaths", op.NotPaths},
	}
	empty := true
	for _, f := range fields {
		if len(f.values) > 0 {
			empty = false
		}
		fp := p.Field(f.name)
		for k, v := range f.values {
			vp := fp.Index(k)
			if v == "" {
				c.errorf(vp, "empty value is not allowed")
				continue
			}
			switch f.name {
			case "ports", "notPorts":
				if msg := secPortError(v); msg != "" {
					c.errorf(vp, "%s", msg)
				} else if v == "0" {
					c.warnf(vp, "port 0 never matches a connection")
				}
			case "paths", "notPaths":
				if msg := secPathTemplateError(v); msg != "" {
					c.errorf(vp, "%s", msg)
				}
			case "methods", "notMethods":
				if msg := secMethodWarning(v); msg != "" {
					c.warnf(vp, "%s", msg)
				}
			}
		}
	}
	if empty {
		c.errorf(p, "at least one field must be set in operation (hosts, ports, methods, paths or their not* forms); remove it to match any operation")
	}
}

// secCustomUnsupportedKey reports condition keys the CUSTOM action cannot
// evaluate (the external authorizer sees no peer identity or JWT).
func secCustomUnsupportedKey(key string) bool {
	switch key {
	case "source.namespace", "source.serviceAccount", "source.principal":
		return true
	}
	return strings.HasPrefix(key, "request.auth.")
}

// secValidateCondition checks one "when" condition.
func secValidateCondition(c *check, p FieldPath, cond *security.Condition, custom bool) {
	kp := p.Field("key")
	if cond.Key == "" {
		c.errorf(kp, "key is required")
		return
	}
	if len(cond.Values) == 0 && len(cond.NotValues) == 0 {
		c.errorf(p, "at least one of values or notValues must be set for key %s", cond.Key)
	}
	kind, msg := secConditionKey(cond.Key)
	if msg != "" {
		c.errorf(kp, "%s", msg)
		return
	}
	if custom && secCustomUnsupportedKey(cond.Key) {
		c.errorf(kp, "%s is not supported with the CUSTOM action", cond.Key)
	}
	for _, list := range []struct {
		name   string
		values []string
	}{{"values", cond.Values}, {"notValues", cond.NotValues}} {
		for k, v := range list.values {
			if msg := secValueError(kind, v); msg != "" {
				c.errorf(p.Field(list.name).Index(k), "%s", msg)
			}
		}
	}
}

func validatePeerAuthentication(c *check, r *Resource) {
	pa := r.Spec.(*security.PeerAuthentication)
	secValidateDryRun(c, r, false, 0)
	secValidateSelector(c, secSpec.Field("selector"), pa.Selector)
	if pa.PortLevelMtls == nil {
		return
	}
	pp := secSpec.Field("portLevelMtls")
	if pa.Selector == nil || len(pa.Selector.MatchLabels) == 0 {
		c.errorf(pp, "portLevelMtls requires selector: port-level mTLS applies only to the workloads that selector.matchLabels picks")
	}
	if len(pa.PortLevelMtls) == 0 {
		c.errorf(pp, "portLevelMtls must list at least one port; remove it if there is none")
	}
	ports := make([]int, 0, len(pa.PortLevelMtls))
	for port := range pa.PortLevelMtls {
		ports = append(ports, int(port))
	}
	slices.Sort(ports)
	for _, port := range ports {
		if port < 1 || port > 65535 {
			c.errorf(pp.Key(strconv.Itoa(port)), "port must be between 1-65535, got %d", port)
		}
	}
}

func validateRequestAuthentication(c *check, r *Resource) {
	ra := r.Spec.(*security.RequestAuthentication)
	secValidateDryRun(c, r, false, 0)
	secValidateTargets(c, ra.Selector, ra.TargetRef, ra.TargetRefs)
	rulesPath := secSpec.Field("jwtRules")
	if len(ra.JwtRules) > secMaxJwtRules {
		c.errorf(rulesPath, "at most %d jwtRules are allowed, got %d", secMaxJwtRules, len(ra.JwtRules))
	}
	issuers := map[string]int{}
	for i, rule := range ra.JwtRules {
		rp := rulesPath.Index(i)
		if rule == nil {
			c.errorf(rp, "jwt rule must not be null")
			continue
		}
		secValidateJwtRule(c, rp, rule)
		if rule.Issuer == "" {
			continue
		}
		if prev, dup := issuers[rule.Issuer]; dup {
			c.warnf(rp.Field("issuer"), "issuer %q is also configured by jwtRules[%d]: a token from it is accepted if either rule's keys verify it", rule.Issuer, prev)
		} else {
			issuers[rule.Issuer] = i
		}
	}
}

// secValidateJwtRule checks one RequestAuthentication JWT rule.
func secValidateJwtRule(c *check, p FieldPath, rule *security.JWTRule) {
	switch {
	case rule.Issuer == "" && rule.JwksUri == "":
		c.errorf(p.Field("issuer"), "issuer is required")
	case rule.Issuer == "":
		c.warnf(p.Field("issuer"), "no issuer: tokens with any issuer are accepted when these keys verify them")
	}
	for k, aud := range rule.Audiences {
		if aud == "" {
			c.errorf(p.Field("audiences").Index(k), "audience must not be empty")
		}
	}
	if rule.JwksUri != "" {
		if msg := secJwksURIError(rule.JwksUri); msg != "" {
			c.errorf(p.Field("jwksUri"), "%s", msg)
		}
	}
	if rule.Jwks != "" {
		if rule.JwksUri != "" {
			c.errorf(p.Field("jwks"), "only one of jwks or jwksUri can be set")
		}
		if msg := secJwksError(rule.Jwks); msg != "" {
			c.errorf(p.Field("jwks"), "%s", msg)
		}
	}
	for k, h := range rule.FromHeaders {
		hp := p.Field("fromHeaders").Index(k)
		if h == nil || h.Name == "" {
			c.errorf(hp.Field("name"), "header name is required")
		}
	}
	for k, q := range rule.FromParams {
		if q == "" {
			c.errorf(p.Field("fromParams").Index(k), "query parameter name must not be empty")
		}
	}
	for k, ck := range rule.FromCookies {
		if ck == "" {
			c.errorf(p.Field("fromCookies").Index(k), "cookie name must not be empty")
		}
	}
	if h := rule.OutputPayloadToHeader; h != "" && !secHeaderToken.MatchString(h) {
		c.errorf(p.Field("outputPayloadToHeader"), "%q is not a valid header name", h)
	}
	for k, ch := range rule.OutputClaimToHeaders {
		cp := p.Field("outputClaimToHeaders").Index(k)
		if ch == nil {
			c.errorf(cp, "outputClaimToHeaders entry must not be null")
			continue
		}
		switch {
		case ch.Header == "":
			c.errorf(cp.Field("header"), "header is required")
		case !secStrictHeaderName.MatchString(ch.Header):
			c.errorf(cp.Field("header"), "header %q is not a valid header name: use letters, digits and '-'", ch.Header)
		}
		if ch.Claim == "" {
			c.errorf(cp.Field("claim"), "claim is required")
		}
	}
	validateDuration(c, p.Field("timeout"), rule.Timeout)
	if len(rule.SpaceDelimitedClaims) > secMaxDelimClaims {
		c.errorf(p.Field("spaceDelimitedClaims"), "at most %d claims are allowed, got %d", secMaxDelimClaims, len(rule.SpaceDelimitedClaims))
	}
	for k, claim := range rule.SpaceDelimitedClaims {
		if claim == "" {
			c.errorf(p.Field("spaceDelimitedClaims").Index(k), "claim name must not be empty")
		}
	}
}

// secValidateSelector checks a workload selector as the CRD does.
func secValidateSelector(c *check, p FieldPath, sel *typev1beta1.WorkloadSelector) {
	if sel == nil {
		return
	}
	lp := p.Field("matchLabels")
	if len(sel.MatchLabels) == 0 {
		c.warnf(p, "selector has no matchLabels: it selects every workload in the namespace, as if it were not set")
		return
	}
	if len(sel.MatchLabels) > secMaxMatchLabels {
		c.errorf(lp, "at most %d labels are allowed, got %d", secMaxMatchLabels, len(sel.MatchLabels))
	}
	for _, k := range sortedKeys(sel.MatchLabels) {
		v := sel.MatchLabels[k]
		kp := lp.Key(k)
		switch {
		case k == "":
			c.errorf(kp, "label key must not be empty")
		case strings.Contains(k, "*"):
			c.errorf(kp, "wildcard not allowed in label key match: %q", k)
		}
		switch {
		case strings.Contains(v, "*"):
			c.errorf(kp, "wildcard not allowed in label value match: %q", v)
		case len(v) > secMaxLabelValue:
			c.errorf(kp, "label value %q is longer than %d characters", truncate(v, 40), secMaxLabelValue)
		}
	}
}

var (
	secRefGroupRE = regexp.MustCompile(`^$|^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)
	secRefKindRE  = regexp.MustCompile(`^[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?$`)
)

// secValidateTargets checks selector, targetRef and targetRefs: at most one
// of them, and each reference well formed.
func secValidateTargets(c *check, sel *typev1beta1.WorkloadSelector, ref *typev1beta1.PolicyTargetReference, refs []*typev1beta1.PolicyTargetReference) {
	secValidateSelector(c, secSpec.Field("selector"), sel)
	set := 0
	for _, present := range []bool{sel != nil, ref != nil, len(refs) > 0} {
		if present {
			set++
		}
	}
	if set > 1 {
		field := "targetRefs"
		if len(refs) == 0 {
			field = "targetRef"
		}
		c.errorf(secSpec.Field(field), "only one of targetRefs, targetRef or selector can be set")
	}
	if ref != nil {
		secValidateTargetRef(c, secSpec.Field("targetRef"), ref)
	}
	if len(refs) > secMaxTargetRefs {
		c.errorf(secSpec.Field("targetRefs"), "at most %d targetRefs are allowed, got %d", secMaxTargetRefs, len(refs))
	}
	for i, r := range refs {
		if r == nil {
			c.errorf(secSpec.Field("targetRefs").Index(i), "targetRef must not be null")
			continue
		}
		secValidateTargetRef(c, secSpec.Field("targetRefs").Index(i), r)
	}
}

func secValidateTargetRef(c *check, p FieldPath, ref *typev1beta1.PolicyTargetReference) {
	groupOK := len(ref.Group) <= secMaxRefGroupLen && secRefGroupRE.MatchString(ref.Group)
	if !groupOK {
		c.errorf(p.Field("group"), "group %q must be empty or a lowercase RFC 1123 subdomain", ref.Group)
	}
	kindOK := false
	switch {
	case ref.Kind == "":
		c.errorf(p.Field("kind"), "kind is required")
	case len(ref.Kind) > secMaxRefKindLen || !secRefKindRE.MatchString(ref.Kind):
		c.errorf(p.Field("kind"), "kind %q must start with a letter and contain only letters, digits and '-'", ref.Kind)
	default:
		kindOK = true
	}
	switch {
	case ref.Name == "":
		c.errorf(p.Field("name"), "name is required")
	case len(ref.Name) > secMaxRefNameLen:
		c.errorf(p.Field("name"), "name is longer than %d characters", secMaxRefNameLen)
	}
	if ref.Namespace != "" {
		c.errorf(p.Field("namespace"), "cross namespace referencing is not currently supported: remove namespace")
	}
	if groupOK && kindOK && !secAllowedTargetKind(ref.Group, ref.Kind) {
		c.errorf(p.Field("kind"), "targetRef must refer to a Service, a ServiceEntry (networking.istio.io), a Gateway or a GatewayClass (gateway.networking.k8s.io), not %s",
			secGroupKindString(ref.Group, ref.Kind))
	}
}

func secAllowedTargetKind(group, kind string) bool {
	switch group {
	case "", "core":
		return kind == "Service"
	case GroupNetworking:
		return kind == "ServiceEntry"
	case "gateway.networking.k8s.io":
		return kind == "Gateway" || kind == "GatewayClass"
	}
	return false
}

func secGroupKindString(group, kind string) string {
	if group == "" {
		return fmt.Sprintf("%s (core group)", kind)
	}
	return kind + "." + group
}

// secValidateDryRun checks the istio.io/dry-run annotation: only
// AuthorizationPolicy takes it, only with ALLOW or DENY, and its value must
// be a boolean.
func secValidateDryRun(c *check, r *Resource, allowed bool, action security.AuthorizationPolicy_Action) {
	val, found := r.Annotations[AnnotationDryRun]
	if !found {
		return
	}
	p := FieldPath("metadata.annotations").Key(AnnotationDryRun)
	if !allowed {
		c.errorf(p, "annotation %s is supported only on AuthorizationPolicy: remove it", AnnotationDryRun)
		return
	}
	if action != security.AuthorizationPolicy_ALLOW && action != security.AuthorizationPolicy_DENY {
		c.errorf(p, "annotation %s is supported only with action ALLOW or DENY, not %s", AnnotationDryRun, action)
		return
	}
	if _, err := strconv.ParseBool(val); err != nil {
		c.errorf(p, "annotation %s must be \"true\" or \"false\", got %q", AnnotationDryRun, val)
	}
}
