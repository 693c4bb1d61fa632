// Package bundle packs a compiled policy set as a standard OPA bundle
// (../CONTRACT.md section 3): the Rego modules at their bundle paths, the
// base document as data.json, and a .manifest with roots ["garrison",
// "envoy"] and rego_version 1. Stock OPA and opa-envoy-plugin load it
// unchanged (`opa run --server --bundle bundle.tar.gz`) and answer
// data.envoy.authz.allow, the plugin's default path, as Garrison's engine
// decides.
//
// The bundle is built with OPA's own bundle package and is reproducible:
// the same compile result gives the same bytes (no timestamps, files in
// path order, the revision a hash of the content).
package bundle

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	opabundle "github.com/open-policy-agent/opa/v1/bundle"

	"github.com/garrison-mesh/garrison/authz/compile"
)

// Roots are the bundle's roots: the packages and data it owns. A bundle
// with these roots can sit beside other bundles that own other roots.
var Roots = []string{"garrison", "envoy"}

// RegoVersion is the manifest's rego_version: all Garrison Rego is v1.
const RegoVersion = 1

// Paths of the non-module files of a bundle.
const (
	ManifestPath = ".manifest"
	DataPath     = "data.json"
)

// Options tune a bundle.
type Options struct {
	// Revision is the manifest's revision. Empty: "sha256:" and the first 16
	// hex digits of a hash of the modules and data, so that equal policy
	// sets have equal revisions.
	Revision string
	// Split writes one module per resource (compile.Result.Modules, the
	// layout of CONTRACT section 3) instead of compile.Result.Merged().
	// Both hold the same rules and decide the same; the merged form is what
	// OPA should load (CONTRACT C1b: OPA's compiler costs modules x rules
	// within one package), the split form is easier to review.
	Split bool
}

// Build returns the bundle of res: OPA's in-memory form, ready for
// bundle.NewWriter or rego.ParsedBundle.
func Build(res *compile.Result, opts Options) (*opabundle.Bundle, error) {
	if res == nil {
		return nil, errors.New("bundle: no compile result")
	}
	sources := res.Merged()
	if opts.Split {
		sources = res.Modules
	}
	if len(sources) == 0 {
		return nil, errors.New("bundle: the compile result has no modules")
	}
	paths := slices.Sorted(maps.Keys(sources))
	for _, p := range paths {
		if err := checkPath(p); err != nil {
			return nil, err
		}
	}
	data := res.Data
	if data == nil {
		data = map[string]any{}
	}
	for k := range data {
		if !slices.Contains(Roots, k) {
			return nil, fmt.Errorf("bundle: data key %q is outside the roots %v", k, Roots)
		}
	}
	// Round-trip the data through JSON: the bundle holds JSON values, and
	// the revision hashes the same bytes that data.json holds.
	dataJSON, err := json.Marshal(data)
	if err != nil {
		return nil, fmt.Errorf("bundle: data: %w", err)
	}
	var jsonData map[string]any
	if err := json.Unmarshal(dataJSON, &jsonData); err != nil {
		return nil, fmt.Errorf("bundle: data: %w", err)
	}
	revision := opts.Revision
	if revision == "" {
		revision = contentRevision(paths, sources, dataJSON)
	}
	roots := slices.Clone(Roots)
	version := RegoVersion
	b := &opabundle.Bundle{
		Manifest: opabundle.Manifest{Revision: revision, Roots: &roots, RegoVersion: &version},
		Data:     jsonData,
	}
	for _, p := range paths {
		b.Modules = append(b.Modules, opabundle.ModuleFile{
			URL:          "/" + p,
			Path:         "/" + p,
			RelativePath: "/" + p,
			Raw:          []byte(sources[p]),
		})
	}
	return b, nil
}

// checkPath rejects module paths that would escape the bundle or sit
// outside its roots.
func checkPath(p string) error {
	if !strings.HasSuffix(p, ".rego") || !fs.ValidPath(p) {
		return fmt.Errorf("bundle: invalid module path %q", p)
	}
	root, _, _ := strings.Cut(p, "/")
	if !slices.Contains(Roots, root) {
		return fmt.Errorf("bundle: module %s is outside the roots %v", p, Roots)
	}
	return nil
}

