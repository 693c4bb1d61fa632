package main

import (
	"bytes"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	opabundle "github.com/open-policy-agent/opa/v1/bundle"
)

const (
	bookinfoDir       = "../../deploy/examples/bookinfo"
	bookinfoModernDir = "../../deploy/examples/bookinfo-modern"
)

// denyDelete is a policy set for the failure tests: DELETE is denied in
// namespace shop, everything else is allowed (no ALLOW policy).
const denyDelete = `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-delete, namespace: shop}
spec:
  action: DENY
  rules:
  - to: [{operation: {methods: [DELETE], ports: ["8080"]}}]
`

const denyDeleteCases = `- name: GET is allowed
  request: {destination: {namespace: shop, labels: {app: cart}}, method: GET}
  expect: {allowed: true, reason: no-policy}
- name: DELETE is allowed (wrong)
  request: {destination: {namespace: shop}, method: DELETE}
  expect: {allowed: true}
- name: bad source ip
  request: {source: {ip: nope}}
  expect: {allowed: true}
`

func TestPolicyTestExamplesPass(t *testing.T) {
	t.Parallel()
	for dir, n := range map[string]string{bookinfoDir: "23", bookinfoModernDir: "26"} {
		code, out, errOut := runCLI(t, "policy", "test", dir)
		if code != 0 || out != "PASS "+n+"/"+n+"\n" {
			t.Errorf("policy test %s: exit %d\n%s%s", dir, code, out, errOut)
		}
	}
	code, out, _ := runCLI(t, "policy", "test", "-v", bookinfoDir)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) != 24 {
		t.Fatalf("-v: exit %d, %d lines:\n%s", code, len(lines), out)
	}
	if want := "PASS: " + filepath.Join(bookinfoDir, "security_test.yaml") + ":20: A1 gateway GET /productpage with a JWT is allowed"; lines[0] != want {
		t.Errorf("first line %q, want %q", lines[0], want)
	}
}

func TestPolicyTestReportsFailures(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "policy.yaml"), denyDelete)
	writeFile(t, filepath.Join(dir, "tests", "cases_test.yaml"), denyDeleteCases)
	file := filepath.Join(dir, "tests", "cases_test.yaml")

	code, out, _ := runCLI(t, "policy", "test", dir)
	want := "FAIL: " + file + ":4: DELETE is allowed (wrong): allowed: got false, want true (decided by shop/deny-delete rule 0, reason denied)\n" +
		"FAIL: " + file + ":7: bad source ip: request: source: ip \"nope\": ParseAddr(\"nope\"): unable to parse IP\n" +
		"FAIL 1/3 (2 failed, 1 error)\n"
	if code != 1 || out != want {
		t.Errorf("exit %d, output:\n%s\nwant:\n%s", code, out, want)
	}

	// -v adds the passes; --run filters by name.
	code, out, _ = runCLI(t, "policy", "test", "-v", "--run", "^GET", dir)
	if code != 0 || out != "PASS: "+file+":1: GET is allowed\nPASS 1/1\n" {
		t.Errorf("--run: exit %d:\n%s", code, out)
	}
	if code, _, errOut := runCLI(t, "policy", "test", "--run", "(", dir); code != 1 || !strings.Contains(errOut, "--run") {
		t.Errorf("a bad --run: exit %d: %s", code, errOut)
	}

	// A test file named as an argument is run against the other arguments'
	// policies.
	code, out, _ = runCLI(t, "policy", "test", "--run", "DELETE", filepath.Join(dir, "policy.yaml"), file)
	if code != 1 || !strings.HasSuffix(out, "FAIL 0/1 (1 failed)\n") {
		t.Errorf("files as arguments: exit %d:\n%s", code, out)
	}

	code, out, _ = runCLI(t, "policy", "test", "-o", "json", dir)
	var rep testReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, out)
	}
	if code != 1 || rep.Pass || rep.Total != 3 || rep.Passed != 1 || rep.Failed != 2 || rep.Errors != 1 || len(rep.Cases) != 3 {
		t.Fatalf("exit %d, report %+v", code, rep)
	}
	c := rep.Cases[1]
	if c.File != file || c.Line != 4 || c.Pass || c.Failure != "allowed: got false, want true" ||
		c.Decision == nil || c.Decision.Policy != "shop/deny-delete" || c.Decision.Status != 403 {
		t.Errorf("failed case: %+v", c)
	}
	if c := rep.Cases[2]; c.Error == "" || c.Decision != nil {
		t.Errorf("case without a decision: %+v", c)
	}
}

