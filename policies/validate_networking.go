package policies

import (
	"fmt"
	"maps"
	"math"
	"net"
	"net/http"
	"net/netip"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	networking "istio.io/api/networking/v1alpha3"
)

// Validation of networking.istio.io kinds, after Istio's
// pkg/config/validation (validation.go, virtualservice.go, agent/validation.go)
// and the CEL and OpenAPI rules of its CRDs (istio.io/api v1.32.0). Istio's
// webhook warnings are warnings here; everything it rejects is an error.

// ---------------------------------------------------------------------------
// Hosts, names, ports and addresses. These are shared: other validators may
// use them for hosts, IPs and CIDRs.

var (
	// dnsLabelAnyCaseRE is Istio's DNS-1123 label: unlike Kubernetes it
	// accepts upper case (pkg/config/labels).
	dnsLabelAnyCaseRE = regexp.MustCompile(`^[a-zA-Z0-9](?:[-a-zA-Z0-9]*[a-zA-Z0-9])?$`)
	// wildcardLabelRE is a DNS label that may be "*" or start with "*" or "*-".
	wildcardLabelRE = regexp.MustCompile(`^(?:\*|(?:\*|\*-)?[a-zA-Z0-9](?:[-a-zA-Z0-9]*[a-zA-Z0-9])?)$`)
	// httpHeaderNameRE is the header names Istio accepts in matches.
	httpHeaderNameRE = regexp.MustCompile(`^[-_A-Za-z0-9]+$`)
	// udsPortNameRE is the CEL rule on WorkloadEntry port names.
	udsPortNameRE = regexp.MustCompile(`^[a-zA-Z0-9](?:[-a-zA-Z0-9]*[a-zA-Z0-9])?$`)
)

// isDNSLabelAnyCase reports a DNS-1123 label of either case, at most 63
// characters, as Istio checks subset, port, gateway and namespace names.
func isDNSLabelAnyCase(s string) bool { return len(s) <= 63 && dnsLabelAnyCaseRE.MatchString(s) }

// isWildcardDNSLabel reports a DNS label that may carry a leading wildcard.
func isWildcardDNSLabel(s string) bool { return len(s) <= 63 && wildcardLabelRE.MatchString(s) }

// isIPAddress reports an IPv4 or IPv6 address (no prefix length).
func isIPAddress(s string) bool {
	_, err := netip.ParseAddr(s)
	return err == nil
}

// validateIPAddress explains why s is not an IP address.
func validateIPAddress(s string) error {
	if !isIPAddress(s) {
		return fmt.Errorf("%q is not a valid IP address", s)
	}
	return nil
}

// validateIPOrCIDR accepts an IP address or a CIDR block (10.0.0.0/8,
// 2001:db8::/32), as Istio's ValidateIPSubnet.
func validateIPOrCIDR(s string) error {
	if strings.Count(s, "/") == 1 {
		if _, err := netip.ParsePrefix(s); err != nil {
			return fmt.Errorf("%q is not a valid CIDR block (such as 10.0.0.0/8)", s)
		}
		return nil
	}
	if !isIPAddress(s) {
		return fmt.Errorf("%q is not a valid IP address or CIDR block", s)
	}
	return nil
}

// validatePortNumber explains why n is not a port number.
func validatePortNumber(n int64) error {
	if n < 1 || n > 65535 {
		return fmt.Errorf("port number %d must be between 1 and 65535", n)
	}
	return nil
}

func checkDomainLength(host string) error {
	if host == "" {
		return fmt.Errorf("host must not be empty")
	}
	if len(host) > 255 {
		return fmt.Errorf("domain name %q is too long: at most 255 characters", host)
	}
	return nil
}

// validateDNSLabels checks every dot-separated label of domain (a suffix of
// host, which errors name). A trailing dot ("istio.io.") is allowed; an
// all-numeric top-level domain is not.
func validateDNSLabels(host, domain string) error {
	labels := strings.Split(domain, ".")
	tld := labels[len(labels)-1]
	if _, err := strconv.Atoi(tld); err == nil {
		return fmt.Errorf("domain name %q is invalid: the top-level domain %q must not be all digits", host, tld)
	}
	for i, l := range labels {
		if i == len(labels)-1 && l == "" {
			return nil
		}
		if !isDNSLabelAnyCase(l) {
			return fmt.Errorf("domain name %q is invalid: label %q must be 1-63 letters, digits or '-', starting and ending with a letter or digit", host, l)
		}
	}
	return nil
}

// validateFQDN checks a domain name without wildcards. Short names
// ("reviews") are valid domain names.
func validateFQDN(host string) error {
	if err := checkDomainLength(host); err != nil {
		return err
	}
	return validateDNSLabels(host, host)
}

// validateWildcardDomain checks a domain name whose first label may be a
// wildcard: "*", "*.example.com", "*-svc.example.com", "reviews".
func validateWildcardDomain(host string) error {
	if err := checkDomainLength(host); err != nil {
		return err
	}
	first, rest, more := strings.Cut(host, ".")
	if !isWildcardDNSLabel(first) {
		return fmt.Errorf("domain name %q is invalid: label %q must be letters, digits or '-' (a wildcard '*' is allowed only at the start of the first label)", host, first)
	}
	if more {
		return validateDNSLabels(host, rest)
	}
	return nil
}

// validateWildcardDomainBoundToGateway is validateWildcardDomain for hosts of
// a virtual service bound to gateways: with SNI routes it also accepts the
// generated "outbound_.<port>_._.<host>" names of multi-network gateways.
func validateWildcardDomainBoundToGateway(sni bool, host string) error {
	if err := checkDomainLength(host); err != nil {
		return err
	}
	first, rest, more := strings.Cut(host, ".")
	if sni && first == "outbound_" {
		if !outboundSNIRE.MatchString(host) {
			return fmt.Errorf("domain name %q is invalid: label %q must be letters, digits or '-'", host, first)
		}
		return nil
	}
	if !isWildcardDNSLabel(first) {
		return fmt.Errorf("domain name %q is invalid: label %q must be letters, digits or '-' (a wildcard '*' is allowed only at the start of the first label)", host, first)
	}
	if more {
		return validateDNSLabels(host, rest)
	}
	return nil
}

var outboundSNIRE = regexp.MustCompile(`outbound_.([0-8].*).*`)

// validatePartialWildcard rejects wildcards other than "*" alone or a
// leading "*." label.
func validatePartialWildcard(host string) error {
	if strings.Contains(host, "*") && host != "*" && !strings.HasPrefix(host, "*.") {
		return fmt.Errorf("partial wildcard %q is not allowed: use \"*\" alone or as the whole first label (\"*.example.com\")", host)
	}
	return nil
}

// hostMatches reports whether two possibly wildcarded hosts overlap.
func hostMatches(a, b string) bool {
	aw, bw := strings.HasPrefix(a, "*"), strings.HasPrefix(b, "*")
	switch {
	case aw && bw:
		if len(a) < len(b) {
			return strings.HasSuffix(b[1:], a[1:])
		}
		return strings.HasSuffix(a[1:], b[1:])
	case aw:
		return strings.HasSuffix(b, a[1:])
	case bw:
		return strings.HasSuffix(a, b[1:])
	}
	return a == b
}

// hostSubsetOf reports whether every name host a matches is matched by b.
func hostSubsetOf(a, b string) bool {
	aw, bw := strings.HasPrefix(a, "*"), strings.HasPrefix(b, "*")
	switch {
	case aw && bw:
		return len(a) >= len(b) && strings.HasSuffix(a[1:], b[1:])
	case aw:
		return false
	case bw:
		return strings.HasSuffix(a, b[1:])
	}
	return a == b
}

// validateUnixAddress checks the path of a unix:// address: absolute and
// not a directory, or an abstract socket ("@name").
func validateUnixAddress(addr string) error {
	if addr == "" {
		return fmt.Errorf("unix domain socket path must not be empty")
	}
	if strings.HasPrefix(addr, "@") {
		return nil
	}
	if !path.IsAbs(addr) || strings.HasSuffix(addr, "/") {
		return fmt.Errorf("unix domain socket %q must be an absolute path to a file (or an abstract socket \"@name\")", addr)
	}
	return nil
}

const unixAddressPrefix = "unix://"

// The protocols a port may declare (pkg/config/protocol), by lower-case name.
var portProtocols = map[string]string{
	"tcp": "TCP", "udp": "UDP", "grpc": "GRPC", "grpc-web": "GRPC-Web", "http": "HTTP",
	"http_proxy": "HTTP_PROXY", "http2": "HTTP2", "https": "HTTPS", "tls": "TLS",
	"mongo": "Mongo", "redis": "Redis", "mysql": "MySQL",
}

const supportedProtocols = "HTTP, HTTPS, HTTP2, GRPC, GRPC-WEB, TCP, TLS, UDP, MONGO, REDIS, MYSQL or HTTP_PROXY"

// parseProtocol returns the canonical protocol name, or "" when unsupported.
func parseProtocol(s string) string { return portProtocols[strings.ToLower(s)] }

func protocolIsHTTP(p string) bool {
	switch parseProtocol(p) {
	case "HTTP", "HTTP2", "HTTP_PROXY", "GRPC", "GRPC-Web":
		return true
	}
	return false
}

func protocolIsTLS(p string) bool {
	switch parseProtocol(p) {
	case "HTTPS", "TLS":
		return true
	}
	return false
}

func protocolIsTCP(p string) bool {
	switch parseProtocol(p) {
	case "TCP", "HTTPS", "TLS", "Mongo", "Redis", "MySQL":
		return true
	}
	return false
}

// validatePortProtocol checks a protocol that may be left empty (sniffed).
func validatePortProtocol(c *check, p FieldPath, proto string) {
	if proto != "" && parseProtocol(proto) == "" {
		c.errorf(p, "protocol %q is not supported; use %s", proto, supportedProtocols)
	}
}

func validatePortName(c *check, p FieldPath, name string) {
	if !isDNSLabelAnyCase(name) {
		if name == "" {
			c.errorf(p, "port name is required")
			return
		}
		c.errorf(p, "port name %q must be a DNS-1123 label: at most 63 letters, digits or '-', starting and ending with a letter or digit", name)
	}
}

func validatePort(c *check, p FieldPath, n int64) {
	if err := validatePortNumber(n); err != nil {
		c.errorf(p, "%v", err)
	}
}

// validateDuration applies the rule Istio puts on its durations: at least
// 1ms, in whole milliseconds.
func validateDuration(c *check, p FieldPath, d *durationpb.Duration) {
	if d == nil {
		return
	}
	dur := d.AsDuration()
	switch {
	case dur < time.Millisecond:
		c.errorf(p, "duration %s must be at least 1ms", dur)
	case dur%time.Millisecond != 0:
		c.errorf(p, "duration %s must be a whole number of milliseconds", dur)
	}
}

func sortedKeys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }

// validateSelectorLabels checks a workload selector's labels: keys not
// empty, no wildcards, values at most 63 characters. An empty selector
// selects every workload of the namespace, which is allowed with a warning.
func validateSelectorLabels(c *check, p FieldPath, labels map[string]string, what string) {
	if len(labels) == 0 {
		c.warnf(p, "workload selector has no labels: the %s applies to every workload in the namespace", what)
		return
	}
	for _, k := range sortedKeys(labels) {
		v := labels[k]
		switch {
		case k == "":
			c.errorf(p.Key(k), "an empty label key is not allowed in a selector")
		case strings.Contains(k, "*") || strings.Contains(v, "*"):
			c.errorf(p.Key(k), "wildcard is not supported in selector: %q", k+"="+v)
		case len(v) > 63:
			c.errorf(p.Key(k), "label value %q is longer than 63 characters", v)
		}
	}
}

// validateExportTo checks exportTo: ".", "*", namespace names, and on a
// ServiceEntry "~" (visible to no one); no duplicates, "*" and "~" alone.
func validateExportTo(c *check, p FieldPath, namespace string, exportTo []string, serviceEntry, drWithSelector bool) {
	if len(exportTo) == 0 {
		return
	}
	seen := map[string]bool{}
	first := map[string]string{}
	for i, e := range exportTo {
		key := e
		if e == "." {
			key = namespace
		}
		if seen[key] {
			if first[key] != e {
				c.errorf(p.Index(i), "duplicate exportTo entry %q: \".\" already means the current namespace %q", e, namespace)
			} else {
				c.errorf(p.Index(i), "duplicate exportTo entry %q", e)
			}
			continue
		}
		if _, ok := first[key]; !ok {
			first[key] = e
		}
		switch {
		case e == "~" && serviceEntry:
		case e == "~":
			c.errorf(p.Index(i), "exportTo \"~\" (visible to no one) is allowed only on a ServiceEntry")
			continue
		case key == "*":
		case !isDNSLabelAnyCase(key):
			c.errorf(p.Index(i), "exportTo entry %q must be \".\", \"*\" or a namespace name", e)
			continue
		}
		seen[key] = true
	}
	if drWithSelector && len(seen) > 0 {
		if seen[namespace] {
			if len(seen) > 1 {
				c.errorf(p, "a destination rule with a workloadSelector may be exported only to its own namespace")
			}
		} else {
			c.errorf(p, "a destination rule with a workloadSelector cannot be exported beyond its own namespace %q", namespace)
		}
	}
	if seen["*"] && len(exportTo) > 1 {
		c.errorf(p, "exportTo \"*\" (everyone) must be the only entry")
	}
	if seen["~"] && len(exportTo) > 1 {
		c.errorf(p, "exportTo \"~\" (no one) must be the only entry")
	}
}

