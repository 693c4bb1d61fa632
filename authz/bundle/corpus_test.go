package bundle_test

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	"gopkg.in/yaml.v3"

	"github.com/garrison-mesh/garrison/authz/cases"
	"github.com/garrison-mesh/garrison/authz/compile"
	"github.com/garrison-mesh/garrison/authz/engine"
	"github.com/garrison-mesh/garrison/policies"
	"github.com/garrison-mesh/garrison/policies/source/file"
)

// The parity corpus: policy sets and the requests to decide under each,
// from the examples' decision tests (deploy/examples/*/..._test.yaml, the
// authz/cases format) and from authz/compile's behaviour cases
// (testdata/behaviour.yaml, testdata/legacy-behaviour/*.yaml,
// testdata/istio-builder-cases.yaml with Istio's builder inputs). The
// compile cases are written in that package's own test request formats,
// mirrored here as compileRequest and legacyRequest; their decoding is
// strict, so that a request field added there fails here instead of being
// silently dropped.

const (
	examplesDir     = "../../deploy/examples"
	compileTestdata = "../compile/testdata"
	istioHTTPDir    = "../../../shared/conformance/istio/istio@HEAD/pilot/pkg/security/authz/builder/testdata/http"
)

// paritySet is a compiled policy set and requests to decide under it.
type paritySet struct {
	name     string
	snap     *policies.Snapshot
	res      *compile.Result
	requests []parityRequest
}

type parityRequest struct {
	name string
	req  *authv3.CheckRequest
}

// parityCorpus returns every policy set of the corpus, compiled.
func parityCorpus(t *testing.T) []*paritySet {
	t.Helper()
	var sets []*paritySet
	for _, ex := range []string{"bookinfo", "bookinfo-modern"} {
		sets = append(sets, exampleSet(t, filepath.Join(examplesDir, ex)))
	}
	sets = append(sets, behaviourSets(t)...)
	sets = append(sets, istioBuilderSets(t)...)
	sets = append(sets, legacySets(t)...)
	names := map[string]bool{}
	for _, s := range sets {
		if names[s.name] {
			t.Fatalf("two policy sets named %q", s.name)
		}
		names[s.name] = true
		if len(s.requests) == 0 {
			t.Fatalf("%s: no requests", s.name)
		}
	}
	return sets
}

