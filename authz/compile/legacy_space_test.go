package compile

import (
	"encoding/json"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/garrison-mesh/garrison/authz/cases"
	"github.com/garrison-mesh/garrison/policies"
	"github.com/garrison-mesh/garrison/policies/legacy"
)

// The request space of a legacy policy set: the requests the equivalence
// tests decide. It is built from what the policies mention: each value seen
// (a pattern made concrete) and one nobody mentions, per attribute. Seeds
// satisfy one (role rule, subject) pair of a binding at a time; every
// request is a seed with one attribute changed to another candidate (a
// one-factor-at-a-time walk), so that each attribute's every value is tried
// where the other attributes match.

// legacyDestination is a workload requests go to.
type legacyDestination struct {
	Namespace      string
	Labels         map[string]string
	Services       []string
	ServiceAccount string
}

// apply makes d the destination of r: what Garrison's xDS says of it in the
// context extensions (namespace, labels, services) and its identity.
func (d legacyDestination) apply(r *cases.Request) {
	r.Destination.Namespace = d.Namespace
	r.Destination.Labels = maps.Clone(d.Labels)
	r.Destination.Services = slices.Clone(d.Services)
	legacySetServiceAccount(r, d.ServiceAccount)
}

// legacyRequestTo is the request legacy tests start from: GET / to d at
// 10.1.0.1:8000, from 10.0.0.1 without identity. Its host is left to
// legacyFinish.
func legacyRequestTo(d legacyDestination) cases.Request {
	r := cases.Request{Destination: cases.Destination{IP: "10.1.0.1", Port: 8000}}
	d.apply(&r)
	return r
}

// legacyFinish fills in the host a request to a workload of namespace ns
// has unless it names one, httpbin.<ns> (left until the destination is
// final), and drops what a TCP request cannot have.
func legacyFinish(r cases.Request) cases.Request {
	if r.TCP {
		r.Method, r.Path, r.Host, r.Headers = "", "", "", nil
	} else if r.Host == "" {
		r.Host = "httpbin." + r.Destination.Namespace
	}
	return r
}

// legacySetServiceAccount makes sa the destination's service account (legacy
// RBAC's destination.user).
func legacySetServiceAccount(r *cases.Request, sa string) {
	r.Destination.Principal = "spiffe://cluster.local/ns/" + r.Destination.Namespace + "/sa/" + sa
}

// legacySetPrincipal gives r the peer identity p (without spiffe://) both as
// its certificate's and as Istio's authn filter recorded it
// (source.principal and source.namespace), as a sidecar under legacy RBAC
// saw an mTLS peer; "" makes the request plaintext.
func legacySetPrincipal(r *cases.Request, p string) {
	r.Source.Principal = p
	var principal, ns any
	if p != "" {
		principal = p
		if parts := strings.Split(p, "/"); len(parts) == 5 && parts[1] == "ns" {
			ns = parts[2]
		}
	}
	legacySetMetadata(r, [2]string{"istio_authn", "source.principal"}, principal)
	legacySetMetadata(r, [2]string{"istio_authn", "source.namespace"}, ns)
}

// legacySpaceOptions tune the space.
type legacySpaceOptions struct {
	// Destinations, when set, are the only workloads requests go to.
	Destinations []legacyDestination
	// NoTCP leaves out requests without request.http.
	NoTCP bool
	// Queries adds a query string to paths.
	Queries bool
}

// Placeholders that stand for "anything" in concrete values.
const (
	legacySpaceAny      = "garrison"
	legacySpaceStranger = "cluster.local/ns/garrison-stranger/sa/stranger"
)

// legacyConcrete returns a value an Istio pattern matches: exact as is,
// "prefix*" and "*suffix" completed, "*" a placeholder.
func legacyConcrete(p string) string {
	switch {
	case p == "*":
		return legacySpaceAny + "-any"
	case strings.HasPrefix(p, "*"):
		return legacySpaceAny + p[1:]
	case strings.HasSuffix(p, "*"):
		return strings.TrimSuffix(p, "*") + legacySpaceAny
	}
	return p
}

