package bundle_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	opabundle "github.com/open-policy-agent/opa/v1/bundle"
	"github.com/open-policy-agent/opa/v1/rego"

	"github.com/garrison-mesh/garrison/authz/bundle"
	"github.com/garrison-mesh/garrison/authz/compile"
	"github.com/garrison-mesh/garrison/authz/engine"
	"github.com/garrison-mesh/garrison/policies"
)

func modernSet(t *testing.T) *paritySet {
	t.Helper()
	return exampleSet(t, filepath.Join(examplesDir, "bookinfo-modern"))
}

func write(t *testing.T, res *compile.Result, opts bundle.Options) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := bundle.Write(&buf, res, opts); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// tarEntries lists the files of a gzipped tarball.
func tarEntries(t *testing.T, data []byte) []string {
	t.Helper()
	gz, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gz)
	var out []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, h.Name)
	}
}

func sortedKeys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }

// TestWriteIsStandardBundle reads what Write wrote with OPA's bundle reader
// and checks the manifest, the data and the modules, which must pass OPA's
// strict compile (`opa check --strict`).
func TestWriteIsStandardBundle(t *testing.T) {
	s := modernSet(t)
	data := write(t, s.res, bundle.Options{})

	merged := s.res.Merged()
	want := []string{"/.manifest", "/data.json"}
	for _, p := range sortedKeys(merged) {
		want = append(want, "/"+p)
	}
	if got := tarEntries(t, data); !slices.Equal(slices.Sorted(slices.Values(got)), slices.Sorted(slices.Values(want))) {
		t.Errorf("tarball holds %v, want %v", got, want)
	}
	for _, p := range []string{"garrison/authz/library.rego", "envoy/authz/allow.rego", compile.MergedPath} {
		if _, ok := merged[p]; !ok {
			t.Errorf("Merged() has no %s: %v", p, sortedKeys(merged))
		}
	}

	b, err := opabundle.NewReader(bytes.NewReader(data)).Read()
	if err != nil {
		t.Fatalf("OPA's bundle reader: %v", err)
	}
	m := b.Manifest
	if m.Roots == nil || !slices.Equal(*m.Roots, []string{"garrison", "envoy"}) {
		t.Errorf("roots = %v", m.Roots)
	}
	if m.RegoVersion == nil || *m.RegoVersion != 1 {
		t.Errorf("rego_version = %v", m.RegoVersion)
	}
	if !strings.HasPrefix(m.Revision, "sha256:") || len(m.Revision) != len("sha256:")+16 {
		t.Errorf("revision = %q", m.Revision)
	}
	if !reflect.DeepEqual(normalizeJSON(t, b.Data), normalizeJSON(t, s.res.Data)) {
		t.Errorf("data = %v, want %v", b.Data, s.res.Data)
	}
	modules := map[string]*ast.Module{}
	for _, mf := range b.Modules {
		p := strings.TrimPrefix(mf.Path, "/")
		if string(mf.Raw) != merged[p] {
			t.Errorf("module %s differs from Merged()", p)
		}
		if mf.Parsed == nil {
			t.Fatalf("module %s not parsed", p)
		}
		modules[p] = mf.Parsed
	}
	if !slices.Equal(sortedKeys(modules), sortedKeys(merged)) {
		t.Errorf("modules %v, want %v", sortedKeys(modules), sortedKeys(merged))
	}
	c := ast.NewCompiler().WithStrict(true).WithDefaultRegoVersion(ast.RegoV1)
	if c.Compile(modules); c.Failed() {
		t.Errorf("strict compile: %v", c.Errors)
	}
}

func TestWriteIsReproducible(t *testing.T) {
	s := modernSet(t)
	a, b := write(t, s.res, bundle.Options{}), write(t, s.res, bundle.Options{})
	if !bytes.Equal(a, b) {
		t.Error("two writes of one result differ")
	}
	revision := func(data []byte) string {
		t.Helper()
		bb, err := opabundle.NewReader(bytes.NewReader(data)).Read()
		if err != nil {
			t.Fatal(err)
		}
		return bb.Manifest.Revision
	}
	res, err := compile.Compile(s.snap, compile.Options{DenyBodyDetails: false})
	if err != nil {
		t.Fatal(err)
	}
	if revision(write(t, res, bundle.Options{})) == revision(a) {
		t.Error("the revision does not change with the data")
	}
	if got := revision(write(t, s.res, bundle.Options{Revision: "v42"})); got != "v42" {
		t.Errorf("revision = %q, want the one given", got)
	}
}