// exampleSet loads an example directory as garrison policy test does.
func exampleSet(t *testing.T, dir string) *paritySet {
	t.Helper()
	files, err := file.ConfigFiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	var all []*policies.Resource
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		rs, problems := policies.Parse(f, data)
		if errs := problems.Errors(); len(errs) > 0 {
			t.Fatalf("%s: %v", f, errs)
		}
		all = append(all, rs...)
	}
	s := &paritySet{name: filepath.Base(dir)}
	s.snap, s.res = compileSet(t, s.name, all, policies.SnapshotOptions{}, compile.Options{})
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !file.IsTestFile(p) {
			return err
		}
		fh, err := os.Open(p)
		if err != nil {
			return err
		}
		defer fh.Close()
		cs, err := cases.Decode(fh)
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		for _, c := range cs {
			req, err := c.Request.CheckRequest()
			if err != nil {
				return fmt.Errorf("%s:%d: %w", p, c.Line, err)
			}
			s.requests = append(s.requests, parityRequest{name: fmt.Sprintf("%s:%d %s", filepath.Base(p), c.Line, c.Name), req: req})
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// compileSet builds the snapshot of rs and compiles it with deny body
// details on (serve's default).
func compileSet(t *testing.T, name string, rs []*policies.Resource, so policies.SnapshotOptions, co compile.Options) (*policies.Snapshot, *compile.Result) {
	t.Helper()
	snap, problems := policies.NewSnapshot(1, rs, so)
	if errs := problems.Errors(); len(errs) > 0 {
		t.Fatalf("%s: snapshot: %v", name, errs)
	}
	co.DenyBodyDetails = true
	res, err := compile.Compile(snap, co)
	if err != nil {
		t.Fatalf("%s: compile: %v", name, err)
	}
	return snap, res
}

func parseResources(t *testing.T, name string, data []byte) []*policies.Resource {
	t.Helper()
	rs, problems := policies.Parse(name, data)
	if errs := problems.Errors(); len(errs) > 0 {
		t.Fatalf("%s: %v", name, errs)
	}
	return rs
}

// strictDecode decodes node into v, rejecting unknown fields.
func strictDecode(node *yaml.Node, v any) error {
	data, err := yaml.Marshal(node)
	if err != nil {
		return err
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	return dec.Decode(v)
}

func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(data, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// compileOptions mirrors authz/compile's caseOptions.
type compileOptions struct {
	TrustDomain        string   `yaml:"trustDomain"`
	TrustDomainAliases []string `yaml:"trustDomainAliases"`
	NumTrustedProxies  int      `yaml:"numTrustedProxies"`
}

func (o compileOptions) options() compile.Options {
	return compile.Options{TrustDomain: o.TrustDomain, TrustDomainAliases: o.TrustDomainAliases, NumTrustedProxies: o.NumTrustedProxies}
}

// namedNode is a request of a compile case: its name and the request
// mapping, decoded strictly later.
type namedNode struct {
	Name    string    `yaml:"name"`
	Request yaml.Node `yaml:"request"`
}

func behaviourSets(t *testing.T) []*paritySet {
	t.Helper()
	var doc []struct {
		Name     string         `yaml:"name"`
		Options  compileOptions `yaml:"options"`
		Policies string         `yaml:"policies"`
		Requests []namedNode    `yaml:"requests"`
	}
	readYAML(t, filepath.Join(compileTestdata, "behaviour.yaml"), &doc)
	if len(doc) < 30 {
		t.Fatalf("only %d behaviour cases", len(doc))
	}
	var out []*paritySet
	for _, c := range doc {
		s := &paritySet{name: "behaviour/" + c.Name}
		s.snap, s.res = compileSet(t, s.name, parseResources(t, c.Name+".yaml", []byte(c.Policies)), policies.SnapshotOptions{}, c.Options.options())
		s.requests = compileRequests(t, s.name, c.Requests)
		out = append(out, s)
	}
	return out
}

func istioBuilderSets(t *testing.T) []*paritySet {
	t.Helper()
	var doc []struct {
		Input    string         `yaml:"input"`
		Options  compileOptions `yaml:"options"`
		Requests []namedNode    `yaml:"requests"`
	}
	readYAML(t, filepath.Join(compileTestdata, "istio-builder-cases.yaml"), &doc)
	var out []*paritySet
	for _, c := range doc {
		data, err := os.ReadFile(filepath.Join(istioHTTPDir, c.Input))
		if err != nil {
			t.Fatalf("Istio conformance data (shared/conformance/istio beside the repository): %v", err)
		}
		s := &paritySet{name: "istio-builder/" + strings.TrimSuffix(c.Input, "-in.yaml")}
		s.snap, s.res = compileSet(t, s.name, parseResources(t, c.Input, data), policies.SnapshotOptions{}, c.Options.options())
		s.requests = compileRequests(t, s.name, c.Requests)
		out = append(out, s)
	}
	return out
}

func compileRequests(t *testing.T, set string, nodes []namedNode) []parityRequest {
	t.Helper()
	var out []parityRequest
	for _, n := range nodes {
		var r compileRequest
		if n.Request.Kind != 0 {
			if err := strictDecode(&n.Request, &r); err != nil {
				t.Fatalf("%s: %s: %v (a request field authz/compile's tests added? mirror it in compileRequest)", set, n.Name, err)
			}
		}
		out = append(out, parityRequest{name: n.Name, req: r.checkRequest(t)})
	}
	return out
}

// compileRequest mirrors authz/compile's testRequest (request_test.go).
type compileRequest struct {
	Namespace        string            `yaml:"namespace"`
	Labels           map[string]string `yaml:"labels"`
	NoWorkload       bool              `yaml:"noWorkload"`
	Services         string            `yaml:"services"`
	SourceIP         string            `yaml:"sourceIP"`
	Principal        string            `yaml:"principal"`
	DestinationIP    string            `yaml:"destinationIP"`
	Port             int               `yaml:"port"`
	SNI              string            `yaml:"sni"`
	Method           string            `yaml:"method"`
	Host             string            `yaml:"host"`
	Path             string            `yaml:"path"`
	Headers          map[string]string `yaml:"headers"`
	RequestPrincipal string            `yaml:"requestPrincipal"`
	Claims           map[string]any    `yaml:"claims"`
	Metadata         map[string]any    `yaml:"metadata"`
}

// checkRequest is the CheckRequest whose plugin input is what testRequest's
// input() writes by hand, with its defaults.
func (r compileRequest) checkRequest(t *testing.T) *authv3.CheckRequest {
	t.Helper()
	r.Namespace = or(r.Namespace, "foo")
	if r.Labels == nil {
		r.Labels = map[string]string{"app": "httpbin", "version": "v1"}
	}
	r.SourceIP = or(r.SourceIP, "10.0.0.1")
	r.DestinationIP = or(r.DestinationIP, "10.1.0.1")
	if r.Port == 0 {
		r.Port = 8000
	}
	r.Method = or(r.Method, "GET")
	r.Host = or(r.Host, "httpbin.foo.svc.cluster.local")
	r.Path = or(r.Path, "/")
	var ext map[string]string
	if !r.NoWorkload {
		ext = workloadExtensions(r.Namespace, r.Labels, r.Services)
	}
	filters := map[string]any{}
	maps.Copy(filters, r.Metadata)
	if r.RequestPrincipal != "" || r.Claims != nil {
		authn := map[string]any{}
		if r.RequestPrincipal != "" {
			authn["request.auth.principal"] = r.RequestPrincipal
		}
		if r.Claims != nil {
			authn["request.auth.claims"] = r.Claims
		}
		filters["istio_authn"] = authn
	}
	return buildCheckRequest(t, checkParts{
		sourceIP: r.SourceIP, sourcePrincipal: r.Principal,
		destIP: r.DestinationIP, destPort: r.Port,
		http: true, method: r.Method, host: r.Host, path: r.Path, headers: r.Headers,
		ext: ext, sni: r.SNI, filters: filters,
	})
}

func legacySets(t *testing.T) []*paritySet {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(compileTestdata, "legacy-behaviour", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no legacy behaviour cases: %v", err)
	}
	var out []*paritySet
	for _, f := range files {
		var doc []struct {
			Name               string      `yaml:"name"`
			Root               string      `yaml:"root"`
			TrustDomain        string      `yaml:"trustDomain"`
			TrustDomainAliases []string    `yaml:"trustDomainAliases"`
			Policies           string      `yaml:"policies"`
			Requests           []yaml.Node `yaml:"requests"`
		}
		readYAML(t, f, &doc)
		for _, c := range doc {
			s := &paritySet{name: "legacy/" + strings.TrimSuffix(filepath.Base(f), ".yaml") + "/" + c.Name}
			so := policies.SnapshotOptions{RootNamespace: or(c.Root, "istio-system")}
			co := compile.Options{TrustDomain: c.TrustDomain, TrustDomainAliases: c.TrustDomainAliases}
			s.snap, s.res = compileSet(t, s.name, parseResources(t, c.Name+".yaml", []byte(c.Policies)), so, co)
			for _, n := range c.Requests {
				name, r := legacyRequestOf(t, s.name, &n)
				s.requests = append(s.requests, parityRequest{name: name, req: r.checkRequest(t)})
			}
			out = append(out, s)
		}
	}
	return out
}

// legacyWantKeys are the keys of a legacy request mapping that state the
// expectation (authz/compile's legacyWant) rather than the request.
var legacyWantKeys = []string{"name", "want", "reason", "permissive", "binding"}

func legacyRequestOf(t *testing.T, set string, n *yaml.Node) (string, legacyRequest) {
	t.Helper()
	if n.Kind != yaml.MappingNode {
		t.Fatalf("%s: a request is not a mapping", set)
	}
	req := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
	var name string
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Value == "name" {
			name = v.Value
		}
		if !slices.Contains(legacyWantKeys, k.Value) {
			req.Content = append(req.Content, k, v)
		}
	}
	var r legacyRequest
	if err := strictDecode(req, &r); err != nil {
		t.Fatalf("%s: %s: %v (a field authz/compile's legacy tests added? mirror it in legacyRequest or legacyWantKeys)", set, name, err)
	}
	return name, r
}

// legacyRequest mirrors authz/compile's legacyRequest
// (legacy_request_test.go).
type legacyRequest struct {
	Namespace      string                    `yaml:"namespace"`
	NoNamespace    bool                      `yaml:"noNamespace"`
	Labels         map[string]string         `yaml:"labels"`
	Services       []string                  `yaml:"services"`
	NoServices     bool                      `yaml:"noServices"`
	ServiceAccount string                    `yaml:"serviceAccount"`
	DestinationIP  string                    `yaml:"destinationIP"`
	Port           int                       `yaml:"port"`
	SNI            string                    `yaml:"sni"`
	Principal      string                    `yaml:"principal"`
	PrincipalFrom  string                    `yaml:"principalFrom"`
	SourceIP       string                    `yaml:"sourceIP"`
	TCP            bool                      `yaml:"tcp"`
	Method         string                    `yaml:"method"`
	Path           string                    `yaml:"path"`
	Host           string                    `yaml:"host"`
	Headers        map[string]string         `yaml:"headers"`
	Authn          map[string]any            `yaml:"authn"`
	Metadata       map[string]map[string]any `yaml:"metadata"`
}

func (r legacyRequest) checkRequest(t *testing.T) *authv3.CheckRequest {
	t.Helper()
	r.Namespace = or(r.Namespace, "foo")
	if r.Labels == nil {
		r.Labels = map[string]string{"app": "httpbin"}
	}
	if r.Services == nil && !r.NoServices {
		r.Services = []string{"httpbin." + r.Namespace + ".svc.cluster.local"}
	}
	r.ServiceAccount = or(r.ServiceAccount, "httpbin")
	r.DestinationIP = or(r.DestinationIP, "10.1.0.1")
	if r.Port == 0 {
		r.Port = 8000
	}
	r.SourceIP = or(r.SourceIP, "10.0.0.1")
	r.Method = or(r.Method, "GET")
	r.Path = or(r.Path, "/")
	r.Host = or(r.Host, "httpbin."+r.Namespace)
	p := checkParts{
		sourceIP: r.SourceIP, destIP: r.DestinationIP, destPort: r.Port,
		destPrincipal: "spiffe://cluster.local/ns/" + r.Namespace + "/sa/" + r.ServiceAccount,
		http:          !r.TCP, method: r.Method, host: r.Host, path: r.Path, headers: r.Headers,
		sni: r.SNI, filters: map[string]any{},
	}
	authn := map[string]any{}
	if r.Principal != "" {
		if r.PrincipalFrom != "authn" {
			p.sourcePrincipal = "spiffe://" + r.Principal
		}
		if r.PrincipalFrom != "cert" {
			authn["source.principal"] = r.Principal
			if parts := strings.Split(r.Principal, "/"); len(parts) == 5 && parts[1] == "ns" {
				authn["source.namespace"] = parts[2]
			}
		}
	}
	maps.Copy(authn, r.Authn)
	for f, m := range r.Metadata {
		p.filters[f] = m
	}
	if len(authn) > 0 {
		p.filters["istio_authn"] = authn
	}
	if !r.NoNamespace {
		p.ext = workloadExtensions(r.Namespace, r.Labels, strings.Join(r.Services, ","))
	}
	return buildCheckRequest(t, p)
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// workloadExtensions are the context extensions Garrison's xDS sets
// (CONTRACT.md section 2).
func workloadExtensions(ns string, labels map[string]string, services string) map[string]string {
	ext := map[string]string{engine.ExtNamespace: ns, engine.ExtWorkload: "Deployment/" + labels["app"]}
	for k, v := range labels {
		ext[engine.ExtLabelPrefix+k] = v
	}
	if services != "" {
		ext[engine.ExtServices] = services
	}
	return ext
}

// checkParts are the fields the corpus's request formats set.
type checkParts struct {
	sourceIP, sourcePrincipal string
	destIP, destPrincipal     string
	destPort                  int
	http                      bool
	method, host, path        string
	headers                   map[string]string
	ext                       map[string]string
	sni                       string
	filters                   map[string]any
}

func buildCheckRequest(t *testing.T, p checkParts) *authv3.CheckRequest {
	t.Helper()
	addr := func(ip string, port int) *corev3.Address {
		return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
			Address: ip, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(port)}}}}
	}
	attrs := &authv3.AttributeContext{
		Source:            &authv3.AttributeContext_Peer{Address: addr(p.sourceIP, 43210), Principal: p.sourcePrincipal},
		Destination:       &authv3.AttributeContext_Peer{Address: addr(p.destIP, p.destPort), Principal: p.destPrincipal},
		ContextExtensions: p.ext,
	}
	if p.http {
		headers := map[string]string{":authority": p.host, ":method": p.method, ":path": p.path, ":scheme": "http"}
		for k, v := range p.headers {
			headers[strings.ToLower(k)] = v
		}
		attrs.Request = &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Id: "4242", Method: p.method, Headers: headers, Path: p.path, Host: p.host, Scheme: "http", Protocol: "HTTP/1.1",
		}}
	}
	if p.sni != "" {
		attrs.TlsSession = &authv3.AttributeContext_TLSSession{Sni: p.sni}
	}
	if len(p.filters) > 0 {
		md := &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{}}
		for name, v := range p.filters {
			m, ok := v.(map[string]any)
			if !ok {
				t.Fatalf("metadata of filter %s is %T, not a mapping", name, v)
			}
			s, err := structpb.NewStruct(m)
			if err != nil {
				t.Fatalf("metadata of filter %s: %v", name, err)
			}
			md.FilterMetadata[name] = s
		}
		attrs.MetadataContext = md
	}
	return &authv3.CheckRequest{Attributes: attrs}
}

