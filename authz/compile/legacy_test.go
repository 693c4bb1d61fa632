package compile

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage/inmem"

	"github.com/garrison-mesh/garrison/policies"
	regolib "github.com/garrison-mesh/garrison/policies/rego"
)

// legacyTestOptions are the options every legacy test compiles with.
var legacyTestOptions = Options{TrustDomain: "cluster.local"}

// legacyResources parses YAML files (any warning is fine, an error is not).
func legacyResources(t testing.TB, files map[string][]byte) []*policies.Resource {
	t.Helper()
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	slices.Sort(names)
	var all []*policies.Resource
	for _, name := range names {
		rs, problems := policies.Parse(name, files[name])
		if errs := problems.Errors(); len(errs) > 0 {
			t.Fatalf("parse %s: %v", name, errs)
		}
		all = append(all, rs...)
	}
	return all
}

// legacySnapshot builds a snapshot of resources with a root namespace.
func legacySnapshot(t testing.TB, root string, resources []*policies.Resource) *policies.Snapshot {
	t.Helper()
	snap, problems := policies.NewSnapshot(1, resources, policies.SnapshotOptions{RootNamespace: root})
	if errs := problems.Errors(); len(errs) > 0 {
		t.Fatalf("snapshot: %v", errs)
	}
	return snap
}

// legacyStrictCompile parses modules as Rego v1 and compiles them in strict mode,
// as `opa check --strict` would.
func legacyStrictCompile(t testing.TB, modules map[string]string) *ast.Compiler {
	t.Helper()
	parsed := make(map[string]*ast.Module, len(modules))
	for path, src := range modules {
		m, err := ast.ParseModuleWithOpts(path, src, ast.ParserOptions{RegoVersion: ast.RegoV1})
		if err != nil {
			t.Fatalf("parse %s: %v\n%s", path, err, legacyNumbered(src))
		}
		parsed[path] = m
	}
	c := ast.NewCompiler().WithStrict(true)
	c.Compile(parsed)
	if c.Failed() {
		t.Fatalf("strict compile: %v", c.Errors)
	}
	return c
}

// legacyNumbered prefixes each line of src with its number, for error messages.
func legacyNumbered(src string) string {
	var b strings.Builder
	for i, line := range strings.Split(src, "\n") {
		fmt.Fprintf(&b, "%4d  %s\n", i+1, line)
	}
	return b.String()
}

// legacyRenderModules joins the headers, the warnings and the modules (by
// path) into one golden text.
func legacyRenderModules(modules map[string]string, headers, warnings []string) string {
	paths := make([]string, 0, len(modules))
	for p := range modules {
		paths = append(paths, p)
	}
	slices.Sort(paths)
	var b strings.Builder
	b.WriteString("# headers read: [" + strings.Join(headers, ", ") + "]\n")
	for _, w := range warnings {
		b.WriteString("# warning: " + w + "\n")
	}
	for _, p := range paths {
		b.WriteString("\n# ===== " + p + " =====\n")
		if p == legacyModule {
			// The same for every case: its own golden file.
			b.WriteString("# (the helpers: testdata/legacy/helpers.rego)\n")
			continue
		}
		b.WriteString(modules[p])
	}
	return b.String()
}

// legacyCheckGolden compares got with the golden file (GARRISON_UPDATE_GOLDEN=1
// rewrites it).
func legacyCheckGolden(t *testing.T, file, got string) {
	t.Helper()
	if os.Getenv("GARRISON_UPDATE_GOLDEN") != "" {
		if err := os.WriteFile(file, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("%v (GARRISON_UPDATE_GOLDEN=1 writes it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs from what was compiled (GARRISON_UPDATE_GOLDEN=1 rewrites it); got:\n%s", file, got)
	}
}

// TestLegacyGolden compiles testdata/legacy/<case>-in.yaml and compares the
// modules with <case>-out.rego (GARRISON_UPDATE_GOLDEN=1 rewrites them). The
// modules must pass OPA's strict compile.
func TestLegacyGolden(t *testing.T) {
	ins, err := filepath.Glob(filepath.Join("testdata", "legacy", "*-in.yaml"))
	if err != nil || len(ins) == 0 {
		t.Fatalf("no golden inputs: %v", err)
	}
	for _, in := range ins {
		name := strings.TrimSuffix(filepath.Base(in), "-in.yaml")
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			data, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			snap := legacySnapshot(t, "istio-system", legacyResources(t, map[string][]byte{filepath.ToSlash(in): data}))
			modules, headers, warnings, err := compileLegacyWarnings(snap, legacyTestOptions)
			if err != nil {
				t.Fatal(err)
			}
			legacyStrictCompile(t, modules)
			legacyCheckGolden(t, strings.TrimSuffix(in, "-in.yaml")+"-out.rego", legacyRenderModules(modules, headers, warnings))
		})
	}
	t.Run("helpers", func(t *testing.T) {
		legacyCheckGolden(t, filepath.Join("testdata", "legacy", "helpers.rego"), legacyHelpers("cluster.local"))
	})
}

// TestLegacyNothing: a snapshot without legacy resources compiles to no
// module, so bundles of modern meshes carry no legacy rule.
func TestLegacyNothing(t *testing.T) {
	snap := legacySnapshot(t, "istio-system", nil)
	modules, headers, err := compileLegacy(snap, legacyTestOptions)
	if err != nil || len(modules) != 0 || len(headers) != 0 {
		t.Fatalf("got %d modules, headers %v, err %v", len(modules), headers, err)
	}
}

// TestLegacySharedInputs compiles the legacy resources of every YAML file
// of Istio's test data (shared/conformance/istio; validation sets that must
// be rejected aside) and checks that the modules, with the library, pass
// OPA's strict compile.
func TestLegacySharedInputs(t *testing.T) {
	if _, err := os.Stat(legacyIstioDir); err != nil {
		t.Skipf("conformance data not available: %v", err)
	}
	legacyKinds := map[policies.GroupKind]bool{
		policies.KindServiceRole: true, policies.KindServiceRoleBinding: true,
		policies.KindRbacConfig: true, policies.KindClusterRbacConfig: true,
	}
	files, resources := 0, 0
	err := filepath.WalkDir(legacyIstioDir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".yaml") || strings.Contains(path, "invalid") {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rs, _ := policies.Parse(path, data) // keeps the valid resources
		rs = slices.DeleteFunc(rs, func(r *policies.Resource) bool { return !legacyKinds[r.Kind] })
		if len(rs) == 0 {
			return nil
		}
		snap, _ := policies.NewSnapshot(1, rs, policies.SnapshotOptions{})
		modules, _, err := compileLegacy(snap, legacyTestOptions)
		if err != nil {
			t.Errorf("%s: %v", path, err)
			return nil
		}
		all := regolib.Modules()
		maps.Copy(all, modules)
		legacyStrictCompile(t, all)
		files++
		resources += snap.Len()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files < 20 {
		t.Errorf("only %d files with legacy resources", files)
	}
	t.Logf("compiled %d legacy resources of %d files", resources, files)
}

// newLegacyEvaluator prepares data.garrison.authz.decision over modules and
// the library (policies/rego, the real one).
func newLegacyEvaluator(t testing.TB, modules map[string]string, data map[string]any) *evaluator {
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
	return &evaluator{query: q}
}