// legacyConcretePath is concrete for paths, which start with "/".
func legacyConcretePath(p string) string {
	c := legacyConcrete(p)
	if !strings.HasPrefix(c, "/") {
		c = "/" + c
	}
	return c
}

// legacyConcreteIP returns an address inside an IP or CIDR ("" when invalid).
func legacyConcreteIP(v string) string {
	if a, err := netip.ParseAddr(v); err == nil {
		return a.String()
	}
	p, err := netip.ParsePrefix(v)
	if err != nil {
		return ""
	}
	a := p.Masked().Addr()
	if p.Bits() < a.BitLen() {
		a = a.Next()
	}
	return a.String()
}

// legacyConcretePrincipal turns a principal pattern into an identity.
func legacyConcretePrincipal(p string) string {
	switch p {
	case "*", "allUsers", "allAuthenticatedUsers":
		return "cluster.local/ns/garrison/sa/any"
	}
	return legacyConcrete(p)
}

// legacyPrincipalInNamespace is an identity a source.namespace pattern matches.
func legacyPrincipalInNamespace(ns string) string {
	return "cluster.local/ns/" + strings.ReplaceAll(ns, "*", legacySpaceAny) + "/sa/" + legacySpaceAny
}

// legacyFacts is what the policies mention, per attribute.
type legacyFacts struct {
	methods, paths, hosts []string
	ports                 []int
	destIPs, sourceIPs    []string
	snis                  []string
	destUsers             []string
	principals            []string
	headers               map[string][]string
	labels                map[string][]string
	claims                map[string][]string
	authn                 map[string][]string // request.auth.principal, audiences, presenter
	metadata              map[[2]string][]any
	namespaces            []string // of bindings, roles and configs
}

func legacyAddUnique[T comparable](list []T, v ...T) []T {
	for _, x := range v {
		if !slices.Contains(list, x) {
			list = append(list, x)
		}
	}
	return list
}

