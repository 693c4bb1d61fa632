package bundle_test

import (
	"cmp"
	"context"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/proto"
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
// testdata/istio-builder-cases.yaml with Istio's builder inputs). All of
// them describe requests in the authz/cases format; the compile files wrap
// them in cases of their own (policies, options), of which only what the
// policy set needs is read here.

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
		for i, c := range cs {
			cs[i].Name = fmt.Sprintf("%s:%d %s", filepath.Base(p), c.Line, c.Name)
		}
		s.requests = append(s.requests, caseRequests(t, s.name, cs)...)
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

func behaviourSets(t *testing.T) []*paritySet {
	t.Helper()
	var doc []struct {
		Name     string         `yaml:"name"`
		Options  compileOptions `yaml:"options"`
		Policies string         `yaml:"policies"`
		Requests []cases.Case   `yaml:"requests"`
	}
	readYAML(t, filepath.Join(compileTestdata, "behaviour.yaml"), &doc)
	if len(doc) < 30 {
		t.Fatalf("only %d behaviour cases", len(doc))
	}
	var out []*paritySet
	for _, c := range doc {
		s := &paritySet{name: "behaviour/" + c.Name}
		s.snap, s.res = compileSet(t, s.name, parseResources(t, c.Name+".yaml", []byte(c.Policies)), policies.SnapshotOptions{}, c.Options.options())
		s.requests = caseRequests(t, s.name, c.Requests)
		out = append(out, s)
	}
	return out
}

func istioBuilderSets(t *testing.T) []*paritySet {
	t.Helper()
	var doc []struct {
		Input    string         `yaml:"input"`
		Options  compileOptions `yaml:"options"`
		Requests []cases.Case   `yaml:"requests"`
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
		s.requests = caseRequests(t, s.name, c.Requests)
		out = append(out, s)
	}
	return out
}

// caseRequests renders the requests of cases as Envoy would send them.
func caseRequests(t *testing.T, set string, cs []cases.Case) []parityRequest {
	t.Helper()
	var out []parityRequest
	for _, c := range cs {
		req, err := c.Request.CheckRequest()
		if err != nil {
			t.Fatalf("%s: %s: %v", set, c.Name, err)
		}
		out = append(out, parityRequest{name: c.Name, req: req})
	}
	return out
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
			Name               string       `yaml:"name"`
			Root               string       `yaml:"root"`
			TrustDomain        string       `yaml:"trustDomain"`
			TrustDomainAliases []string     `yaml:"trustDomainAliases"`
			Policies           string       `yaml:"policies"`
			Requests           []cases.Case `yaml:"requests"`
		}
		readYAML(t, f, &doc)
		for _, c := range doc {
			s := &paritySet{name: "legacy/" + strings.TrimSuffix(filepath.Base(f), ".yaml") + "/" + c.Name}
			so := policies.SnapshotOptions{RootNamespace: cmp.Or(c.Root, "istio-system")}
			co := compile.Options{TrustDomain: c.TrustDomain, TrustDomainAliases: c.TrustDomainAliases}
			s.snap, s.res = compileSet(t, s.name, parseResources(t, c.Name+".yaml", []byte(c.Policies)), so, co)
			s.requests = caseRequests(t, s.name, c.Requests)
			out = append(out, s)
		}
	}
	return out
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
