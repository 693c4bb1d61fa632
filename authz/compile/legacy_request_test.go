package compile

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage/inmem"

	regolib "github.com/garrison-mesh/garrison/policies/rego"
)

// legacyRequest is a request as the legacy tests write it; input() builds
// the value opa-envoy-plugin would (CONTRACT §1) with Garrison's context
// extensions (§2). Zero fields take defaults, so a case names only what it
// is about.
type legacyRequest struct {
	// Destination workload: namespace (default foo), labels (default
	// app=httpbin), the FQDNs of its services (default httpbin.<ns>.svc.cluster.local),
	// its service account (default httpbin).
	Namespace      string            `yaml:"namespace" json:"namespace,omitempty"`
	NoNamespace    bool              `yaml:"noNamespace" json:"noNamespace,omitempty"`
	Labels         map[string]string `yaml:"labels" json:"labels,omitempty"`
	Services       []string          `yaml:"services" json:"services,omitempty"`
	NoServices     bool              `yaml:"noServices" json:"noServices,omitempty"`
	ServiceAccount string            `yaml:"serviceAccount" json:"serviceAccount,omitempty"`
	DestinationIP  string            `yaml:"destinationIP" json:"destinationIP,omitempty"`
	Port           int               `yaml:"port" json:"port,omitempty"`
	SNI            string            `yaml:"sni" json:"sni,omitempty"`

	// Principal is the peer identity without spiffe:// (empty: plaintext).
	// PrincipalFrom says where it is: "both" (default: peer certificate
	// and istio_authn), "cert" or "authn".
	Principal     string `yaml:"principal" json:"principal,omitempty"`
	PrincipalFrom string `yaml:"principalFrom" json:"principalFrom,omitempty"`
	SourceIP      string `yaml:"sourceIP" json:"sourceIP,omitempty"`

	// TCP leaves request.http out (the network ext_authz filter).
	TCP     bool              `yaml:"tcp" json:"tcp,omitempty"`
	Method  string            `yaml:"method" json:"method,omitempty"`
	Path    string            `yaml:"path" json:"path,omitempty"`
	Host    string            `yaml:"host" json:"host,omitempty"`
	Headers map[string]string `yaml:"headers" json:"headers,omitempty"`

	// Authn is more of what authentication recorded (istio_authn):
	// request.auth.principal, request.auth.audiences, request.auth.presenter,
	// request.auth.claims.
	Authn map[string]any `yaml:"authn" json:"authn,omitempty"`
	// Metadata is more dynamic metadata, by filter name.
	Metadata map[string]map[string]any `yaml:"metadata" json:"metadata,omitempty"`
}

func (r legacyRequest) withDefaults() legacyRequest {
	if r.Namespace == "" {
		r.Namespace = "foo"
	}
	if r.Labels == nil {
		r.Labels = map[string]string{"app": "httpbin"}
	}
	if r.Services == nil && !r.NoServices {
		r.Services = []string{"httpbin." + r.Namespace + ".svc.cluster.local"}
	}
	if r.ServiceAccount == "" {
		r.ServiceAccount = "httpbin"
	}
	if r.DestinationIP == "" {
		r.DestinationIP = "10.1.0.1"
	}
	if r.Port == 0 {
		r.Port = 8000
	}
	if r.SourceIP == "" {
		r.SourceIP = "10.0.0.1"
	}
	if r.Method == "" {
		r.Method = "GET"
	}
	if r.Path == "" {
		r.Path = "/"
	}
	if r.Host == "" {
		r.Host = "httpbin." + r.Namespace
	}
	return r
}

