// Package twogen is a bounded map for caches on the request path: entries
// live in two generations; when the young one is full the old one is
// dropped and the young one becomes old, and a hit in the old generation
// moves the entry back to the young one. What is used stays, memory is
// bounded by twice the generation size, and a hit costs a map lookup with
// no list to reorder (an approximation of LRU good enough for caches whose
// entries are all equally cheap to recompute).
package twogen

import "sync"

// Map is safe for concurrent use. The zero value is not usable: use New.
type Map[K comparable, V any] struct {
	mu    sync.Mutex
	young map[K]V
	old   map[K]V
	limit int // entries per generation
}

// New returns a map holding up to 2*perGeneration entries (at least 2).
func New[K comparable, V any](perGeneration int) *Map[K, V] {
	perGeneration = max(1, perGeneration)
	return &Map[K, V]{young: make(map[K]V, min(perGeneration, 1024)), limit: perGeneration}
}

// Get returns the value cached for k.
func (m *Map[K, V]) Get(k K) (V, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if v, ok := m.young[k]; ok {
		return v, true
	}
	if v, ok := m.old[k]; ok {
		delete(m.old, k)
		m.putLocked(k, v)
		return v, true
	}
	var zero V
	return zero, false
}

// Put caches v for k.
func (m *Map[K, V]) Put(k K, v V) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.putLocked(k, v)
}

func (m *Map[K, V]) putLocked(k K, v V) {
	if len(m.young) >= m.limit {
		m.old = m.young
		m.young = make(map[K]V, len(m.old))
	}
	m.young[k] = v
}

// Len is the number of entries.
func (m *Map[K, V]) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.young) + len(m.old)
}
