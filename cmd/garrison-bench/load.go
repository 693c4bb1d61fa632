package main

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// loadConfig is how a server is driven.
type loadConfig struct {
	callers  int
	conns    int
	duration time.Duration
	count    int // when > 0, send this many Checks instead of for duration
	warmup   time.Duration
}

// result is what one run measured.
type result struct {
	target   string
	policies int
	checks   int
	elapsed  time.Duration
	latency  []time.Duration // sorted
	allowed  int
	denied   int
	errors   int
	// mismatches are answers other than the policies' (allowed where the
	// request should be denied or the reverse).
	mismatches int
	firstError string
	// serverCPU is the server process's CPU time over the run; -1 when
	// the server is not a process the bench knows.
	serverCPU time.Duration
	clientCPU time.Duration
	startup   time.Duration
}

func (r *result) throughput() float64 { return float64(r.checks) / r.elapsed.Seconds() }

func (r *result) percentile(p float64) time.Duration {
	if len(r.latency) == 0 {
		return 0
	}
	i := int(p * float64(len(r.latency)-1))
	return r.latency[i]
}

// cpuPerCheck is the server's CPU time per Check, or -1.
func (r *result) cpuPerCheck() time.Duration {
	if r.serverCPU < 0 || r.checks == 0 {
		return -1
	}
	return r.serverCPU / time.Duration(r.checks)
}

func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// drive sends reqs (round robin) to s from cfg.callers goroutines over
// cfg.conns connections: first a warm-up whose answers are not counted,
// then the measured run.
func drive(ctx context.Context, s *server, reqs []request, cfg loadConfig) (*result, error) {
	conns := make([]authv3.AuthorizationClient, cfg.conns)
	for i := range conns {
		conn, err := grpc.NewClient(s.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return nil, err
		}
		defer conn.Close()
		conns[i] = authv3.NewAuthorizationClient(conn)
		// Connect before the clock starts.
		if _, err := conns[i].Check(ctx, reqs[0].req, grpc.WaitForReady(true)); err != nil {
			return nil, fmt.Errorf("%s: first Check: %w", s.name, err)
		}
	}
	if cfg.warmup > 0 {
		if _, err := runLoad(ctx, conns, reqs, cfg.callers, cfg.warmup, 0); err != nil {
			return nil, err
		}
	}
	var cpu0 time.Duration
	if s.pid != 0 {
		c, err := processCPU(s.pid)
		if err != nil {
			return nil, err
		}
		cpu0 = c
	}
	client0 := selfCPU()
	res, err := runLoad(ctx, conns, reqs, cfg.callers, cfg.duration, cfg.count)
	if err != nil {
		return nil, err
	}
	res.clientCPU = selfCPU() - client0
	res.serverCPU = -1
	if s.pid != 0 {
		c, err := processCPU(s.pid)
		if err != nil {
			return nil, err
		}
		res.serverCPU = c - cpu0
	}
	res.target = s.name
	res.startup = s.startup
	return res, nil
}

// callerStats is one caller's share, merged at the end.
type callerStats struct {
	latency                         []time.Duration
	allowed, denied, errs, mismatch int
	firstError                      string
}

// runLoad sends Checks until d has passed (count == 0) or count were sent.
func runLoad(ctx context.Context, conns []authv3.AuthorizationClient, reqs []request, callers int, d time.Duration, count int) (*result, error) {
	var next atomic.Int64
	var stop atomic.Bool
	stats := make([]callerStats, callers)
	var wg sync.WaitGroup
	start := time.Now()
	for c := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st := &stats[c]
			st.latency = make([]time.Duration, 0, 1<<14)
			client := conns[c%len(conns)]
			for !stop.Load() && ctx.Err() == nil {
				i := next.Add(1) - 1
				if count > 0 && i >= int64(count) {
					return
				}
				r := &reqs[int(i)%len(reqs)]
				t0 := time.Now()
				resp, err := client.Check(ctx, r.req)
				st.latency = append(st.latency, time.Since(t0))
				switch {
				case err != nil:
					st.errs++
					if st.firstError == "" {
						st.firstError = err.Error()
					}
					continue
				case resp.GetOkResponse() != nil:
					st.allowed++
					if !r.allowed {
						st.mismatch++
					}
				default:
					st.denied++
					if r.allowed {
						st.mismatch++
					}
				}
			}
		}()
	}
	if count == 0 {
		select {
		case <-time.After(d):
		case <-ctx.Done():
		}
		stop.Store(true)
	}
	wg.Wait()
	res := &result{elapsed: time.Since(start)}
	for _, st := range stats {
		res.latency = append(res.latency, st.latency...)
		res.allowed += st.allowed
		res.denied += st.denied
		res.errors += st.errs
		res.mismatches += st.mismatch
		if res.firstError == "" {
			res.firstError = st.firstError
		}
	}
	res.checks = len(res.latency)
	slices.Sort(res.latency)
	return res, ctx.Err()
}
