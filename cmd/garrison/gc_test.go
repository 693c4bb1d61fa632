package main

import "testing"

func TestAutoGCPercent(t *testing.T) {
	for _, tc := range []struct {
		live uint64
		want int
	}{
		{0, 400},
		{30 << 20, 400},  // 10 policies: four times the heap is still little
		{128 << 20, 200}, // 256 MB of headroom
		{256 << 20, 100}, // as Go's default
		{1 << 30, 100},   // never below the default
	} {
		if got := autoGCPercent(tc.live); got != tc.want {
			t.Errorf("live %d MB: %d, want %d", tc.live>>20, got, tc.want)
		}
	}
	if liveHeap() == 0 {
		t.Error("the runtime reports no live heap")
	}
}
