package main

import (
	"log/slog"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
)

// gcHeadroom is how much the heap may grow between collections when the
// garbage collector is sized automatically. A Check allocates a few
// kilobytes that die at once, while the live heap (the compiled policies,
// the caches) is large and must be marked on every collection: a small
// live heap (10 to 1,000 policies: 30-150 MB) wants several times its size
// of headroom (at Go's default of 100 the server spent 76-90 µs of CPU per
// Check at 1,000 policies, 69 µs at 400), while a large one (10,000
// policies: 400 MB) wants no more than its own size, or every allocation
// lands in fresh memory the kernel must fault in and the runtime must
// clear (88-138 µs per Check at 400, 81-98 µs at 100, half the RSS).
const gcHeadroom = 256 << 20

// Bounds of the automatic GC percent.
const (
	minGCPercent = 100
	maxGCPercent = 400
)

// gcTuner sizes the garbage collector for serve.
type gcTuner struct {
	auto bool
	log  *slog.Logger
}

// newGCTuner applies a fixed percent when one is asked for (flag > 0) and
// leaves the runtime alone when GOGC is set; otherwise afterSwap sizes the
// collector to the live heap.
func newGCTuner(gogcSet bool, flag int, log *slog.Logger) *gcTuner {
	switch {
	case gogcSet:
		return &gcTuner{log: log}
	case flag > 0:
		debug.SetGCPercent(flag)
		return &gcTuner{log: log}
	}
	debug.SetGCPercent(maxGCPercent) // until the first policy set is live
	return &gcTuner{auto: true, log: log}
}

// afterSwap collects the garbage of a policy-set build, off the request
// path, and, when automatic, sets the GC percent for the new live heap.
func (g *gcTuner) afterSwap() {
	runtime.GC()
	if !g.auto {
		return
	}
	live := liveHeap()
	pct := autoGCPercent(live)
	debug.SetGCPercent(pct)
	g.log.Info("garbage collector sized", "live_heap_mb", live>>20, "gc_percent", pct)
}

// autoGCPercent lets the heap grow by about gcHeadroom, within the bounds.
func autoGCPercent(live uint64) int {
	if live == 0 {
		return maxGCPercent
	}
	return int(min(max(gcHeadroom*100/live, minGCPercent), maxGCPercent))
}

// liveHeap is the heap the last collection found live.
func liveHeap() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return s[0].Value.Uint64()
}