// legacyCollectFacts reads every legacy resource of snap.
func legacyCollectFacts(snap *policies.Snapshot) *legacyFacts {
	f := &legacyFacts{
		headers:  map[string][]string{},
		labels:   map[string][]string{},
		claims:   map[string][]string{},
		authn:    map[string][]string{},
		metadata: map[[2]string][]any{},
	}
	rule := func(r *legacy.AccessRule) {
		for _, m := range slices.Concat(r.Methods, r.NotMethods) {
			f.methods = legacyAddUnique(f.methods, legacyConcrete(m))
		}
		for _, p := range slices.Concat(r.Paths, r.NotPaths) {
			f.paths = legacyAddUnique(f.paths, legacyConcretePath(p))
		}
		for _, h := range slices.Concat(r.Hosts, r.NotHosts) {
			f.hosts = legacyAddUnique(f.hosts, legacyConcrete(h))
		}
		for _, p := range slices.Concat(r.Ports, r.NotPorts) {
			f.ports = legacyAddUnique(f.ports, int(p))
		}
		for _, c := range r.Constraints {
			if c == nil {
				continue
			}
			for _, v := range c.Values {
				switch key := c.Key; {
				case key == "destination.ip":
					if ip := legacyConcreteIP(v); ip != "" {
						f.destIPs = legacyAddUnique(f.destIPs, ip)
					}
				case key == "destination.port":
					if p, err := strconv.Atoi(v); err == nil {
						f.ports = legacyAddUnique(f.ports, p)
					}
				case key == "destination.user":
					f.destUsers = legacyAddUnique(f.destUsers, legacyConcrete(v))
				case key == "connection.sni":
					f.snis = legacyAddUnique(f.snis, legacyConcrete(v))
				case strings.HasPrefix(key, "destination.labels["):
					name, _ := legacyBracketName(strings.TrimPrefix(key, "destination.labels"))
					f.labels[name] = legacyAddUnique(f.labels[name], legacyConcrete(v))
				case strings.HasPrefix(key, "request.headers["):
					name, _ := legacyBracketName(strings.TrimPrefix(key, "request.headers"))
					name = strings.ToLower(name)
					f.headers[name] = legacyAddUnique(f.headers[name], legacyConcrete(v))
				case strings.HasPrefix(key, "experimental.envoy.filters."):
					if filter, mkey, ok := legacyMetadataKey(key); ok {
						k := [2]string{filter, mkey}
						if legacyListPattern(v) {
							f.metadata[k] = append(f.metadata[k], []any{legacyConcrete(strings.Trim(v, "[]"))})
						} else {
							f.metadata[k] = append(f.metadata[k], legacyConcrete(v))
						}
					}
				}
			}
		}
	}
	for _, r := range snap.List(policies.KindServiceRole) {
		f.namespaces = legacyAddUnique(f.namespaces, r.Namespace)
		if role, ok := policies.SpecAs[*legacy.ServiceRole](r); ok {
			for _, ar := range role.Rules {
				rule(ar)
			}
		}
	}
	for _, r := range snap.List(policies.KindServiceRoleBinding) {
		f.namespaces = legacyAddUnique(f.namespaces, r.Namespace)
		b, ok := policies.SpecAs[*legacy.ServiceRoleBinding](r)
		if !ok {
			continue
		}
		for _, ar := range b.Actions {
			rule(ar)
		}
		for _, s := range b.Subjects {
			for _, p := range slices.Concat([]string{s.User}, s.Names, s.NotNames) {
				if p != "" {
					f.principals = legacyAddUnique(f.principals, legacyConcretePrincipal(p))
				}
			}
			for _, g := range slices.Concat([]string{s.Group}, s.Groups, s.NotGroups) {
				if g != "" {
					f.claims["groups"] = legacyAddUnique(f.claims["groups"], legacyConcrete(g))
				}
			}
			for _, ns := range slices.Concat(s.Namespaces, s.NotNamespaces) {
				f.principals = legacyAddUnique(f.principals, legacyPrincipalInNamespace(ns))
			}
			for _, ip := range slices.Concat(s.Ips, s.NotIps) {
				if c := legacyConcreteIP(ip); c != "" {
					f.sourceIPs = legacyAddUnique(f.sourceIPs, c)
				}
			}
			for k, v := range s.Properties {
				switch {
				case k == "source.ip":
					if c := legacyConcreteIP(v); c != "" {
						f.sourceIPs = legacyAddUnique(f.sourceIPs, c)
					}
				case k == "source.namespace":
					f.principals = legacyAddUnique(f.principals, legacyPrincipalInNamespace(v))
				case k == "source.principal" || k == "source.user":
					f.principals = legacyAddUnique(f.principals, legacyConcretePrincipal(v))
				case k == "request.auth.principal" || k == "request.auth.audiences" || k == "request.auth.presenter":
					f.authn[k] = legacyAddUnique(f.authn[k], legacyConcrete(v))
				case strings.HasPrefix(k, "request.headers["):
					name, _ := legacyBracketName(strings.TrimPrefix(k, "request.headers"))
					name = strings.ToLower(name)
					f.headers[name] = legacyAddUnique(f.headers[name], legacyConcrete(v))
				case strings.HasPrefix(k, "request.auth.claims["):
					name, _ := legacyBracketName(strings.TrimPrefix(k, "request.auth.claims"))
					f.claims[name] = legacyAddUnique(f.claims[name], legacyConcrete(v))
				}
			}
		}
	}
	for _, kind := range []policies.GroupKind{policies.KindClusterRbacConfig, policies.KindRbacConfig} {
		for _, r := range snap.List(kind) {
			cfg, ok := policies.SpecAs[*legacy.RbacConfig](r)
			if !ok {
				continue
			}
			for _, t := range []*legacy.RbacTarget{cfg.Inclusion, cfg.Exclusion} {
				if t != nil {
					f.namespaces = legacyAddUnique(f.namespaces, t.Namespaces...)
				}
			}
		}
	}
	slices.Sort(f.namespaces)
	return f
}

func legacyListPattern(v string) bool {
	return strings.HasPrefix(v, "[") && strings.HasSuffix(v, "]")
}