// ---------------------------------------------------------------------------
// VirtualService

func validateVirtualService(c *check, r *Resource) {
	vs := r.Spec.(*networking.VirtualService)
	const spec FieldPath = "spec"

	delegate := len(vs.Hosts) == 0
	if delegate {
		// A virtual service without hosts is a delegate, included by a
		// root virtual service's http[].delegate.
		if len(vs.Gateways) > 0 {
			c.errorf(spec.Field("gateways"), "a delegate virtual service (one without hosts) must not list gateways: the root virtual service decides them")
		}
		if len(vs.Tls) > 0 {
			c.errorf(spec.Field("tls"), "a delegate virtual service (one without hosts) cannot have tls routes")
		}
		if len(vs.Tcp) > 0 {
			c.errorf(spec.Field("tcp"), "a delegate virtual service (one without hosts) cannot have tcp routes")
		}
	}

	// Bound to gateways only when gateways are listed and "mesh" is not
	// among them.
	boundToGateway := len(vs.Gateways) > 0 && !slices.Contains(vs.Gateways, "mesh")
	validateGatewayRefs(c, spec.Field("gateways"), vs.Gateways)

	if !boundToGateway {
		for i, h := range vs.Http {
			for j, m := range h.Match {
				mp := spec.Field("http").Index(i).Field("match").Index(j)
				for _, field := range []string{"headers", "withoutHeaders"} {
					hs := m.Headers
					if field == "withoutHeaders" {
						hs = m.WithoutHeaders
					}
					for _, k := range sortedKeys(hs) {
						if isJWTClaimHeader(k) {
							c.errorf(mp.Field(field).Key(k), "JWT claim based routing (%s) is only supported on virtual services bound to gateways (not \"mesh\")", k)
						}
					}
				}
			}
		}
	}

	sni := false
	for _, t := range vs.Tls {
		for _, m := range t.Match {
			sni = sni || len(m.SniHosts) > 0
		}
	}
	hostsValid := true
	for i, h := range vs.Hosts {
		var err error
		if boundToGateway {
			err = validateWildcardDomainBoundToGateway(sni, h)
		} else {
			err = validateWildcardDomain(h)
		}
		switch {
		case err != nil && !isIPAddress(h):
			c.errorf(spec.Field("hosts").Index(i), "%v", err)
			hostsValid = false
		case err == nil && !boundToGateway && h == "*":
			c.errorf(spec.Field("hosts").Index(i), "host \"*\" is not allowed for a virtual service applied to the mesh: name the hosts, or bind it to a gateway")
			hostsValid = false
		}
	}
	if hostsValid {
		for i := range vs.Hosts {
			for j := i + 1; j < len(vs.Hosts); j++ {
				if hostMatches(vs.Hosts[i], vs.Hosts[j]) {
					c.errorf(spec.Field("hosts").Index(j), "duplicate hosts in virtual service: %q overlaps %q", vs.Hosts[j], vs.Hosts[i])
				}
			}
		}
	}

	if len(vs.Http) == 0 && len(vs.Tcp) == 0 && len(vs.Tls) == 0 {
		c.errorf(spec, "a virtual service needs at least one http, tcp or tls route")
	}
	for i, h := range vs.Http {
		validateHTTPRoute(c, spec.Field("http").Index(i), h, delegate)
	}
	sniGatewayRules := !slices.Contains(vs.Gateways, "mesh")
	for i, t := range vs.Tls {
		validateTLSRoute(c, spec.Field("tls").Index(i), t, vs, sniGatewayRules)
	}
	for i, t := range vs.Tcp {
		validateTCPRoute(c, spec.Field("tcp").Index(i), t)
	}
	validateExportTo(c, spec.Field("exportTo"), r.Namespace, vs.ExportTo, false, false)

	analyzeUnreachableHTTPRules(c, spec.Field("http"), vs.Http)
	analyzeUnreachableL4Rules(c, spec.Field("tcp"), len(vs.Tcp), func(i int) []proto.Message {
		return protoList(vs.Tcp[i].Match)
	})
	analyzeUnreachableL4Rules(c, spec.Field("tls"), len(vs.Tls), func(i int) []proto.Message {
		return protoList(vs.Tls[i].Match)
	})
}

// isJWTClaimHeader reports Istio's "@request.auth.claims.<name>" (or
// "@request.auth.claims[a][b]") pseudo-header for routing on JWT claims.
func isJWTClaimHeader(name string) bool {
	const prefix = "@request.auth.claims"
	if !strings.HasPrefix(strings.ToLower(name), prefix) {
		return false
	}
	rest := name[len(prefix):]
	return (strings.HasPrefix(rest, ".") && len(rest) > 1) ||
		(strings.HasPrefix(rest, "[") && strings.HasSuffix(rest, "]") && len(rest) > 2)
}

// validateGatewayRefs checks gateway references: "mesh", "<namespace>/<name>",
// or a bare name in the virtual service's namespace.
func validateGatewayRefs(c *check, p FieldPath, names []string) {
	for i, g := range names {
		gp := p.Index(i)
		ns, name, ok := strings.Cut(g, "/")
		if !ok {
			if strings.Contains(g, ".") {
				parts := strings.Split(g, ".")
				c.warnf(gp, "gateway %q uses the legacy <name>.<namespace> form; prefer <namespace>/<name>: %q", g, parts[1]+"/"+parts[0])
			}
			if err := validateFQDN(g); err != nil {
				c.errorf(gp, "invalid gateway reference: %v", err)
			}
			continue
		}
		switch {
		case ns == "" || name == "":
			c.errorf(gp, "gateway reference %q must have the form <namespace>/<name>, both non-empty", g)
		case !isDNSLabelAnyCase(ns):
			c.errorf(gp, "gateway reference %q: namespace %q must be a DNS-1123 label", g, ns)
		case !isDNSLabelAnyCase(name):
			c.errorf(gp, "gateway reference %q: gateway name %q must be a DNS-1123 label", g, name)
		}
	}
}

func validateHTTPRoute(c *check, p FieldPath, h *networking.HTTPRoute, inDelegate bool) {
	// Conflicts between the route's actions.
	switch {
	case !inDelegate && h.Delegate != nil:
		if h.Redirect != nil {
			c.errorf(p.Field("redirect"), "a route with delegate must not also redirect")
		}
		if len(h.Route) > 0 {
			c.errorf(p.Field("route"), "a route with delegate must not also have route destinations")
		}
	default:
		if inDelegate && h.Delegate != nil {
			c.errorf(p.Field("delegate"), "a delegate virtual service's routes cannot delegate again")
		}
		switch {
		case h.Redirect != nil:
			rejectBesideAction(c, p, "redirect", h, true)
		case h.DirectResponse != nil:
			rejectBesideAction(c, p, "directResponse", h, false)
		case len(h.Route) == 0:
			c.errorf(p, "an http route needs one of route, redirect, directResponse or delegate")
		}
	}
	if h.Mirror != nil && len(h.Mirrors) > 0 {
		c.errorf(p.Field("mirrors"), "a route cannot have both mirror and mirrors")
	}

	for j, m := range h.Match {
		validateHTTPMatch(c, p.Field("match").Index(j), m)
	}
	validateHeaderOperations(c, p.Field("headers"), h.Headers)
	validateAuthorityRewrite(c, p, h.Rewrite, h.Headers)
	validateCORSPolicy(c, p.Field("corsPolicy"), h.CorsPolicy)
	validateHTTPFault(c, p.Field("fault"), h.Fault)

	//nolint:staticcheck // the deprecated field is still read.
	if mp := h.MirrorPercent; mp != nil {
		if mp.GetValue() > 100 {
			c.errorf(p.Field("mirrorPercent"), "mirrorPercent %d must be at most 100", mp.GetValue())
		}
		c.warnf(p.Field("mirrorPercent"), "mirrorPercent is deprecated; use mirrorPercentage")
	}
	if mp := h.MirrorPercentage; mp != nil {
		if v := mp.GetValue(); v < 0 || v > 100 {
			c.errorf(p.Field("mirrorPercentage").Field("value"), "mirrorPercentage %v must be between 0 and 100", v)
		}
	}
	if h.Mirror != nil {
		validateDestination(c, p.Field("mirror"), h.Mirror)
	}
	for i, m := range h.Mirrors {
		mp := p.Field("mirrors").Index(i)
		if m.Destination == nil {
			c.errorf(mp.Field("destination"), "destination is required")
		} else {
			validateDestination(c, mp.Field("destination"), m.Destination)
		}
		if pc := m.Percentage; pc != nil && (pc.Value < 0 || pc.Value > 100) {
			c.errorf(mp.Field("percentage").Field("value"), "mirror percentage %v must be between 0 and 100", pc.Value)
		}
	}
	validateHTTPRedirect(c, p.Field("redirect"), h.Redirect)
	validateDirectResponse(c, p.Field("directResponse"), h.DirectResponse)
	validateHTTPRetry(c, p.Field("retries"), h.Retries)
	validateHTTPRewrite(c, p.Field("rewrite"), h.Rewrite)
	validateHTTPRouteDestinations(c, p.Field("route"), h.Route)
	validateDuration(c, p.Field("timeout"), h.Timeout)
}

func validateHTTPMatch(c *check, p FieldPath, m *networking.HTTPMatchRequest) {
	for _, k := range sortedKeys(m.Headers) {
		validateMatchHeaderName(c, p.Field("headers").Key(k), k)
		validateStringMatch(c, p.Field("headers").Key(k), m.Headers[k], false)
	}
	for _, k := range sortedKeys(m.WithoutHeaders) {
		validateMatchHeaderName(c, p.Field("withoutHeaders").Key(k), k)
		// regex "*" is not RE2: it means "present".
		if sm := m.WithoutHeaders[k]; sm.GetRegex() != "*" {
			validateStringMatch(c, p.Field("withoutHeaders").Key(k), sm, false)
		}
	}
	// Envoy allows an empty uri prefix, not an empty scheme, method or
	// authority prefix.
	validateStringMatch(c, p.Field("uri"), m.Uri, true)
	validateStringMatch(c, p.Field("scheme"), m.Scheme, false)
	validateStringMatch(c, p.Field("method"), m.Method, false)
	validateStringMatch(c, p.Field("authority"), m.Authority, false)
	for _, k := range sortedKeys(m.QueryParams) {
		validateStringMatch(c, p.Field("queryParams").Key(k), m.QueryParams[k], false)
	}
	if m.Port != 0 {
		validatePort(c, p.Field("port"), int64(m.Port))
	}
	validateLabels(c, p.Field("sourceLabels"), m.SourceLabels)
	validateGatewayRefs(c, p.Field("gateways"), m.Gateways)
	if m.SourceNamespace != "" && !isDNSLabelAnyCase(m.SourceNamespace) {
		c.errorf(p.Field("sourceNamespace"), "sourceNamespace %q must be a namespace name (a DNS-1123 label)", m.SourceNamespace)
	}
}

func validateMatchHeaderName(c *check, p FieldPath, name string) {
	switch {
	case name == "":
		c.errorf(p, "header name must not be empty")
	case isJWTClaimHeader(name):
	case !httpHeaderNameRE.MatchString(name):
		c.errorf(p, "header name %q is invalid: use letters, digits, '-' and '_'", name)
	}
}

// validateStringMatch checks a StringMatch: a prefix must not be empty
// (except for uri), a regex must compile as RE2, as Envoy compiles it.
func validateStringMatch(c *check, p FieldPath, sm *networking.StringMatch, allowEmptyPrefix bool) {
	switch t := sm.GetMatchType().(type) {
	case *networking.StringMatch_Prefix:
		if t.Prefix == "" && !allowEmptyPrefix {
			c.errorf(p.Field("prefix"), "prefix must not be empty")
		}
	case *networking.StringMatch_Regex:
		validateRegex(c, p.Field("regex"), t.Regex)
	}
}

// validateRegex checks an RE2 regular expression as Envoy will run it.
// Envoy caps the compiled program size; Istio approximates it by length.
func validateRegex(c *check, p FieldPath, re string) {
	switch {
	case re == "":
		c.errorf(p, "regex must not be empty")
	case len(re) > 1024:
		c.errorf(p, "regex is %d characters long; at most 1024 are allowed", len(re))
	default:
		if _, err := regexp.Compile(re); err != nil {
			c.errorf(p, "invalid regex %q: %v (Envoy uses RE2 syntax, see https://github.com/google/re2/wiki/Syntax)", re, strings.TrimPrefix(err.Error(), "error parsing regexp: "))
		}
	}
}

