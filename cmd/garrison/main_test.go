package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/garrison-mesh/garrison/cmd/internal/admin"
)

func runCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(t.Context(), args, &out, &errb)
	return code, out.String(), errb.String()
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

const invalidVirtualService = `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
  namespace: default
spec:
  hosts: [reviews]
  http:
  - route:
    - destination:
        host: reviews
        port:
          number: 70000
`

func TestValidateExampleMeshIsValid(t *testing.T) {
	t.Parallel()
	code, out, errOut := runCLI(t, "validate", "../../deploy/examples/bookinfo")
	if code != 0 {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	if !strings.HasPrefix(lastLine(out), "valid: ") {
		t.Errorf("summary line missing: %q", out)
	}
}

func TestValidateInvalidNamesFileLineAndField(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "reviews.yaml"), invalidVirtualService)
	code, out, _ := runCLI(t, "validate", dir)
	if code != 1 {
		t.Fatalf("exit %d, want 1:\n%s", code, out)
	}
	want := filepath.Join(dir, "reviews.yaml") + ":13: VirtualService default/reviews: http[0].route[0].destination.port.number:"
	if !strings.Contains(out, want) {
		t.Errorf("output does not contain %q:\n%s", want, out)
	}
	if !strings.HasPrefix(lastLine(out), "INVALID: 1 files, 0 resources, 1 errors") {
		t.Errorf("summary: %q", lastLine(out))
	}
}

func TestValidateJSONAndStdin(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	cmd := newRootCommand(&out, io.Discard)
	cmd.SetIn(strings.NewReader(invalidVirtualService))
	cmd.SetArgs([]string{"validate", "-o", "json", "-"})
	if err := cmd.Execute(); err == nil {
		t.Fatal("invalid input must fail")
	}
	var rep validateReport
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out.String())
	}
	if rep.Errors != 1 || len(rep.Problems) != 1 {
		t.Fatalf("report: %+v", rep)
	}
	p := rep.Problems[0]
	if p.File != "<stdin>" || p.Line != 13 || p.Kind != "VirtualService" || p.Field != "http[0].route[0].destination.port.number" {
		t.Errorf("problem not located: %+v", p)
	}
}

func TestValidateDuplicateAcrossFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	sa := "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: reviews\n"
	writeFile(t, filepath.Join(dir, "a.yaml"), sa)
	writeFile(t, filepath.Join(dir, "b", "c.yaml"), sa)
	code, out, _ := runCLI(t, "validate", dir)
	if code != 1 || !strings.Contains(out, "already defined at "+filepath.Join(dir, "a.yaml")+":1") {
		t.Fatalf("exit %d:\n%s", code, out)
	}
}

