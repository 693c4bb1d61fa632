package bundle_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/garrison-mesh/garrison/authz/engine"
)

// The real opa-envoy-plugin, pinned by conformance/peers (`make peers`
// builds it as bin/opa-envoy-plugin).
const (
	repoRoot      = "../.."
	pluginPackage = "github.com/open-policy-agent/opa-envoy-plugin/cmd/opa-envoy-plugin"
)

// TestOPAEnvoyPluginParity is the evidence that the bundle is standard: the
// real opa-envoy-plugin (v1.15.2-envoy, built from conformance/peers when
// bin/opa-envoy-plugin is missing), started as `opa-envoy-plugin run
// --server --bundle bundle.tar.gz` with nothing but the bundle, gets every
// request of the corpus over gRPC (envoy.service.auth.v3.Authorization/
// Check, as Envoy's ext_authz filter sends it under Garrison's xDS) and must
// answer as Garrison's engine decides: allow or deny, the HTTP status of a
// denial, and (but for the plugin's own 400s) the deny body and the
// x-garrison-decision header.
func TestOPAEnvoyPluginParity(t *testing.T) {
	bin := pluginBinary(t)
	sets := parityCorpus(t)
	var (
		mu    sync.Mutex
		total parityCount
	)
	t.Cleanup(func() { total.log(t, "opa-envoy-plugin over gRPC") })
	for _, s := range sets {
		t.Run(s.name, func(t *testing.T) {
			t.Parallel()
			count := pluginParity(t, bin, s)
			mu.Lock()
			total.add(count)
			mu.Unlock()
		})
	}
}

func pluginParity(t *testing.T, bin string, s *paritySet) parityCount {
	ctx := t.Context()
	eng, err := engine.NewStatic(s.res, s.snap)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "bundle.tar.gz")
	writeBundle(t, path, s)

	count := parityCount{sets: 1}
	var sent []*authv3.CheckRequest
	var names []string
	for _, r := range s.requests {
		req, derived, ok := asEnvoySends(ctx, t, eng, r.req)
		if !ok {
			count.skipped++
			continue
		}
		if derived {
			count.derived++
		}
		sent = append(sent, req)
		names = append(names, r.name)
	}
	if len(sent) == 0 {
		return count
	}
	client := startPlugin(t, bin, path, sent[0])
	for i, req := range sent {
		d, err := eng.Decide(ctx, req)
		if err != nil {
			t.Fatalf("%s: engine: %v", names[i], err)
		}
		count.tally(d)
		resp, err := client.Check(ctx, req)
		if err != nil {
			t.Errorf("%s: opa-envoy-plugin: %v", names[i], err)
			continue
		}
		allowed := codes.Code(resp.GetStatus().GetCode()) == codes.OK
		if allowed != d.Allowed {
			t.Errorf("%s: opa-envoy-plugin allowed=%t (%v %s), Garrison %+v", names[i], allowed, resp.GetStatus(), resp.GetDeniedResponse().GetBody(), d)
			continue
		}
		headers := map[string]string{}
		if allowed {
			for _, h := range resp.GetOkResponse().GetHeaders() {
				headers[h.GetHeader().GetKey()] = h.GetHeader().GetValue()
			}
		} else {
			denied := resp.GetDeniedResponse()
			if got := int(denied.GetStatus().GetCode()); got != d.Status {
				t.Errorf("%s: opa-envoy-plugin HTTP status %d, Garrison %d (%s)", names[i], got, d.Status, denied.GetBody())
				continue
			}
			for _, h := range denied.GetHeaders() {
				headers[h.GetHeader().GetKey()] = h.GetHeader().GetValue()
			}
			if d.Status == 400 && d.Reason == engine.ReasonInvalidRequest {
				continue // the plugin's own 400: its body is its error
			}
			x, err := eng.Explain(ctx, req)
			if err != nil {
				t.Fatalf("%s: explain: %v", names[i], err)
			}
			rsp, _ := x.EnvoyResponse.(map[string]any)
			if body, _ := rsp["body"].(string); denied.GetBody() != body {
				t.Errorf("%s: opa-envoy-plugin body %q, Garrison's envoy_response %q", names[i], denied.GetBody(), body)
			}
		}
		if got := headers["x-garrison-decision"]; got != d.Reason {
			t.Errorf("%s: opa-envoy-plugin x-garrison-decision %q, Garrison reason %q", names[i], got, d.Reason)
		}
	}
	return count
}