var headerValueRE = regexp.MustCompile("^[^\u0000-\u0008\u000A-\u001F\u007F]*$")

// validateHeaderOperations checks headers.request and headers.response.
func validateHeaderOperations(c *check, p FieldPath, h *networking.Headers) {
	if h == nil {
		return
	}
	if req := h.Request; req != nil {
		rp := p.Field("request")
		for _, op := range []string{"set", "add"} {
			m := req.Set
			if op == "add" {
				m = req.Add
			}
			for _, k := range sortedKeys(m) {
				kp := rp.Field(op).Key(k)
				switch {
				case k == "":
					c.errorf(kp, "header name must not be empty")
				case strings.HasPrefix(k, ":") && !isAuthorityHeader(k):
					c.errorf(kp, "header %q cannot be set: pseudo-headers (starting with ':') other than :authority are managed by the proxy", k)
				}
				validateHeaderValue(c, kp, m[k])
			}
		}
		for i, k := range req.Remove {
			validateHeaderOperationName(c, rp.Field("remove").Index(i), k, "removed")
		}
	}
	if resp := h.Response; resp != nil {
		rp := p.Field("response")
		for _, op := range []string{"set", "add"} {
			m := resp.Set
			if op == "add" {
				m = resp.Add
			}
			for _, k := range sortedKeys(m) {
				validateHeaderOperationName(c, rp.Field(op).Key(k), k, "set on a response")
				validateHeaderValue(c, rp.Field(op).Key(k), m[k])
			}
		}
		for i, k := range resp.Remove {
			validateHeaderOperationName(c, rp.Field("remove").Index(i), k, "removed")
		}
	}
}

func validateHeaderOperationName(c *check, p FieldPath, name, what string) {
	switch {
	case name == "":
		c.errorf(p, "header name must not be empty")
	case strings.EqualFold(name, "host"):
		c.errorf(p, "the Host header cannot be %s", what)
	case strings.HasPrefix(name, ":"):
		c.errorf(p, "header %q cannot be %s: pseudo-headers (starting with ':') are managed by the proxy", name, what)
	}
}

func isAuthorityHeader(k string) bool {
	return strings.EqualFold(k, ":authority") || strings.EqualFold(k, "host")
}

// validateHeaderValue checks a header value as Envoy parses it: no control
// characters, and every '%' starts a %VARIABLE% or is escaped as "%%".
func validateHeaderValue(c *check, p FieldPath, v string) {
	if !headerValueRE.MatchString(v) {
		c.errorf(p, "header value %q contains control characters", v)
		return
	}
	if msg := headerValueFormatError(v); msg != "" {
		c.errorf(p, "header value %q is invalid: %s", v, msg)
	}
}

// headerValueFormatError follows Envoy's header_parser.cc state machine:
// literal text, %VAR%, %VAR(arg)% or %VAR(["a", "b"])%.
func headerValueFormatError(v string) string {
	const (
		literal = iota
		varName
		expectArray
		expectString
		inString
		expectDelimOrEnd
		expectArgsEnd
		expectVarEnd
	)
	state := literal
	for i := 0; i < len(v); i++ {
		ch := v[i]
		switch state {
		case literal:
			if ch != '%' {
				continue
			}
			if i+1 == len(v) {
				return "a lone '%' must be escaped as \"%%\""
			}
			if v[i+1] == '%' {
				i++
				continue
			}
			state = varName
		case varName:
			switch ch {
			case '%':
				state = literal
			case '(':
				state = expectArray
			}
		case expectArray:
			if ch == '[' {
				state = expectString
			} else if ch != ' ' {
				state = inString
			}
		case expectDelimOrEnd:
			switch {
			case ch == ',':
				state = expectString
			case ch == ']':
				state = expectArgsEnd
			case ch != ' ':
				return "expected ',' or ']' in a variable's argument list"
			}
		case expectString:
			if ch == '"' {
				state = inString
			} else if ch != ' ' {
				return "expected '\"' to start a variable's argument"
			}
		case inString:
			switch ch {
			case '\\':
				if i+1 == len(v) {
					return "unterminated backslash in a variable's argument"
				}
				i++
			case ')':
				state = expectVarEnd
			case '"':
				state = expectDelimOrEnd
			}
		case expectArgsEnd:
			if ch == ')' {
				state = expectVarEnd
			} else if ch != ' ' {
				return "expected ')' to close a variable's arguments"
			}
		case expectVarEnd:
			if ch == '%' {
				state = literal
			} else if ch != ' ' {
				return "expected '%' to close a variable"
			}
		}
	}
	if state != literal {
		return "unterminated %VARIABLE% expression (write a literal '%' as \"%%\")"
	}
	return ""
}

// validateAuthorityRewrite allows the authority to be rewritten in one place
// only: rewrite.authority, or a request header set or add of :authority/Host.
func validateAuthorityRewrite(c *check, p FieldPath, rw *networking.HTTPRewrite, h *networking.Headers) {
	current := rw.GetAuthority()
	req := h.GetRequest()
	for _, op := range []string{"set", "add"} {
		m := req.GetSet()
		if op == "add" {
			m = req.GetAdd()
		}
		for _, k := range sortedKeys(m) {
			if !isAuthorityHeader(k) {
				continue
			}
			if current != "" {
				c.errorf(p.Field("headers").Field("request").Field(op).Key(k), "the authority is already rewritten to %q; it can be set in one place only", current)
				return
			}
			current = m[k]
		}
	}
}

var corsMethods = []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "CONNECT", "OPTIONS", "TRACE"}

func validateCORSPolicy(c *check, p FieldPath, cors *networking.CorsPolicy) {
	if cors == nil {
		return
	}
	for i, o := range cors.AllowOrigins {
		op := p.Field("allowOrigins").Index(i)
		var v string
		switch t := o.GetMatchType().(type) {
		case *networking.StringMatch_Exact:
			v = t.Exact
		case *networking.StringMatch_Prefix:
			v = t.Prefix
		case *networking.StringMatch_Regex:
			v = t.Regex
		}
		if v == "" {
			c.errorf(op, "an allowOrigins entry needs a non-empty exact, prefix or regex")
			continue
		}
		if re := o.GetRegex(); re != "" {
			validateRegex(c, op.Field("regex"), re)
		}
	}
	for i, m := range cors.AllowMethods {
		if !slices.Contains(corsMethods, m) {
			c.errorf(p.Field("allowMethods").Index(i), "%q is not a supported HTTP method; use one of %s", m, strings.Join(corsMethods, ", "))
		}
	}
	for _, field := range []string{"allowHeaders", "exposeHeaders"} {
		names := cors.AllowHeaders
		if field == "exposeHeaders" {
			names = cors.ExposeHeaders
		}
		for i, n := range names {
			switch {
			case n == "":
				c.errorf(p.Field(field).Index(i), "header name must not be empty")
			case n != "*" && !httpHeaderNameRE.MatchString(n):
				c.errorf(p.Field(field).Index(i), "header name %q is invalid: use letters, digits, '-' and '_', or \"*\"", n)
			}
		}
	}
	if cors.MaxAge != nil {
		validateDuration(c, p.Field("maxAge"), cors.MaxAge)
		if cors.MaxAge.Nanos > 0 {
			c.errorf(p.Field("maxAge"), "maxAge %s must be a whole number of seconds", cors.MaxAge.AsDuration())
		}
	}
}

func validateHTTPFault(c *check, p FieldPath, f *networking.HTTPFaultInjection) {
	if f == nil {
		return
	}
	if f.Abort == nil && f.Delay == nil {
		c.errorf(p, "fault injection needs an abort, a delay, or both")
	}
	if a := f.Abort; a != nil {
		ap := p.Field("abort")
		validateFaultPercentage(c, ap.Field("percentage"), a.Percentage)
		switch t := a.ErrorType.(type) {
		case *networking.HTTPFaultInjection_Abort_HttpStatus:
			validateHTTPStatus(c, ap.Field("httpStatus"), int64(t.HttpStatus))
		case *networking.HTTPFaultInjection_Abort_GrpcStatus:
			if !slices.Contains(grpcStatusNames, t.GrpcStatus) {
				c.errorf(ap.Field("grpcStatus"), "gRPC status %q is not supported; use a code name such as NOT_FOUND or UNAVAILABLE (see https://github.com/grpc/grpc/blob/master/doc/statuscodes.md)", t.GrpcStatus)
			}
		case *networking.HTTPFaultInjection_Abort_Http2Error:
			c.errorf(ap.Field("http2Error"), "http2Error abort fault injection is not supported yet; use httpStatus or grpcStatus")
		default:
			c.warnf(ap, "abort is configured but sets no httpStatus or grpcStatus")
		}
	}
	if d := f.Delay; d != nil {
		dp := p.Field("delay")
		validateFaultPercentage(c, dp.Field("percentage"), d.Percentage)
		//nolint:staticcheck // the deprecated field is still read.
		if d.Percent < 0 || d.Percent > 100 {
			c.errorf(dp.Field("percent"), "percent %d must be between 0 and 100", d.Percent)
		}
		switch t := d.HttpDelayType.(type) {
		case *networking.HTTPFaultInjection_Delay_FixedDelay:
			validateDuration(c, dp.Field("fixedDelay"), t.FixedDelay)
		case *networking.HTTPFaultInjection_Delay_ExponentialDelay:
			validateDuration(c, dp.Field("exponentialDelay"), t.ExponentialDelay)
			c.errorf(dp.Field("exponentialDelay"), "exponentialDelay is not supported yet; use fixedDelay")
		default:
			c.warnf(dp, "delay is configured but sets no fixedDelay")
		}
	}
}

var grpcStatusNames = []string{
	"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
	"ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
	"ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
	"UNAUTHENTICATED",
}

// validateFaultPercentage: 0, or between 0.0001 and 100 (Envoy's
// fractional percent has a resolution of one in a million).
func validateFaultPercentage(c *check, p FieldPath, pc *networking.Percent) {
	if pc == nil {
		return
	}
	if v := pc.Value; v < 0 || v > 100 || (v > 0 && v < 0.0001) {
		c.errorf(p.Field("value"), "percentage %v must be 0 or between 0.0001 and 100", v)
	}
}

func validateHTTPStatus(c *check, p FieldPath, status int64) {
	if status < 200 || status > 599 {
		c.errorf(p, "HTTP status %d must be between 200 and 599", status)
	}
}

func validateHTTPRedirect(c *check, p FieldPath, rd *networking.HTTPRedirect) {
	if rd == nil {
		return
	}
	if rd.Uri == "" && rd.PrefixRewrite == "" && rd.Authority == "" && rd.RedirectPort == nil && rd.Scheme == "" {
		c.errorf(p, "redirect must set at least one of uri, prefixRewrite, authority, scheme, port or derivePort")
	}
	if rd.Uri != "" && rd.PrefixRewrite != "" {
		c.errorf(p.Field("prefixRewrite"), "only one of uri and prefixRewrite may be set")
	}
	if rd.RedirectCode != 0 && (rd.RedirectCode < 300 || rd.RedirectCode > 399) {
		c.errorf(p.Field("redirectCode"), "redirect code %d must be a 3xx status (300-399)", rd.RedirectCode)
	}
	if rd.Scheme != "" && rd.Scheme != "http" && rd.Scheme != "https" {
		c.errorf(p.Field("scheme"), "redirect scheme %q must be \"http\" or \"https\"", rd.Scheme)
	}
	if port := rd.GetPort(); port > 0 {
		validatePort(c, p.Field("port"), int64(port))
	}
}

func validateDirectResponse(c *check, p FieldPath, dr *networking.HTTPDirectResponse) {
	if dr == nil {
		return
	}
	validateHTTPStatus(c, p.Field("status"), int64(dr.Status))
	if b := dr.Body; b != nil {
		size := len(b.GetString_()) + len(b.GetBytes())
		switch {
		case size > 1<<20:
			c.errorf(p.Field("body"), "direct response body is %d bytes; it must be less than 1MB", size)
		case size > 100<<10:
			c.warnf(p.Field("body"), "direct response body is %d bytes; large bodies may impact control plane performance", size)
		}
	}
}

// Envoy's x-envoy-retry-on and x-envoy-retry-grpc-on conditions.
var retryOnPolicies = []string{
	"5xx", "gateway-error", "reset", "reset-before-request", "connect-failure", "retriable-4xx",
	"refused-stream", "retriable-status-codes", "retriable-headers", "envoy-ratelimited",
	"http3-post-connect-failure",
	"cancelled", "deadline-exceeded", "internal", "resource-exhausted", "unavailable",
}

