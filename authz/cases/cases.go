// Package cases is the YAML format of authorization decision tests, shared
// by `garrison policy test` (tests that live beside a policy repository's
// YAML) and the conformance suite (cases any implementation can be driven
// with over the wire). A case is a request, described in the attributes
// Istio's policies speak of, and the decision expected for it.
//
//	# reviews_test.yaml
//	- name: reviewers may read
//	  request:
//	    source: {principal: cluster.local/ns/default/sa/productpage}
//	    destination: {namespace: default, labels: {app: reviews}, port: 9080}
//	    method: GET
//	    path: /reviews/1
//	  expect: {allowed: true, policy: default/reviews-viewer, rule: 0}
//
// The same format describes the requests of authz/compile's behaviour tests
// and authz/bundle's parity tests, which need a few things a policy
// repository's tests rarely do: a TCP connection (Request.TCP), dynamic
// metadata of other filters or of Istio's authn filter beyond Auth
// (Request.Metadata), and expectations about what a decision records
// without deciding (Expect.DryRun, Audit, Permissive) or delegates
// (Expect.Provider, AfterCustom). Everything left out keeps its meaning, so
// files written before these fields read as they did.
package cases

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/types/known/structpb"
	"gopkg.in/yaml.v3"
)

// Case is one request and the decision expected for it.
type Case struct {
	Name    string  `yaml:"name"`
	Request Request `yaml:"request"`
	Expect  Expect  `yaml:"expect"`
	// Line is where the case starts in its file, for failure messages.
	Line int `yaml:"-"`
}

// Request describes a request by the attributes policies match on.
type Request struct {
	Source      Peer        `yaml:"source"`
	Destination Destination `yaml:"destination"`
	Method      string      `yaml:"method"`
	// Path may carry a query string; policies match the path without it.
	Path    string            `yaml:"path"`
	Host    string            `yaml:"host"`
	Scheme  string            `yaml:"scheme"`
	Headers map[string]string `yaml:"headers"`
	// SNI is the TLS server name of the connection.
	SNI string `yaml:"sni"`
	// Auth is the outcome of request (JWT) authentication, as Istio's
	// authn filter reports it; empty means no authenticated request.
	// Give Token instead to have the implementation verify a real token
	// against the RequestAuthentications of the configuration.
	Auth *Auth `yaml:"auth"`
	// Token is a JWT sent as "Authorization: Bearer <token>" (where
	// Istio's RequestAuthentication looks first); the implementation
	// verifies it. A token elsewhere goes in Headers or Path.
	Token string `yaml:"token"`
	// TCP makes the request a connection checked by Envoy's network
	// ext_authz filter: it has no HTTP attributes, so Method, Path, Host,
	// Scheme and Headers must be left out. Legacy RBAC's TCP rules are
	// about such requests.
	TCP bool `yaml:"tcp"`
	// Metadata is more dynamic metadata, by filter name (say
	// envoy.filters.network.mysql_proxy), as Envoy passes it in
	// metadata_context.filter_metadata. Under istio_authn it adds keys to
	// those Auth writes (source.principal for an identity authentication
	// recorded without a peer certificate); a key both write is an error.
	Metadata map[string]map[string]any `yaml:"metadata"`
}

// Peer is the calling side of a connection.
type Peer struct {
	// Principal is the peer's mTLS identity, with or without spiffe://.
	Principal string `yaml:"principal"`
	IP        string `yaml:"ip"`
	Port      uint32 `yaml:"port"`
}

// Destination is the workload called. Namespace, Labels and Services are
// what Garrison's xDS sends as context extensions; leave them out to make
// the implementation derive them from the principal.
type Destination struct {
	Principal string            `yaml:"principal"`
	IP        string            `yaml:"ip"`
	Port      uint32            `yaml:"port"`
	Namespace string            `yaml:"namespace"`
	Labels    map[string]string `yaml:"labels"`
	Services  []string          `yaml:"services"`
}

// Auth is a request principal and its claims.
type Auth struct {
	Principal string         `yaml:"principal"`
	Audiences []string       `yaml:"audiences"`
	Presenter string         `yaml:"presenter"`
	Claims    map[string]any `yaml:"claims"`
}

