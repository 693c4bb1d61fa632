package runner

import (
	"os"
	"path/filepath"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/garrison-mesh/garrison/authz/cases"
)

func denied(code int, header string) *authv3.CheckResponse {
	dr := &authv3.DeniedHttpResponse{}
	if code != 0 {
		dr.Status = &typev3.HttpStatus{Code: typev3.StatusCode(code)}
	}
	if header != "" {
		dr.Headers = []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: DecisionHeader, Value: header}}}
	}
	return &authv3.CheckResponse{Status: status.New(codes.PermissionDenied, "").Proto(),
		HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: dr}}
}

func TestFromCheckResponse(t *testing.T) {
	t.Parallel()
	one := 1
	for _, tc := range []struct {
		name string
		resp *authv3.CheckResponse
		want cases.Decision
	}{
		{"ok", &authv3.CheckResponse{Status: status.New(codes.OK, "").Proto()}, cases.Decision{Allowed: true, Status: 200}},
		{"no status is 403", denied(0, ""), cases.Decision{Status: 403}},
		{"400", denied(400, "reason=invalid-path"), cases.Decision{Status: 400, Reason: "invalid-path"}},
		{"rule", denied(403, "reason=denied; policy=ns/p; kind=AuthorizationPolicy; rule=1"),
			cases.Decision{Status: 403, Reason: "denied", Policy: "ns/p", Rule: &one}},
		{"custom", denied(403, "reason=custom; provider=ext; policy=ns/c"),
			cases.Decision{Status: 403, Reason: "custom", Policy: "ns/c"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := FromCheckResponse(tc.resp)
			if err != nil {
				t.Fatal(err)
			}
			if got.Allowed != tc.want.Allowed || got.Status != tc.want.Status || got.Reason != tc.want.Reason || got.Policy != tc.want.Policy ||
				(got.Rule == nil) != (tc.want.Rule == nil) || (got.Rule != nil && *got.Rule != *tc.want.Rule) {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
	errResp := &authv3.CheckResponse{Status: status.New(codes.Unavailable, "").Proto(),
		HttpResponse: &authv3.CheckResponse_ErrorResponse{ErrorResponse: &authv3.DeniedHttpResponse{}}}
	if _, err := FromCheckResponse(errResp); err == nil {
		t.Error("an error_response must not read as a decision")
	}
	if _, err := FromCheckResponse(denied(403, "reason=denied; rule=x")); err == nil {
		t.Error("a malformed rule must be an error")
	}
}

func TestIsConfigFile(t *testing.T) {
	t.Parallel()
	for name, want := range map[string]bool{
		"policies.yaml": true, "a.yml": true, "b.JSON": true, "cases_test.yaml": false, "x_test.json": false,
		".hidden.yaml": false, "known_failures.yaml": false, "README.md": false, "config.ref": false,
	} {
		if got := IsConfigFile(name); got != want {
			t.Errorf("IsConfigFile(%q) = %t, want %t", name, got, want)
		}
	}
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestLoadSuiteAndKnownFailures(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	write(t, filepath.Join(root, "a", "p.yaml"), "apiVersion: v1\nkind: Namespace\nmetadata: {name: x}\n")
	write(t, filepath.Join(root, "a", CasesFile), "- name: one\n  request: {path: /}\n  expect: {allowed: true}\n")
	write(t, filepath.Join(root, "shared", "p.yaml"), "apiVersion: v1\nkind: Namespace\nmetadata: {name: y}\n")
	write(t, filepath.Join(root, "b", "c", ConfigRefFile), "# elsewhere\n../../shared\n")
	write(t, filepath.Join(root, "b", "c", CasesFile), "- name: two\n  request: {path: /}\n  expect: {allowed: false}\n")
	write(t, filepath.Join(root, KnownFailuresFile), "- topic: a\n  case: one\n  modes: [wire]\n  reason: &r because\n- topic: b/c\n  case: gone\n  reason: *r\n")

	topics, err := LoadSuite(root)
	if err != nil {
		t.Fatal(err)
	}
	if len(topics) != 2 || topics[0].Name != "a" || topics[1].Name != "b/c" {
		t.Fatalf("topics: %+v", topics)
	}
	if got := topics[1].Files; len(got) != 1 || got[0] != "p.yaml" || topics[1].ConfigDir != filepath.Join(root, "b", "c", "..", "..", "shared") {
		t.Errorf("config.ref not followed: %s %v", topics[1].ConfigDir, got)
	}
	staged := t.TempDir()
	if err := topics[0].Stage(staged); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(staged, CasesFile)); err == nil {
		t.Error("the cases file was staged as configuration")
	}

	kf, err := LoadKnownFailures(filepath.Join(root, KnownFailuresFile))
	if err != nil {
		t.Fatal(err)
	}
	if kf.Lookup("a", "one", ModeWire) == nil || kf.Lookup("a", "one", ModeInProcess) != nil {
		t.Error("modes not honoured")
	}
	if stale := kf.Stale(topics); len(stale) != 1 || stale[0].Case != "gone" {
		t.Errorf("stale: %+v", stale)
	}
}

func TestParseCommand(t *testing.T) {
	t.Parallel()
	if _, err := ParseCommand("srv --listen {addr}"); err == nil {
		t.Error("a template without {config} must be refused")
	}
	c, err := ParseCommand(" srv  --config {config} --listen {addr} ")
	if err != nil || len(c.Args) != 5 {
		t.Fatalf("%v %q", err, c.Args)
	}
}
