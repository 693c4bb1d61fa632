package engine

import (
	"maps"
	"slices"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
)

// fieldSet is the part of the input a policy set can read: the tree of the
// constant paths of its refs to input. A nil *fieldSet, or one with all
// set, stands for everything under it.
type fieldSet struct {
	all bool
	sub map[string]*fieldSet
}

// newFieldSet builds the tree of paths; a path ends where everything under
// it is read. nil paths read everything.
func newFieldSet(paths [][]string) *fieldSet {
	if paths == nil {
		return nil
	}
	root := &fieldSet{}
	for _, p := range paths {
		n := root
		for _, k := range p {
			if n.all {
				break
			}
			c, ok := n.sub[k]
			if !ok {
				if n.sub == nil {
					n.sub = map[string]*fieldSet{}
				}
				c = &fieldSet{}
				n.sub[k] = c
			}
			n = c
		}
		n.all, n.sub = true, nil
	}
	return root
}

// child returns the set under key and whether anything under it is read.
// The set returned is nil when everything under key is read.
func (f *fieldSet) child(key *ast.Term) (*fieldSet, bool) {
	if f == nil || f.all {
		return nil, true
	}
	c, ok := f.sub[string(key.Value.(ast.String))]
	if !ok {
		return nil, false
	}
	if c.all {
		return nil, true
	}
	return c, true
}

// has reports whether anything under key is read.
func (f *fieldSet) has(key *ast.Term) bool {
	_, ok := f.child(key)
	return ok
}

// restrictTerm is what f reads of t: an object keeps the keys f reads,
// each restricted in turn; any other value is read whole (only string keys
// can be constant path elements, and they select object fields only).
func restrictTerm(t *ast.Term, f *fieldSet) *ast.Term {
	if f == nil || f.all {
		return t
	}
	obj, ok := t.Value.(ast.Object)
	if !ok {
		return t
	}
	var kvs [][2]*ast.Term
	obj.Foreach(func(k, v *ast.Term) {
		if _, isString := k.Value.(ast.String); !isString {
			return
		}
		if c, ok := f.child(k); ok {
			kvs = append(kvs, [2]*ast.Term{k, restrictTerm(v, c)})
		}
	})
	return ast.ObjectTerm(kvs...)
}

// InputPaths returns the paths of the input that the compiled policy set
// can read: for every ref to input in its rules, the ref's leading
// constant string keys (input.attributes.request.http.method reads
// ["attributes", "request", "http", "method"]; input.x[y] with y a
// variable reads everything under ["x"]; input itself reads everything,
// which returns nil). Every value the policy set can observe of an input
// restricted to these paths equals that of the whole input, so its
// decisions are the same: leaving out the rest is only cheaper to build.
func InputPaths(c *ast.Compiler) [][]string {
	seen := map[string][]string{}
	everything := false
	visit := func(x any) {
		ast.WalkRefs(x, func(r ast.Ref) bool {
			if everything || !r[0].Equal(ast.InputRootDocument) {
				return false
			}
			var path []string
			for _, t := range r[1:] {
				s, ok := t.Value.(ast.String)
				if !ok {
					break
				}
				path = append(path, string(s))
			}
			if len(path) == 0 {
				everything = true
				return true
			}
			seen[strings.Join(path, "\x00")] = path
			return false
		})
	}
	for _, name := range slices.Sorted(maps.Keys(c.Modules)) {
		m := c.Modules[name]
		for _, r := range m.Rules {
			visit(r)
		}
	}
	if everything {
		return nil
	}
	out := make([][]string, 0, len(seen))
	for _, k := range slices.Sorted(maps.Keys(seen)) {
		out = append(out, seen[k])
	}
	return out
}