// destinations are the workloads of snap's Services, each label a
// destination.labels constraint names set to every value seen and to one
// nobody wrote, and a workload of no service in each namespace policies
// mention and in one they do not.
func (f *legacyFacts) destinations(snap *policies.Snapshot) []legacyDestination {
	var out []legacyDestination
	labelKeys := slices.Sorted(maps.Keys(f.labels))
	for _, svc := range snap.Services() {
		base := legacyDestination{Namespace: svc.Namespace, Labels: maps.Clone(svc.Selector),
			Services: []string{svc.Hostname}, ServiceAccount: svc.Name}
		if base.Labels == nil {
			base.Labels = map[string]string{}
		}
		variants := []legacyDestination{base}
		for _, k := range labelKeys {
			var next []legacyDestination
			for _, d := range variants {
				if _, fixed := d.Labels[k]; fixed {
					next = append(next, d)
					continue
				}
				for _, v := range append(slices.Clone(f.labels[k]), "garrison-unseen") {
					nd := d
					nd.Labels = maps.Clone(d.Labels)
					nd.Labels[k] = v
					next = append(next, nd)
				}
			}
			variants = next
		}
		out = append(out, variants...)
	}
	namespaces := legacyAddUnique(slices.Clone(f.namespaces), "garrison-other")
	for _, svc := range snap.Services() {
		namespaces = legacyAddUnique(namespaces, svc.Namespace)
	}
	for _, ns := range namespaces {
		out = append(out, legacyDestination{Namespace: ns, Labels: map[string]string{"app": "garrison-stranger"}, ServiceAccount: "stranger"})
		if len(snap.Services()) == 0 {
			out = append(out, legacyDestination{Namespace: ns, Labels: map[string]string{"app": "httpbin"},
				Services: []string{"httpbin." + ns + ".svc.cluster.local"}, ServiceAccount: "httpbin"})
		}
	}
	return out
}

