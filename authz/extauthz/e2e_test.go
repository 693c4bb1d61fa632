package extauthz

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/garrison-mesh/garrison/authz/engine"
	"github.com/garrison-mesh/garrison/policies"
	"github.com/garrison-mesh/garrison/policies/source/file"
)

// bookinfoResources parses every YAML file of the bookinfo example.
func bookinfoResources(t *testing.T) []*policies.Resource {
	t.Helper()
	root := filepath.Join("..", "..", "deploy", "examples", "bookinfo")
	var all []*policies.Resource
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".yaml") || file.IsTestFile(path) {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rs, problems := policies.Parse(path, data)
		if errs := problems.Errors(); len(errs) > 0 {
			t.Fatalf("parse %s: %v", path, errs)
		}
		all = append(all, rs...)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return all
}

// The whole authorization plane as cmd wires it: the bookinfo example
// parsed into a store, the real engine compiling and running it, this
// server in front, a real gRPC client. bookinfo turns legacy RBAC on for
// namespace default; ServiceRole products-viewer (bound to "*") allows GET
// and HEAD on productpage and nothing else for most paths.
func TestBookinfoEndToEnd(t *testing.T) {
	store := policies.NewStore(policies.StoreConfig{})
	eng, err := engine.New(engine.Config{Store: store})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	engDone := make(chan error, 1)
	go func() { engDone <- eng.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-engDone; err != nil {
			t.Errorf("engine Run: %v", err)
		}
	})

	var declog syncBuffer
	r := start(t, Config{Decider: eng, DenyBodyDetails: true, DecisionLog: &declog},
		ListenConfig{HealthPoll: time.Millisecond})

	// Not ready before a snapshot: Checks fail closed.
	resp, err := r.client.Check(context.Background(), productpageRequest("GET", "/productpage"))
	if err != nil {
		t.Fatal(err)
	}
	assertDenied(t, resp, codes.PermissionDenied, 403, "RBAC: access denied (policy evaluation failed)")

	// Publish bookinfo and wait, as a health-checking client would, for the
	// server to report SERVING.
	watchCtx, stopWatch := context.WithCancel(context.Background())
	defer stopWatch()
	watch, err := healthpb.NewHealthClient(r.conn).Watch(watchCtx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, problems := store.Update(bookinfoResources(t)); len(problems.Errors()) > 0 {
		t.Fatalf("snapshot: %v", problems.Errors())
	}
	for {
		st, err := watch.Recv()
		if err != nil {
			t.Fatalf("health Watch: %v", err)
		}
		if st.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			break
		}
	}
	stopWatch()

	for _, method := range []string{"GET", "HEAD"} {
		resp, err := r.client.Check(context.Background(), productpageRequest(method, "/productpage"))
		if err != nil {
			t.Fatal(err)
		}
		if codes.Code(resp.GetStatus().GetCode()) != codes.OK || resp.GetOkResponse() == nil {
			t.Errorf("%s /productpage: %v, want allowed by products-viewer", method, resp)
		}
	}
	resp, err = r.client.Check(context.Background(), productpageRequest("POST", "/productpage"))
	if err != nil {
		t.Fatal(err)
	}
	d := resp.GetDeniedResponse()
	if codes.Code(resp.GetStatus().GetCode()) != codes.PermissionDenied || d == nil ||
		d.GetStatus().GetCode() != 403 || !strings.HasPrefix(d.GetBody(), "RBAC: access denied") {
		t.Errorf("POST /productpage: %v, want 403 RBAC: access denied", resp)
	}
	t.Logf("POST denied with body %q, headers %v", d.GetBody(), d.GetHeaders())

	lines := strings.Split(strings.TrimSpace(declog.String()), "\n")
	if len(lines) != 4 {
		t.Fatalf("%d decision-log lines, want 4:\n%s", len(lines), declog.String())
	}
	allowed := `"decision":"allow","status":200,"reason":"rbac-allowed","policy":"default/bind-productpage-viewer","kind":"ServiceRoleBinding"`
	for i, want := range []string{
		`"decision":"error","status":403,"reason":"error"`,
		allowed, allowed,
		`"decision":"deny","status":403,"reason":"rbac-denied"`,
	} {
		if !strings.Contains(lines[i], want) {
			t.Errorf("decision-log line %d lacks %s: %s", i, want, lines[i])
		}
	}
	t.Logf("allow line: %s", lines[1])
	t.Logf("deny line: %s", lines[3])
}

// productpageRequest is a request from the ingress gateway to productpage
// without Garrison's context extensions, so the engine derives the
// workload from the destination principal.
func productpageRequest(method, path string) *authv3.CheckRequest {
	req := checkRequest(method, path, nil)
	req.Attributes.ContextExtensions = nil
	return req
}