func TestVersion(t *testing.T) {
	t.Parallel()
	code, out, _ := runCLI(t, "version")
	if code != 0 || out != "garrison dev\n" {
		t.Fatalf("exit %d: %q", code, out)
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// serving is a garrison serve started by a test.
type serving struct {
	addr   string
	authz  string
	cancel context.CancelFunc
	done   chan int
}

// startServe runs serve in-process and returns once it has logged its
// monitoring address.
func startServe(t *testing.T, configDir string) *serving {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	pr, pw := io.Pipe()
	s := &serving{cancel: cancel, done: make(chan int, 1)}
	go func() {
		s.done <- run(ctx, []string{"serve", "--config", configDir, "--data-dir", t.TempDir(),
			"--monitoring-addr", "127.0.0.1:0", "--authz-addr", "127.0.0.1:0", "--ca-addr", "", "--debounce", "20ms", "--log-format", "json"}, io.Discard, pw)
		pw.Close()
	}()
	line := waitForLog(t, pr, "garrison serving")
	s.addr, s.authz = line["monitoring"].(string), line["authz"].(string)
	t.Cleanup(func() {
		cancel()
		<-s.done
	})
	return s
}

// waitForLog reads JSON log lines until one has message msg, returns it,
// and keeps draining the pipe so the server never blocks.
func waitForLog(t *testing.T, r io.Reader, msg string) map[string]any {
	t.Helper()
	found := make(chan map[string]any, 1)
	go func() {
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			var line map[string]any
			if json.Unmarshal(sc.Bytes(), &line) == nil && line["msg"] == msg {
				select {
				case found <- line:
				default:
				}
			}
		}
		close(found)
	}()
	select {
	case v, ok := <-found:
		if !ok {
			t.Fatalf("serve exited before logging %q", msg)
		}
		return v
	case <-time.After(30 * time.Second):
		t.Fatalf("no %q log line", msg)
	}
	return nil
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// eventually polls cond, the only signal a separate server offers, until it
// holds or the deadline passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestServeMonitoringAndRecovery(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	good := strings.Replace(invalidVirtualService, "70000", "9080", 1)
	writeFile(t, filepath.Join(dir, "traffic", "reviews.yaml"), good)
	writeFile(t, filepath.Join(dir, "sa.yaml"), "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: reviews\n")
	s := startServe(t, dir)
	base := "http://" + s.addr

	if code, _ := get(t, base+"/healthz"); code != 200 {
		t.Fatalf("/healthz = %d", code)
	}
	eventually(t, "readiness", func() bool { code, _ := get(t, base+"/readyz"); return code == 200 })

	_, body := get(t, base+"/debug/config?kind=VirtualService")
	var dump admin.ConfigDump
	if err := json.Unmarshal([]byte(body), &dump); err != nil {
		t.Fatal(err)
	}
	if len(dump.Resources) != 1 || dump.Resources[0].Name != "reviews" || dump.Counts["ServiceAccount"] != 1 {
		t.Fatalf("/debug/config: %s", body)
	}
	_, metrics := get(t, base+"/metrics")
	for _, m := range []string{"garrison_config_snapshot_version 1", `garrison_config_resources{kind="VirtualService.networking.istio.io"} 1`, `garrison_build_info{version="dev"} 1`, "go_goroutines"} {
		if !strings.Contains(metrics, m) {
			t.Errorf("/metrics lacks %q", m)
		}
	}
	if code, out, _ := runCLI(t, "status", "--addr", s.addr); code != 0 || !strings.Contains(out, "serving snapshot 1 (2 resources)") {
		t.Fatalf("status exit %d:\n%s", code, out)
	}

	// Break the file: the last good VirtualService stays live, status
	// shows the rejection with file and line, and exits 2.
	writeFile(t, filepath.Join(dir, "traffic", "reviews.yaml"), invalidVirtualService)
	var out string
	eventually(t, "the rejection to show", func() bool {
		var code int
		code, out, _ = runCLI(t, "status", "--addr", s.addr)
		return code == statusDegraded
	})
	if !strings.Contains(out, "traffic/reviews.yaml:13: VirtualService default/reviews: http[0].route[0].destination.port.number") ||
		!strings.Contains(out, "its last good contents are served") {
		t.Errorf("status does not explain the rejection:\n%s", out)
	}
	_, body = get(t, base+"/debug/config?kind=VirtualService")
	if !strings.Contains(body, `"number": 9080`) {
		t.Errorf("last good VirtualService not served:\n%s", body)
	}
	_, metrics = get(t, base+"/metrics")
	if !strings.Contains(metrics, `garrison_config_reloads_total{result="rejected"} 1`) || !strings.Contains(metrics, "garrison_config_invalid_files 1") {
		t.Errorf("rejection not counted:\n%s", grepLines(metrics, "garrison_config_"))
	}

	// Fix it: recovered without a restart.
	writeFile(t, filepath.Join(dir, "traffic", "reviews.yaml"), strings.Replace(good, "9080", "9081", 1))
	eventually(t, "recovery", func() bool { code, _, _ := runCLI(t, "status", "--addr", s.addr); return code == 0 })
	_, body = get(t, base+"/debug/config?kind=VirtualService")
	if !strings.Contains(body, `"number": 9081`) {
		t.Errorf("fixed VirtualService not served:\n%s", body)
	}

	s.cancel()
	if code := <-s.done; code != 0 {
		t.Fatalf("serve exited %d after cancel", code)
	}
	s.done <- 0 // for the cleanup
}

func grepLines(s, substr string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, substr) && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func TestStatusUnreachable(t *testing.T) {
	t.Parallel()
	code, _, errOut := runCLI(t, "status", "--addr", "127.0.0.1:1")
	if code != 1 || !strings.Contains(errOut, "unreachable") {
		t.Fatalf("exit %d: %s", code, errOut)
	}
}

func TestServeRejectsMissingConfigDir(t *testing.T) {
	t.Parallel()
	code, _, errOut := runCLI(t, "serve", "--config", filepath.Join(t.TempDir(), "nope"), "--data-dir", t.TempDir(),
		"--monitoring-addr", "127.0.0.1:0", "--authz-addr", "127.0.0.1:0", "--ca-addr", "")
	if code != 1 || !strings.Contains(errOut, "--config") {
		t.Fatalf("exit %d: %s", code, errOut)
	}
}

func TestServeRejectsInvalidMeshConfig(t *testing.T) {
	t.Parallel()
	mesh := filepath.Join(t.TempDir(), "mesh.yaml")
	if err := os.WriteFile(mesh, []byte("extensionProviders:\n- name: ext\n  envoyExtAuthzGrpc:\n    service: ext-authz\n    port: 0\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, errOut := runCLI(t, "serve", "--config", "../../deploy/examples/bookinfo", "--data-dir", t.TempDir(),
		"--monitoring-addr", "127.0.0.1:0", "--authz-addr", "127.0.0.1:0", "--ca-addr", "", "--mesh-config", mesh)
	if code != 1 || !strings.Contains(errOut, "mesh.yaml:5") || !strings.Contains(errOut, "extensionProviders[0].envoyExtAuthzGrpc.port") {
		t.Fatalf("exit %d: %s", code, errOut)
	}
}

// TestServeStopsOnSIGTERM runs the real binary, as an orchestrator would,
// and stops it with SIGTERM.
func TestServeStopsOnSIGTERM(t *testing.T) {
	t.Parallel()
	bin := garrisonBinary(t)
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "sa.yaml"), "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: a\n")
	cmd := exec.Command(bin, "serve", "--config", dir, "--data-dir", t.TempDir(), "--monitoring-addr", "127.0.0.1:0",
		"--authz-addr", "127.0.0.1:0", "--ca-addr", "", "--authz-socket", filepath.Join(t.TempDir(), "authz.sock"), "--log-format", "json")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	addr := waitForLog(t, stderr, "garrison serving")["monitoring"].(string)
	eventually(t, "readiness", func() bool { code, _ := get(t, "http://"+addr+"/readyz"); return code == 200 })
	stopWithSIGTERM(t, cmd, "garrison")
}