// legacySpace returns the requests to decide for a legacy policy set.
func legacySpace(snap *policies.Snapshot, opts legacySpaceOptions) []cases.Request {
	f := legacyCollectFacts(snap)
	dests := opts.Destinations
	if dests == nil {
		dests = f.destinations(snap)
	}

	// Candidates per attribute: a setter per value.
	type setter func(*cases.Request)
	var dims [][]setter
	dim := func(s []setter) { dims = append(dims, s) }

	var ds []setter
	for _, d := range dests {
		ds = append(ds, d.apply)
	}
	dim(ds)
	var methods []setter
	for _, m := range legacyAddUnique(slices.Clone(f.methods), legacyUnseenMethod(f.methods)) {
		methods = append(methods, func(r *cases.Request) { r.Method = m })
	}
	dim(methods)
	var paths []setter
	for _, p := range legacyAddUnique(slices.Clone(f.paths), "/garrison/unseen") {
		paths = append(paths, func(r *cases.Request) { r.Path = p })
		if opts.Queries {
			paths = append(paths, func(r *cases.Request) { r.Path = p + "?garrison=1" })
		}
	}
	dim(paths)
	var hosts []setter
	for _, h := range legacyAddUnique(slices.Clone(f.hosts), "unseen.example.com") {
		hosts = append(hosts, func(r *cases.Request) { r.Host = h })
	}
	dim(hosts)
	var ports []setter
	for _, p := range legacyAddUnique(slices.Clone(f.ports), 8000, 65000) {
		ports = append(ports, func(r *cases.Request) { r.Destination.Port = uint32(p) })
	}
	dim(ports)
	var principals []setter
	for _, p := range legacyAddUnique(slices.Clone(f.principals), legacySpaceStranger, "") {
		principals = append(principals, func(r *cases.Request) { legacySetPrincipal(r, p) })
	}
	dim(principals)
	var sips []setter
	for _, ip := range legacyAddUnique(slices.Clone(f.sourceIPs), "203.0.113.7") {
		sips = append(sips, func(r *cases.Request) { r.Source.IP = ip })
	}
	dim(sips)
	var dips []setter
	for _, ip := range legacyAddUnique(slices.Clone(f.destIPs), "10.1.0.1") {
		dips = append(dips, func(r *cases.Request) { r.Destination.IP = ip })
	}
	dim(dips)
	var snis []setter
	for _, s := range legacyAddUnique(slices.Clone(f.snis), "") {
		snis = append(snis, func(r *cases.Request) { r.SNI = s })
	}
	dim(snis)
	var sas []setter
	for _, s := range legacyAddUnique(slices.Clone(f.destUsers), "garrison-sa") {
		sas = append(sas, func(r *cases.Request) { legacySetServiceAccount(r, s) })
	}
	if len(f.destUsers) > 0 {
		dim(sas)
	}
	if !opts.NoTCP {
		dim([]setter{func(r *cases.Request) { r.TCP = true }, func(r *cases.Request) { r.TCP = false }})
	}
	for _, h := range slices.Sorted(maps.Keys(f.headers)) {
		s := []setter{func(r *cases.Request) { delete(r.Headers, h) }}
		for _, v := range f.headers[h] {
			s = append(s, func(r *cases.Request) { r.Headers = legacyWithKey(r.Headers, h, v) })
		}
		dim(s)
	}
	for _, c := range slices.Sorted(maps.Keys(f.claims)) {
		s := []setter{func(r *cases.Request) { legacySetClaim(r, c, nil) }}
		for _, v := range append(slices.Clone(f.claims[c]), "garrison-unseen") {
			s = append(s, func(r *cases.Request) { legacySetClaim(r, c, []any{v}) })
		}
		dim(s)
	}
	for _, k := range slices.Sorted(maps.Keys(f.authn)) {
		s := []setter{func(r *cases.Request) { legacySetMetadata(r, [2]string{"istio_authn", k}, nil) }}
		for _, v := range append(slices.Clone(f.authn[k]), "garrison-unseen") {
			s = append(s, func(r *cases.Request) { legacySetMetadata(r, [2]string{"istio_authn", k}, v) })
		}
		dim(s)
	}
	for _, k := range slices.SortedFunc(maps.Keys(f.metadata), func(a, b [2]string) int { return strings.Compare(a[0]+a[1], b[0]+b[1]) }) {
		s := []setter{func(r *cases.Request) { legacySetMetadata(r, k, nil) }}
		for _, v := range append(slices.Clone(f.metadata[k]), "garrison-unseen") {
			s = append(s, func(r *cases.Request) { legacySetMetadata(r, k, v) })
		}
		dim(s)
	}

	seeds := legacySeeds(snap, f, dests)
	seen := map[string]bool{}
	var out []cases.Request
	add := func(r cases.Request) {
		if opts.NoTCP {
			r.TCP = false
		}
		r = legacyFinish(r)
		key, _ := json.Marshal(r)
		if !seen[string(key)] {
			seen[string(key)] = true
			out = append(out, r)
		}
	}
	for _, seed := range seeds {
		add(seed)
		for _, d := range dims {
			for _, set := range d {
				r := legacyCloneRequest(seed)
				set(&r)
				add(r)
			}
		}
	}
	return out
}

func legacyWithKey[V any](m map[string]V, k string, v V) map[string]V {
	m = maps.Clone(m)
	if m == nil {
		m = map[string]V{}
	}
	m[k] = v
	return m
}

// legacySetClaim sets a claim of the JWT Istio's authn filter recorded; nil
// removes it.
func legacySetClaim(r *cases.Request, claim string, v any) {
	claims, _ := r.Metadata["istio_authn"]["request.auth.claims"].(map[string]any)
	claims = maps.Clone(claims)
	if claims == nil {
		claims = map[string]any{}
	}
	if v == nil {
		delete(claims, claim)
	} else {
		claims[claim] = v
	}
	legacySetMetadata(r, [2]string{"istio_authn", "request.auth.claims"}, claims)
}

