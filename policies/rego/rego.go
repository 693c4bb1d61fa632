// Package rego holds Garrison's hand-written Rego: the authorization library
// (package garrison.authz: the decision and the Istio matching helpers that
// generated policy modules call), the envoy.authz entry point that
// opa-envoy-plugin queries, and their *_test.rego unit tests. The files are
// embedded so that the compiler ships exactly what the tests ran against.
// See authz/CONTRACT.md.
package rego

import (
	"embed"
	"io/fs"
	"strings"
)

//go:embed *.rego envoy/authz/*.rego
var files embed.FS

// Bundle paths of the library modules (CONTRACT section 3).
const (
	LibraryPath = "garrison/authz/library.rego"
	EntryPath   = "envoy/authz/allow.rego"
)

// bundlePaths maps embedded files to where they live in a bundle.
var bundlePaths = map[string]string{
	"library.rego":           LibraryPath,
	"envoy/authz/allow.rego": EntryPath,
}

// Modules returns the library modules keyed by bundle path.
func Modules() map[string]string {
	out := make(map[string]string, len(bundlePaths))
	for file, path := range bundlePaths {
		out[path] = mustRead(file)
	}
	return out
}

// TestModules returns the *_test.rego files keyed by file name. They test
// the modules of Modules and run with OPA's tester (opa test semantics).
func TestModules() map[string]string {
	out := map[string]string{}
	matches, err := fs.Glob(files, "*_test.rego")
	if err != nil {
		panic(err) // the pattern is constant and valid
	}
	for _, m := range matches {
		out[m] = mustRead(m)
	}
	return out
}

func mustRead(name string) string {
	b, err := files.ReadFile(name)
	if err != nil {
		// Only names of embedded files reach here.
		panic("policies/rego: " + err.Error())
	}
	return strings.Clone(string(b))
}
