package engine

import (
	"context"
	"testing"

	"github.com/garrison-mesh/garrison/authz/compile"
	"github.com/garrison-mesh/garrison/policies"
)

//go:noinline
func zzGrow16() {
	var frame [16 << 10]byte
	touchStack(frame[:])
}

//go:noinline
func zzGrow24() {
	var frame [24 << 10]byte
	touchStack(frame[:])
}

func BenchmarkZZStack(b *testing.B) {
	e := benchEngine(b, 1000)
	ps := e.live.Load()
	req := benchRequest(true)
	ctx := context.Background()
	for _, g := range []struct {
		name string
		f    func()
	}{{"none", func() {}}, {"16K", zzGrow16}, {"24K", zzGrow24}, {"32K", growStack}} {
		for _, fresh := range []bool{true, false} {
			b.Run(g.name+map[bool]string{true: "/fresh", false: "/same"}[fresh], func(b *testing.B) {
				b.ReportAllocs()
				cpu := startCPU()
				run := func() {
					g.f()
					in, _ := ps.prepareInput(req, ps.input)
					if _, err := e.eval(ctx, ps.decide, in.value); err != nil {
						b.Error(err)
					}
				}
				for b.Loop() {
					if fresh {
						done := make(chan struct{})
						go func() { run(); close(done) }()
						<-done
					} else {
						run()
					}
				}
				cpu.report(b)
			})
		}
	}
}

func benchEngine(b *testing.B, n int) *Engine {
	rs, _ := policies.Parse("bench.yaml", []byte(benchPolicies(n)))
	snap, _ := policies.NewSnapshot(1, rs, policies.SnapshotOptions{})
	res, err := compile.Compile(snap, compile.Options{DenyBodyDetails: true})
	if err != nil {
		b.Fatal(err)
	}
	e, err := NewStatic(res, snap)
	if err != nil {
		b.Fatal(err)
	}
	return e
}
