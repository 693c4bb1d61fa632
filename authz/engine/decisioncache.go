package engine

import (
	"encoding/binary"
	"hash/maphash"
	"math"
	"sync"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/garrison-mesh/garrison/internal/twogen"
)

// decisionCache remembers the decisions of one policy set by the input
// Decide evaluated. That input holds only what some rule of the set reads
// (InputPaths, CONTRACT.md E6), and evaluation is a pure function of the
// input and the set's data when no rule calls a builtin whose answer
// changes between calls (see cacheable), so a decision found here is the
// one OPA would compute. Requests that differ only in what no policy reads
// (request ids, trace headers, most of the headers, the source port) share
// an entry: on a mesh's traffic most Checks are repeats, and a repeat costs
// a map lookup instead of an evaluation (FIELD-NOTES: 17-23 µs of OPA alone).
//
// A new policy set starts with an empty cache, so no entry outlives the
// policies that made it. Memory is bounded: entries live in two
// generations; when the young one is full, the old one is dropped and the
// young one becomes old. A hit in the old generation moves the entry to the
// young one, so what is used stays (an LRU approximation without a list to
// update on every hit; internal/twogen). The cache is sharded to keep 16
// concurrent callers off one lock.
type decisionCache struct {
	shards [cacheShards]*twogen.Map[string, *Decision]
}

const cacheShards = 16

// newDecisionCache holds up to about size decisions (two generations of
// size/2 across the shards); size < 1 is no cache.
func newDecisionCache(size int) *decisionCache {
	if size < 1 {
		return nil
	}
	per := max(1, size/(2*cacheShards))
	c := &decisionCache{}
	for i := range c.shards {
		c.shards[i] = twogen.New[string, *Decision](per)
	}
	return c
}

func (c *decisionCache) shard(key []byte) *twogen.Map[string, *Decision] {
	return c.shards[maphash.Bytes(shardSeed, key)%cacheShards]
}

var shardSeed = maphash.MakeSeed()

// get returns the cached decision for key; the caller must not modify it.
// The conversion in the lookup does not allocate.
func (c *decisionCache) get(key []byte) (*Decision, bool) {
	return c.shard(key).Get(string(key))
}

// put caches d, which must not change afterwards, for key.
func (c *decisionCache) put(key []byte, d *Decision) {
	c.shard(key).Put(string(key), d)
}

// len is the number of entries, for tests and metrics.
func (c *decisionCache) len() int {
	n := 0
	for _, s := range c.shards {
		n += s.Len()
	}
	return n
}

// Value tags of appendKey's encoding.
const (
	tagNull byte = iota
	tagFalse
	tagTrue
	tagNumber
	tagString
	tagArray
	tagObject
	tagSet
	tagOther
)

// appendKey appends to buf an encoding of v that is equal for two values
// exactly when they are equal as OPA compares them: every value is tagged
// with its type, strings and numbers carry their length, containers their
// element count, and object keys and set elements come in OPA's sorted
// order. It is written for the key of the decision cache rather than taken
// from Value.String because it must not allocate per request and must be
// unambiguous (a string holding `", "` must not read as two elements).
func appendKey(buf []byte, v ast.Value) []byte {
	w := keyWriter{buf: buf}
	w.value(v)
	return w.buf
}

// keyWriter holds the buffer the encoding grows, so that the callbacks of
// OPA's container iteration capture one pointer rather than the slice.
type keyWriter struct {
	buf []byte
}

func (w *keyWriter) value(v ast.Value) {
	switch x := v.(type) {
	case ast.Null:
		w.buf = append(w.buf, tagNull)
	case ast.Boolean:
		if x {
			w.buf = append(w.buf, tagTrue)
		} else {
			w.buf = append(w.buf, tagFalse)
		}
	case ast.Number:
		// Numbers compare by value: 1 and 1.0 are equal to OPA. Integers
		// and floats that fit take their float64 bits; anything else its
		// text (two texts of one big value would only cost a miss).
		if f, ok := x.Float64(); ok && !math.IsInf(f, 0) {
			w.buf = append(w.buf, tagNumber, 0)
			w.buf = binary.LittleEndian.AppendUint64(w.buf, math.Float64bits(f+0)) // +0 folds -0 into 0
			return
		}
		w.buf = append(w.buf, tagNumber, 1)
		w.buf = appendString(w.buf, string(x))
	case ast.String:
		w.buf = append(w.buf, tagString)
		w.buf = appendString(w.buf, string(x))
	case *ast.Array:
		w.buf = append(w.buf, tagArray)
		w.buf = binary.AppendUvarint(w.buf, uint64(x.Len()))
		for i := range x.Len() {
			w.value(x.Elem(i).Value)
		}
	case ast.Object:
		w.buf = append(w.buf, tagObject)
		w.buf = binary.AppendUvarint(w.buf, uint64(x.Len()))
		x.Foreach(w.pair)
	case ast.Set:
		w.buf = append(w.buf, tagSet)
		w.buf = binary.AppendUvarint(w.buf, uint64(x.Len()))
		x.Foreach(w.term)
	default:
		// Refs, calls, comprehensions: never in an input; their text is
		// unambiguous enough for a key.
		w.buf = append(w.buf, tagOther)
		w.buf = appendString(w.buf, v.String())
	}
}

func (w *keyWriter) pair(k, v *ast.Term) {
	w.value(k.Value)
	w.value(v.Value)
}

func (w *keyWriter) term(t *ast.Term) { w.value(t.Value) }

func appendString(buf []byte, s string) []byte {
	buf = binary.AppendUvarint(buf, uint64(len(s)))
	return append(buf, s...)
}

// keyBuffers are reused key buffers: the key is needed only for the lookup
// and, on a miss, copied into the map by put.
var keyBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

// uncacheableBuiltins answer differently from one call to the next with
// the same arguments (the clock) or reach outside the evaluation. OPA
// marks most such builtins Nondeterministic; these it does not.
var uncacheableBuiltins = map[string]bool{
	"time.now_ns": true,
	"opa.runtime": true,
	"trace":       true,
	"print":       true,
	"rand.intn":   true,
}

// cacheable reports whether every decision of the compiled policy set is a
// function of its input: no rule calls a builtin in uncacheableBuiltins or
// one OPA marks nondeterministic (http.send, uuid.rfc4122, ...).
func cacheable(compiler *ast.Compiler) bool {
	ok := true
	for _, m := range compiler.Modules {
		ast.WalkTerms(m, func(t *ast.Term) bool {
			if !ok {
				return true
			}
			var op ast.Ref
			switch v := t.Value.(type) {
			case ast.Call:
				if len(v) > 0 {
					op, _ = v[0].Value.(ast.Ref)
				}
			case ast.Ref:
				// A builtin called as an expression's operator is a ref
				// term of the expression, not a Call.
				op = v
			}
			if op == nil {
				return false
			}
			name := op.String()
			if uncacheableBuiltins[name] {
				ok = false
			} else if b, found := ast.BuiltinMap[name]; found && b.Nondeterministic {
				ok = false
			}
			return false
		})
	}
	return ok
}
