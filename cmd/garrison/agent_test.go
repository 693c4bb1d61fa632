package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/garrison-mesh/garrison/ca/catest"
	"github.com/garrison-mesh/garrison/ca/sds/sdstest"
)

// TestAgentEndToEnd runs the real binary against the test CA, as a
// sidecar container would: it gets a certificate with the token file,
// serves it over SDS on its socket and as files, reports healthy, and stops
// cleanly on SIGTERM, removing its socket.
func TestAgentEndToEnd(t *testing.T) {
	t.Parallel()
	bin := garrisonBinary(t)
	ca := catest.Start(t, catest.Config{})
	dir := t.TempDir()
	roots := filepath.Join(dir, "roots.pem")
	token := filepath.Join(dir, "token")
	socket := filepath.Join(dir, "run", "sds.sock")
	certDir := filepath.Join(dir, "certs")
	if err := os.WriteFile(roots, ca.RootsPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(token, []byte("test-token"), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "agent", "--ca-addr", ca.Addr(), "--ca-root-cert", roots, "--ca-bundle-url", ca.BundleURL(),
		"--token-file", token, "--sds-socket", socket, "--cert-dir", certDir, "--health-addr", "127.0.0.1:0", "--log-format", "json")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	health := waitForLog(t, stderr, "garrison agent serving")["health"].(string)

	st := sdstest.NewStream(t, sdstest.Dial(t, socket), sdstest.Node("sidecar~10.0.0.1~app.default~default.svc.cluster.local"))
	st.Subscribe("default")
	r := st.Recv(30 * time.Second)
	st.ACK(r)
	st.Subscribe("default", "ROOTCA")
	r = st.Recv(30 * time.Second)
	st.ACK(r)
	secrets := sdstest.MustSecrets(t, r)
	leaf, err := catest.ParseCerts(secrets["default"].GetTlsCertificate().GetCertificateChain().GetInlineBytes())
	if err != nil || len(leaf[0].URIs) != 1 || leaf[0].URIs[0].String() != "spiffe://cluster.local/ns/default/sa/default" {
		t.Fatalf("default: %v", err)
	}
	if secrets["ROOTCA"] == nil {
		t.Fatal("no ROOTCA")
	}
	eventually(t, "healthy", func() bool { code, _ := get(t, "http://"+health+"/healthz"); return code == 200 })
	if _, body := get(t, "http://"+health+"/metrics"); !strings.Contains(body, `garrison_agent_csr_total{result="success"} 1`) ||
		!strings.Contains(body, "garrison_sds_streams 1") {
		t.Errorf("metrics:\n%s", grepLines(body, "garrison_"))
	}
	// The files are written right after the SDS push.
	for _, f := range []string{"cert-chain.pem", "key.pem", "root-cert.pem"} {
		eventually(t, f, func() bool { _, err := os.Stat(filepath.Join(certDir, f)); return err == nil })
	}

	stopWithSIGTERM(t, cmd, "agent")
	if _, err := os.Lstat(socket); !os.IsNotExist(err) {
		t.Errorf("socket left behind: %v", err)
	}
}

func TestAgentFlags(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if code, _, errOut := runCLI(t, "agent"); code != 1 || !strings.Contains(errOut, `"ca-addr"`) {
		t.Errorf("no flags: exit %d: %s", code, errOut)
	}
	roots := filepath.Join(dir, "roots.pem")
	if err := os.WriteFile(roots, catest.Start(t, catest.Config{}).RootsPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	base := []string{"agent", "--ca-addr", "127.0.0.1:1", "--ca-root-cert", roots, "--token-file", "t",
		"--sds-socket", filepath.Join(dir, "sds.sock"), "--health-addr", ""}
	for _, c := range []struct {
		args []string
		want string
	}{
		{append(base, "--ca-root-cert", filepath.Join(dir, "none.pem")), "root certificate file"},
		{append(base, "--sds-socket-mode", "rw"), "--sds-socket-mode"},
		{append(base, "--rotate-at", "1.5"), "rotate-at"},
		{append(base, "--ca-bundle-url", "http://x"), "bundle URL"},
	} {
		if code, _, errOut := runCLI(t, c.args...); code != 1 || !strings.Contains(errOut, c.want) {
			t.Errorf("%v: exit %d: %s", c.args[len(base)-1:], code, errOut)
		}
	}
}