func validateHTTPRetry(c *check, p FieldPath, rt *networking.HTTPRetry) {
	if rt == nil {
		return
	}
	if rt.Attempts < 0 {
		c.errorf(p.Field("attempts"), "attempts %d must not be negative", rt.Attempts)
	}
	if rt.Attempts == 0 && (rt.PerTryTimeout != nil || rt.RetryOn != "" || rt.RetryRemoteLocalities != nil) {
		c.errorf(p.Field("attempts"), "retries are disabled (attempts is 0) but perTryTimeout, retryOn or retryRemoteLocalities is set: set attempts")
	}
	validateDuration(c, p.Field("perTryTimeout"), rt.PerTryTimeout)
	validateDuration(c, p.Field("backoff"), rt.Backoff)
	if rt.RetryOn != "" {
		for _, policy := range strings.Split(rt.RetryOn, ",") {
			code, _ := strconv.Atoi(policy)
			if http.StatusText(code) == "" && !slices.Contains(retryOnPolicies, policy) {
				c.errorf(p.Field("retryOn"), "%q is not a valid retryOn policy: use a comma-separated list (no spaces) of HTTP status codes and Envoy conditions: %s", policy, strings.Join(retryOnPolicies, ", "))
			}
		}
	}
}

func validateHTTPRewrite(c *check, p FieldPath, rw *networking.HTTPRewrite) {
	if rw == nil {
		return
	}
	if rw.Uri != "" && rw.UriRegexRewrite != nil {
		c.errorf(p.Field("uriRegexRewrite"), "only one of uri and uriRegexRewrite may be set")
	}
	if rw.Uri == "" && rw.UriRegexRewrite == nil && rw.Authority == "" {
		c.errorf(p, "rewrite must set uri, uriRegexRewrite or authority")
	}
	if rr := rw.UriRegexRewrite; rr != nil {
		rp := p.Field("uriRegexRewrite")
		if rr.Match == "" || rr.Rewrite == "" {
			c.errorf(rp, "uriRegexRewrite needs both match and rewrite")
		}
		if rr.Match != "" {
			validateRegex(c, rp.Field("match"), rr.Match)
		}
	}
}

// validateDestination checks a destination: a host (not "*"), a subset
// name and a port.
func validateDestination(c *check, p FieldPath, d *networking.Destination) {
	switch {
	case d.Host == "":
		c.errorf(p.Field("host"), "host is required")
	case d.Host == "*":
		c.errorf(p.Field("host"), "destination host \"*\" is not allowed: name a service")
	default:
		if err := validateWildcardDomain(d.Host); err != nil {
			c.errorf(p.Field("host"), "%v", err)
		}
	}
	if d.Subset != "" && !isDNSLabelAnyCase(d.Subset) {
		c.errorf(p.Field("subset"), "subset name %q must be a DNS-1123 label", d.Subset)
	}
	if d.Port != nil {
		validatePort(c, p.Field("port").Field("number"), int64(d.Port.Number))
	}
}

func validateHTTPRouteDestinations(c *check, p FieldPath, ds []*networking.HTTPRouteDestination) {
	weights := make([]int32, len(ds))
	for i, d := range ds {
		dp := p.Index(i)
		if d.Destination == nil {
			c.errorf(dp.Field("destination"), "destination is required")
		} else {
			validateDestination(c, dp.Field("destination"), d.Destination)
		}
		validateHeaderOperations(c, dp.Field("headers"), d.Headers)
		weights[i] = d.Weight
	}
	validateWeights(c, p, weights)
}

func validateRouteDestinations(c *check, p FieldPath, ds []*networking.RouteDestination) {
	weights := make([]int32, len(ds))
	for i, d := range ds {
		dp := p.Index(i)
		if d.Destination == nil {
			c.errorf(dp.Field("destination"), "destination is required")
		} else {
			validateDestination(c, dp.Field("destination"), d.Destination)
		}
		weights[i] = d.Weight
	}
	validateWeights(c, p, weights)
}

// validateWeights: no negative weight, not all zero when there are several
// destinations. Weights are relative, so a sum other than 100 is allowed
// and only warned about.
func validateWeights(c *check, p FieldPath, weights []int32) {
	var total int64
	negative := false
	for i, w := range weights {
		if w < 0 {
			c.errorf(p.Index(i).Field("weight"), "weight %d must not be negative", w)
			negative = true
		}
		total += int64(w)
	}
	if len(weights) < 2 || negative {
		return
	}
	if total == 0 {
		c.errorf(p, "total destination weight = 0: give at least one destination a positive weight")
	} else if total != 100 {
		c.warnf(p, "weights sum to %d, not 100: traffic is split in proportion", total)
	}
}

func validateTLSRoute(c *check, p FieldPath, t *networking.TLSRoute, vs *networking.VirtualService, sniGatewayRules bool) {
	if len(t.Match) == 0 {
		c.errorf(p.Field("match"), "a tls route needs at least one match with sniHosts")
	}
	for j, m := range t.Match {
		mp := p.Field("match").Index(j)
		if len(m.SniHosts) == 0 {
			c.errorf(mp.Field("sniHosts"), "a tls match needs at least one SNI host")
		}
		for k, sni := range m.SniHosts {
			validateSNIHost(c, mp.Field("sniHosts").Index(k), sni, vs, sniGatewayRules)
		}
		validateL4Match(c, mp, m)
	}
	if len(t.Route) == 0 {
		c.errorf(p.Field("route"), "a tls route needs at least one route destination")
	}
	validateRouteDestinations(c, p.Field("route"), t.Route)
}

// rejectBesideAction reports the fields that make no sense beside a route
// that answers by itself (redirect or directResponse): Envoy would never
// forward, so a destination, fault or rewrite is a mistake. withDirect also
// rejects directResponse, for the redirect case.
func rejectBesideAction(c *check, p FieldPath, action string, h *networking.HTTPRoute, withDirect bool) {
	for _, f := range []struct {
		name string
		set  bool
	}{
		{"route", len(h.Route) > 0},
		{"fault", h.Fault != nil},
		{"rewrite", h.Rewrite != nil},
		{"directResponse", withDirect && h.DirectResponse != nil},
	} {
		if f.set {
			c.errorf(p.Field(f.name), "a route cannot have both %s and %s", f.name, action)
		}
	}
}

// l4Match is what TLS and TCP route matches have in common.
type l4Match interface {
	GetDestinationSubnets() []string
	GetPort() uint32
	GetSourceLabels() map[string]string
	GetGateways() []string
}

func validateL4Match(c *check, p FieldPath, m l4Match) {
	for k, s := range m.GetDestinationSubnets() {
		if err := validateIPOrCIDR(s); err != nil {
			c.errorf(p.Field("destinationSubnets").Index(k), "%v", err)
		}
	}
	if m.GetPort() != 0 {
		validatePort(c, p.Field("port"), int64(m.GetPort()))
	}
	validateLabels(c, p.Field("sourceLabels"), m.GetSourceLabels())
	validateGatewayRefs(c, p.Field("gateways"), m.GetGateways())
}

// validateSNIHost: an SNI host must be a domain name covered by one of the
// virtual service's hosts.
func validateSNIHost(c *check, p FieldPath, sni string, vs *networking.VirtualService, gatewayRules bool) {
	var err error
	if gatewayRules {
		err = validateWildcardDomainBoundToGateway(true, sni)
	} else {
		err = validateWildcardDomain(sni)
	}
	if err != nil {
		if isIPAddress(sni) {
			c.warnf(p, "SNI host %q is an IP address: this goes against the SNI specification and most clients never send one", sni)
			return
		}
		c.errorf(p, "%v", err)
		return
	}
	for _, h := range vs.Hosts {
		if hostSubsetOf(sni, h) {
			return
		}
	}
	c.errorf(p, "SNI host %q is not covered by any of the virtual service's hosts [%s]", sni, strings.Join(vs.Hosts, ", "))
}

func validateTCPRoute(c *check, p FieldPath, t *networking.TCPRoute) {
	for j, m := range t.Match {
		mp := p.Field("match").Index(j)
		validateL4Match(c, mp, m)
	}
	if len(t.Route) == 0 {
		c.errorf(p.Field("route"), "a tcp route needs at least one route destination")
	}
	validateRouteDestinations(c, p.Field("route"), t.Route)
}

// Unreachable rules, reported as warnings, as Istio's webhook does: a rule
// after one without matches, a match already used by an earlier rule, or a
// uri prefix match covered by an earlier, shorter prefix.

func routeLabel(name string, i int) string {
	if name != "" {
		return strconv.Quote(name)
	}
	return "#" + strconv.Itoa(i)
}

func matchKey(m proto.Message) string {
	b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	return string(b)
}

func protoList[T proto.Message](in []T) []proto.Message {
	out := make([]proto.Message, len(in))
	for i, m := range in {
		out[i] = m
	}
	return out
}

// prefixMatch summarises a uri prefix match for the overlap analysis.
type prefixMatch struct {
	rule, match int
	ruleLabel   string
	matchLabel  string
	prefix      string
	port        uint32
	method      string
	authority   string
	headers     map[string]string
	queryParams map[string]string
	without     map[string]string
}

func exactOrPrefix(sm *networking.StringMatch) string {
	switch t := sm.GetMatchType().(type) {
	case *networking.StringMatch_Exact:
		if t.Exact != "" {
			return "exact:" + t.Exact
		}
	case *networking.StringMatch_Prefix:
		if t.Prefix != "" {
			return "prefix:" + t.Prefix
		}
	}
	return ""
}

func exactOrPrefixMap(m map[string]*networking.StringMatch) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = exactOrPrefix(v)
	}
	return out
}

// covers reports whether the earlier prefix match a catches everything b does.
func (a *prefixMatch) covers(b *prefixMatch) bool {
	if !strings.HasPrefix(b.prefix, a.prefix) || a.port != b.port {
		return false
	}
	if a.method != b.method && !strings.HasPrefix(a.method, b.method) {
		return false
	}
	if a.authority != b.authority && !strings.HasPrefix(a.authority, b.authority) {
		return false
	}
	coveredMap := func(am, bm map[string]string) bool {
		if len(am) != len(bm) {
			return false
		}
		for k, av := range am {
			bv, ok := bm[k]
			if !ok || (av != bv && !strings.HasPrefix(av, bv)) {
				return false
			}
		}
		return true
	}
	return coveredMap(a.headers, b.headers) && coveredMap(a.queryParams, b.queryParams) && coveredMap(a.without, b.without)
}

func analyzeUnreachableHTTPRules(c *check, p FieldPath, routes []*networking.HTTPRoute) {
	seen := map[string]int{}
	emptySeen := false
	var prefixes []*prefixMatch
	for i, r := range routes {
		label := routeLabel(r.Name, i)
		if len(r.Match) == 0 {
			if emptySeen {
				c.warnf(p.Index(i), "virtualService rule %s not used (only the last rule can have no matches)", label)
			}
			emptySeen = true
			continue
		}
		dups := 0
		for j, m := range r.Match {
			clone := proto.Clone(m).(*networking.HTTPMatchRequest)
			clone.Name = ""
			key := matchKey(clone)
			if prev, ok := seen[key]; ok {
				c.warnf(p.Index(i).Field("match").Index(j), "virtualService rule %s match %s is not used (duplicate/overlapping match in rule %s)",
					label, routeLabel(m.Name, j), routeLabel(routes[prev].Name, prev))
				dups++
				continue
			}
			seen[key] = i
			if prefix := m.Uri.GetPrefix(); prefix != "" {
				method := exactOrPrefix(m.Method)
				if method == "" {
					method = "exact:GET"
				}
				prefixes = append(prefixes, &prefixMatch{
					rule: i, match: j, ruleLabel: label, matchLabel: routeLabel(m.Name, j),
					prefix: prefix, port: m.Port, method: method, authority: exactOrPrefix(m.Authority),
					headers: exactOrPrefixMap(m.Headers), queryParams: exactOrPrefixMap(m.QueryParams),
					without: exactOrPrefixMap(m.WithoutHeaders),
				})
			}
		}
		if dups == len(r.Match) {
			c.warnf(p.Index(i), "virtualService rule %s not used (all matches used by prior rules)", label)
		}
	}
	for a := range prefixes {
		for b := a + 1; b < len(prefixes); b++ {
			pa, pb := prefixes[a], prefixes[b]
			if pa.prefix == pb.prefix || pa.rule == pb.rule {
				continue
			}
			if pa.covers(pb) {
				c.warnf(p.Index(pb.rule).Field("match").Index(pb.match),
					"virtualService rule %s match %s of prefix %s is not used (overlapping match %s of prefix %s in rule %s comes first)",
					pb.ruleLabel, pb.matchLabel, pb.prefix, pa.matchLabel, pa.prefix, pa.ruleLabel)
			}
		}
	}
}

func analyzeUnreachableL4Rules(c *check, p FieldPath, n int, matches func(i int) []proto.Message) {
	seen := map[string]int{}
	emptySeen := false
	for i := range n {
		ms := matches(i)
		if len(ms) == 0 {
			if emptySeen {
				c.warnf(p.Index(i), "virtualService rule #%d not used (only the last rule can have no matches)", i)
			}
			emptySeen = true
			continue
		}
		dups := 0
		for j, m := range ms {
			key := matchKey(m)
			if prev, ok := seen[key]; ok {
				c.warnf(p.Index(i).Field("match").Index(j), "virtualService rule #%d match #%d is not used (duplicate/overlapping match in rule #%d)", i, j, prev)
				dups++
				continue
			}
			seen[key] = i
		}
		if dups == len(ms) {
			c.warnf(p.Index(i), "virtualService rule #%d not used (all matches used by prior rules)", i)
		}
	}
}

