// Command garrison-bench is a load generator for ext_authz servers: it
// drives envoy.service.auth.v3.Authorization/Check with bookinfo-like
// requests from concurrent callers, as the ext_authz filters of a fleet of
// sidecars would, and reports throughput, latency percentiles and, when the
// server is a process it started (or whose pid it is given), the server's
// CPU time per Check read from /proc/<pid>/stat.
//
// By default it generates a mesh of 10, 1,000 and 10,000
// AuthorizationPolicies (ten per namespace, each namespace a copy of
// bookinfo with its workloads), starts `garrison serve` on each and drives
// it; when bin/opa-envoy-plugin (make peers) exists and the garrison binary
// has `policy compile`, it compiles the same mesh to a bundle, drives
// opa-envoy-plugin with it the same way and prints Garrison/peer ratios.
// Every answer is checked against the decision the policies give.
//
//	garrison-bench                                   # 10, 1,000, 10,000 policies, Garrison and the peer
//	garrison-bench -policies 1000 -d 30s -c 32
//	garrison-bench -write-config /tmp/mesh -policies 1000     # the mesh, for a server started by hand
//	garrison-bench -addr 127.0.0.1:9191 -pid 1234 -policies 1000
//
// The machine's cores are shared by the callers and the server: read the
// CPU per Check and the ratios, not the absolute throughput.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
)

type options struct {
	policies   []int
	garrison   string
	plugin     string
	addr       string
	pid        int
	peerAddr   string
	peerPid    int
	load       loadConfig
	requests   int
	seed       uint64
	env        []string
	timeout    time.Duration
	writeDir   string
	keep       bool
	noPeer     bool
	noGarrison bool
	bare       bool
	serveBare  string
}

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "garrison-bench:", err)
		os.Exit(1)
	}
}