func TestPolicyTestUnreadableCasesAndNoTests(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "policy.yaml"), denyDelete)
	code, out, _ := runCLI(t, "policy", "test", dir)
	if code != 0 || out != "no test files (*_test.yaml)\n" {
		t.Errorf("no test files: exit %d: %q", code, out)
	}
	writeFile(t, filepath.Join(dir, "bad_test.yaml"), "- name: no expectation\n  request: {}\n")
	code, out, _ = runCLI(t, "policy", "test", dir)
	want := "FAIL: " + filepath.Join(dir, "bad_test.yaml") + ": reading cases: line 1: case \"no expectation\": expect.allowed is required\n"
	if code != 1 || !strings.HasPrefix(out, want) {
		t.Errorf("unreadable cases: exit %d:\n%s\nwant prefix:\n%s", code, out, want)
	}
}

func TestPolicyCommandsRejectInvalidPolicies(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "reviews.yaml"), invalidVirtualService)
	writeFile(t, filepath.Join(dir, "x_test.yaml"), "- {name: a, request: {}, expect: {allowed: true}}\n")
	problem := filepath.Join(dir, "reviews.yaml") + ":13: VirtualService default/reviews: http[0].route[0].destination.port.number:"

	code, out, _ := runCLI(t, "policy", "test", dir)
	if code != 1 || !strings.Contains(out, problem) || !strings.HasPrefix(lastLine(out), "INVALID: 1 files, 1 errors") {
		t.Errorf("test: exit %d:\n%s", code, out)
	}
	code, out, _ = runCLI(t, "policy", "test", "-o", "json", dir)
	var rep testReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil || code != 1 || rep.Pass || len(rep.Problems) != 1 || rep.Total != 0 {
		t.Errorf("test -o json: exit %d, %v: %+v", code, err, rep)
	}

	bundlePath := filepath.Join(dir, "out", "bundle.tar.gz")
	code, out, errOut := runCLI(t, "policy", "compile", dir, "-o", bundlePath)
	if code != 1 || out != "" || !strings.Contains(errOut, problem) {
		t.Errorf("compile: exit %d:\n%s%s", code, out, errOut)
	}
	if _, err := os.Stat(bundlePath); !os.IsNotExist(err) {
		t.Errorf("compile wrote a bundle of invalid policies: %v", err)
	}
	writeFile(t, filepath.Join(dir, "req.yaml"), "method: GET\n")
	code, _, errOut = runCLI(t, "policy", "explain", dir, "--request", filepath.Join(dir, "req.yaml"))
	if code != 1 || !strings.Contains(errOut, problem) {
		t.Errorf("explain: exit %d:\n%s", code, errOut)
	}
}

// TestTestFilesAreNotConfiguration: validate and serve skip *_test.yaml.
func TestTestFilesAreNotConfiguration(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "policy.yaml"), denyDelete)
	writeFile(t, filepath.Join(dir, "sub", "cases_test.yaml"), denyDeleteCases)
	writeFile(t, filepath.Join(dir, "more_test.yml"), "not: [a, list")

	code, out, _ := runCLI(t, "validate", dir)
	if code != 0 || out != "valid: 1 files, 1 resources, 0 errors, 0 warnings\n" {
		t.Errorf("validate: exit %d: %q", code, out)
	}
	for _, d := range []string{bookinfoDir, bookinfoModernDir} {
		if code, out, _ := runCLI(t, "validate", d); code != 0 || !strings.Contains(out, " 0 errors, 0 warnings") {
			t.Errorf("validate %s: exit %d: %s", d, code, out)
		}
	}

	s := startServe(t, dir)
	eventually(t, "readiness", func() bool { code, _ := get(t, "http://"+s.addr+"/readyz"); return code == 200 })
	_, body := get(t, "http://"+s.addr+"/debug/status")
	var status struct {
		Source struct {
			Files        int   `json:"files"`
			Resources    int   `json:"resources"`
			InvalidFiles []any `json:"invalidFiles"`
		} `json:"source"`
	}
	if err := json.Unmarshal([]byte(body), &status); err != nil {
		t.Fatalf("/debug/status: %v\n%s", err, body)
	}
	if status.Source.Files != 1 || status.Source.Resources != 1 || len(status.Source.InvalidFiles) != 0 {
		t.Errorf("serve read the test files: %s", body)
	}
}