// legacySetMetadata sets key k[1] of filter k[0]'s dynamic metadata; nil
// removes it. Requests share maps with the seed they came from: every
// change copies what it changes.
func legacySetMetadata(r *cases.Request, k [2]string, v any) {
	m := maps.Clone(r.Metadata)
	if m == nil {
		m = map[string]map[string]any{}
	}
	f := maps.Clone(m[k[0]])
	if f == nil {
		f = map[string]any{}
	}
	if v == nil {
		delete(f, k[1])
	} else {
		f[k[1]] = v
	}
	m[k[0]] = f
	if len(f) == 0 {
		delete(m, k[0])
	}
	r.Metadata = m
}

func legacyCloneRequest(r cases.Request) cases.Request {
	r.Destination.Labels = maps.Clone(r.Destination.Labels)
	r.Destination.Services = slices.Clone(r.Destination.Services)
	r.Headers = maps.Clone(r.Headers)
	r.Metadata = maps.Clone(r.Metadata)
	return r
}

func legacyUnseenMethod(seen []string) string {
	for _, m := range []string{"PATCH", "OPTIONS", "TRACE", "DELETE", "PUT", "POST", "HEAD", "GET"} {
		if !slices.Contains(seen, m) {
			return m
		}
	}
	return "GARRISON"
}

// legacySeeds returns, for each binding, role rule and subject, a request
// that satisfies the rule and the subject where that is possible, plus a
// plain request to each destination.
func legacySeeds(snap *policies.Snapshot, f *legacyFacts, dests []legacyDestination) []cases.Request {
	var seeds []cases.Request
	for _, d := range dests {
		seeds = append(seeds, legacyRequestTo(d))
	}
	for _, br := range snap.List(policies.KindServiceRoleBinding) {
		b, ok := policies.SpecAs[*legacy.ServiceRoleBinding](br)
		if !ok {
			continue
		}
		rules := b.Actions
		roleNS, roleName := br.Namespace, ""
		switch {
		case b.RoleRef != nil:
			roleName = b.RoleRef.Name
		case b.Role != "":
			roleName = b.Role
			if rest, ok := strings.CutPrefix(b.Role, "/"); ok {
				roleNS, roleName = snap.RootNamespace(), rest
			}
		}
		if roleName != "" {
			if rr := snap.Get(policies.KindServiceRole, roleNS, roleName); rr != nil {
				if role, ok := policies.SpecAs[*legacy.ServiceRole](rr); ok {
					rules = role.Rules
				}
			}
		}
		for _, rule := range rules {
			for _, d := range legacySeedDestinations(br.Namespace, rule, dests) {
				for _, s := range b.Subjects {
					r := legacyRequestTo(d)
					legacySeedRule(&r, rule)
					legacySeedSubject(&r, s)
					seeds = append(seeds, r)
				}
			}
		}
	}
	return seeds
}

// seedDestinations are the destinations of namespace ns the rule's services
// name (all of them when none is named precisely).
func legacySeedDestinations(ns string, rule *legacy.AccessRule, dests []legacyDestination) []legacyDestination {
	var inNS, named []legacyDestination
	for _, d := range dests {
		if d.Namespace != ns {
			continue
		}
		inNS = append(inNS, d)
		for _, svc := range d.Services {
			for _, p := range rule.Services {
				if legacyStringMatch(svc, p) || legacyStringMatch(strings.Split(svc, ".")[0], p) {
					named = append(named, d)
				}
			}
		}
	}
	if len(named) > 0 {
		return named
	}
	return inNS
}