func parseFlags(args []string, stderr io.Writer) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("garrison-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	policies := fs.String("policies", "10,1000,10000", "comma-separated AuthorizationPolicy counts of the generated mesh (multiples of 10)")
	fs.StringVar(&o.garrison, "garrison", "bin/garrison", "garrison binary to start (serve, policy compile)")
	fs.StringVar(&o.plugin, "opa-envoy-plugin", "bin/opa-envoy-plugin", "opa-envoy-plugin binary to run as the peer when it exists (make peers)")
	fs.StringVar(&o.addr, "addr", "", "drive this ext_authz server (Garrison or any other) instead of starting garrison; it must have loaded the mesh of -write-config")
	fs.IntVar(&o.pid, "pid", 0, "with -addr: the server's pid, for its CPU time per Check")
	fs.StringVar(&o.peerAddr, "peer-addr", "", "also drive this ext_authz server as the peer instead of starting opa-envoy-plugin")
	fs.IntVar(&o.peerPid, "peer-pid", 0, "with -peer-addr: the peer's pid")
	fs.IntVar(&o.load.callers, "c", 16, "concurrent callers")
	fs.IntVar(&o.load.conns, "conns", 2, "gRPC connections the callers share (an Envoy opens one per worker)")
	fs.DurationVar(&o.load.duration, "d", 10*time.Second, "measured duration per server")
	fs.IntVar(&o.load.count, "n", 0, "send this many Checks per server instead of for -d")
	fs.DurationVar(&o.load.warmup, "warmup", 2*time.Second, "unmeasured warm-up per server")
	fs.IntVar(&o.requests, "requests", 2048, "distinct requests generated (sent round robin)")
	fs.Uint64Var(&o.seed, "seed", 1, "seed of the generated requests")
	var env listFlag
	fs.Var(&env, "env", "KEY=VALUE added to the environment of the servers started (repeatable), e.g. GOGC=200")
	fs.DurationVar(&o.timeout, "startup-timeout", 10*time.Minute, "how long a server may take to load the mesh")
	fs.StringVar(&o.writeDir, "write-config", "", "write the mesh of -policies (one count) as YAML to this directory and exit")
	fs.BoolVar(&o.keep, "keep", false, "keep the work directory (configuration, bundle, server data)")
	fs.BoolVar(&o.noPeer, "no-peer", false, "do not run the peer")
	fs.BoolVar(&o.noGarrison, "no-garrison", false, "run only the peer")
	fs.BoolVar(&o.bare, "bare", false, "also run a bare grpc-go ext_authz server that allows everything: the floor under any Go server's CPU per Check (its answers are not checked)")
	fs.StringVar(&o.serveBare, "serve-bare", "", "internal: serve the bare server on this address")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	for _, p := range strings.Split(*policies, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(p))
		if err != nil || n < policiesPerNamespace || n%policiesPerNamespace != 0 {
			return nil, fmt.Errorf("-policies: %q is not a multiple of %d", p, policiesPerNamespace)
		}
		o.policies = append(o.policies, n)
	}
	if o.load.callers < 1 || o.load.conns < 1 || o.requests < 1 {
		return nil, errors.New("-c, -conns and -requests must be positive")
	}
	if o.writeDir != "" && len(o.policies) != 1 {
		return nil, errors.New("-write-config takes one -policies count")
	}
	if (o.addr != "" || o.peerAddr != "") && len(o.policies) != 1 {
		return nil, errors.New("-addr and -peer-addr take one -policies count: the mesh the server loaded")
	}
	o.env = env
	return o, nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	if o.serveBare != "" {
		return serveBare(o.serveBare)
	}
	if o.writeDir != "" {
		return writeConfig(filepath.Join(o.writeDir), o.policies[0])
	}
	work, err := os.MkdirTemp("", "garrison-bench-")
	if err != nil {
		return err
	}
	if o.keep {
		fmt.Fprintln(stderr, "work directory:", work)
	} else {
		defer os.RemoveAll(work)
	}
	fmt.Fprintf(stdout, "garrison-bench: %d callers over %d connections, %v per server after %v of warm-up, %d CPUs, %d distinct requests\n",
		o.load.callers, o.load.conns, describeLength(o.load), o.load.warmup, runtime.NumCPU(), o.requests)

	var all [][]*result
	for _, n := range o.policies {
		rs, err := benchPolicies(ctx, o, n, filepath.Join(work, strconv.Itoa(n)), stderr)
		if err != nil {
			return err
		}
		all = append(all, rs)
		report(stdout, rs)
	}
	if len(all) > 1 {
		fmt.Fprintln(stdout, "\nsummary")
		report(stdout, slices.Concat(all...))
	}
	for _, rs := range all {
		for _, r := range rs {
			if r.errors > 0 || r.mismatches > 0 {
				return fmt.Errorf("%s at %d policies: %d errors (%s), %d answers other than the policies'",
					r.target, r.policies, r.errors, r.firstError, r.mismatches)
			}
		}
	}
	return nil
}

func describeLength(l loadConfig) string {
	if l.count > 0 {
		return strconv.Itoa(l.count) + " Checks"
	}
	return l.duration.String()
}

