package engine

import (
	"slices"
	"sync"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/topdown"
)

// virtualCache is OPA's cache of rule values for one evaluation
// (topdown.VirtualCache), kept flat. OPA's own is a trie with a hash map per
// path element, built anew for every evaluation: for a decision, which
// caches a dozen refs of four or five terms (data.garrison.authz.facts,
// data.garrison.authz.source_principal, ...), that is most of its
// allocations. Here each frame is a short slice searched linearly, and
// caches are reused across evaluations (virtualCaches).
type virtualCache struct {
	frames [][]cacheEntry
}

type cacheEntry struct {
	ref       ast.Ref
	value     *ast.Term
	undefined bool
}

var _ topdown.VirtualCache = (*virtualCache)(nil)

// virtualCaches are the caches of finished evaluations. A cache holds
// nothing once reset, so any evaluation may take one.
var virtualCaches = sync.Pool{New: func() any {
	return &virtualCache{frames: [][]cacheEntry{make([]cacheEntry, 0, 16)}}
}}

func getVirtualCache() *virtualCache { return virtualCaches.Get().(*virtualCache) }

// release empties c and returns it to the pool. The evaluation that used
// it must be over: OPA keeps no reference to its cache after Eval returns.
func (c *virtualCache) release() {
	c.frames = c.frames[:1]
	base := c.frames[0]
	if cap(base) > 256 {
		// An unusual evaluation cached many refs: do not keep the memory.
		c.frames[0] = make([]cacheEntry, 0, 16)
	} else {
		clear(base) // drop the references to values and refs
		c.frames[0] = base[:0]
	}
	virtualCaches.Put(c)
}

// Push starts a frame (OPA pushes one per `with`).
func (c *virtualCache) Push() { c.frames = append(c.frames, nil) }

// Pop drops the top frame.
func (c *virtualCache) Pop() {
	c.frames[len(c.frames)-1] = nil
	c.frames = c.frames[:len(c.frames)-1]
}

// Get returns the value cached for ref in the top frame: (value, false)
// when defined, (nil, true) when cached as undefined, (nil, false) when
// not cached.
func (c *virtualCache) Get(ref ast.Ref) (*ast.Term, bool) {
	top := c.frames[len(c.frames)-1]
	for i := range top {
		if top[i].ref.Equal(ref) {
			return top[i].value, top[i].undefined
		}
	}
	return nil, false
}

// Put caches value for ref in the top frame; nil records that ref is
// undefined.
func (c *virtualCache) Put(ref ast.Ref, value *ast.Term) {
	top := &c.frames[len(c.frames)-1]
	for i := range *top {
		if (*top)[i].ref.Equal(ref) {
			(*top)[i].value, (*top)[i].undefined = value, value == nil
			return
		}
	}
	// OPA may reuse the slice it passes (a ref being plugged): keep a copy.
	*top = append(*top, cacheEntry{ref: slices.Clone(ref), value: value, undefined: value == nil})
}

// Keys returns the refs with a defined value in the top frame.
func (c *virtualCache) Keys() []ast.Ref {
	var out []ast.Ref
	for _, e := range c.frames[len(c.frames)-1] {
		if e.value != nil {
			out = append(out, e.ref)
		}
	}
	return out
}
