package main

import (
	"bufio"
	"context"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/genproto/googleapis/rpc/code"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/garrison-mesh/garrison/ca/authority"
	"github.com/garrison-mesh/garrison/ca/catest"
	"github.com/garrison-mesh/garrison/ca/sds/sdstest"
)

// TestMeshEndToEnd runs the planes together as a mesh uses them: garrison
// serve with its CA and ext_authz on the bookinfo example, the real agent
// binary getting productpage's certificate with a token and serving it over
// SDS, then ext_authz deciding productpage's requests with that
// certificate: allowed while it is good, refused once `garrison ca revoke`
// revoked it.
func TestMeshEndToEnd(t *testing.T) {
	t.Parallel()
	bin := garrisonBinary(t)
	// A short directory: a Unix socket path must fit in 108 bytes.
	data, err := os.MkdirTemp("", "gmesh")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(data) })
	if code, _, errOut := runCLI(t, "ca", "init", "--data-dir", data); code != 0 {
		t.Fatalf("ca init: %s", errOut)
	}
	tokens := filepath.Join(data, "tokens.yaml")
	exit, tok, errOut := runCLI(t, "ca", "token", "create", "--namespace", "default", "--service-account", "bookinfo-productpage", "--token-file", tokens)
	if exit != 0 {
		t.Fatalf("token create: %s", errOut)
	}
	tokenFile := filepath.Join(data, "productpage.token")
	if err := os.WriteFile(tokenFile, []byte(strings.TrimSpace(tok)), 0o600); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(t.Context())
	pr, pw := io.Pipe()
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"serve", "--config", "../../deploy/examples/bookinfo", "--data-dir", data,
			"--monitoring-addr", "127.0.0.1:0", "--authz-addr", "127.0.0.1:0",
			"--ca-addr", "127.0.0.1:0", "--ca-bundle-addr", "127.0.0.1:0", "--ca-token-file", tokens, "--log-format", "json"}, io.Discard, pw)
		_ = pw.Close()
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	lines := map[string]map[string]any{}
	sc := bufio.NewScanner(pr)
	for sc.Scan() {
		var line map[string]any
		if json.Unmarshal(sc.Bytes(), &line) == nil {
			if msg, _ := line["msg"].(string); msg != "" {
				lines[msg] = line
			}
			if line["msg"] == "garrison serving" {
				break
			}
		}
	}
	go func() { _, _ = io.Copy(io.Discard, pr) }()
	caLine, serving := lines["certificate authority serving"], lines["garrison serving"]
	if caLine == nil || serving == nil {
		t.Fatalf("serve did not start the CA and ext_authz: %v", lines)
	}

	socket := filepath.Join(data, "sds.sock")
	agent := exec.Command(bin, "agent", "--ca-addr", caLine["ca"].(string), "--ca-root-cert", filepath.Join(data, "ca", "root-cert.pem"),
		"--ca-bundle-url", "https://"+caLine["bundle"].(string), "--token-file", tokenFile, "--sds-socket", socket,
		"--health-addr", "127.0.0.1:0", "--log-format", "json")
	stderr, err := agent.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := agent.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = agent.Process.Kill(); _ = agent.Wait() })
	waitForLog(t, stderr, "garrison agent serving")

	st := sdstest.NewStream(t, sdstest.Dial(t, socket), sdstest.Node("sidecar~10.0.0.5~productpage.default~default.svc.cluster.local"))
	// As Envoy does: the certificate first, then the validation context.
	st.Subscribe("default")
	r := st.Recv(30 * time.Second)
	st.ACK(r)
	st.Subscribe("default", "ROOTCA")
	r = st.Recv(30 * time.Second)
	st.ACK(r)
	secrets := sdstest.MustSecrets(t, r)
	chainPEM := secrets["default"].GetTlsCertificate().GetCertificateChain().GetInlineBytes()
	chain, err := catest.ParseCerts(chainPEM)
	if err != nil || len(chain) == 0 || len(chain[0].URIs) != 1 {
		t.Fatalf("default secret: %v", err)
	}
	leaf := chain[0]
	if got := leaf.URIs[0].String(); got != "spiffe://cluster.local/ns/default/sa/bookinfo-productpage" {
		t.Fatalf("agent got %s", got)
	}
	if secrets["ROOTCA"] == nil {
		t.Fatal("no ROOTCA")
	}

	// ext_authz decides once the first policy set is live (/readyz waits
	// for every plane).
	monitoring := serving["monitoring"].(string)
	eventually(t, "serve ready", func() bool { code, _ := get(t, "http://"+monitoring+"/readyz"); return code == 200 })

	// productpage asks details for /details/0 with its certificate, as
	// Envoy's ext_authz filter sends it (include_peer_certificate).
	conn, err := grpc.NewClient(serving["authz"].(string), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	client := authv3.NewAuthorizationClient(conn)
	leafPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leaf.Raw})
	check := func() *authv3.CheckResponse {
		t.Helper()
		resp, err := client.Check(ctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
			Source:      &authv3.AttributeContext_Peer{Principal: leaf.URIs[0].String(), Certificate: url.QueryEscape(string(leafPEM))},
			Destination: &authv3.AttributeContext_Peer{Principal: "spiffe://cluster.local/ns/default/sa/bookinfo-details"},
			Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
				Method: "GET", Path: "/details/0", Host: "details:9080",
				Headers: map[string]string{":method": "GET", ":path": "/details/0", ":authority": "details:9080"},
			}},
			ContextExtensions: map[string]string{"garrison.io/namespace": "default", "garrison.io/label/app": "details",
				"garrison.io/label/version": "v1", "garrison.io/services": "details.default.svc.cluster.local"},
		}})
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	if resp := check(); code.Code(resp.GetStatus().GetCode()) != code.Code_OK {
		t.Fatalf("productpage with its certificate: %v", resp)
	}
	if rc, _, errOut := runCLI(t, "ca", "revoke", "--serial", authority.FormatSerial(leaf.SerialNumber), "--data-dir", data); rc != 0 {
		t.Fatalf("ca revoke: %s", errOut)
	}
	resp := check()
	if code.Code(resp.GetStatus().GetCode()) == code.Code_OK || !strings.Contains(resp.GetDeniedResponse().GetBody(), "revoked") {
		t.Fatalf("productpage with its revoked certificate: %v", resp)
	}

	// garrison status shows the CA beside the configuration.
	_, out, _ := runCLI(t, "status", "--addr", monitoring)
	if !strings.Contains(out, "ca cluster.local (selfsigned): signing CA expires") || !strings.Contains(out, "revoked") {
		t.Errorf("status:\n%s", out)
	}
}
