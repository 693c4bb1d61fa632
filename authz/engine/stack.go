package engine

// OPA evaluates in continuation-passing style: a decision nests tens of
// kilobytes of Go frames. A goroutine starts with a few kilobytes of stack
// (grpc-go starts one per request), and the runtime grows it by copying,
// doubling each time, and every copy walks and adjusts every frame already
// on the stack: measured in `garrison serve` under load, 31% of the CPU of
// a Check went to copystack. growStack grows the stack once, at the top of
// Decide, where it is shallow and cheap to copy, to a size the evaluation
// then rarely outgrows (BenchmarkDecideFreshGoroutine: a decision on a
// fresh goroutine cost 92 µs of CPU without it, 50 µs with it).

// evalStackBytes is how much stack growStack reserves. The frame is zeroed
// on every call (about a microsecond for 32 KiB), which is why it is not
// larger: a deeper evaluation then grows the stack once more.
const evalStackBytes = 32 << 10

//go:noinline
func growStack() {
	var frame [evalStackBytes]byte
	touchStack(frame[:])
}

// touchStack keeps growStack's frame from being optimised away; it does
// not retain the slice, so the frame stays on the stack.
//
//go:noinline
func touchStack(b []byte) { b[0], b[len(b)-1] = 1, 1 }