// Expect is the expected decision. Unset fields are not checked, and a
// field is checked only against an implementation that reports it (see
// Decision): `garrison policy test` and the conformance runner report
// allowed, status, policy, rule and reason today, authz/compile's tests
// everything.
type Expect struct {
	Allowed *bool `yaml:"allowed"`
	// Status is the HTTP status of a denial (403, 401, 400).
	Status int `yaml:"status"`
	// Policy is the deciding resource as namespace/name.
	Policy string `yaml:"policy"`
	Rule   *int   `yaml:"rule"`
	Reason string `yaml:"reason"`
	// Provider is the extension provider a CUSTOM policy delegates the
	// request to; AfterCustom the decision that applies when the provider
	// allows (a DENY or an unmatched ALLOW policy may still deny).
	Provider    string  `yaml:"provider"`
	AfterCustom *Expect `yaml:"afterCustom"`
	// DryRun lists "<namespace>/<name> <ACTION>" of each dry-run policy a
	// rule of which matched, Audit "<namespace>/<name>" of each AUDIT
	// policy that matched, Permissive "<namespace>/<name>" of each legacy
	// ServiceRoleBinding that PERMISSIVE RBAC recorded. Given, even empty,
	// the list is checked exactly (in any order); left out, not at all.
	DryRun     *[]string `yaml:"dryRun"`
	Audit      *[]string `yaml:"audit"`
	Permissive *[]string `yaml:"permissive"`
}

// Decode reads a YAML list of cases, rejecting unknown fields.
func Decode(r io.Reader) ([]Case, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, err
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var out []Case
	if err := dec.Decode(&out); err != nil && err != io.EOF {
		return nil, err
	}
	if len(doc.Content) == 1 && doc.Content[0].Kind == yaml.SequenceNode {
		for i, n := range doc.Content[0].Content {
			if i < len(out) {
				out[i].Line = n.Line
			}
		}
	}
	for i, c := range out {
		if c.Name == "" {
			return nil, fmt.Errorf("line %d: case without a name", c.Line)
		}
		if c.Expect.Allowed == nil {
			return nil, fmt.Errorf("line %d: case %q: expect.allowed is required", c.Line, c.Name)
		}
		if a := c.Expect.AfterCustom; a != nil && a.Allowed == nil {
			return nil, fmt.Errorf("line %d: case %q: expect.afterCustom.allowed is required", c.Line, c.Name)
		}
		out[i] = c
	}
	return out, nil
}

// Context extension keys Garrison's xDS sets (authz/CONTRACT.md section 2).
const (
	extNamespace   = "garrison.io/namespace"
	extLabelPrefix = "garrison.io/label/"
	extServices    = "garrison.io/services"
)

// CheckRequest renders the request as Envoy's ext_authz filter would send
// it to an authorization server configured by Garrison's xDS.
func (r *Request) CheckRequest() (*authv3.CheckRequest, error) {
	if r.TCP && (r.Method != "" || r.Path != "" || r.Host != "" || r.Scheme != "" || len(r.Headers) > 0 || r.Token != "") {
		return nil, errors.New("a tcp request has no method, path, host, scheme, headers or token")
	}
	if r.Token != "" && r.Headers["authorization"] != "" {
		return nil, errors.New("token and an authorization header: give one")
	}
	method := r.Method
	if method == "" {
		method = "GET"
	}
	path := r.Path
	if path == "" {
		path = "/"
	}
	host := r.Host
	if host == "" {
		host = "example"
	}
	scheme := r.Scheme
	if scheme == "" {
		scheme = "http"
	}
	headers := map[string]string{":method": method, ":path": path, ":authority": host, ":scheme": scheme}
	for k, v := range r.Headers {
		headers[strings.ToLower(k)] = v
	}
	if r.Token != "" {
		headers["authorization"] = "Bearer " + r.Token
	}
	src, err := peer(r.Source.Principal, r.Source.IP, r.Source.Port, "10.0.0.1", 40000)
	if err != nil {
		return nil, fmt.Errorf("source: %w", err)
	}
	dst, err := peer(r.Destination.Principal, r.Destination.IP, r.Destination.Port, "10.0.0.2", 8080)
	if err != nil {
		return nil, fmt.Errorf("destination: %w", err)
	}
	ext := map[string]string{}
	if d := r.Destination; d.Namespace != "" {
		ext[extNamespace] = d.Namespace
		for k, v := range d.Labels {
			ext[extLabelPrefix+k] = v
		}
		if len(d.Services) > 0 {
			svcs := append([]string(nil), d.Services...)
			sort.Strings(svcs)
			ext[extServices] = strings.Join(svcs, ",")
		}
	}
	req := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source:            src,
		Destination:       dst,
		ContextExtensions: ext,
	}}
	if !r.TCP {
		req.Attributes.Request = &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Id: "case", Method: method, Path: path, Host: host, Scheme: scheme, Protocol: "HTTP/1.1", Headers: headers,
		}}
	}
	if r.SNI != "" {
		req.Attributes.TlsSession = &authv3.AttributeContext_TLSSession{Sni: r.SNI}
	}
	md, err := r.metadata()
	if err != nil {
		return nil, err
	}
	if len(md) > 0 {
		req.Attributes.MetadataContext = &corev3.Metadata{FilterMetadata: md}
	}
	return req, nil
}