// TestSplitDecidesTheSame: the per-resource layout holds the same rules.
func TestSplitDecidesTheSame(t *testing.T) {
	ctx := context.Background()
	s := modernSet(t)
	b, err := bundle.Build(s.res, bundle.Options{Split: true})
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, m := range b.Modules {
		paths = append(paths, strings.TrimPrefix(m.Path, "/"))
	}
	if !slices.Equal(paths, sortedKeys(s.res.Modules)) {
		t.Errorf("split modules %v, want Result.Modules %v", paths, sortedKeys(s.res.Modules))
	}
	var buf bytes.Buffer
	if err := opabundle.NewWriter(&buf).Write(*b); err != nil {
		t.Fatal(err)
	}
	read, err := opabundle.NewReader(&buf).Read()
	if err != nil {
		t.Fatal(err)
	}
	q, err := rego.New(rego.Query("data.envoy.authz.allow.allowed"), rego.ParsedBundle("split", &read)).PrepareForEval(ctx)
	if err != nil {
		t.Fatal(err)
	}
	eng, err := engine.NewStatic(s.res, s.snap)
	if err != nil {
		t.Fatal(err)
	}
	inputs := engine.NewInputBuilder(engine.InputOptions{})
	for _, r := range s.requests {
		sent, _, ok := asEnvoySends(ctx, t, eng, r.req)
		if !ok {
			continue
		}
		in, err := inputs.Build(sent)
		if err != nil {
			continue
		}
		d, err := eng.Decide(ctx, sent)
		if err != nil {
			t.Fatal(err)
		}
		rs, err := q.Eval(ctx, rego.EvalParsedInput(in))
		if err != nil || len(rs) != 1 {
			t.Fatalf("%s: %v %v", r.name, rs, err)
		}
		if rs[0].Expressions[0].Value != d.Allowed {
			t.Errorf("%s: split bundle allowed=%v, Garrison %t", r.name, rs[0].Expressions[0].Value, d.Allowed)
		}
	}
}

func TestWriteDir(t *testing.T) {
	ctx := context.Background()
	s := modernSet(t)
	dir := filepath.Join(t.TempDir(), "out")
	// What a reviewer keeps beside the bundle, and a leftover module of a
	// resource deleted since.
	for name, content := range map[string]string{
		"README.md":                          "# reviewed policies\n",
		"envoy/NOTES.txt":                    "not a module\n",
		"garrison/authz/policies/gone.rego":  "package garrison.authz\n",
		"garrison/authz/policies/old/x.rego": "package garrison.authz\n",
	} {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := bundle.WriteDir(dir, s.res, bundle.Options{Split: true}); err != nil {
		t.Fatal(err)
	}
	files, err := bundle.Files(s.res, bundle.Options{Split: true})
	if err != nil {
		t.Fatal(err)
	}
	for name, content := range files {
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil || !bytes.Equal(got, content) {
			t.Errorf("%s: not written as Files() has it (%v)", name, err)
		}
	}
	for _, gone := range []string{"garrison/authz/policies/gone.rego", "garrison/authz/policies/old"} {
		if _, err := os.Stat(filepath.Join(dir, gone)); !os.IsNotExist(err) {
			t.Errorf("%s is left over (%v)", gone, err)
		}
	}
	for _, kept := range []string{"README.md", "envoy/NOTES.txt"} {
		if _, err := os.Stat(filepath.Join(dir, kept)); err != nil {
			t.Errorf("%s was removed: %v", kept, err)
		}
	}

	// Back to one merged module: the per-resource modules go, unchanged
	// files are not rewritten.
	library := filepath.Join(dir, "garrison", "authz", "library.rego")
	old := time.Now().Add(-time.Hour).Truncate(time.Second)
	if err := os.Chtimes(library, old, old); err != nil {
		t.Fatal(err)
	}
	if err := bundle.WriteDir(dir, s.res, bundle.Options{}); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(library); err != nil || !fi.ModTime().Equal(old) {
		t.Errorf("an unchanged module was rewritten (%v)", err)
	}
	var regoFiles []string
	err = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && strings.HasSuffix(p, ".rego") {
			rel, _ := filepath.Rel(dir, p)
			regoFiles = append(regoFiles, filepath.ToSlash(rel))
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := sortedKeys(s.res.Merged()); !slices.Equal(regoFiles, want) {
		t.Errorf("modules after rewriting merged: %v, want %v", regoFiles, want)
	}

	// OPA loads the directory as a bundle.
	q, err := rego.New(rego.Query("data.envoy.authz.allow.allowed"), rego.LoadBundle(dir)).PrepareForEval(ctx)
	if err != nil {
		t.Fatalf("OPA cannot load the directory: %v", err)
	}
	in, err := engine.NewInputBuilder(engine.InputOptions{}).Build(s.requests[0].req)
	if err != nil {
		t.Fatal(err)
	}
	if rs, err := q.Eval(ctx, rego.EvalParsedInput(in)); err != nil || len(rs) != 1 {
		t.Errorf("evaluating the directory bundle: %v %v", rs, err)
	}
}

func TestBuildRejects(t *testing.T) {
	snap, problems := policies.NewSnapshot(1, nil, policies.SnapshotOptions{})
	if len(problems) > 0 {
		t.Fatal(problems)
	}
	res, err := compile.Compile(snap, compile.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bundle.Build(nil, bundle.Options{}); err == nil {
		t.Error("a nil result must be rejected")
	}
	outside := *res
	outside.Modules = maps.Clone(res.Modules)
	outside.Modules["other/x.rego"] = "package other\n\nx := 1\n"
	if _, err := bundle.Build(&outside, bundle.Options{}); err == nil || !strings.Contains(err.Error(), "outside the roots") {
		t.Errorf("a module outside the roots: %v", err)
	}
	escape := *res
	escape.Modules = maps.Clone(res.Modules)
	escape.Modules["garrison/../../x.rego"] = "package other\n"
	if _, err := bundle.Build(&escape, bundle.Options{}); err == nil {
		t.Error("a module path leaving the bundle must be rejected")
	}
	data := *res
	data.Data = map[string]any{"other": 1}
	if _, err := bundle.Build(&data, bundle.Options{}); err == nil || !strings.Contains(err.Error(), "outside the roots") {
		t.Errorf("data outside the roots: %v", err)
	}
}