func TestPolicyCompile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	bundlePath := filepath.Join(dir, "bundle.tar.gz")
	code, out, errOut := runCLI(t, "policy", "compile", bookinfoModernDir, "-o", bundlePath)
	if code != 0 || out != "" || errOut != "" {
		t.Fatalf("exit %d:\n%s%s", code, out, errOut)
	}
	data, err := os.ReadFile(bundlePath)
	if err != nil {
		t.Fatal(err)
	}
	b, err := opabundle.NewReader(bytes.NewReader(data)).Read()
	if err != nil {
		t.Fatalf("OPA's bundle reader: %v", err)
	}
	if b.Manifest.Roots == nil || !slices.Equal(*b.Manifest.Roots, []string{"garrison", "envoy"}) ||
		b.Manifest.RegoVersion == nil || *b.Manifest.RegoVersion != 1 {
		t.Errorf("manifest: %+v", b.Manifest)
	}
	var paths []string
	for _, m := range b.Modules {
		paths = append(paths, m.Path)
	}
	slices.Sort(paths)
	if want := []string{"/envoy/authz/allow.rego", "/garrison/authz/library.rego", "/garrison/authz/policies.rego"}; !slices.Equal(paths, want) {
		t.Errorf("modules %v, want %v", paths, want)
	}

	// - writes the same bytes to standard output.
	var stdout bytes.Buffer
	cmd := newRootCommand(&stdout, io.Discard)
	cmd.SetArgs([]string{"policy", "compile", bookinfoModernDir, "-o", "-"})
	if err := cmd.Execute(); err != nil || !bytes.Equal(stdout.Bytes(), data) {
		t.Errorf("-o -: %v, %d bytes, want the file's %d", err, stdout.Len(), len(data))
	}

	// --rego-dir --split: one module per resource, for review.
	regoDir := filepath.Join(dir, "rego")
	if code, out, errOut := runCLI(t, "policy", "compile", bookinfoModernDir, "--rego-dir", regoDir, "--split"); code != 0 {
		t.Fatalf("--rego-dir: exit %d:\n%s%s", code, out, errOut)
	}
	for _, f := range []string{".manifest", "data.json", "envoy/authz/allow.rego", "garrison/authz/library.rego",
		"garrison/authz/policies/default/authorizationpolicy-products-viewer.rego"} {
		if _, err := os.Stat(filepath.Join(regoDir, f)); err != nil {
			t.Errorf("--rego-dir --split: %v", err)
		}
	}

	if code, _, errOut := runCLI(t, "policy", "compile", bookinfoModernDir); code != 1 || !strings.Contains(errOut, "exactly one of -o FILE and --rego-dir DIR") {
		t.Errorf("no output: exit %d: %s", code, errOut)
	}
	if code, _, _ := runCLI(t, "policy", "compile", bookinfoModernDir, "-o", bundlePath, "--rego-dir", regoDir); code != 1 {
		t.Errorf("two outputs: exit %d", code)
	}
}

func TestPolicyCompileWarns(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "waypoint.yaml"), `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: waypoint, namespace: shop}
spec:
  targetRefs: [{kind: Gateway, group: gateway.networking.k8s.io, name: waypoint}]
  rules: [{}]
`)
	code, _, errOut := runCLI(t, "policy", "compile", dir, "-o", filepath.Join(dir, "b.tar.gz"))
	if code != 0 || !strings.HasPrefix(errOut, "warning: "+filepath.Join(dir, "waypoint.yaml")+":1") {
		t.Errorf("exit %d, stderr %q", code, errOut)
	}
}

const a2Request = `source: {principal: cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account}
destination: {namespace: default, labels: {app: productpage, version: v1}, services: [productpage.default.svc.cluster.local], port: 9080}
method: GET
path: /productpage
`

