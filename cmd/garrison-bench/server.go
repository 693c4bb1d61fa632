package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// server is an ext_authz server under test: a child process the bench
// started (pid set, its CPU time is measured) or an external address.
type server struct {
	name string
	addr string
	pid  int // 0: not ours and not given, no CPU figures
	cmd  *exec.Cmd
	logs *lockedBuffer
	// startup is how long the server took to answer its first Check
	// (loading and compiling the policies).
	startup time.Duration
	exited  chan error
}

// stop kills a child server and waits for it.
func (s *server) stop() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	<-s.exited
	s.cmd = nil
}

type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.buf.Len() > 1<<20 { // keep the last MiB or so
		b.buf.Reset()
	}
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// freeAddr picks a loopback port nobody listens on (the servers cannot
// report a port 0 they were given).
func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// startChild runs argv with the address from freeAddr and waits until
// ready(addr) holds. env is added to the environment.
func startChild(ctx context.Context, name string, argv func(addr string) []string, env []string, ready func(ctx context.Context, addr string) error, timeout time.Duration) (*server, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	args := argv(addr)
	cmd := exec.Command(args[0], args[1:]...)
	logs := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	cmd.Env = append(os.Environ(), env...)
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	s := &server{name: name, addr: addr, pid: cmd.Process.Pid, cmd: cmd, logs: logs, exited: make(chan error, 1)}
	go func() { s.exited <- cmd.Wait() }()

	rctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		err := ready(rctx, addr)
		if err == nil {
			break
		}
		select {
		case werr := <-s.exited:
			s.exited <- werr
			s.cmd = nil
			return nil, fmt.Errorf("%s exited (%v):\n%s", name, werr, tail(logs.String()))
		case <-rctx.Done():
			s.stop()
			return nil, fmt.Errorf("%s not ready within %v (%v):\n%s", name, timeout, err, tail(logs.String()))
		case <-time.After(50 * time.Millisecond):
		}
	}
	s.startup = time.Since(start)
	return s, nil
}

func tail(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > 30 {
		lines = lines[len(lines)-30:]
	}
	return strings.Join(lines, "\n")
}

// healthReady holds once the gRPC health service says SERVING: Garrison's
// says so once a policy set is loaded.
func healthReady(ctx context.Context, addr string) error {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	resp, err := healthpb.NewHealthClient(conn).Check(cctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		return err
	}
	if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		return fmt.Errorf("health %v", resp.GetStatus())
	}
	return nil
}

// checkReady holds once a Check of probe is answered: opa-envoy-plugin
// activates its bundle before it starts its gRPC server.
func checkReady(probe *authv3.CheckRequest) func(ctx context.Context, addr string) error {
	return func(ctx context.Context, addr string) error {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return err
		}
		c.Close()
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return err
		}
		defer conn.Close()
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		_, err = authv3.NewAuthorizationClient(conn).Check(cctx, probe, grpc.WaitForReady(true))
		return err
	}
}

// startGarrison runs `garrison serve` on the configuration in dir.
func startGarrison(ctx context.Context, bin, dir string, env []string, timeout time.Duration) (*server, error) {
	data := filepath.Join(dir, "data")
	return startChild(ctx, "garrison", func(addr string) []string {
		return []string{bin, "serve",
			"--config", filepath.Join(dir, "config"),
			"--data-dir", data,
			"--monitoring-addr", "127.0.0.1:0",
			"--authz-addr", addr,
			"--ca-addr", "",
			"--log-level", "warn",
		}
	}, env, healthReady, timeout)
}

// compileBundle runs `garrison policy compile` on the configuration in dir.
// ok is false when this garrison has no such command.
func compileBundle(ctx context.Context, bin, dir string) (path string, ok bool, err error) {
	if err := exec.CommandContext(ctx, bin, "policy", "compile", "--help").Run(); err != nil {
		return "", false, nil
	}
	path = filepath.Join(dir, "bundle.tar.gz")
	out, err := exec.CommandContext(ctx, bin, "policy", "compile", filepath.Join(dir, "config"), "-o", path).CombinedOutput()
	if err != nil {
		return "", true, fmt.Errorf("garrison policy compile: %v\n%s", err, tail(string(out)))
	}
	return path, true, nil
}

// startPlugin runs opa-envoy-plugin with the bundle, its ext_authz server
// on the address picked, decision logs off.
func startPlugin(ctx context.Context, bin, bundle string, probe *authv3.CheckRequest, env []string, timeout time.Duration) (*server, error) {
	return startChild(ctx, "opa-envoy-plugin", func(addr string) []string {
		return []string{bin, "run", "--server",
			"--addr=127.0.0.1:0", // its REST API, unused
			"--skip-version-check",
			"--log-level=error",
			"--set=plugins.envoy_ext_authz_grpc.addr=" + addr,
			"--set=plugins.envoy_ext_authz_grpc.path=envoy/authz/allow",
			"--set=decision_logs.console=false",
			"--bundle", bundle,
		}
	}, env, checkReady(probe), timeout)
}

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat times: 100 on every
// Linux the bench runs on.
const clockTicks = 100

// processCPU is the user plus system CPU time of pid so far, from
// /proc/<pid>/stat (utime and stime, fields 14 and 15).
func processCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, errors.New("unexpected /proc/pid/stat")
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0, errors.New("unexpected /proc/pid/stat")
	}
	// f[0] is field 3 (state): utime is f[11], stime f[12].
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	return time.Duration(ut+st) * time.Second / clockTicks, nil
}
