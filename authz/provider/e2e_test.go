package provider

import (
	"context"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/genproto/googleapis/rpc/code"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	meshconfig "istio.io/api/mesh/v1alpha1"

	"github.com/garrison-mesh/garrison/authz/compile"
	"github.com/garrison-mesh/garrison/authz/engine"
	"github.com/garrison-mesh/garrison/authz/extauthz"
	"github.com/garrison-mesh/garrison/policies"
)

const customPolicies = `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ext, namespace: shop}
spec:
  action: CUSTOM
  provider: {name: ext}
  rules:
  - to: [{operation: {paths: ["/ok*", "/private*"]}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: no-admin, namespace: shop}
spec:
  action: DENY
  rules:
  - to: [{operation: {paths: ["*/admin"]}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: unknown-provider, namespace: lab}
spec:
  action: CUSTOM
  provider: {name: nobody}
  rules: [{}]
`

// TestCustomEndToEnd: CUSTOM policies delegating to a real gRPC ext_authz
// provider, through the real engine and ext_authz server, asked by a real
// gRPC client as Envoy asks: Istio's order (the provider first, then DENY
// and ALLOW) and the provider's own answers reach the client.
func TestCustomEndToEnd(t *testing.T) {
	p, host, port := startGRPCProvider(t)
	providers, err := New(Config{Providers: []*meshconfig.MeshConfig_ExtensionProvider{grpcProviderConfig("ext", host, port, nil)}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(providers.Close)

	rs, problems := policies.Parse("custom.yaml", []byte(customPolicies))
	if errs := problems.Errors(); len(errs) > 0 {
		t.Fatal(errs)
	}
	snap, _ := policies.NewSnapshot(1, rs, policies.SnapshotOptions{})
	res, err := compile.Compile(snap, compile.Options{DenyBodyDetails: true})
	if err != nil {
		t.Fatal(err)
	}
	eng, err := engine.NewStatic(res, snap)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := extauthz.New(extauthz.Config{Decider: eng, Custom: providers, DenyBodyDetails: true})
	if err != nil {
		t.Fatal(err)
	}
	ep, err := srv.Listen(extauthz.ListenConfig{TCPAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ep.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	conn, err := grpc.NewClient(ep.TCPAddr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	client := authv3.NewAuthorizationClient(conn)

	for _, tc := range []struct {
		name      string
		ns, path  string
		asked     bool // the provider is asked
		allowed   bool
		status    int
		body      string
		extHeader string // the provider's upstream header on an allow
	}{
		{name: "provider allows, nothing denies", ns: "shop", path: "/ok/cart", asked: true, allowed: true, extHeader: "alice"},
		{name: "provider denies with its own answer", ns: "shop", path: "/private/x", asked: true, status: 401, body: "denied by ext-authz"},
		{name: "provider allows, a DENY policy still denies", ns: "shop", path: "/ok/admin", asked: true, status: 403,
			body: "RBAC: access denied by AuthorizationPolicy shop/no-admin rule 0"},
		{name: "not matched by the CUSTOM rule: provider not asked", ns: "shop", path: "/public", allowed: true},
		{name: "an unconfigured provider denies", ns: "lab", path: "/anything", status: 403},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := checkRequest("GET", tc.path, nil)
			req.Attributes.ContextExtensions["garrison.io/namespace"] = tc.ns
			resp, err := client.Check(context.Background(), req)
			if err != nil {
				t.Fatal(err)
			}
			// The provider is called inside Check: what it was asked is in
			// its channel before the answer reaches the client.
			asked := len(p.got) > 0
			for len(p.got) > 0 {
				<-p.got
			}
			if asked != tc.asked {
				t.Errorf("provider asked: %t, want %t", asked, tc.asked)
			}
			allowed := code.Code(resp.GetStatus().GetCode()) == code.Code_OK
			if allowed != tc.allowed {
				t.Fatalf("allowed %t, want %t (%v)", allowed, tc.allowed, resp)
			}
			if allowed {
				var ext string
				for _, h := range resp.GetOkResponse().GetHeaders() {
					if h.GetHeader().GetKey() == "x-ext-user" {
						ext = h.GetHeader().GetValue()
					}
				}
				if ext != tc.extHeader {
					t.Errorf("x-ext-user %q, want %q", ext, tc.extHeader)
				}
				return
			}
			d := resp.GetDeniedResponse()
			if int(d.GetStatus().GetCode()) != tc.status || (tc.body != "" && d.GetBody() != tc.body) {
				t.Errorf("denied %d %q, want %d %q", d.GetStatus().GetCode(), d.GetBody(), tc.status, tc.body)
			}
		})
	}
}