// input builds the input document.
func (r legacyRequest) input() map[string]any {
	r = r.withDefaults()
	source := map[string]any{
		"address": map[string]any{"socketAddress": map[string]any{"address": r.SourceIP, "portValue": 43210}},
	}
	authn := map[string]any{}
	if r.Principal != "" {
		if r.PrincipalFrom != "authn" {
			source["principal"] = "spiffe://" + r.Principal
		}
		if r.PrincipalFrom != "cert" {
			authn["source.principal"] = r.Principal
			// Istio's authn filter also recorded the namespace of the identity.
			if parts := strings.Split(r.Principal, "/"); len(parts) == 5 && parts[1] == "ns" {
				authn["source.namespace"] = parts[2]
			}
		}
	}
	maps.Copy(authn, r.Authn)
	attrs := map[string]any{
		"source": source,
		"destination": map[string]any{
			"address":   map[string]any{"socketAddress": map[string]any{"address": r.DestinationIP, "portValue": r.Port}},
			"principal": "spiffe://cluster.local/ns/" + r.Namespace + "/sa/" + r.ServiceAccount,
		},
	}
	if !r.TCP {
		headers := map[string]any{":authority": r.Host, ":method": r.Method, ":path": r.Path, ":scheme": "http"}
		for k, v := range r.Headers {
			headers[strings.ToLower(k)] = v
		}
		attrs["request"] = map[string]any{"http": map[string]any{
			"id": "4242", "method": r.Method, "headers": headers, "path": r.Path,
			"host": r.Host, "scheme": "http", "protocol": "HTTP/1.1",
		}}
	}
	ext := map[string]any{}
	if !r.NoNamespace {
		ext["garrison.io/namespace"] = r.Namespace
		ext["garrison.io/workload"] = "Deployment/" + r.Labels["app"]
		for k, v := range r.Labels {
			ext["garrison.io/label/"+k] = v
		}
		if len(r.Services) > 0 {
			ext["garrison.io/services"] = strings.Join(r.Services, ",")
		}
	}
	attrs["contextExtensions"] = ext
	filters := map[string]any{}
	for f, m := range r.Metadata {
		filters[f] = m
	}
	if len(authn) > 0 {
		filters["istio_authn"] = authn
	}
	if len(filters) > 0 {
		attrs["metadataContext"] = map[string]any{"filterMetadata": filters}
	}
	if r.SNI != "" {
		attrs["tlsSession"] = map[string]any{"sni": r.SNI}
	}
	path, _, _ := strings.Cut(r.Path, "?")
	parsedPath := []any{}
	for _, seg := range strings.Split(strings.TrimPrefix(path, "/"), "/") {
		parsedPath = append(parsedPath, seg)
	}
	in := map[string]any{
		"attributes":     attrs,
		"version":        map[string]any{"ext_authz": "v3", "encoding": "protojson"},
		"parsed_path":    parsedPath,
		"parsed_query":   map[string]any{},
		"parsed_body":    nil,
		"truncated_body": false,
	}
	if r.TCP {
		delete(in, "parsed_path")
		delete(in, "parsed_query")
	}
	return in
}

// legacyEvaluator evaluates the decision of CONTRACT §5 with real OPA.
type legacyEvaluator struct {
	query rego.PreparedEvalQuery
}

// newLegacyEvaluator prepares data.garrison.authz.decision over modules and
// the library (policies/rego, the real one).
func newLegacyEvaluator(t testing.TB, modules map[string]string, data map[string]any) *legacyEvaluator {
	t.Helper()
	all := regolib.Modules()
	for path, src := range modules {
		if _, dup := all[path]; !dup {
			all[path] = src
		}
	}
	compiler := legacyStrictCompile(t, all)
	if data == nil {
		data = map[string]any{}
	}
	q, err := rego.New(
		rego.Query("data.garrison.authz.decision"),
		rego.Compiler(compiler),
		rego.Store(inmem.NewFromObject(data)),
	).PrepareForEval(context.Background())
	if err != nil {
		t.Fatalf("prepare: %v", err)
	}
	return &legacyEvaluator{query: q}
}

// decide returns the decision object.
func (e *legacyEvaluator) decide(t testing.TB, in map[string]any) map[string]any {
	t.Helper()
	v, err := ast.InterfaceToValue(in)
	if err != nil {
		t.Fatal(err)
	}
	rs, err := e.query.Eval(context.Background(), rego.EvalParsedInput(v))
	if err != nil {
		t.Fatalf("eval: %v", err)
	}
	if len(rs) != 1 || len(rs[0].Expressions) != 1 {
		t.Fatalf("decision undefined for input %v", in)
	}
	d, ok := rs[0].Expressions[0].Value.(map[string]any)
	if !ok {
		t.Fatalf("decision is %T", rs[0].Expressions[0].Value)
	}
	return d
}

// legacyWant is what a behaviour case expects of a decision.
type legacyWant struct {
	Want   string `yaml:"want"`   // allow or deny
	Reason string `yaml:"reason"` // optional
	// Permissive lists the bindings ("<ns>/<name>") rbac_permissive
	// records; nil: not checked, []: none.
	Permissive []string `yaml:"permissive"`
	// Binding, when set, is the binding that decided.
	Binding string `yaml:"binding"`
}

func (w legacyWant) check(d map[string]any) []string {
	var errs []string
	allowed, _ := d["allowed"].(bool)
	switch w.Want {
	case "allow":
		if !allowed {
			errs = append(errs, "denied, want allowed")
		}
	case "deny":
		if allowed {
			errs = append(errs, "allowed, want denied")
		}
	default:
		errs = append(errs, fmt.Sprintf("bad want %q", w.Want))
	}
	if w.Reason != "" && d["reason"] != w.Reason {
		errs = append(errs, fmt.Sprintf("reason %v, want %s", d["reason"], w.Reason))
	}
	if w.Binding != "" && d["policy"] != w.Binding {
		errs = append(errs, fmt.Sprintf("decided by %v, want %s", d["policy"], w.Binding))
	}
	if w.Permissive != nil {
		var got []string
		if list, ok := d["rbac_permissive"].([]any); ok {
			for _, m := range list {
				if obj, ok := m.(map[string]any); ok {
					got = append(got, fmt.Sprint(obj["binding"]))
				}
			}
		}
		slices.Sort(got)
		got = slices.Compact(got)
		want := slices.Clone(w.Permissive)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			errs = append(errs, fmt.Sprintf("rbac_permissive bindings %v, want %v", got, want))
		}
	}
	return errs
}
