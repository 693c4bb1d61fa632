package server_test

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	pb "istio.io/api/security/v1alpha1"

	"github.com/garrison-mesh/garrison/ca/authority"
	"github.com/garrison-mesh/garrison/ca/server"
	"github.com/garrison-mesh/garrison/ca/store"
	"github.com/garrison-mesh/garrison/ca/tokenfile"
	"github.com/garrison-mesh/garrison/ca/upstream/selfsigned"
)

// benchChildEnv makes the re-executed test binary the CA server of
// BenchmarkCreateCertificate, so that the server's CPU time is measured
// apart from the client's.
const benchChildEnv = "GARRISON_CA_BENCH_CHILD_DIR"

// TestBenchServerChild serves the CA for BenchmarkCreateCertificate; it
// does nothing in a normal run.
func TestBenchServerChild(t *testing.T) {
	dir := os.Getenv(benchChildEnv)
	if dir == "" {
		t.Skip("only runs as the benchmark's server process")
	}
	// As garrison serve runs (its --gc-percent default).
	debug.SetGCPercent(400)
	ctx := context.Background()
	st, err := store.Open(ctx, store.Config{Dir: filepath.Join(dir, "ca")})
	if err != nil {
		t.Fatal(err)
	}
	up, _ := selfsigned.New(selfsigned.Config{TrustDomain: td})
	ca, err := authority.New(ctx, authority.Config{TrustDomain: td, Upstream: up, Store: st})
	if err != nil {
		t.Fatal(err)
	}
	tokens, err := tokenfile.New(tokenfile.Config{Path: filepath.Join(dir, "tokens.yaml")})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(ctx, server.Config{Authority: ca, Tokens: tokens, DNSNames: []string{"localhost"}})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	// GARRISON_CA_BENCH_CPUPROFILE=file profiles the server until SIGTERM.
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM)
	defer stop()
	if path := os.Getenv("GARRISON_CA_BENCH_CPUPROFILE"); path != "" {
		f, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			t.Fatal(err)
		}
		defer pprof.StopCPUProfile()
	}
	fmt.Println("addr", ln.Addr().String())
	_ = srv.Serve(ctx, ln)
}

type benchResult struct {
	n           int
	wall        time.Duration
	cpu         time.Duration // the CA's CPU: the loop's, or the server process's
	clientCPU   time.Duration
	p50, p99    time.Duration
	haveLatency bool
}

func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		panic(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// procCPU is a process's user+system time from /proc (clock ticks of
// 10 ms).
func procCPU(pid int) time.Duration {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		panic(err)
	}
	f := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+2:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond
}

func (r benchResult) report(b *testing.B) {
	b.ReportMetric(float64(r.n)/r.wall.Seconds(), "certs/s")
	b.ReportMetric(float64(r.cpu.Microseconds())/float64(r.n), "ca-cpu-µs/cert")
	if r.haveLatency {
		b.ReportMetric(float64(r.clientCPU.Microseconds())/float64(r.n), "client-cpu-µs/cert")
		b.ReportMetric(float64(r.p50.Microseconds()), "p50-µs")
		b.ReportMetric(float64(r.p99.Microseconds()), "p99-µs")
	}
}