// writeConfig writes the mesh of n policies to dir.
func writeConfig(dir string, n int) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for name, content := range configFiles(n) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// benchPolicies runs every target on the mesh of n policies.
func benchPolicies(ctx context.Context, o *options, n int, dir string, stderr io.Writer) ([]*result, error) {
	reqs := requests(n, o.requests, rand.New(rand.NewPCG(o.seed, uint64(n))))
	if err := writeConfig(filepath.Join(dir, "config"), n); err != nil {
		return nil, err
	}
	var out []*result
	add := func(s *server, err error) error {
		if err != nil {
			return err
		}
		defer s.stop()
		fmt.Fprintf(stderr, "%d policies: driving %s at %s\n", n, s.name, s.addr)
		r, err := drive(ctx, s, reqs, o.load)
		if err != nil {
			return fmt.Errorf("%s: %w\n%s", s.name, err, tail(logsOf(s)))
		}
		r.policies = n
		out = append(out, r)
		return nil
	}

	// Garrison, or the server at -addr.
	switch {
	case o.addr != "":
		if err := add(&server{name: "server at " + o.addr, addr: o.addr, pid: o.pid}, nil); err != nil {
			return nil, err
		}
	case !o.noGarrison:
		if _, err := os.Stat(o.garrison); err != nil {
			return nil, fmt.Errorf("-garrison %s: %w (make build)", o.garrison, err)
		}
		fmt.Fprintf(stderr, "%d policies: starting garrison serve\n", n)
		if err := add(startGarrison(ctx, o.garrison, dir, o.env, o.timeout)); err != nil {
			return nil, err
		}
	}

	// The peer: the server at -peer-addr, or opa-envoy-plugin with the
	// bundle of the same mesh.
	switch {
	case o.noPeer:
	case o.peerAddr != "":
		if err := add(&server{name: "peer at " + o.peerAddr, addr: o.peerAddr, pid: o.peerPid}, nil); err != nil {
			return nil, err
		}
	case o.addr == "":
		if _, err := os.Stat(o.plugin); err != nil {
			fmt.Fprintf(stderr, "%d policies: no peer: %s not found (make peers)\n", n, o.plugin)
			break
		}
		bundle, ok, err := compileBundle(ctx, o.garrison, dir)
		if err != nil {
			return nil, err
		}
		if !ok {
			fmt.Fprintf(stderr, "%d policies: no peer: %s has no `policy compile`\n", n, o.garrison)
			break
		}
		fmt.Fprintf(stderr, "%d policies: starting opa-envoy-plugin\n", n)
		if err := add(startPlugin(ctx, o.plugin, bundle, reqs[0].req, o.env, o.timeout)); err != nil {
			return nil, err
		}
	}
	if o.bare {
		if err := add(startBare(ctx, reqs, o.timeout)); err != nil {
			return nil, err
		}
		// It allows everything: its answers say nothing.
		b := out[len(out)-1]
		b.mismatches, b.allowed, b.denied = 0, b.checks-b.errors, 0
	}
	return out, nil
}

func logsOf(s *server) string {
	if s.logs == nil {
		return ""
	}
	return s.logs.String()
}

// report prints results as a table, and for each Garrison result with a
// peer result of the same policy count, the Garrison/peer ratios.
func report(w io.Writer, rs []*result) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "policies\ttarget\tchecks\tchecks/s\tp50\tp99\tserver CPU/check\tclient CPU/check\tstartup\tallowed\tdenied\terrors\twrong\t")
	for _, r := range rs {
		fmt.Fprintf(tw, "%d\t%s\t%d\t%.0f\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t\n",
			r.policies, r.target, r.checks, r.throughput(), us(r.percentile(0.50)), us(r.percentile(0.99)),
			us(r.cpuPerCheck()), us(r.clientCPU/time.Duration(max(1, r.checks))), startup(r.startup),
			r.allowed, r.denied, r.errors, r.mismatches)
	}
	for i, g := range rs {
		if i+1 >= len(rs) || rs[i+1].policies != g.policies || i > 0 && rs[i-1].policies == g.policies {
			continue
		}
		p := rs[i+1]
		fmt.Fprintf(tw, "%d\t%s/%s\t\t%.2fx\t%.2fx\t%.2fx\t%s\t\t%s\t\t\t\t\t\n", g.policies, short(g.target), short(p.target),
			g.throughput()/p.throughput(), ratio(g.percentile(0.5), p.percentile(0.5)), ratio(g.percentile(0.99), p.percentile(0.99)),
			ratioOrNA(g.cpuPerCheck(), p.cpuPerCheck()), ratioOrNA(g.startup, p.startup))
	}
	tw.Flush()
}

func short(target string) string {
	if target == "opa-envoy-plugin" {
		return "peer"
	}
	return target
}

func us(d time.Duration) string {
	if d < 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.1fµs", float64(d)/1e3)
}

func startup(d time.Duration) string {
	if d == 0 {
		return "-"
	}
	return d.Round(10 * time.Millisecond).String()
}

func ratio(a, b time.Duration) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

func ratioOrNA(a, b time.Duration) string {
	if a <= 0 || b <= 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.2fx", float64(a)/float64(b))
}