func legacySeedRule(r *cases.Request, rule *legacy.AccessRule) {
	if len(rule.Methods) > 0 {
		r.Method = legacyConcrete(rule.Methods[0])
	} else if len(rule.NotMethods) > 0 {
		r.Method = legacyUnseenMethod(rule.NotMethods)
	}
	if len(rule.Paths) > 0 {
		r.Path = legacyConcretePath(rule.Paths[0])
	}
	if len(rule.Hosts) > 0 {
		r.Host = legacyConcrete(rule.Hosts[0])
	}
	if len(rule.Ports) > 0 {
		r.Destination.Port = uint32(rule.Ports[0])
	}
	for _, c := range rule.Constraints {
		if c == nil || len(c.Values) == 0 {
			continue
		}
		v := c.Values[0]
		switch key := c.Key; {
		case key == "destination.ip":
			r.Destination.IP = legacyConcreteIP(v)
		case key == "destination.port":
			if p, err := strconv.Atoi(v); err == nil {
				r.Destination.Port = uint32(p)
			}
		case key == "destination.user":
			legacySetServiceAccount(r, legacyConcrete(v))
		case key == "connection.sni":
			r.SNI = legacyConcrete(v)
		case strings.HasPrefix(key, "destination.labels["):
			name, _ := legacyBracketName(strings.TrimPrefix(key, "destination.labels"))
			r.Destination.Labels = legacyWithKey(r.Destination.Labels, name, legacyConcrete(v))
		case strings.HasPrefix(key, "request.headers["):
			name, _ := legacyBracketName(strings.TrimPrefix(key, "request.headers"))
			r.Headers = legacyWithKey(r.Headers, strings.ToLower(name), legacyConcrete(v))
		case strings.HasPrefix(key, "experimental.envoy.filters."):
			if filter, mkey, ok := legacyMetadataKey(key); ok {
				if legacyListPattern(v) {
					legacySetMetadata(r, [2]string{filter, mkey}, []any{legacyConcrete(strings.Trim(v, "[]"))})
				} else {
					legacySetMetadata(r, [2]string{filter, mkey}, legacyConcrete(v))
				}
			}
		}
	}
}

func legacySeedSubject(r *cases.Request, s *legacy.Subject) {
	switch {
	case s.User != "":
		legacySetPrincipal(r, legacyConcretePrincipal(s.User))
	case len(s.Names) > 0:
		legacySetPrincipal(r, legacyConcretePrincipal(s.Names[0]))
	case len(s.Namespaces) > 0:
		legacySetPrincipal(r, legacyPrincipalInNamespace(s.Namespaces[0]))
	default:
		legacySetPrincipal(r, legacySpaceStranger)
	}
	if s.Group != "" {
		legacySetClaim(r, "groups", []any{legacyConcrete(s.Group)})
	} else if len(s.Groups) > 0 {
		legacySetClaim(r, "groups", []any{legacyConcrete(s.Groups[0])})
	}
	if len(s.Ips) > 0 {
		r.Source.IP = legacyConcreteIP(s.Ips[0])
	}
	for _, k := range slices.Sorted(maps.Keys(s.Properties)) {
		v := s.Properties[k]
		switch {
		case k == "source.ip":
			r.Source.IP = legacyConcreteIP(v)
		case k == "source.namespace":
			if s.User == "" && len(s.Names) == 0 && s.Properties["source.principal"] == "" {
				legacySetPrincipal(r, legacyPrincipalInNamespace(v))
			}
		case k == "source.principal":
			legacySetPrincipal(r, legacyConcretePrincipal(v))
		case k == "request.auth.principal" || k == "request.auth.audiences" || k == "request.auth.presenter":
			legacySetMetadata(r, [2]string{"istio_authn", k}, legacyConcrete(v))
		case strings.HasPrefix(k, "request.headers["):
			name, _ := legacyBracketName(strings.TrimPrefix(k, "request.headers"))
			r.Headers = legacyWithKey(r.Headers, strings.ToLower(name), legacyConcrete(v))
		case strings.HasPrefix(k, "request.auth.claims["):
			name, _ := legacyBracketName(strings.TrimPrefix(k, "request.auth.claims"))
			legacySetClaim(r, name, []any{legacyConcrete(v)})
		}
	}
}

// legacyStringMatch is Istio's stringMatch for one pattern: exact, "*",
// "prefix*" or "*suffix".
func legacyStringMatch(s, pattern string) bool {
	switch {
	case pattern == "*" || s == pattern:
		return true
	case strings.HasPrefix(pattern, "*"):
		return strings.HasSuffix(s, pattern[1:])
	case strings.HasSuffix(pattern, "*"):
		return strings.HasPrefix(s, strings.TrimSuffix(pattern, "*"))
	}
	return false
}