// asEnvoySends turns a corpus request into what Envoy sends an
// authorization server under Garrison's xDS: the path normalized by
// Envoy's normalize_path (Envoy itself answers 400 to a path that does not
// normalize: ok is false then) and the context extensions set, derived
// from the snapshot as the engine derives them when the request names the
// destination by principal only. The engine decides the result exactly as
// the request it came from. A plaintext request to a STRICT port (the
// engine's mtls-required) is not sent either: Envoy's listener refuses the
// connection before any filter runs.
func asEnvoySends(ctx context.Context, t *testing.T, eng *engine.Engine, req *authv3.CheckRequest) (out *authv3.CheckRequest, derived, ok bool) {
	t.Helper()
	if d, err := eng.Decide(ctx, req); err == nil && d.Reason == engine.ReasonMTLSRequired {
		return nil, false, false
	}
	out = proto.Clone(req).(*authv3.CheckRequest)
	if h := out.GetAttributes().GetRequest().GetHttp(); h.GetPath() != "" {
		np, err := engine.NormalizePath(h.GetPath())
		if err != nil {
			return nil, false, false
		}
		h.Path = np
		if _, has := h.Headers[":path"]; has {
			h.Headers[":path"] = np
		}
	}
	if out.GetAttributes().GetContextExtensions()[engine.ExtNamespace] != "" {
		return out, false, true
	}
	x, err := eng.Explain(ctx, out)
	if err != nil {
		t.Fatalf("explain: %v", err)
	}
	in, _ := x.Input.(map[string]any)
	attrs, _ := in["attributes"].(map[string]any)
	ext, _ := attrs["contextExtensions"].(map[string]any)
	if len(ext) == 0 {
		return out, false, true
	}
	m := map[string]string{}
	for k, v := range ext {
		s, isString := v.(string)
		if !isString {
			t.Fatalf("context extension %s is %T", k, v)
		}
		m[k] = s
	}
	derived = !maps.Equal(m, out.GetAttributes().GetContextExtensions())
	out.Attributes.ContextExtensions = m
	return out, derived, true
}
