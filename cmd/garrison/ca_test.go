package main

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	pb "istio.io/api/security/v1alpha1"

	"github.com/garrison-mesh/garrison/ca/server"
)

// TestCACommands drives the CA end to end through the CLI: ca init
// offline, serve with the CA, token create, a CreateCertificate with the
// token over TLS verified with root-cert.pem, then issue, list, revoke,
// rotate and status over the admin socket, and the bundle endpoint.
func TestCACommands(t *testing.T) {
	// A short directory: a Unix socket path must fit in 108 bytes.
	data, err := os.MkdirTemp("", "gca")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(data) })
	code, out, errOut := runCLI(t, "ca", "init", "--data-dir", data, "--trust-domain", "example.org")
	if code != 0 || !strings.Contains(out, "example.org") {
		t.Fatalf("ca init: exit %d\n%s%s", code, out, errOut)
	}
	rootsBefore, err := os.ReadFile(filepath.Join(data, "ca", "root-cert.pem"))
	if err != nil {
		t.Fatal(err)
	}
	tokens := filepath.Join(data, "tokens.yaml")
	code, tok, errOut := runCLI(t, "ca", "token", "create", "--namespace", "default", "--service-account", "reviews", "--token-file", tokens)
	if code != 0 {
		t.Fatalf("token create: %s", errOut)
	}
	tok = strings.TrimSpace(tok)
	if raw, _ := os.ReadFile(tokens); strings.Contains(string(raw), tok) {
		t.Fatal("the token file holds the token itself")
	}

	ctx, cancel := context.WithCancel(t.Context())
	pr, pw := io.Pipe()
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"serve", "--config", "../../deploy/examples/bookinfo", "--data-dir", data,
			"--trust-domain", "example.org", "--monitoring-addr", "127.0.0.1:0", "--authz-addr", "127.0.0.1:0",
			"--ca-addr", "127.0.0.1:0", "--ca-bundle-addr", "127.0.0.1:0", "--ca-token-file", tokens, "--log-format", "json"}, io.Discard, pw)
		_ = pw.Close()
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	var caLine map[string]any
	sc := bufio.NewScanner(pr)
	for sc.Scan() {
		var line map[string]any
		if json.Unmarshal(sc.Bytes(), &line) == nil {
			if line["msg"] == "certificate authority serving" {
				caLine = line
			}
			if line["msg"] == "garrison serving" {
				break
			}
		}
	}
	go func() { _, _ = io.Copy(io.Discard, pr) }()
	if caLine == nil {
		t.Fatal("serve did not start the CA")
	}
	if roots, _ := os.ReadFile(filepath.Join(data, "ca", "root-cert.pem")); string(roots) != string(rootsBefore) {
		t.Fatal("serve changed the root ca init made")
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(rootsBefore)
	tlsCfg := &tls.Config{RootCAs: pool, ServerName: "localhost", MinVersion: tls.VersionTLS12}

	conn, err := grpc.NewClient(caLine["ca"].(string), grpc.WithTransportCredentials(credentials.NewTLS(tlsCfg)))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	rctx := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok)
	resp, err := pb.NewIstioCertificateServiceClient(conn).CreateCertificate(rctx, &pb.IstioCertificateRequest{
		Csr: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})), ValidityDuration: 3600,
	})
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode([]byte(resp.CertChain[0]))
	leaf, _ := x509.ParseCertificate(block.Bytes)
	if leaf.URIs[0].String() != "spiffe://example.org/ns/default/sa/reviews" || len(resp.CertChain) != 3 {
		t.Fatalf("issued %v in a chain of %d", leaf.URIs, len(resp.CertChain))
	}

	cli := func(args ...string) string {
		t.Helper()
		code, out, errOut := runCLI(t, append(append([]string{"ca"}, args...), "--data-dir", data)...)
		if code != 0 {
			t.Fatalf("garrison ca %s: exit %d: %s", strings.Join(args, " "), code, errOut)
		}
		return out
	}
	outDir := filepath.Join(data, "issued")
	cli("issue", "--spiffe-id", "spiffe://example.org/ns/ops/sa/debug", "--out-dir", outDir, "--ttl", "2h")
	if fi, err := os.Stat(filepath.Join(outDir, "key.pem")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key.pem: %v %v", fi, err)
	}
	var certs []server.CertificateJSON
	if err := json.Unmarshal([]byte(cli("list", "-o", "json")), &certs); err != nil {
		t.Fatal(err)
	}
	var callers []string
	for _, c := range certs {
		callers = append(callers, c.Caller)
	}
	if !strings.Contains(strings.Join(callers, ","), "operator") || !strings.Contains(strings.Join(callers, ","), "token:default/reviews") {
		t.Fatalf("journal callers %v", callers)
	}
	serial := leaf.SerialNumber.Text(16)
	if len(serial)%2 == 1 {
		serial = "0" + serial
	}
	if out := cli("revoke", "--serial", serial, "--reason", "keyCompromise"); !strings.Contains(out, "revoked 1") {
		t.Fatal(out)
	}
	if out := cli("revoke", "--spiffe-id", "spiffe://example.org/ns/ops/sa/debug"); !strings.Contains(out, "revoked 1") {
		t.Fatal(out)
	}
	cli("rotate", "--root")
	var st struct {
		Roots  []json.RawMessage     `json:"roots"`
		Counts struct{ Revoked int } `json:"counts"`
	}
	if err := json.Unmarshal([]byte(cli("status", "-o", "json")), &st); err != nil {
		t.Fatal(err)
	}
	if len(st.Roots) != 2 || st.Counts.Revoked != 2 {
		t.Fatalf("after a root rotation and two revocations: %d roots, %d revoked", len(st.Roots), st.Counts.Revoked)
	}
	// root-cert.pem now carries both roots; the bundle endpoint too.
	deadline := time.Now().Add(5 * time.Second)
	for {
		roots, _ := os.ReadFile(filepath.Join(data, "ca", "root-cert.pem"))
		if strings.Count(string(roots), "BEGIN CERTIFICATE") == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("root-cert.pem not rewritten after the root rotation")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// The server certificate follows the new root: clients trust the
	// bundle as it is now.
	newRoots, _ := os.ReadFile(filepath.Join(data, "ca", "root-cert.pem"))
	tlsCfg.RootCAs = x509.NewCertPool()
	tlsCfg.RootCAs.AppendCertsFromPEM(newRoots)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: tlsCfg}}
	r, err := hc.Get("https://" + caLine["bundle"].(string) + "/bundle")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(r.Body)
	_ = r.Body.Close()
	b, err := spiffebundle.Parse(spiffeid.RequireTrustDomainFromString("example.org"), body)
	if err != nil || len(b.X509Authorities()) != 2 {
		t.Fatalf("bundle: %v", err)
	}
	r, err = hc.Get("https://" + caLine["bundle"].(string) + "/crl")
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(r.Body)
	_ = r.Body.Close()
	crl, err := x509.ParseRevocationList(body)
	if err != nil || len(crl.RevokedCertificateEntries) != 2 || r.Header.Get("Content-Type") != "application/pkix-crl" {
		t.Fatalf("CRL: %v", err)
	}
	// A second server on the same data directory is refused.
	if code, _, errOut := runCLI(t, "ca", "init", "--data-dir", data); code == 0 || !strings.Contains(errOut, "in use") {
		t.Fatalf("ca init beside a running server: exit %d %s", code, errOut)
	}
}