// metadata is the dynamic metadata of the request: Metadata, with Auth's
// keys added under istio_authn.
func (r *Request) metadata() (map[string]*structpb.Struct, error) {
	filters := map[string]map[string]any{}
	for name, fields := range r.Metadata {
		filters[name] = maps.Clone(fields)
	}
	if r.Auth != nil {
		authn := filters["istio_authn"]
		if authn == nil {
			authn = map[string]any{}
			filters["istio_authn"] = authn
		}
		for k, v := range r.Auth.fields() {
			if _, dup := authn[k]; dup {
				return nil, fmt.Errorf("metadata: istio_authn %s is given by auth too", k)
			}
			authn[k] = v
		}
	}
	out := make(map[string]*structpb.Struct, len(filters))
	for name, fields := range filters {
		s, err := structpb.NewStruct(normalizeYAML(fields).(map[string]any))
		if err != nil {
			return nil, fmt.Errorf("metadata of %s: %w", name, err)
		}
		out[name] = s
	}
	return out, nil
}

func peer(principal, ip string, port uint32, defIP string, defPort uint32) (*authv3.AttributeContext_Peer, error) {
	if ip == "" {
		ip = defIP
	}
	if _, err := netip.ParseAddr(ip); err != nil {
		return nil, fmt.Errorf("ip %q: %w", ip, err)
	}
	if port == 0 {
		port = defPort
	}
	if principal != "" && !strings.HasPrefix(principal, "spiffe://") {
		principal = "spiffe://" + principal
	}
	return &authv3.AttributeContext_Peer{
		Principal: principal,
		Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
			Address: ip, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port}}}},
	}, nil
}

// fields are the authentication outcome with the keys of Istio's authn
// filter.
func (a *Auth) fields() map[string]any {
	fields := map[string]any{}
	if a.Principal != "" {
		fields["request.auth.principal"] = a.Principal
	}
	if len(a.Audiences) > 0 {
		auds := make([]any, len(a.Audiences))
		for i, s := range a.Audiences {
			auds[i] = s
		}
		fields["request.auth.audiences"] = auds
	}
	if a.Presenter != "" {
		fields["request.auth.presenter"] = a.Presenter
	}
	if len(a.Claims) > 0 {
		fields["request.auth.claims"] = a.Claims
	}
	return fields
}

// normalizeYAML turns YAML-decoded values (and string lists set from Go)
// into what structpb accepts.
func normalizeYAML(v any) any {
	switch t := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(t))
		for k, x := range t {
			out[k] = normalizeYAML(x)
		}
		return out
	case []any:
		out := make([]any, len(t))
		for i, x := range t {
			out[i] = normalizeYAML(x)
		}
		return out
	case []string:
		out := make([]any, len(t))
		for i, x := range t {
			out[i] = x
		}
		return out
	case int:
		return float64(t)
	case int64:
		return float64(t)
	case uint64:
		return float64(t)
	default:
		return v
	}
}