// ---------------------------------------------------------------------------
// DestinationRule

func validateDestinationRule(c *check, r *Resource) {
	dr := r.Spec.(*networking.DestinationRule)
	const spec FieldPath = "spec"
	if dr.Host == "" {
		c.errorf(spec.Field("host"), "host is required")
	} else if err := validateWildcardDomain(dr.Host); err != nil {
		c.errorf(spec.Field("host"), "%v", err)
	}
	validateTrafficPolicy(c, spec.Field("trafficPolicy"), dr.TrafficPolicy)
	names := map[string]int{}
	for i, s := range dr.Subsets {
		sp := spec.Field("subsets").Index(i)
		switch {
		case s.Name == "":
			c.errorf(sp.Field("name"), "subset name is required")
		case !isDNSLabelAnyCase(s.Name):
			c.errorf(sp.Field("name"), "subset name %q must be a DNS-1123 label", s.Name)
		}
		if prev, dup := names[s.Name]; dup && s.Name != "" {
			c.errorf(sp.Field("name"), "duplicate subset name %q: subsets[%d] has it too", s.Name, prev)
		} else {
			names[s.Name] = i
		}
		validateLabels(c, sp.Field("labels"), s.Labels)
		validateTrafficPolicy(c, sp.Field("trafficPolicy"), s.TrafficPolicy)
	}
	validateExportTo(c, spec.Field("exportTo"), r.Namespace, dr.ExportTo, false, dr.WorkloadSelector != nil)
	if ws := dr.WorkloadSelector; ws != nil {
		validateSelectorLabels(c, spec.Field("workloadSelector").Field("matchLabels"), ws.MatchLabels, "destination rule")
	}
}

func validateTrafficPolicy(c *check, p FieldPath, tp *networking.TrafficPolicy) {
	if tp == nil {
		return
	}
	if tp.OutlierDetection == nil && tp.ConnectionPool == nil && tp.LoadBalancer == nil && tp.Tls == nil &&
		len(tp.PortLevelSettings) == 0 && tp.Tunnel == nil && tp.ProxyProtocol == nil && tp.RetryBudget == nil {
		c.errorf(p, "trafficPolicy must set at least one of loadBalancer, connectionPool, outlierDetection, tls, portLevelSettings, tunnel, proxyProtocol or retryBudget")
		return
	}
	if tp.Tunnel != nil && tp.ProxyProtocol != nil {
		c.errorf(p.Field("proxyProtocol"), "tunnel and proxyProtocol must not be set together")
		return
	}
	validateOutlierDetection(c, p.Field("outlierDetection"), tp.OutlierDetection)
	validateConnectionPool(c, p.Field("connectionPool"), tp.ConnectionPool)
	validateLoadBalancer(c, p.Field("loadBalancer"), tp.LoadBalancer, tp.OutlierDetection)
	validateClientTLS(c, p.Field("tls"), tp.Tls)
	for i, pl := range tp.PortLevelSettings {
		pp := p.Field("portLevelSettings").Index(i)
		if pl.Port == nil {
			c.errorf(pp.Field("port"), "a portLevelSettings entry needs a port")
		} else {
			validatePort(c, pp.Field("port").Field("number"), int64(pl.Port.Number))
		}
		if pl.OutlierDetection == nil && pl.ConnectionPool == nil && pl.LoadBalancer == nil && pl.Tls == nil {
			c.errorf(pp, "a portLevelSettings entry must set at least one of loadBalancer, connectionPool, outlierDetection or tls")
			continue
		}
		validateOutlierDetection(c, pp.Field("outlierDetection"), pl.OutlierDetection)
		validateConnectionPool(c, pp.Field("connectionPool"), pl.ConnectionPool)
		validateLoadBalancer(c, pp.Field("loadBalancer"), pl.LoadBalancer, pl.OutlierDetection)
		validateClientTLS(c, pp.Field("tls"), pl.Tls)
	}
	if t := tp.Tunnel; t != nil {
		tnp := p.Field("tunnel")
		if t.Protocol != "" && t.Protocol != "CONNECT" && t.Protocol != "POST" {
			c.errorf(tnp.Field("protocol"), "tunnel protocol %q must be \"CONNECT\" or \"POST\"", t.Protocol)
		}
		if t.TargetHost == "" {
			c.errorf(tnp.Field("targetHost"), "targetHost is required")
		} else if validateFQDN(t.TargetHost) != nil && !isIPAddress(t.TargetHost) {
			c.errorf(tnp.Field("targetHost"), "tunnel targetHost %q must be a domain name or an IP address", t.TargetHost)
		}
		validatePort(c, tnp.Field("targetPort"), int64(t.TargetPort))
	}
	if rb := tp.RetryBudget; rb != nil && rb.Percent != nil {
		if v := rb.Percent.GetValue(); v < 0 || v > 100 {
			c.errorf(p.Field("retryBudget").Field("percent"), "retryBudget percent %v must be between 0 and 100", v)
		}
	}
}

func validatePercent(c *check, p FieldPath, name string, v int64) {
	if v < 0 || v > 100 {
		c.errorf(p, "%s %d must be between 0 and 100", name, v)
	}
}

func validateOutlierDetection(c *check, p FieldPath, od *networking.OutlierDetection) {
	if od == nil {
		return
	}
	validateDuration(c, p.Field("baseEjectionTime"), od.BaseEjectionTime)
	validateDuration(c, p.Field("interval"), od.Interval)
	//nolint:staticcheck // the deprecated field is still read.
	if od.ConsecutiveErrors != 0 {
		c.warnf(p.Field("consecutiveErrors"), "consecutiveErrors is deprecated; use consecutiveGatewayErrors or consecutive5xxErrors")
	}
	if !od.SplitExternalLocalOriginErrors && od.ConsecutiveLocalOriginFailures.GetValue() > 0 {
		c.errorf(p.Field("consecutiveLocalOriginFailures"), "consecutiveLocalOriginFailures needs splitExternalLocalOriginErrors: true")
	}
	validatePercent(c, p.Field("maxEjectionPercent"), "maxEjectionPercent", int64(od.MaxEjectionPercent))
	validatePercent(c, p.Field("minHealthPercent"), "minHealthPercent", int64(od.MinHealthPercent))
	if fp := od.FailurePercentageThreshold; fp != nil && fp.GetValue() > 100 {
		c.errorf(p.Field("failurePercentageThreshold"), "failurePercentageThreshold %d must be between 0 and 100", fp.GetValue())
	}
	for i, code := range od.OutlierDetectionHttpErrorCodes {
		if code < 100 || code > 599 {
			c.errorf(p.Field("outlierDetectionHttpErrorCodes").Index(i), "HTTP status %d must be between 100 and 599", code)
		}
	}
}

// validateConnectionPool checks connection limits (not negative) and
// timeouts.
func validateConnectionPool(c *check, p FieldPath, cp *networking.ConnectionPoolSettings) {
	if cp == nil {
		return
	}
	if cp.Http == nil && cp.Tcp == nil {
		c.errorf(p, "connectionPool must set tcp, http or both")
		return
	}
	if h := cp.Http; h != nil {
		hp := p.Field("http")
		for _, f := range []struct {
			name string
			v    int32
		}{
			{"http1MaxPendingRequests", h.Http1MaxPendingRequests},
			{"http2MaxRequests", h.Http2MaxRequests},
			{"maxRequestsPerConnection", h.MaxRequestsPerConnection},
			{"maxRetries", h.MaxRetries},
			{"maxConcurrentStreams", h.MaxConcurrentStreams},
		} {
			if f.v < 0 {
				c.errorf(hp.Field(f.name), "%s %d must not be negative", f.name, f.v)
			}
		}
		validateDuration(c, hp.Field("idleTimeout"), h.IdleTimeout)
		if h.H2UpgradePolicy == networking.ConnectionPoolSettings_HTTPSettings_UPGRADE && h.UseClientProtocol {
			c.errorf(hp.Field("useClientProtocol"), "useClientProtocol must not be true when h2UpgradePolicy is UPGRADE")
		}
		if ka := h.Http2KeepAlive; ka != nil {
			validateDuration(c, hp.Field("http2KeepAlive").Field("interval"), ka.Interval)
			validateDuration(c, hp.Field("http2KeepAlive").Field("timeout"), ka.Timeout)
		}
	}
	if t := cp.Tcp; t != nil {
		tp := p.Field("tcp")
		if t.MaxConnections < 0 {
			c.errorf(tp.Field("maxConnections"), "maxConnections %d must not be negative", t.MaxConnections)
		}
		validateDuration(c, tp.Field("connectTimeout"), t.ConnectTimeout)
		validateDuration(c, tp.Field("maxConnectionDuration"), t.MaxConnectionDuration)
		// tcp.idleTimeout may be 0s: it disables the timeout.
		if ka := t.TcpKeepalive; ka != nil {
			validateDuration(c, tp.Field("tcpKeepalive").Field("time"), ka.Time)
			validateDuration(c, tp.Field("tcpKeepalive").Field("interval"), ka.Interval)
		}
	}
}

// Envoy's limits on ring hash and maglev tables.
const (
	maxRingSize     = 8388608
	maglevTableSize = 5000011
)

func validateLoadBalancer(c *check, p FieldPath, lb *networking.LoadBalancerSettings, outlier *networking.OutlierDetection) {
	if lb == nil {
		return
	}
	if ch := lb.GetConsistentHash(); ch != nil {
		cp := p.Field("consistentHash")
		if hc := ch.GetHttpCookie(); hc != nil {
			if hc.Name == "" {
				c.errorf(cp.Field("httpCookie").Field("name"), "httpCookie needs a name")
			}
			for i, a := range hc.Attributes {
				if a.Name == "" {
					c.errorf(cp.Field("httpCookie").Field("attributes").Index(i).Field("name"), "cookie attribute needs a name")
				}
			}
		}
		//nolint:staticcheck // the deprecated field is still read.
		if ch.MinimumRingSize != 0 {
			c.warnf(cp.Field("minimumRingSize"), "consistentHash.minimumRingSize is deprecated; use consistentHash.ringHash.minimumRingSize")
			if ch.HashAlgorithm != nil {
				c.errorf(cp.Field("minimumRingSize"), "only one of minimumRingSize and ringHash/maglev may be set")
			}
			if ch.MinimumRingSize > maxRingSize {
				c.errorf(cp.Field("minimumRingSize"), "minimumRingSize %d must be at most %d", ch.MinimumRingSize, maxRingSize)
			}
		}
		if rh := ch.GetRingHash(); rh != nil && rh.MinimumRingSize > maxRingSize {
			c.errorf(cp.Field("ringHash").Field("minimumRingSize"), "minimumRingSize %d must be at most %d", rh.MinimumRingSize, maxRingSize)
		}
		if ml := ch.GetMaglev(); ml != nil {
			tp := cp.Field("maglev").Field("tableSize")
			switch {
			case ml.TableSize == 0:
				c.errorf(tp, "maglev needs a tableSize (a prime number below %d)", maglevTableSize)
			case ml.TableSize >= maglevTableSize:
				c.errorf(tp, "maglev tableSize %d must be less than %d", ml.TableSize, maglevTableSize)
			case !isPrime(ml.TableSize):
				c.errorf(tp, "maglev tableSize %d must be a prime number", ml.TableSize)
			}
		}
	}
	validateLocalityLB(c, p.Field("localityLbSetting"), lb.LocalityLbSetting, outlier)
	validateDuration(c, p.Field("warmupDurationSecs"), lb.WarmupDurationSecs)
	if w := lb.Warmup; w != nil {
		wp := p.Field("warmup")
		// The API means these to be exclusive, but its rule never reached
		// the CRD and Istio accepts both: warn.
		if lb.WarmupDurationSecs != nil {
			c.warnf(wp, "set only one of warmupDurationSecs and warmup: both configure the same slow start")
		}
		if w.Duration == nil {
			c.errorf(wp.Field("duration"), "warmup needs a duration")
		} else {
			validateDuration(c, wp.Field("duration"), w.Duration)
		}
		if mp := w.MinimumPercent; mp != nil && (mp.GetValue() < 0 || mp.GetValue() > 100) {
			c.errorf(wp.Field("minimumPercent"), "minimumPercent %v must be between 0 and 100", mp.GetValue())
		}
		if a := w.Aggression; a != nil && a.GetValue() < 0 {
			c.errorf(wp.Field("aggression"), "aggression %v must not be negative", a.GetValue())
		}
	}
	if za := lb.ZoneAwareLbSetting; za != nil && za.MinClusterSize != nil && za.MinClusterSize.GetValue() < 1 {
		c.errorf(p.Field("zoneAwareLbSetting").Field("minClusterSize"), "minClusterSize must be at least 1")
	}
}