func contentRevision(paths []string, sources map[string]string, dataJSON []byte) string {
	h := sha256.New()
	for _, p := range paths {
		fmt.Fprintf(h, "%s\x00%d\x00%s", p, len(sources[p]), sources[p])
	}
	h.Write([]byte(DataPath + "\x00"))
	h.Write(dataJSON)
	return "sha256:" + hex.EncodeToString(h.Sum(nil))[:16]
}

// Write writes the bundle of res to w as a gzipped tarball, as `opa build`
// does and `opa run --bundle` reads.
func Write(w io.Writer, res *compile.Result, opts Options) error {
	b, err := Build(res, opts)
	if err != nil {
		return err
	}
	// The writer writes the modules as generated (OPA's writer does not
	// reformat them): their comments name the resources and rules they come
	// from.
	return opabundle.NewWriter(w).Write(*b)
}

// Files returns the bundle's files by path inside the bundle: .manifest,
// data.json (both indented JSON) and the modules.
func Files(res *compile.Result, opts Options) (map[string][]byte, error) {
	b, err := Build(res, opts)
	if err != nil {
		return nil, err
	}
	manifest, err := json.MarshalIndent(b.Manifest, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("bundle: manifest: %w", err)
	}
	data, err := json.MarshalIndent(b.Data, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("bundle: data: %w", err)
	}
	out := map[string][]byte{
		ManifestPath: append(manifest, '\n'),
		DataPath:     append(data, '\n'),
	}
	for _, m := range b.Modules {
		out[strings.TrimPrefix(m.Path, "/")] = m.Raw
	}
	return out, nil
}

// WriteDir writes the bundle of res as a directory, which `opa run
// --bundle DIR` loads like the tarball. The directory is created if need
// be. What a previous WriteDir left there is replaced: a .rego file under
// the roots' directories (DIR/garrison, DIR/envoy) that the bundle does not
// hold is removed, so that a resource deleted since does not linger; files
// whose content is unchanged are not rewritten; nothing else in DIR is
// touched.
func WriteDir(dir string, res *compile.Result, opts Options) error {
	files, err := Files(res, opts)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("bundle: %w", err)
	}
	keep := map[string]bool{}
	for p := range files {
		keep[filepath.Join(dir, filepath.FromSlash(p))] = true
	}
	for _, root := range Roots {
		if err := removeStaleRego(filepath.Join(dir, root), keep); err != nil {
			return fmt.Errorf("bundle: clearing %s: %w", root, err)
		}
	}
	for _, p := range slices.Sorted(maps.Keys(files)) {
		dst := filepath.Join(dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return fmt.Errorf("bundle: %w", err)
		}
		if err := writeIfChanged(dst, files[p]); err != nil {
			return fmt.Errorf("bundle: %w", err)
		}
	}
	return nil
}

// removeStaleRego removes the .rego files under dir that are not in keep,
// and the directories left empty by that; a missing dir is fine.
func removeStaleRego(dir string, keep map[string]bool) error {
	var dirs []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && p == dir {
				return fs.SkipDir
			}
			return err
		}
		if d.IsDir() {
			dirs = append(dirs, p)
			return nil
		}
		if strings.HasSuffix(d.Name(), ".rego") && d.Type().IsRegular() && !keep[p] {
			return os.Remove(p)
		}
		return nil
	})
	if err != nil {
		return err
	}
	// Deepest first; a directory still holding other files stays.
	for _, d := range slices.Backward(dirs) {
		if entries, err := os.ReadDir(d); err == nil && len(entries) == 0 {
			_ = os.Remove(d)
		}
	}
	return nil
}

// writeIfChanged leaves a file with the same content alone, so that
// reviewing tools and file watchers see only what changed.
func writeIfChanged(p string, data []byte) error {
	if old, err := os.ReadFile(p); err == nil && bytes.Equal(old, data) {
		return nil
	}
	return os.WriteFile(p, data, 0o644)
}