// Decision is what an implementation answered, in the terms Expect checks.
type Decision struct {
	Allowed bool
	Status  int
	Policy  string
	Rule    *int
	Reason  string
	// Provider is the extension provider the decision delegates to;
	// AfterCustom what applies when it allows.
	Provider    string
	AfterCustom *Decision
	// DryRun, Audit and Permissive are what the decision recorded, written
	// as Expect writes them; nil when the implementation does not say.
	DryRun, Audit, Permissive []string
	// Complete says the implementation reports every field above, so that
	// one left empty means "none" rather than "not reported" and every
	// expectation is checked against it. A stock OPA behind Envoy reports
	// only allowed and status, Garrison's deny header no more than reason,
	// policy and rule; authz/compile's tests, which read the decision
	// object itself, report it all.
	Complete bool
}

// Mismatch explains how got differs from the expectation, or returns "".
// Fields other than allowed and status are checked only when the
// implementation reports them (a stock OPA behind Envoy reports only allowed
// and status) or reports its decisions Complete.
func (e Expect) Mismatch(got Decision) string {
	return strings.Join(e.mismatches(got), "; ")
}

func (e Expect) mismatches(got Decision) []string {
	var diffs []string
	if e.Allowed != nil && *e.Allowed != got.Allowed {
		diffs = append(diffs, fmt.Sprintf("allowed: got %t, want %t", got.Allowed, *e.Allowed))
	}
	if e.Status != 0 && !got.Allowed && got.Status != e.Status {
		diffs = append(diffs, fmt.Sprintf("status: got %d, want %d", got.Status, e.Status))
	}
	if e.Policy != "" && got.Policy != "" && got.Policy != e.Policy {
		diffs = append(diffs, fmt.Sprintf("policy: got %s, want %s", got.Policy, e.Policy))
	}
	if e.Policy != "" && got.Policy == "" && (got.Reason != "" || got.Complete) {
		diffs = append(diffs, fmt.Sprintf("policy: none decided (reason %s), want %s", got.Reason, e.Policy))
	}
	if e.Rule != nil && got.Rule != nil && *got.Rule != *e.Rule {
		diffs = append(diffs, "rule: got "+strconv.Itoa(*got.Rule)+", want "+strconv.Itoa(*e.Rule))
	}
	if e.Rule != nil && got.Rule == nil && got.Complete {
		diffs = append(diffs, "rule: none, want "+strconv.Itoa(*e.Rule))
	}
	if e.Reason != "" && (got.Reason != "" || got.Complete) && got.Reason != e.Reason {
		diffs = append(diffs, fmt.Sprintf("reason: got %s, want %s", got.Reason, e.Reason))
	}
	if e.Provider != "" && (got.Provider != "" || got.Complete) && got.Provider != e.Provider {
		diffs = append(diffs, fmt.Sprintf("provider: got %q, want %s", got.Provider, e.Provider))
	}
	if e.AfterCustom != nil {
		switch {
		case got.AfterCustom != nil:
			for _, d := range e.AfterCustom.mismatches(*got.AfterCustom) {
				diffs = append(diffs, "afterCustom: "+d)
			}
		case got.Complete:
			diffs = append(diffs, "afterCustom: none")
		}
	}
	diffs = appendListMismatch(diffs, "dryRun", e.DryRun, got.DryRun, got.Complete)
	diffs = appendListMismatch(diffs, "audit", e.Audit, got.Audit, got.Complete)
	diffs = appendListMismatch(diffs, "permissive", e.Permissive, got.Permissive, got.Complete)
	return diffs
}

// appendListMismatch compares a recorded list as a set.
func appendListMismatch(diffs []string, name string, want *[]string, got []string, complete bool) []string {
	if want == nil || (got == nil && !complete) {
		return diffs
	}
	w, g := slices.Compact(slices.Sorted(slices.Values(*want))), slices.Compact(slices.Sorted(slices.Values(got)))
	if !slices.Equal(w, g) {
		diffs = append(diffs, fmt.Sprintf("%s: got %q, want %q", name, g, w))
	}
	return diffs
}