// isPrime is Envoy's primality test for maglev table sizes.
func isPrime(x uint64) bool {
	if x != 0 && x < 4 {
		return true
	}
	if x&1 == 0 {
		return false
	}
	limit := uint64(math.Sqrt(float64(x)))
	for f := uint64(3); f <= limit; f += 2 {
		if x%f == 0 {
			return false
		}
	}
	return true
}

var topologyLabels = []string{"topology.kubernetes.io/region", "topology.kubernetes.io/zone", "topology.istio.io/subzone"}

func validateLocalityLB(c *check, p FieldPath, lb *networking.LocalityLoadBalancerSetting, outlier *networking.OutlierDetection) {
	if lb == nil {
		return
	}
	if len(lb.Distribute) > 0 && len(lb.Failover) > 0 {
		c.errorf(p, "only one of distribute and failover may be set")
		return
	}
	if len(lb.Failover) > 0 {
		for i, l := range lb.FailoverPriority {
			if slices.Contains(topologyLabels, l) {
				c.errorf(p.Field("failoverPriority").Index(i), "failoverPriority cannot use the topology label %q together with failover", l)
				return
			}
		}
	}
	var from []string
	for i, d := range lb.Distribute {
		dp := p.Field("distribute").Index(i)
		from = append(from, d.From)
		var total uint64
		for _, loc := range sortedKeys(d.To) {
			w := d.To[loc]
			if w == 0 || w > 100 {
				c.errorf(dp.Field("to").Key(loc), "locality weight %d must be between 1 and 100", w)
				return
			}
			total += uint64(w)
		}
		if total != 100 {
			c.errorf(dp.Field("to"), "locality weights sum to %d; they must sum to 100", total)
			return
		}
		if j, err := validateLocalities(sortedKeys(d.To)); err != nil {
			c.errorf(dp.Field("to").Key(sortedKeys(d.To)[j]), "%v", err)
		}
	}
	if j, err := validateLocalities(from); err != nil {
		c.errorf(p.Field("distribute").Index(j).Field("from"), "%v", err)
	}
	if (len(lb.Failover) > 0 || len(lb.FailoverPriority) > 0) && outlier == nil {
		c.warnf(p, "failover needs an outlierDetection policy to take effect")
	}
	for i, f := range lb.Failover {
		fp := p.Field("failover").Index(i)
		switch {
		case f.From == f.To:
			c.errorf(fp, "failover from and to must be different regions")
		case strings.Contains(f.From, "/") || strings.Contains(f.To, "/"):
			c.errorf(fp, "failover from and to must be regions, without zone or subzone")
		case strings.Contains(f.From, "*") || strings.Contains(f.To, "*"):
			c.errorf(fp, "failover regions must not contain a '*' wildcard")
		}
	}
}

// validateLocalities checks region/zone/subzone names, a single trailing
// wildcard, and that no two overlap. It returns the index of the culprit.
func validateLocalities(locs []string) (int, error) {
	type zones map[string]map[string]bool
	regions := map[string]zones{}
	for i, loc := range locs {
		if n := strings.Count(loc, "*"); n > 1 || (n == 1 && !strings.HasSuffix(loc, "*")) {
			return i, fmt.Errorf("locality %q may have one '*' wildcard, at the end only", loc)
		}
		if _, ok := regions["*"]; ok {
			return i, fmt.Errorf("locality %q overlaps a previous one", loc)
		}
		parts := strings.SplitN(loc, "/", 3)
		if slices.Contains(parts, "") {
			return i, fmt.Errorf("locality %q must not have an empty region, zone or subzone", loc)
		}
		overlap := fmt.Errorf("locality %q overlaps a previous one", loc)
		region := parts[0]
		switch len(parts) {
		case 1:
			if _, ok := regions[region]; ok {
				return i, overlap
			}
			regions[region] = zones{"*": {"*": true}}
		case 2:
			zs, ok := regions[region]
			if !ok {
				regions[region] = zones{parts[1]: {"*": true}}
				continue
			}
			if _, ok := zs["*"]; ok {
				return i, overlap
			}
			if _, ok := zs[parts[1]]; ok {
				return i, overlap
			}
			zs[parts[1]] = map[string]bool{"*": true}
		case 3:
			zs, ok := regions[region]
			if !ok {
				regions[region] = zones{parts[1]: {parts[2]: true}}
				continue
			}
			if _, ok := zs["*"]; ok {
				return i, overlap
			}
			sz, ok := zs[parts[1]]
			if !ok {
				zs[parts[1]] = map[string]bool{parts[2]: true}
				continue
			}
			if sz["*"] || sz[parts[2]] {
				return i, overlap
			}
			sz[parts[2]] = true
		}
	}
	return 0, nil
}

// validateClientTLS checks the TLS a sidecar originates: certificate files
// for MUTUAL, or a credentialName that replaces them.
func validateClientTLS(c *check, p FieldPath, t *networking.ClientTLSSettings) {
	if t == nil {
		return
	}
	if t.InsecureSkipVerify.GetValue() {
		switch t.Mode {
		case networking.ClientTLSSettings_SIMPLE:
			if t.CaCertificates != "" || t.CredentialName != "" || t.SubjectAltNames != nil {
				c.errorf(p.Field("insecureSkipVerify"), "insecureSkipVerify cannot be combined with caCertificates, credentialName or subjectAltNames")
			}
		case networking.ClientTLSSettings_MUTUAL:
			if t.CaCertificates != "" || t.SubjectAltNames != nil {
				c.errorf(p.Field("insecureSkipVerify"), "insecureSkipVerify cannot be combined with caCertificates or subjectAltNames")
			}
		}
	}
	mode := t.Mode
	if (mode == networking.ClientTLSSettings_SIMPLE || mode == networking.ClientTLSSettings_MUTUAL) && t.CredentialName != "" {
		if t.ClientCertificate != "" || t.CaCertificates != "" || t.PrivateKey != "" || t.CaCrl != "" {
			c.errorf(p.Field("credentialName"), "credentialName cannot be combined with clientCertificate, privateKey, caCertificates or caCrl: the credential provides them")
		}
		return
	}
	if mode == networking.ClientTLSSettings_MUTUAL {
		if t.ClientCertificate == "" {
			c.errorf(p.Field("clientCertificate"), "tls mode MUTUAL needs clientCertificate (or credentialName)")
		}
		if t.PrivateKey == "" {
			c.errorf(p.Field("privateKey"), "tls mode MUTUAL needs privateKey (or credentialName)")
		}
	}
}

// ---------------------------------------------------------------------------
// Gateway

func validateGateway(c *check, r *Resource) {
	gw := r.Spec.(*networking.Gateway)
	const spec FieldPath = "spec"
	if !isDNSLabelAnyCase(r.Name) {
		c.errorf("metadata.name", "gateway name %q must be a DNS-1123 label (no dots)", r.Name)
	}
	validateLabels(c, spec.Field("selector"), gw.Selector)
	if len(gw.Servers) == 0 {
		c.errorf(spec.Field("servers"), "a gateway needs at least one server")
	}
	portNames := map[string]int{}
	for i, s := range gw.Servers {
		sp := spec.Field("servers").Index(i)
		validateServer(c, sp, s)
		if s.Port == nil {
			continue
		}
		if prev, dup := portNames[s.Port.Name]; dup && s.Port.Name != "" {
			c.errorf(sp.Field("port").Field("name"), "port name %q is already used by servers[%d]: port names must be unique", s.Port.Name, prev)
		} else {
			portNames[s.Port.Name] = i
		}
		if !protocolIsHTTP(s.Port.Protocol) && s.Tls.GetHttpsRedirect() {
			c.warnf(sp.Field("tls").Field("httpsRedirect"), "tls.httpsRedirect only applies to HTTP servers; this server's protocol is %s", s.Port.Protocol)
		}
	}
}

func validateServer(c *check, p FieldPath, s *networking.Server) {
	if len(s.Hosts) == 0 {
		c.errorf(p.Field("hosts"), "a server needs at least one host")
	}
	for i, h := range s.Hosts {
		validateNamespaceSlashHost(c, p.Field("hosts").Index(i), h, true)
	}
	portOK := validateServerPort(c, p.Field("port"), s.Port, s.Bind)
	if strings.HasPrefix(s.Bind, unixAddressPrefix) {
		if err := validateUnixAddress(strings.TrimPrefix(s.Bind, unixAddressPrefix)); err != nil {
			c.errorf(p.Field("bind"), "%v", err)
		}
		if s.Port != nil && s.Port.Number != 0 {
			c.errorf(p.Field("port").Field("number"), "port number must be 0 when binding to a unix domain socket")
		}
	} else if s.Bind != "" {
		if err := validateIPAddress(s.Bind); err != nil {
			c.errorf(p.Field("bind"), "bind %v; use an IP address or unix://<path>", err)
		}
	}
	validateServerTLS(c, p.Field("tls"), s.Tls)
	if !portOK {
		return
	}
	proto := s.Port.Protocol
	switch {
	case protocolIsTLS(proto) && s.Tls == nil:
		c.errorf(p.Field("tls"), "a server with protocol %s needs tls settings", proto)
	case !protocolIsTLS(proto) && s.Tls != nil:
		if protocolIsHTTP(proto) {
			passthrough := s.Tls.Mode == networking.ServerTLSSettings_PASSTHROUGH || s.Tls.Mode == networking.ServerTLSSettings_AUTO_PASSTHROUGH
			if !passthrough || s.Tls.CaCertificates != "" || s.Tls.PrivateKey != "" || s.Tls.ServerCertificate != "" {
				c.errorf(p.Field("tls"), "a plain-text %s server can only use tls.httpsRedirect; use protocol HTTPS to terminate TLS", proto)
			}
		} else {
			c.errorf(p.Field("tls"), "tls settings need protocol HTTPS or TLS; this server's protocol is %s", proto)
		}
	}
}

func validateServerPort(c *check, p FieldPath, port *networking.Port, bind string) bool {
	if port == nil {
		c.errorf(p, "port is required")
		return false
	}
	ok := true
	if parseProtocol(port.Protocol) == "" {
		if port.Protocol == "" {
			c.errorf(p.Field("protocol"), "protocol is required; use %s", supportedProtocols)
		} else {
			c.errorf(p.Field("protocol"), "protocol %q is not supported; use %s", port.Protocol, supportedProtocols)
		}
		ok = false
	}
	if port.Number > 0 || !strings.HasPrefix(bind, unixAddressPrefix) {
		if err := validatePortNumber(int64(port.Number)); err != nil {
			c.errorf(p.Field("number"), "%v", err)
			ok = false
		}
	}
	//nolint:staticcheck // the deprecated field is still read.
	if port.TargetPort > 0 {
		c.errorf(p.Field("targetPort"), "targetPort has no effect on gateways; remove it")
		ok = false
	}
	if port.Name == "" {
		c.errorf(p.Field("name"), "port name is required")
		ok = false
	}
	return ok
}

// validateNamespaceSlashHost checks a host of a Gateway server or a Sidecar
// egress listener: "<namespace>/<dnsName>", where the namespace may be "*"
// or "." (and "~" in a sidecar); a gateway also accepts a bare dnsName.
func validateNamespaceSlashHost(c *check, p FieldPath, host string, gateway bool) {
	ns, dns, ok := strings.Cut(host, "/")
	if !ok {
		if gateway {
			validateGatewayOrSidecarHost(c, p, host, true)
			return
		}
		c.errorf(p, "host %q must have the form <namespace>/<dnsName>, such as \"./*\", \"istio-system/*\" or \"*/foo.example.com\"", host)
		return
	}
	if ns == "" || dns == "" {
		c.errorf(p, "host %q must have a non-empty namespace and dnsName: <namespace>/<dnsName>", host)
		return
	}
	switch {
	case ns == "*" || ns == ".":
	case ns == "~" && !gateway:
	case !isDNSLabelAnyCase(ns):
		allowed := `"*", "." or a namespace name`
		if !gateway {
			allowed = `"*", ".", "~" or a namespace name`
		}
		c.errorf(p, "namespace %q in host %q must be %s", ns, host, allowed)
	}
	validateGatewayOrSidecarHost(c, p, dns, gateway)
}

func validateGatewayOrSidecarHost(c *check, p FieldPath, host string, gateway bool) {
	if host != "*" && !strings.Contains(host, ".") {
		c.errorf(p, "short name %q is not allowed here: use a fully qualified name (such as reviews.default.svc.cluster.local) or a wildcard", host)
	} else if err := validateWildcardDomain(host); err != nil && !(gateway && isIPAddress(host)) {
		c.errorf(p, "%v", err)
	}
	if err := validatePartialWildcard(host); err != nil {
		c.errorf(p, "%v", err)
	}
}

// The cipher suites Envoy (BoringSSL) accepts for gateway servers.
var validCipherSuites = []string{
	"ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES256-GCM-SHA384",
	"ECDHE-RSA-AES256-GCM-SHA384", "ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-RSA-CHACHA20-POLY1305",
	"ECDHE-ECDSA-AES128-SHA", "ECDHE-RSA-AES128-SHA", "ECDHE-ECDSA-AES256-SHA", "ECDHE-RSA-AES256-SHA",
	"AES128-GCM-SHA256", "AES256-GCM-SHA384", "AES128-SHA", "AES256-SHA", "DES-CBC3-SHA",
}

