package rego

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/tester"
)

// parseAll parses every library and test module as Rego v1.
func parseAll(t *testing.T, withTests bool) map[string]*ast.Module {
	t.Helper()
	srcs := Modules()
	if withTests {
		for name, src := range TestModules() {
			srcs[name] = src
		}
	}
	mods := map[string]*ast.Module{}
	for name, src := range srcs {
		m, err := ast.ParseModuleWithOpts(name, src, ast.ParserOptions{RegoVersion: ast.RegoV1})
		if err != nil {
			t.Fatalf("parse %s: %v", name, err)
		}
		mods[name] = m
	}
	return mods
}

// TestLibraryStrict compiles the shipped modules as `opa check --strict`
// does.
func TestLibraryStrict(t *testing.T) {
	c := ast.NewCompiler().WithStrict(true).WithDefaultRegoVersion(ast.RegoV1)
	if c.Compile(parseAll(t, false)); c.Failed() {
		t.Fatalf("strict compile: %v", c.Errors)
	}
}

// TestRegoUnitTests runs every *_test.rego with OPA's tester, as `opa test`
// would, and fails on any failing, erroring or skipped test.
func TestRegoUnitTests(t *testing.T) {
	if len(TestModules()) == 0 {
		t.Fatal("no *_test.rego embedded")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	compiler := ast.NewCompiler().WithStrict(true).WithDefaultRegoVersion(ast.RegoV1).WithEnablePrintStatements(true)
	ch, err := tester.NewRunner().
		SetCompiler(compiler).
		SetDefaultRegoVersion(ast.RegoV1).
		SetModules(parseAll(t, true)).
		CapturePrintOutput(true).
		RaiseBuiltinErrors(true).
		RunTests(ctx, nil)
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	ran := 0
	for r := range ch {
		ran++
		switch {
		case r.Error != nil:
			t.Errorf("%s.%s: error: %v", r.Package, r.Name, r.Error)
		case r.Fail:
			at := ""
			if r.FailedAt != nil {
				at = " at " + r.FailedAt.Location.String() + ": " + r.FailedAt.String()
			}
			t.Errorf("%s.%s: FAIL%s %s", r.Package, r.Name, at, strings.TrimSpace(string(r.Output)))
		case r.Skip:
			t.Errorf("%s.%s: skipped", r.Package, r.Name)
		}
	}
	if ran < 20 {
		t.Errorf("only %d Rego tests ran", ran)
	}
	t.Logf("%d Rego tests", ran)
}

// TestModulesPaths pins the bundle layout of CONTRACT section 3.
func TestModulesPaths(t *testing.T) {
	m := Modules()
	if len(m) != 2 || !strings.Contains(m[LibraryPath], "package garrison.authz\n") ||
		!strings.Contains(m[EntryPath], "package envoy.authz\n") {
		t.Fatalf("unexpected modules: %v", keys(m))
	}
	for name := range TestModules() {
		if !strings.HasSuffix(name, "_test.rego") {
			t.Errorf("test module %s", name)
		}
	}
}

func keys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}
