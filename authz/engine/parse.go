package engine

import (
	"fmt"
	"maps"
	"runtime"
	"slices"
	"sync"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/garrison-mesh/garrison/authz/compile"
	regolib "github.com/garrison-mesh/garrison/policies/rego"
)

// parseModules parses a compiled policy set for OPA's compiler: the
// modules one per resource (Result.Modules) on every core, then every
// generated module of package garrison.authz gathered into one module, as
// Result.Merged() gathers their source (CONTRACT.md C1b: OPA's compiler
// costs modules x rules within a package). Parsing the merged source
// instead would give the same rules on one core, in twice the time on two:
// parsing is about a third of preparing a large policy set. Each rule keeps
// the location of its resource's module.
func parseModules(res *compile.Result) (map[string]*ast.Module, error) {
	names := slices.Sorted(maps.Keys(res.Modules))
	parsed := make([]*ast.Module, len(names))
	errs := make([]error, len(names))
	var next sync.Mutex
	i := 0
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), len(names)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				next.Lock()
				k := i
				i++
				next.Unlock()
				if k >= len(names) {
					return
				}
				parsed[k], errs[k] = ast.ParseModuleWithOpts(names[k], res.Modules[names[k]], ast.ParserOptions{RegoVersion: ast.RegoV1})
			}
		}()
	}
	wg.Wait()

	library := regolib.Modules()
	out := make(map[string]*ast.Module, len(library)+1)
	var merged *ast.Module
	for k, name := range names {
		if errs[k] != nil {
			return nil, fmt.Errorf("engine: %w", errs[k])
		}
		m := parsed[k]
		if _, lib := library[name]; lib || len(m.Imports) > 0 || !m.Package.Path.Equal(authzPackage) {
			out[name] = m
			continue
		}
		if merged == nil {
			merged = &ast.Module{Package: m.Package}
			merged.SetRegoVersion(ast.RegoV1)
		}
		// The compiler copies every module it is given (and points each
		// rule at the copy), so the rules may be shared here.
		merged.Rules = append(merged.Rules, m.Rules...)
	}
	if merged != nil {
		if _, clash := out[compile.MergedPath]; clash {
			return nil, fmt.Errorf("engine: module %s is generated", compile.MergedPath)
		}
		out[compile.MergedPath] = merged
	}
	return out, nil
}

// authzPackage is data.garrison.authz, the package of every generated rule.
var authzPackage = ast.MustParseRef("data.garrison.authz")