func isValidCipherSuite(cs string) bool {
	if cs == "" || cs == "ALL" {
		return true
	}
	// Operators ("-", "+", "!", "[") are passed through unparsed.
	if r := rune(cs[0]); !(r >= '0' && r <= '9') && !(r >= 'a' && r <= 'z') && !(r >= 'A' && r <= 'Z') {
		return true
	}
	return slices.Contains(validCipherSuites, cs)
}

// validateServerTLS checks TLS a gateway (or a sidecar ingress) terminates.
func validateServerTLS(c *check, p FieldPath, t *networking.ServerTLSSettings) {
	if t == nil {
		return
	}
	if (t.MinProtocolVersion == networking.ServerTLSSettings_TLSV1_0 || t.MinProtocolVersion == networking.ServerTLSSettings_TLSV1_1) && len(t.CipherSuites) == 0 {
		c.warnf(p.Field("minProtocolVersion"), "TLS versions below TLSV1_2 need cipherSuites that support them: the default cipher suites no longer do")
	}
	seenCiphers := map[string]bool{}
	for i, cs := range t.CipherSuites {
		switch {
		case !isValidCipherSuite(cs):
			c.warnf(p.Field("cipherSuites").Index(i), "cipher suite %q is not supported and will be ignored", cs)
		case seenCiphers[cs]:
			c.warnf(p.Field("cipherSuites").Index(i), "duplicate cipher suite %q will be ignored", cs)
		}
		seenCiphers[cs] = true
	}
	// Exclusive ways of providing certificates (CRD rules).
	if t.CredentialName != "" && len(t.CredentialNames) > 0 {
		c.errorf(p.Field("credentialNames"), "only one of credentialName and credentialNames may be set")
	}
	if len(t.CredentialNames) > 0 && len(t.TlsCertificates) > 0 {
		c.errorf(p.Field("tlsCertificates"), "only one of credentialNames and tlsCertificates may be set")
	}
	// Meant to be exclusive too, but the CRD rule for this pair checks
	// credentialNames twice, so Istio accepts it: warn.
	if t.CredentialName != "" && len(t.TlsCertificates) > 0 {
		c.warnf(p.Field("tlsCertificates"), "set only one of credentialName and tlsCertificates: both provide the server certificate")
	}
	if len(t.CredentialNames) > 2 {
		c.errorf(p.Field("credentialNames"), "credentialNames may hold at most 2 entries (one RSA and one ECDSA certificate), got %d", len(t.CredentialNames))
	}
	if len(t.TlsCertificates) > 2 {
		c.errorf(p.Field("tlsCertificates"), "tlsCertificates may hold at most 2 entries (one RSA and one ECDSA certificate), got %d", len(t.TlsCertificates))
	}

	mode := t.Mode
	switch mode {
	case networking.ServerTLSSettings_ISTIO_MUTUAL:
		// ISTIO_MUTUAL uses the workload's mesh certificate.
		for _, f := range []struct{ name, v string }{
			{"serverCertificate", t.ServerCertificate}, {"privateKey", t.PrivateKey},
			{"caCertificates", t.CaCertificates}, {"credentialName", t.CredentialName},
		} {
			if f.v != "" {
				c.errorf(p.Field(f.name), "tls mode ISTIO_MUTUAL uses the mesh certificate and cannot have %s", f.name)
			}
		}
		if len(t.CredentialNames) > 0 {
			c.errorf(p.Field("credentialNames"), "tls mode ISTIO_MUTUAL uses the mesh certificate and cannot have credentialNames")
		}
		if len(t.TlsCertificates) > 0 {
			c.errorf(p.Field("tlsCertificates"), "tls mode ISTIO_MUTUAL uses the mesh certificate and cannot have tlsCertificates")
		}
		return
	case networking.ServerTLSSettings_PASSTHROUGH, networking.ServerTLSSettings_AUTO_PASSTHROUGH:
		if t.CaCrl != "" || t.ServerCertificate != "" || t.PrivateKey != "" || t.CaCertificates != "" || t.CredentialName != "" ||
			len(t.CredentialNames) > 0 || len(t.TlsCertificates) > 0 {
			c.warnf(p.Field("mode"), "tls mode %s does not terminate TLS: its certificates are ignored", mode)
		}
	}
	terminating := mode == networking.ServerTLSSettings_SIMPLE || mode == networking.ServerTLSSettings_MUTUAL ||
		mode == networking.ServerTLSSettings_OPTIONAL_MUTUAL
	mutual := mode == networking.ServerTLSSettings_MUTUAL || mode == networking.ServerTLSSettings_OPTIONAL_MUTUAL
	if terminating && (t.CredentialName != "" || len(t.CredentialNames) > 0) {
		// Certificates come from the credential (a Kubernetes secret).
		return
	}
	if terminating && len(t.TlsCertificates) > 0 {
		hasCA := t.CaCertificates != ""
		for i, tc := range t.TlsCertificates {
			cp := p.Field("tlsCertificates").Index(i)
			if tc.ServerCertificate == "" {
				c.errorf(cp.Field("serverCertificate"), "a tlsCertificates entry needs serverCertificate")
			}
			if tc.PrivateKey == "" {
				c.errorf(cp.Field("privateKey"), "a tlsCertificates entry needs privateKey")
			}
			hasCA = hasCA || tc.CaCertificates != ""
		}
		if mutual && !hasCA {
			c.errorf(p.Field("caCertificates"), "tls mode %s needs caCertificates to verify clients", mode)
		}
	} else if terminating {
		if t.ServerCertificate == "" {
			c.errorf(p.Field("serverCertificate"), "tls mode %s needs serverCertificate (or credentialName)", mode)
		}
		if t.PrivateKey == "" {
			c.errorf(p.Field("privateKey"), "tls mode %s needs privateKey (or credentialName)", mode)
		}
		if mutual && t.CaCertificates == "" {
			c.errorf(p.Field("caCertificates"), "tls mode %s needs caCertificates to verify clients (or credentialName)", mode)
		}
	}
	if t.CaCrl != "" {
		if t.CredentialName != "" {
			c.errorf(p.Field("caCrl"), "caCrl cannot be combined with credentialName: put the CRL in the credential")
		}
		if mode == networking.ServerTLSSettings_SIMPLE {
			c.errorf(p.Field("caCrl"), "caCrl needs tls mode MUTUAL or OPTIONAL_MUTUAL: SIMPLE does not verify clients")
		}
	}
}

// ---------------------------------------------------------------------------
// ServiceEntry

const labelEnableAutoallocateIP = "networking.istio.io/enable-autoallocate-ip"

func validateServiceEntry(c *check, r *Resource) {
	se := r.Spec.(*networking.ServiceEntry)
	const spec FieldPath = "spec"
	res := se.Resolution

	if ws := se.WorkloadSelector; ws != nil {
		validateSelectorLabels(c, spec.Field("workloadSelector").Field("labels"), ws.Labels, "service entry")
		if len(se.Endpoints) > 0 {
			c.errorf(spec.Field("endpoints"), "only one of workloadSelector and endpoints may be set")
		}
	}

	if len(se.Hosts) == 0 {
		c.errorf(spec.Field("hosts"), "a service entry needs at least one host")
	}
	for i, h := range se.Hosts {
		hp := spec.Field("hosts").Index(i)
		if h == "*" {
			c.errorf(hp, "host \"*\" is not allowed in a service entry: name the hosts, or use a wildcard such as \"*.example.com\"")
			continue
		}
		if err := validateWildcardDomain(h); err != nil {
			c.errorf(hp, "%v", err)
		} else if err := validatePartialWildcard(h); err != nil {
			c.warnf(hp, "%v", err)
		}
	}

	cidr := false
	for i, a := range se.Addresses {
		cidr = cidr || strings.Contains(a, "/")
		if err := validateIPOrCIDR(a); err != nil {
			c.errorf(spec.Field("addresses").Index(i), "%v", err)
		}
	}
	if cidr && res != networking.ServiceEntry_NONE && res != networking.ServiceEntry_STATIC {
		c.errorf(spec.Field("addresses"), "CIDR addresses are allowed only with resolution NONE or STATIC, not %s", res)
	}

	autoAllocate := res != networking.ServiceEntry_NONE && !strings.EqualFold(r.Labels[labelEnableAutoallocateIP], "false")
	names := map[string]int{}
	numbers := map[uint32]int{}
	servicePorts := map[string]bool{}
	for i, port := range se.Ports {
		pp := spec.Field("ports").Index(i)
		if prev, dup := names[port.Name]; dup {
			c.errorf(pp.Field("name"), "port name %q is already used by ports[%d]", port.Name, prev)
		} else {
			names[port.Name] = i
		}
		if prev, dup := numbers[port.Number]; dup {
			c.errorf(pp.Field("number"), "port number %d is already used by ports[%d]", port.Number, prev)
		} else {
			numbers[port.Number] = i
		}
		servicePorts[port.Name] = true
		if port.TargetPort != 0 {
			validatePort(c, pp.Field("targetPort"), int64(port.TargetPort))
		}
		if len(se.Addresses) == 0 && !autoAllocate && (port.Protocol == "" || port.Protocol == "TCP") {
			c.warnf(pp, "a TCP (or unset protocol) port needs addresses unless the proxy sets ISTIO_META_DNS_AUTO_ALLOCATE")
		}
		validatePortName(c, pp.Field("name"), port.Name)
		validatePortProtocol(c, pp.Field("protocol"), port.Protocol)
		validatePort(c, pp.Field("number"), int64(port.Number))
	}

	switch res {
	case networking.ServiceEntry_NONE:
		if len(se.Endpoints) > 0 {
			c.errorf(spec.Field("endpoints"), "resolution NONE cannot have endpoints: use STATIC or DNS")
		}
		if se.WorkloadSelector != nil {
			c.warnf(spec.Field("workloadSelector"), "workloadSelector has no effect with resolution NONE")
		}
	case networking.ServiceEntry_STATIC:
		for i, ep := range se.Endpoints {
			validateWorkloadEntryFields(c, spec.Field("endpoints").Index(i), ep, servicePorts, false)
		}
	case networking.ServiceEntry_DNS, networking.ServiceEntry_DNS_ROUND_ROBIN:
		if len(se.Endpoints) == 0 {
			for i, h := range se.Hosts {
				if h != "*" && validateWildcardDomain(h) == nil && validateFQDN(h) != nil {
					c.errorf(spec.Field("hosts").Index(i), "host %q must be a fully qualified name without wildcards: resolution %s without endpoints resolves the hosts themselves", h, res)
				}
			}
		}
		if res == networking.ServiceEntry_DNS_ROUND_ROBIN && len(se.Endpoints) > 1 {
			c.errorf(spec.Field("endpoints"), "resolution DNS_ROUND_ROBIN allows at most one endpoint, got %d", len(se.Endpoints))
		}
		for i, ep := range se.Endpoints {
			epp := spec.Field("endpoints").Index(i)
			switch {
			case ep.Address == "":
				c.errorf(epp.Field("address"), "address is required with resolution %s", res)
			case !isIPAddress(ep.Address) && validateFQDN(ep.Address) != nil:
				c.errorf(epp.Field("address"), "endpoint address %q is not a valid domain name or IP address", ep.Address)
			}
			validateLabels(c, epp.Field("labels"), ep.Labels)
			validateEndpointPorts(c, epp.Field("ports"), ep.Ports, servicePorts)
		}
		if se.WorkloadSelector != nil {
			c.warnf(spec.Field("workloadSelector"), "workloadSelector has no effect with resolution %s", res)
		}
		if len(se.Addresses) > 0 && len(se.Hosts) > 1 {
			for _, port := range se.Ports {
				if protocolIsTCP(port.Protocol) {
					c.warnf(spec.Field("hosts"), "a service entry should not list several hosts together with addresses and a TCP port")
					break
				}
			}
		}
	case networking.ServiceEntry_DYNAMIC_DNS:
		for i, h := range se.Hosts {
			if h != "*" && !strings.HasPrefix(h, "*") {
				c.warnf(spec.Field("hosts").Index(i), "resolution DYNAMIC_DNS is meant for wildcard hosts; %q is not one", h)
			}
		}
		if len(se.Endpoints) > 0 {
			c.warnf(spec.Field("endpoints"), "endpoints are ignored with resolution DYNAMIC_DNS")
		}
	}

	// Plain TCP cannot tell several hosts apart, unless resolution is NONE
	// (which ignores the hosts).
	if res != networking.ServiceEntry_NONE && len(se.Hosts) > 1 {
		for i, port := range se.Ports {
			if !protocolIsHTTP(port.Protocol) && !protocolIsTLS(port.Protocol) {
				c.errorf(spec.Field("ports").Index(i), "several hosts need HTTP or TLS ports to be told apart; port %d has protocol %q", port.Number, port.Protocol)
				break
			}
		}
	}
	validateExportTo(c, spec.Field("exportTo"), r.Namespace, se.ExportTo, true, false)
}