// pluginBinary returns bin/opa-envoy-plugin, building it first when it is
// missing, as `make peers` does (a cold build takes minutes).
func pluginBinary(t *testing.T) string {
	t.Helper()
	bin, err := filepath.Abs(filepath.Join(repoRoot, "bin", "opa-envoy-plugin"))
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(bin); err == nil && fi.Mode().IsRegular() {
		return bin
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("bin/opa-envoy-plugin is missing and there is no go command to build it (make peers): %v", err)
	}
	peers, err := filepath.Abs(filepath.Join(repoRoot, "conformance", "peers"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
		t.Fatal(err)
	}
	tmp := fmt.Sprintf("%s.%d.tmp", bin, os.Getpid())
	defer os.Remove(tmp)
	build := func(dir string, args ...string) error {
		start := time.Now()
		cmd := exec.CommandContext(t.Context(), goBin, append(append([]string{"build"}, args...), "-o", tmp, pluginPackage)...)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("go build in %s: %w\n%s", dir, err, out)
		}
		t.Logf("built opa-envoy-plugin in %s (%v)", dir, time.Since(start).Round(time.Second))
		return nil
	}
	t.Logf("bin/opa-envoy-plugin is missing: building it from conformance/peers, which takes a few minutes the first time")
	if err := build(peers); err != nil {
		// conformance/peers's go.sum may list only what its blank import
		// of envoyauth needs, not every package of the plugin's main: the
		// same go.mod, in a scratch copy, with go.sum completed there.
		t.Logf("%v\nretrying in a copy of the module with -mod=mod (the versions are go.mod's; only go.sum is completed)", err)
		scratch := t.TempDir()
		for _, name := range []string{"go.mod", "go.sum", "peers.go"} {
			data, err := os.ReadFile(filepath.Join(peers, name))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(scratch, name), data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if err := build(scratch, "-mod=mod"); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Rename(tmp, bin); err != nil {
		t.Fatal(err)
	}
	return bin
}

// lockedBuffer collects a process's output for failure messages.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// startPlugin runs opa-envoy-plugin with the bundle and returns a client of
// its ext_authz gRPC server once that answers probe. The plugin cannot be
// told to listen on port 0 and report the port, so a free port is picked
// and, should another process take it first, the start is retried.
func startPlugin(t *testing.T, bin, bundlePath string, probe *authv3.CheckRequest) authv3.AuthorizationClient {
	t.Helper()
	var lastErr error
	for range 3 {
		client, err := tryStartPlugin(t, bin, bundlePath, probe)
		if err == nil {
			return client
		}
		if !errors.Is(err, errListen) {
			t.Fatal(err)
		}
		lastErr = err
	}
	t.Fatal(lastErr)
	return nil
}

var errListen = errors.New("opa-envoy-plugin could not listen")

func tryStartPlugin(t *testing.T, bin, bundlePath string, probe *authv3.CheckRequest) (authv3.AuthorizationClient, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()

	logs := &lockedBuffer{}
	cmd := exec.Command(bin, "run", "--server",
		"--addr=127.0.0.1:0", // its REST API, unused
		"--skip-version-check",
		"--log-level=error",
		"--set", "plugins.envoy_ext_authz_grpc.addr="+addr,
		"--set", "plugins.envoy_ext_authz_grpc.path=envoy/authz/allow",
		"--bundle", bundlePath)
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stop := func() {
		_ = cmd.Process.Kill()
		<-exited
	}

	fail := func(format string, args ...any) (authv3.AuthorizationClient, error) {
		stop()
		return nil, fmt.Errorf(format, args...)
	}
	// Wait for the listener by dialling it: a gRPC client that failed to
	// connect backs off for a second or more before it tries again.
	deadline := time.Now().Add(60 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			break
		}
		select {
		case werr := <-exited:
			exited <- werr
			return fail("opa-envoy-plugin exited (%v):\n%s", werr, logs)
		default:
		}
		if strings.Contains(logs.String(), "Unable to create listener") {
			return fail("%w on %s:\n%s", errListen, addr, logs)
		}
		if time.Now().After(deadline) {
			return fail("opa-envoy-plugin did not listen on %s within a minute:\n%s", addr, logs)
		}
		time.Sleep(10 * time.Millisecond)
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return fail("%v", err)
	}
	client := authv3.NewAuthorizationClient(conn)
	// The bundle is activated before the plugin starts its gRPC server, so
	// the first answer is already the bundle's.
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	_, err = client.Check(ctx, probe, grpc.WaitForReady(true))
	cancel()
	if err != nil {
		conn.Close()
		return fail("opa-envoy-plugin on %s did not answer a first request: %v\n%s", addr, err, logs)
	}
	t.Cleanup(func() {
		conn.Close()
		stop()
		if t.Failed() {
			t.Logf("opa-envoy-plugin output:\n%s", logs)
		}
	})
	return client, nil
}