func TestPolicyExplain(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	req := filepath.Join(dir, "req.yaml")
	writeFile(t, req, a2Request)
	code, out, errOut := runCLI(t, "policy", "explain", bookinfoModernDir, "--request", req)
	if code != 0 {
		t.Fatalf("exit %d:\n%s%s", code, out, errOut)
	}
	authz := filepath.Join(bookinfoModernDir, "security", "authorization-policies.yaml")
	for _, want := range []string{
		"request:   GET /productpage from cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account\n",
		"workload:  namespace default, labels app=productpage,version=v1, services productpage.default.svc.cluster.local\n",
		"decision:  DENY 403 (decided by default/productpage-require-jwt rule 0, reason denied)\n",
		"AuthorizationPolicies that apply to the workload:\n" +
			"  ALLOW default/allow-nothing  " + authz + ":11\n" +
			"      no rules: allows nothing\n" +
			"  DENY default/productpage-require-jwt  " + filepath.Join(bookinfoModernDir, "security", "request-authentication.yaml") + ":31\n" +
			"      rule 0: MATCH\n" +
			"  ALLOW default/products-viewer  " + authz + ":19\n" +
			"      rule 0: MATCH\n" +
			"  ALLOW default/products-viewer-version  " + authz + ":39\n" +
			"      rule 0: no match\n",
		`opa-envoy-plugin with the compiled bundle answers: {"allowed":false,"body":"RBAC: access denied by AuthorizationPolicy default/productpage-require-jwt rule 0","headers":{"x-garrison-decision":"denied"},"http_status":403}`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks\n%s\ngot:\n%s", want, out)
		}
	}
	if strings.Contains(out, "Legacy RBAC") || strings.Contains(out, "Input:") {
		t.Errorf("unexpected sections:\n%s", out)
	}

	code, out, _ = runCLI(t, "policy", "explain", bookinfoModernDir, "--request", req, "-o", "json")
	var rep explainReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil || code != 0 {
		t.Fatalf("exit %d, %v:\n%s", code, err, out)
	}
	if rep.Decision == nil || rep.Decision.Allowed || rep.Decision.Policy != "default/productpage-require-jwt" ||
		rep.Workload.Namespace != "default" || len(rep.Policies) != 4 || rep.Input == nil || len(rep.Matches["deny_matches"]) != 1 {
		t.Fatalf("report: %+v", rep)
	}
	if p := rep.Policies[1]; p.Policy != "default/productpage-require-jwt" || p.Action != "DENY" || p.Rules != 1 || !slices.Equal(p.Matched, []int{0}) {
		t.Errorf("policy: %+v", p)
	}
}

func TestPolicyExplainCases(t *testing.T) {
	t.Parallel()
	tests := filepath.Join(bookinfoDir, "security_test.yaml")
	const name = "A6 gateway POST /login with a JWT is allowed (source namespace istio-system, destination version v1)"
	code, out, errOut := runCLI(t, "policy", "explain", bookinfoDir, "--request", tests, "--case", name)
	if code != 0 {
		t.Fatalf("exit %d:\n%s%s", code, out, errOut)
	}
	rbac := filepath.Join(bookinfoDir, "security", "rbac-productpage.yaml")
	for _, want := range []string{
		"case:      " + name + "\n",
		"decision:  ALLOW (decided by default/bind-productpage-login rule 0, reason rbac-allowed)\n",
		"expected:  met\n",
		"AuthorizationPolicies that apply to the workload:\n  none\n",
		"Legacy RBAC (rbac.istio.io): ENFORCED by ClusterRbacConfig default (mode ON_WITH_INCLUSION)\n",
		"  default/bind-productpage-login -> products-viewer-version  " + rbac + ":55\n      role rule 0, subject 0: MATCH\n",
		"  default/bind-productpage-viewer -> products-viewer  " + rbac + ":18\n      no match\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks\n%s\ngot:\n%s", want, out)
		}
	}

	// A list needs --case; an unmet expectation exits 1.
	if code, _, errOut := runCLI(t, "policy", "explain", bookinfoDir, "--request", tests); code != 1 || !strings.Contains(errOut, "23 cases: name one with --case") {
		t.Errorf("no --case: exit %d: %s", code, errOut)
	}
	dir := t.TempDir()
	c := filepath.Join(dir, "case.yaml")
	writeFile(t, c, "name: wrong\nrequest:\n"+indent(a2Request)+"expect: {allowed: true}\n")
	code, out, _ = runCLI(t, "policy", "explain", bookinfoModernDir, "--request", c)
	if code != 1 || !strings.Contains(out, "expected:  NOT met: allowed: got false, want true\n") {
		t.Errorf("unmet expectation: exit %d:\n%s", code, out)
	}
	writeFile(t, c, "metod: GET\n")
	if code, _, errOut := runCLI(t, "policy", "explain", bookinfoModernDir, "--request", c); code != 1 || !strings.Contains(errOut, "field metod not found") {
		t.Errorf("a misspelt field: exit %d: %s", code, errOut)
	}
	if code, _, errOut := runCLI(t, "policy", "explain", bookinfoModernDir); code != 1 || !strings.Contains(errOut, "--request is required") {
		t.Errorf("no --request: exit %d: %s", code, errOut)
	}
}

func TestPolicyExplainStdinVerbose(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	cmd := newRootCommand(&out, io.Discard)
	cmd.SetIn(strings.NewReader(a2Request))
	cmd.SetArgs([]string{"policy", "explain", bookinfoModernDir, "--request", "-", "-v"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "\nInput:\n{\n") || !strings.Contains(out.String(), `"garrison.io/namespace": "default"`) {
		t.Errorf("-v shows no input:\n%s", out.String())
	}
}

func indent(s string) string {
	var b strings.Builder
	for line := range strings.Lines(s) {
		b.WriteString("  " + line)
	}
	return b.String()
}