// validateEndpointPorts checks an endpoint's port map: names declared by the
// service entry (when servicePorts is given), and valid port numbers.
func validateEndpointPorts(c *check, p FieldPath, ports map[string]uint32, servicePorts map[string]bool) {
	for _, name := range sortedKeys(ports) {
		kp := p.Key(name)
		if servicePorts != nil && !servicePorts[name] {
			c.errorf(kp, "endpoint port %q is not declared in the service entry's ports", name)
		}
		if len(name) >= 63 || !udsPortNameRE.MatchString(name) {
			c.errorf(kp, "port name %q must be at most 62 letters, digits or '-', starting and ending with a letter or digit", name)
		}
		validatePort(c, kp, int64(ports[name]))
	}
}

// validateWorkloadEntryFields checks a workload entry, standalone or as a
// service entry endpoint. servicePorts is nil for a standalone entry.
func validateWorkloadEntryFields(c *check, p FieldPath, we *networking.WorkloadEntry, servicePorts map[string]bool, allowFQDN bool) {
	addr := we.Address
	if addr == "" {
		if we.Network == "" {
			c.errorf(p.Field("address"), "address is required (unless network is set)")
		} else {
			c.warnf(p.Field("address"), "address is unset, with network %q", we.Network)
		}
	}
	unix := strings.HasPrefix(addr, unixAddressPrefix)
	switch {
	case len(addr) > 256:
		c.errorf(p.Field("address"), "address is %d characters long; at most 256 are allowed", len(addr))
	case unix:
		if err := validateUnixAddress(strings.TrimPrefix(addr, unixAddressPrefix)); err != nil {
			c.errorf(p.Field("address"), "%v", err)
		}
		if len(we.Ports) > 0 {
			c.errorf(p.Field("ports"), "a unix domain socket endpoint %s must not have ports", addr)
		}
	case addr != "" && !isIPAddress(addr):
		if !allowFQDN {
			c.errorf(p.Field("address"), "endpoint address %q must be an IP address (or unix://<path>) with resolution STATIC", addr)
		} else if validateFQDN(addr) != nil {
			c.errorf(p.Field("address"), "address %q is not a valid domain name or IP address", addr)
		}
	}
	validateEndpointPorts(c, p.Field("ports"), we.Ports, servicePorts)
	validateLabels(c, p.Field("labels"), we.Labels)
	if unix && servicePorts != nil && len(servicePorts) != 1 {
		c.errorf(p.Field("address"), "a unix domain socket endpoint needs the service entry to have exactly one port, it has %d", len(servicePorts))
	}
	if len(we.ServiceAccount) > 253 {
		c.errorf(p.Field("serviceAccount"), "serviceAccount is %d characters long; at most 253 are allowed", len(we.ServiceAccount))
	}
	if len(we.Network) > 2048 {
		c.errorf(p.Field("network"), "network is %d characters long; at most 2048 are allowed", len(we.Network))
	}
	if len(we.Locality) > 2048 {
		c.errorf(p.Field("locality"), "locality is %d characters long; at most 2048 are allowed", len(we.Locality))
	}
}

// ---------------------------------------------------------------------------
// WorkloadEntry

func validateWorkloadEntry(c *check, r *Resource) {
	we := r.Spec.(*networking.WorkloadEntry)
	// Without a service entry it may be meant for STATIC (an IP) or DNS
	// (a domain name): both are accepted.
	validateWorkloadEntryFields(c, "spec", we, nil, true)
}

// ---------------------------------------------------------------------------
// Sidecar

func validateSidecar(c *check, r *Resource) {
	sc := r.Spec.(*networking.Sidecar)
	const spec FieldPath = "spec"
	if ws := sc.WorkloadSelector; ws != nil {
		validateSelectorLabels(c, spec.Field("workloadSelector").Field("labels"), ws.Labels, "sidecar")
	}
	if len(sc.Egress) == 0 && len(sc.Ingress) == 0 && sc.OutboundTrafficPolicy == nil && sc.InboundConnectionPool == nil {
		c.errorf(spec, "sidecar configuration is empty: set ingress, egress, outboundTrafficPolicy or inboundConnectionPool")
		return
	}

	ports := map[uint32]int{}
	for i, in := range sc.Ingress {
		ip := spec.Field("ingress").Index(i)
		if in.Port == nil {
			c.errorf(ip.Field("port"), "an ingress listener needs a port")
			continue
		}
		pp := ip.Field("port")
		//nolint:staticcheck // the deprecated field is still read.
		if in.Port.TargetPort > 0 {
			c.errorf(pp.Field("targetPort"), "targetPort has no effect on sidecars; remove it")
		}
		if in.Port.Name != "" {
			validatePortName(c, pp.Field("name"), in.Port.Name)
		}
		validatePortProtocol(c, pp.Field("protocol"), in.Port.Protocol)
		validatePort(c, pp.Field("number"), int64(in.Port.Number))
		if in.Bind != "" {
			if err := validateIPAddress(in.Bind); err != nil {
				c.errorf(ip.Field("bind"), "bind %v", err)
			}
		}
		if prev, dup := ports[in.Port.Number]; dup {
			c.errorf(pp.Field("number"), "port %d is already used by ingress[%d]: ports of ingress listeners must be unique", in.Port.Number, prev)
		} else {
			ports[in.Port.Number] = i
		}
		validateDefaultEndpoint(c, ip.Field("defaultEndpoint"), in.DefaultEndpoint)
		if t := in.Tls; t != nil {
			tp := ip.Field("tls")
			if len(t.SubjectAltNames) > 0 {
				c.errorf(tp.Field("subjectAltNames"), "subjectAltNames is not supported in sidecar ingress tls")
			}
			if t.HttpsRedirect {
				c.errorf(tp.Field("httpsRedirect"), "httpsRedirect is not supported in sidecar ingress tls")
			}
			if t.CredentialName != "" {
				c.errorf(tp.Field("credentialName"), "credentialName is not supported in sidecar ingress tls: use serverCertificate and privateKey")
			}
			if t.Mode == networking.ServerTLSSettings_ISTIO_MUTUAL || t.Mode == networking.ServerTLSSettings_AUTO_PASSTHROUGH {
				c.errorf(tp.Field("mode"), "tls mode %s is not allowed in sidecar ingress tls", t.Mode)
			}
			validateServerTLS(c, tp, t)
		}
		validateConnectionPool(c, ip.Field("connectionPool"), in.ConnectionPool)
		if in.ConnectionPool.GetHttp() != nil && !protocolIsHTTP(in.Port.Protocol) {
			c.warnf(ip.Field("connectionPool").Field("http"), "HTTP connection pool settings for port %d, whose protocol %q is not HTTP: only the TCP settings apply", in.Port.Number, in.Port.Protocol)
		}
	}
	validateConnectionPool(c, spec.Field("inboundConnectionPool"), sc.InboundConnectionPool)

	ports = map[uint32]int{}
	sockets := map[string]int{}
	for i, eg := range sc.Egress {
		ep := spec.Field("egress").Index(i)
		if eg.Port == nil {
			// One catch-all listener, without a port, is allowed: the last.
			if i != len(sc.Egress)-1 {
				c.errorf(ep, "only the last egress listener may omit the port (it catches all other traffic)")
			}
		} else {
			pp := ep.Field("port")
			//nolint:staticcheck // the deprecated field is still read.
			if eg.Port.TargetPort > 0 {
				c.errorf(pp.Field("targetPort"), "targetPort has no effect on sidecars; remove it")
			}
			validateEgressPort(c, ep, eg)
			if eg.Port.Number == 0 {
				if prev, dup := sockets[eg.Bind]; dup {
					c.errorf(ep.Field("bind"), "unix domain socket %q is already used by egress[%d]", eg.Bind, prev)
				} else {
					sockets[eg.Bind] = i
				}
			} else if prev, dup := ports[eg.Port.Number]; dup {
				c.errorf(pp.Field("number"), "port %d is already used by egress[%d]: ports of egress listeners must be unique", eg.Port.Number, prev)
			} else {
				ports[eg.Port.Number] = i
			}
		}

		if len(eg.Hosts) == 0 {
			c.errorf(ep.Field("hosts"), "an egress listener needs at least one host")
			continue
		}
		byNamespace := map[string]map[string]bool{}
		for j, h := range eg.Hosts {
			hp := ep.Field("hosts").Index(j)
			if ns, svc, ok := strings.Cut(h, "/"); ok {
				if ns == "." {
					ns = r.Namespace
				}
				if byNamespace[ns] == nil {
					byNamespace[ns] = map[string]bool{}
				}
				if svc != "*" {
					if byNamespace[ns][svc] || byNamespace[ns]["*"] {
						c.warnf(hp, "duplicated egress host %q: an earlier host already selects it", h)
					}
				} else if len(byNamespace[ns]) != 0 {
					c.warnf(hp, "duplicated egress host %q: it selects hosts listed earlier", h)
				}
				byNamespace[ns][svc] = true
			}
			validateNamespaceSlashHost(c, hp, h, false)
		}
		if byNamespace["*"]["*"] && len(byNamespace) != 1 {
			c.warnf(ep.Field("hosts"), "\"*/*\" selects every host: the other hosts add nothing")
		}
	}

	if tp := sc.OutboundTrafficPolicy; tp != nil && tp.EgressProxy != nil {
		op := spec.Field("outboundTrafficPolicy")
		pp := op.Field("egressProxy")
		proxy := tp.EgressProxy
		if tp.Mode != networking.OutboundTrafficPolicy_ALLOW_ANY {
			c.errorf(pp, "egressProxy can be set only with mode ALLOW_ANY")
		} else {
			if proxy.Host == "" {
				c.errorf(pp.Field("host"), "host is required")
			} else if err := validateFQDN(proxy.Host); err != nil {
				c.errorf(pp.Field("host"), "%v", err)
			}
			if proxy.Subset != "" && !isDNSLabelAnyCase(proxy.Subset) {
				c.errorf(pp.Field("subset"), "subset name %q must be a DNS-1123 label", proxy.Subset)
			}
			if proxy.Port == nil {
				c.errorf(pp.Field("port"), "egressProxy needs a port")
			} else {
				validatePort(c, pp.Field("port").Field("number"), int64(proxy.Port.Number))
			}
		}
	}
}

// validateDefaultEndpoint: 127.0.0.1:<port>, 0.0.0.0:<port>, [::1]:<port>,
// [::]:<port>, :<port> or unix://<path>.
func validateDefaultEndpoint(c *check, p FieldPath, ep string) {
	if ep == "" {
		return
	}
	if strings.HasPrefix(ep, unixAddressPrefix) {
		if err := validateUnixAddress(strings.TrimPrefix(ep, unixAddressPrefix)); err != nil {
			c.errorf(p, "%v", err)
		}
		return
	}
	host, port, err := net.SplitHostPort(ep)
	if err != nil {
		c.errorf(p, "defaultEndpoint %q must have the form 127.0.0.1:<port>, 0.0.0.0:<port>, [::1]:<port>, [::]:<port> or unix://<path>", ep)
		return
	}
	if host != "" && host != "127.0.0.1" && host != "0.0.0.0" && host != "::1" && host != "::" {
		c.errorf(p, "defaultEndpoint %q must have the form 127.0.0.1:<port>, 0.0.0.0:<port>, [::1]:<port>, [::]:<port> or unix://<path>", ep)
	}
	n, err := strconv.Atoi(port)
	if err != nil {
		c.errorf(p, "defaultEndpoint port %q is not a number", port)
		return
	}
	validatePort(c, p, int64(n))
}

func validateEgressPort(c *check, p FieldPath, eg *networking.IstioEgressListener) {
	pp := p.Field("port")
	port := eg.Port
	if port.Name != "" {
		validatePortName(c, pp.Field("name"), port.Name)
	}
	validatePortProtocol(c, pp.Field("protocol"), port.Protocol)
	if port.Number == 0 {
		// Port 0 is a unix domain socket listener.
		if !strings.HasPrefix(eg.Bind, unixAddressPrefix) {
			c.errorf(p.Field("bind"), "port number 0 needs a unix domain socket bind (unix://<path>); otherwise use a port between 1 and 65535")
		} else if err := validateUnixAddress(strings.TrimPrefix(eg.Bind, unixAddressPrefix)); err != nil {
			c.errorf(p.Field("bind"), "%v", err)
		}
		if eg.CaptureMode != networking.CaptureMode_DEFAULT && eg.CaptureMode != networking.CaptureMode_NONE {
			c.errorf(p.Field("captureMode"), "captureMode must be DEFAULT or NONE for a unix domain socket listener")
		}
		return
	}
	validatePort(c, pp.Field("number"), int64(port.Number))
	if eg.Bind != "" {
		if err := validateIPAddress(eg.Bind); err != nil {
			c.errorf(p.Field("bind"), "bind %v", err)
		}
	}
}