// TestValidateIstioInvalidDatasets runs garrison validate, as a user would,
// on each invalid file of Istio's galley validation dataset: every one must
// exit 1 with a message that names a field. (The policies package checks the
// exact field and message of every dataset document.)
func TestValidateIstioInvalidDatasets(t *testing.T) {
	t.Parallel()
	files, _ := filepath.Glob("../../../shared/conformance/istio/istio@1.5.0/galley/testdatasets/validation/dataset/*-invalid.yaml")
	if len(files) == 0 {
		t.Fatal("Istio's datasets are missing: ../shared/conformance/istio must sit beside the checkout")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			t.Parallel()
			code, out, _ := runCLI(t, "validate", f)
			if code != 1 {
				t.Fatalf("exit %d, want 1:\n%s", code, out)
			}
			first := strings.SplitN(out, "\n", 2)[0]
			// file:line: Kind ns/name: field: message
			if parts := strings.SplitN(first, ": ", 4); len(parts) < 4 || !strings.HasPrefix(parts[0], f+":") {
				t.Errorf("error does not name file, line, resource and field: %q", first)
			}
		})
	}
}

// TestServeAuthzBookinfo asks the ext_authz server of a running garrison
// serve, over real gRPC, the deck's questions about products-viewer.
func TestServeAuthzBookinfo(t *testing.T) {
	t.Parallel()
	s := startServe(t, "../../deploy/examples/bookinfo")
	eventually(t, "readiness", func() bool { code, _ := get(t, "http://"+s.addr+"/readyz"); return code == 200 })
	conn, err := grpc.NewClient(s.authz, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := authv3.NewAuthorizationClient(conn)
	check := func(method, path string) *authv3.CheckResponse {
		t.Helper()
		resp, err := client.Check(t.Context(), &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
			Source: &authv3.AttributeContext_Peer{Principal: "spiffe://cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account"},
			Destination: &authv3.AttributeContext_Peer{Principal: "spiffe://cluster.local/ns/default/sa/bookinfo-productpage",
				Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
					Address: "10.0.0.5", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 9080}}}}},
			Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
				Method: method, Path: path, Host: "productpage:9080", Protocol: "HTTP/1.1",
				Headers: map[string]string{":method": method, ":path": path, ":authority": "productpage:9080"}}},
		}})
		if err != nil {
			t.Fatalf("Check %s %s: %v", method, path, err)
		}
		return resp
	}
	for _, m := range []string{"GET", "HEAD"} {
		if resp := check(m, "/health"); codes.Code(resp.GetStatus().GetCode()) != codes.OK {
			t.Errorf("%s /health denied: %v %s", m, resp.GetStatus(), resp.GetDeniedResponse().GetBody())
		}
	}
	resp := check("POST", "/health")
	if codes.Code(resp.GetStatus().GetCode()) != codes.PermissionDenied || resp.GetDeniedResponse().GetStatus().GetCode() != 403 {
		t.Fatalf("POST must be denied with 403: %v", resp)
	}
	if body := resp.GetDeniedResponse().GetBody(); !strings.Contains(body, "RBAC: access denied") {
		t.Errorf("deny body: %q", body)
	}
}