// BenchmarkCreateCertificate compares, in one run, a raw
// x509.CreateCertificate loop with the CA's own signing key (one core)
// against CreateCertificate over real gRPC to a server in its own process
// (TLS, bearer token, P-256 CSRs made in advance, 16 concurrent callers on
// their own connections, each serial journaled before its answer).
// "Per core" divides certificates by the CPU time each side spent: the
// loop's, and the server process's (read from /proc). The comparison is
// logged at the end (-v shows it):
//
//	go test -run '^$' -bench BenchmarkCreateCertificate -benchtime 3000x -v ./ca/server/
func BenchmarkCreateCertificate(b *testing.B) {
	dir := b.TempDir()
	ctx := context.Background()
	// Create the CA here, read its signing key for the raw loop, then
	// hand the directory to the server process.
	st, err := store.Open(ctx, store.Config{Dir: filepath.Join(dir, "ca")})
	if err != nil {
		b.Fatal(err)
	}
	up, _ := selfsigned.New(selfsigned.Config{TrustDomain: td})
	ca, err := authority.New(ctx, authority.Config{TrustDomain: td, Upstream: up, Store: st})
	if err != nil {
		b.Fatal(err)
	}
	signing := ca.SigningChain()[0]
	var key *ecdsa.PrivateKey
	recs, err := st.CAs(ctx)
	if err != nil {
		b.Fatal(err)
	}
	for _, r := range recs {
		if r.Role == authority.RoleSigning && r.State == authority.StateActive {
			key = r.Key.(*ecdsa.PrivateKey)
		}
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(ca.RootsPEM())
	if err := st.Close(); err != nil {
		b.Fatal(err)
	}
	token, err := tokenfile.Create(filepath.Join(dir, "tokens.yaml"), "default", "a", time.Time{}, time.Now())
	if err != nil {
		b.Fatal(err)
	}

	child := exec.Command(os.Args[0], "-test.run=^TestBenchServerChild$")
	child.Env = append(os.Environ(), benchChildEnv+"="+dir)
	child.Stderr = os.Stderr
	out, err := child.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := child.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = child.Process.Signal(syscall.SIGTERM); _ = child.Wait() })
	sc := bufio.NewScanner(out)
	var addr string
	for sc.Scan() {
		if a, ok := strings.CutPrefix(sc.Text(), "addr "); ok {
			addr = a
			break
		}
	}
	if addr == "" {
		b.Fatal("the server process did not start")
	}
	go func() { _, _ = bufio.NewReader(out).WriteTo(discard{}) }()

	const pool = 256
	csrs := make([]string, pool)
	pubs := make([]any, pool)
	for i := range csrs {
		k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, k)
		if err != nil {
			b.Fatal(err)
		}
		csrs[i] = string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
		pubs[i] = k.Public()
	}
	uri, _ := url.Parse("spiffe://cluster.local/ns/default/sa/a")

	var raw, rpc benchResult
	b.Run("raw", func(b *testing.B) {
		var cpu0 time.Duration
		var start time.Time
		for i := 0; b.Loop(); i++ {
			if i == 0 {
				cpu0, start = selfCPU(), time.Now()
			}
			serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
			tmpl := &x509.Certificate{
				SerialNumber: serial, NotBefore: time.Now(), NotAfter: time.Now().Add(24 * time.Hour),
				URIs: []*url.URL{uri}, KeyUsage: x509.KeyUsageDigitalSignature, BasicConstraintsValid: true,
				ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
			}
			if _, err := x509.CreateCertificate(rand.Reader, tmpl, signing, pubs[i%pool], key); err != nil {
				b.Fatal(err)
			}
		}
		raw = benchResult{n: b.N, wall: time.Since(start), cpu: selfCPU() - cpu0}
		raw.report(b)
	})

	rctx := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
	conns := make([]pb.IstioCertificateServiceClient, 16)
	for i := range conns {
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: roots, ServerName: "localhost"})))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = conn.Close() })
		conns[i] = pb.NewIstioCertificateServiceClient(conn)
		// Connect (TLS handshake) before the clock starts.
		if _, err := conns[i].CreateCertificate(rctx, &pb.IstioCertificateRequest{Csr: csrs[i]}); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("grpc", func(b *testing.B) {
		var next atomic.Int64
		var mu sync.Mutex
		var lat []time.Duration
		b.SetParallelism(max(1, 16/runtimeProcs()))
		srv0, cli0, start := procCPU(child.Process.Pid), selfCPU(), time.Now()
		b.RunParallel(func(p *testing.PB) {
			c := conns[int(next.Add(1)-1)%len(conns)]
			var mine []time.Duration
			for i := 0; p.Next(); i++ {
				t0 := time.Now()
				if _, err := c.CreateCertificate(rctx, &pb.IstioCertificateRequest{Csr: csrs[i%pool]}); err != nil {
					b.Error(err)
					return
				}
				mine = append(mine, time.Since(t0))
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		})
		rpc = benchResult{n: b.N, wall: time.Since(start), cpu: procCPU(child.Process.Pid) - srv0, clientCPU: selfCPU() - cli0, haveLatency: len(lat) > 0}
		if len(lat) > 0 {
			slices.Sort(lat)
			rpc.p50, rpc.p99 = lat[len(lat)/2], lat[len(lat)*99/100]
		}
		rpc.report(b)
	})
	// One caller at a time: the latency of a request that does not queue.
	var single benchResult
	b.Run("grpc-1-caller", func(b *testing.B) {
		lat := make([]time.Duration, 0, b.N)
		srv0, start := procCPU(child.Process.Pid), time.Now()
		for i := 0; b.Loop(); i++ {
			t0 := time.Now()
			if _, err := conns[0].CreateCertificate(rctx, &pb.IstioCertificateRequest{Csr: csrs[i%pool]}); err != nil {
				b.Fatal(err)
			}
			lat = append(lat, time.Since(t0))
		}
		single = benchResult{n: b.N, wall: time.Since(start), cpu: procCPU(child.Process.Pid) - srv0, haveLatency: true}
		slices.Sort(lat)
		single.p50, single.p99 = lat[len(lat)/2], lat[len(lat)*99/100]
		single.report(b)
	})
	if single.n > 0 {
		b.Logf("one caller: latency p50 %s p99 %s", single.p50.Round(time.Microsecond), single.p99.Round(time.Microsecond))
	}
	if raw.n > 0 && rpc.n > 0 {
		rawPerCore := float64(raw.n) / raw.cpu.Seconds()
		rpcPerCore := float64(rpc.n) / rpc.cpu.Seconds()
		b.Logf("raw x509.CreateCertificate: %.0f certs/s on one core (%.0f µs CPU each)", float64(raw.n)/raw.wall.Seconds(), float64(raw.cpu.Microseconds())/float64(raw.n))
		b.Logf("gRPC CreateCertificate: %.0f certs/s wall; server %.0f certs/s per core (%.0f µs CPU each); client %.0f µs CPU each; latency p50 %s p99 %s",
			float64(rpc.n)/rpc.wall.Seconds(), rpcPerCore, float64(rpc.cpu.Microseconds())/float64(rpc.n),
			float64(rpc.clientCPU.Microseconds())/float64(rpc.n), rpc.p50.Round(time.Microsecond), rpc.p99.Round(time.Microsecond))
		b.Logf("per-core ratio gRPC/raw: %.2f", rpcPerCore/rawPerCore)
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

func runtimeProcs() int { return runtime.GOMAXPROCS(0) }
