package engine

import (
	"context"
	"fmt"
	"github.com/garrison-mesh/garrison/authz/internal/meshgen"
	"strings"
	"syscall"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/util"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/garrison-mesh/garrison/authz/compile"
	"github.com/garrison-mesh/garrison/policies"
)

// BenchmarkInput compares building the input straight from the proto with
// what opa-envoy-plugin does (a Go map, then ast.InterfaceToValue), on the
// realistic 15-header request. "same-run" interleaves the direct build and
// the plugin's way in one loop and reports their ratio, so the ratio does
// not depend on what else the machine was doing between sub-benchmarks.
func BenchmarkInput(b *testing.B) {
	req := realisticRequest()
	plugin := NewInputBuilder(InputOptions{Encoding: EncodingPlugin})
	pj := NewInputBuilder(InputOptions{Encoding: EncodingProtoJSON})
	filtered := NewInputBuilder(InputOptions{Headers: []string{"x-tenant", ":path"}})

	b.Run("direct/plugin", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := plugin.Build(req); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("direct/protojson", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := pj.Build(req); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("direct/plugin-2-headers-kept", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := filtered.Build(req); err != nil {
				b.Fatal(err)
			}
		}
	})
	// v1.15.2-envoy: protomap, then ast.InterfaceToValue.
	b.Run("plugin-way/protomap+InterfaceToValue", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := pluginReference(req); err != nil {
				b.Fatal(err)
			}
		}
	})
	// The contract's wording: protojson, JSON decoding, InterfaceToValue.
	b.Run("plugin-way/protojson+InterfaceToValue", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := protojsonReference(req); err != nil {
				b.Fatal(err)
			}
		}
	})
	// ast.InterfaceToValue alone, of a protojson-shaped map built once: the
	// 31 µs of FIELD-NOTES.md.
	b.Run("InterfaceToValue-only", func(b *testing.B) {
		m := protojsonMap(b, req)
		b.ReportAllocs()
		for b.Loop() {
			if _, err := ast.InterfaceToValue(m); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("same-run", func(b *testing.B) {
		m := protojsonMap(b, req)
		var direct, plugin115, i2v time.Duration
		for b.Loop() {
			t0 := time.Now()
			if _, err := plugin.Build(req); err != nil {
				b.Fatal(err)
			}
			t1 := time.Now()
			if _, err := pluginReference(req); err != nil {
				b.Fatal(err)
			}
			t2 := time.Now()
			if _, err := ast.InterfaceToValue(m); err != nil {
				b.Fatal(err)
			}
			t3 := time.Now()
			direct += t1.Sub(t0)
			plugin115 += t2.Sub(t1)
			i2v += t3.Sub(t2)
		}
		n := float64(b.N)
		b.ReportMetric(float64(direct.Nanoseconds())/n, "direct-ns/op")
		b.ReportMetric(float64(plugin115.Nanoseconds())/n, "plugin-ns/op")
		b.ReportMetric(float64(i2v.Nanoseconds())/n, "i2v-ns/op")
		b.ReportMetric(float64(plugin115)/float64(direct), "x-vs-plugin")
		b.ReportMetric(float64(i2v)/float64(direct), "x-vs-i2v")
	})
}

func protojsonMap(b *testing.B, req *authv3.CheckRequest) map[string]any {
	bs, err := protojson.Marshal(req)
	if err != nil {
		b.Fatal(err)
	}
	var m map[string]any
	if err := util.UnmarshalJSON(bs, &m); err != nil {
		b.Fatal(err)
	}
	if err := addPluginKeys(m, req); err != nil {
		b.Fatal(err)
	}
	return m
}

func BenchmarkNormalizePath(b *testing.B) {
	for _, p := range []string{"/api/v1/reviews/0?rating=5&sort=desc", "/api/./v1/../v1/%72eviews/0?rating=5"} {
		b.Run(strings.SplitN(p, "?", 2)[0], func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := NormalizePath(p); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// benchRequest goes to workload app-3 of ns-0, which its ALLOW policy p3
// allows, with 15 headers like realisticRequest.
func benchRequest(withExtensions bool) *authv3.CheckRequest {
	req := realisticRequest()
	a := req.Attributes
	a.Source.Principal = "spiffe://cluster.local/ns/ns-0/sa/client-web"
	a.Destination.Principal = "spiffe://cluster.local/ns/ns-0/sa/app-3"
	a.MetadataContext = nil
	h := a.Request.Http
	h.Path = "/api/v3/items?page=2"
	h.Headers[":path"] = h.Path
	delete(h.Headers, "x-forwarded-proto")
	h.Headers["x-tenant"] = "tenant-0"
	a.ContextExtensions = nil
	if withExtensions {
		a.ContextExtensions = map[string]string{
			ExtNamespace: "ns-0", ExtLabelPrefix + "app": "app-3", ExtWorkload: "Deployment/app-3",
		}
	}
	return req
}

// BenchmarkDecide is Decide end to end (path normalization, input build,
// evaluation, decision) with the real compiler at 10, 1,000 and 10,000
// policies, for a request with Garrison's context extensions and for one
// whose extensions the engine derives. prepare-ms is compile plus prepare
// of the policy set, off the request path.
func BenchmarkDecide(b *testing.B) {
	for _, n := range []int{10, 1_000, 10_000} {
		rs, problems := policies.Parse("bench.yaml", []byte(meshgen.AuthorizationPolicies(n, true)))
		if err := problems.Err(); err != nil {
			b.Fatal(err)
		}
		snap, _ := policies.NewSnapshot(1, rs, policies.SnapshotOptions{})
		start := time.Now()
		res, err := compile.Compile(snap, compile.Options{DenyBodyDetails: true})
		if err != nil {
			b.Fatal(err)
		}
		e, err := NewStatic(res, snap)
		if err != nil {
			b.Fatal(err)
		}
		prepare := time.Since(start)
		// Without the decision cache every Decide evaluates; with it (the
		// default) a repeated request is a lookup.
		uncached, err := NewStaticConfig(Config{DecisionCacheSize: -1}, res, snap)
		if err != nil {
			b.Fatal(err)
		}
		for _, v := range []struct {
			ext   bool
			cache bool
		}{{true, false}, {false, false}, {true, true}} {
			ext := v.ext
			e := e
			if !v.cache {
				e = uncached
			}
			name := fmt.Sprintf("policies=%d/extensions=%s/cache=%t", n, map[bool]string{true: "sent", false: "derived"}[ext], v.cache)
			b.Run(name, func(b *testing.B) {
				req := benchRequest(ext)
				ctx := context.Background()
				d, err := e.Decide(ctx, req)
				if err != nil || !d.Allowed || d.Policy != "ns-0/p3" {
					b.Fatalf("decision %+v, %v", d, err)
				}
				b.ReportAllocs()
				cpu := startCPU()
				for b.Loop() {
					if _, err := e.Decide(ctx, req); err != nil {
						b.Fatal(err)
					}
				}
				cpu.report(b)
				b.ReportMetric(float64(prepare.Milliseconds()), "prepare-ms")
			})
		}
		// The evaluation alone, with the input built once: what Decide
		// adds to OPA is the difference. eval-only is a plain Eval of the
		// prepared query; eval-engine adds the engine's evaluation options
		// (no OPA metrics, no cancellation goroutine, the flat rule cache).
		ps := e.live.Load()
		in, early := ps.resolve(benchRequest(true))
		if early == nil {
			early = ps.build(benchRequest(true), ps.input, &in)
		}
		if early != nil {
			b.Fatal(early)
		}
		b.Run(fmt.Sprintf("policies=%d/eval-only", n), func(b *testing.B) {
			ctx := context.Background()
			b.ReportAllocs()
			cpu := startCPU()
			for b.Loop() {
				if _, err := ps.decide.Eval(ctx, rego.EvalParsedInput(in.value)); err != nil {
					b.Fatal(err)
				}
			}
			cpu.report(b)
		})
		b.Run(fmt.Sprintf("policies=%d/eval-engine", n), func(b *testing.B) {
			ctx := context.Background()
			b.ReportAllocs()
			cpu := startCPU()
			for b.Loop() {
				if _, err := e.eval(ctx, ps.decide, in.value); err != nil {
					b.Fatal(err)
				}
			}
			cpu.report(b)
		})
	}
}

// BenchmarkDecideFreshGoroutine is Decide on a goroutine of its own per
// call, as grpc-go runs a request without stream workers: the evaluation's
// stack is grown from scratch every time (see growStack).
func BenchmarkDecideFreshGoroutine(b *testing.B) {
	rs, problems := policies.Parse("bench.yaml", []byte(meshgen.AuthorizationPolicies(10, true)))
	if err := problems.Err(); err != nil {
		b.Fatal(err)
	}
	snap, _ := policies.NewSnapshot(1, rs, policies.SnapshotOptions{})
	res, err := compile.Compile(snap, compile.Options{DenyBodyDetails: true})
	if err != nil {
		b.Fatal(err)
	}
	e, err := NewStatic(res, snap)
	if err != nil {
		b.Fatal(err)
	}
	req := benchRequest(true)
	ctx := context.Background()
	b.ReportAllocs()
	cpu := startCPU()
	for b.Loop() {
		done := make(chan error)
		go func() {
			_, err := e.Decide(ctx, req)
			done <- err
		}()
		if err := <-done; err != nil {
			b.Fatal(err)
		}
	}
	cpu.report(b)
}

// cpuClock measures the process's CPU time (user and system, every
// thread: the garbage collector's background work included) across a
// benchmark loop. On a busy machine it moves much less than wall time.
type cpuClock struct{ start time.Duration }

func startCPU() cpuClock { return cpuClock{processCPU()} }

func (c cpuClock) report(b *testing.B) {
	b.ReportMetric(float64((processCPU()-c.start).Nanoseconds())/float64(b.N), "cpu-ns/op")
}

func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
