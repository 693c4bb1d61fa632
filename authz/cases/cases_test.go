package cases

import (
	"strings"
	"testing"
)

func TestDecodeAndRender(t *testing.T) {
	t.Parallel()
	cs, err := Decode(strings.NewReader(`
- name: reviewers may read
  request:
    source: {principal: cluster.local/ns/default/sa/productpage, ip: 10.1.2.3}
    destination: {namespace: default, labels: {app: reviews}, services: [reviews.default.svc.cluster.local], port: 9080}
    method: GET
    path: /reviews/1?x=1
    headers: {X-User: jason}
    auth: {principal: issuer/alice, claims: {groups: [admins], level: 3}}
  expect: {allowed: true, policy: default/reviews-viewer, rule: 0}
`))
	if err != nil {
		t.Fatal(err)
	}
	if len(cs) != 1 || cs[0].Line != 2 {
		t.Fatalf("cases: %+v", cs)
	}
	req, err := cs[0].Request.CheckRequest()
	if err != nil {
		t.Fatal(err)
	}
	a := req.GetAttributes()
	if a.GetSource().GetPrincipal() != "spiffe://cluster.local/ns/default/sa/productpage" ||
		a.GetSource().GetAddress().GetSocketAddress().GetAddress() != "10.1.2.3" ||
		a.GetDestination().GetAddress().GetSocketAddress().GetPortValue() != 9080 {
		t.Errorf("peers: %v", a)
	}
	if a.GetContextExtensions()["garrison.io/label/app"] != "reviews" || a.GetContextExtensions()["garrison.io/namespace"] != "default" {
		t.Errorf("context extensions: %v", a.GetContextExtensions())
	}
	h := a.GetRequest().GetHttp()
	if h.GetHeaders()["x-user"] != "jason" || h.GetHeaders()[":path"] != "/reviews/1?x=1" || h.GetMethod() != "GET" {
		t.Errorf("http: %v", h)
	}
	md := a.GetMetadataContext().GetFilterMetadata()["istio_authn"].AsMap()
	if md["request.auth.principal"] != "issuer/alice" || md["request.auth.claims"].(map[string]any)["level"] != float64(3) {
		t.Errorf("authn metadata: %v", md)
	}
	rule := 1
	if got := cs[0].Expect.Mismatch(Decision{Allowed: true, Policy: "default/reviews-viewer", Rule: &rule}); !strings.Contains(got, "rule: got 1, want 0") {
		t.Errorf("mismatch: %q", got)
	}
	if got := cs[0].Expect.Mismatch(Decision{Allowed: true}); got != "" {
		t.Errorf("a stock OPA reports only allowed: %q", got)
	}
}

func TestDecodeRejectsUnknownFieldsAndMissingExpectation(t *testing.T) {
	t.Parallel()
	if _, err := Decode(strings.NewReader("- name: x\n  request: {methdo: GET}\n  expect: {allowed: true}\n")); err == nil {
		t.Error("unknown field accepted")
	}
	if _, err := Decode(strings.NewReader("- name: x\n  request: {method: GET}\n  expect: {}\n")); err == nil || !strings.Contains(err.Error(), "expect.allowed") {
		t.Errorf("missing expectation: %v", err)
	}
}

func TestTCPAndMetadata(t *testing.T) {
	t.Parallel()
	cs, err := Decode(strings.NewReader(`
- name: mysql from reviews
  request:
    tcp: true
    source: {principal: cluster.local/ns/default/sa/reviews}
    destination: {namespace: default, port: 3306}
    sni: outbound.mysql
    auth: {claims: {groups: [admins]}}
    metadata:
      envoy.filters.network.mysql_proxy: {db.table: [users, 2]}
      istio_authn: {source.principal: cluster.local/ns/default/sa/reviews}
  expect: {allowed: true}
`))
	if err != nil {
		t.Fatal(err)
	}
	req, err := cs[0].Request.CheckRequest()
	if err != nil {
		t.Fatal(err)
	}
	a := req.GetAttributes()
	if a.GetRequest() != nil {
		t.Errorf("a tcp request has HTTP attributes: %v", a.GetRequest())
	}
	if a.GetTlsSession().GetSni() != "outbound.mysql" {
		t.Errorf("sni: %v", a.GetTlsSession())
	}
	md := a.GetMetadataContext().GetFilterMetadata()
	mysql := md["envoy.filters.network.mysql_proxy"].AsMap()["db.table"].([]any)
	if len(mysql) != 2 || mysql[0] != "users" || mysql[1] != float64(2) {
		t.Errorf("mysql metadata: %v", mysql)
	}
	authn := md["istio_authn"].AsMap()
	if authn["source.principal"] != "cluster.local/ns/default/sa/reviews" || authn["request.auth.claims"] == nil {
		t.Errorf("istio_authn holds Metadata's and Auth's keys: %v", authn)
	}
	if cs[0].Request.Metadata["istio_authn"]["request.auth.claims"] != nil {
		t.Error("CheckRequest changed the request's Metadata")
	}

	for name, r := range map[string]Request{
		"a key of auth and metadata": {Auth: &Auth{Principal: "a/b"}, Metadata: map[string]map[string]any{"istio_authn": {"request.auth.principal": "c/d"}}},
		"a tcp request with a path":  {TCP: true, Path: "/x"},
		"a tcp request with headers": {TCP: true, Headers: map[string]string{"x": "y"}},
	} {
		if _, err := r.CheckRequest(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestMismatchOfRecordsAndDelegation(t *testing.T) {
	t.Parallel()
	cs, err := Decode(strings.NewReader(`
- name: delegated
  request: {}
  expect:
    allowed: false
    provider: ext
    afterCustom: {allowed: true, policy: ns/allow}
    dryRun: ["ns/dry DENY"]
    audit: []
    permissive: [ns/b1, ns/b2]
`))
	if err != nil {
		t.Fatal(err)
	}
	e := cs[0].Expect
	zero := 0
	match := Decision{Status: 403, Reason: "custom", Provider: "ext",
		AfterCustom: &Decision{Allowed: true, Status: 200, Reason: "allowed", Policy: "ns/allow", Rule: &zero},
		DryRun:      []string{"ns/dry DENY", "ns/dry DENY"}, Audit: []string{}, Permissive: []string{"ns/b2", "ns/b1"}, Complete: true}
	if got := e.Mismatch(match); got != "" {
		t.Errorf("matching decision: %q", got)
	}
	for _, tc := range []struct {
		name string
		edit func(*Decision)
		want string
	}{
		{"other provider", func(d *Decision) { d.Provider = "other" }, `provider: got "other", want ext`},
		{"not delegated", func(d *Decision) { d.Provider, d.AfterCustom = "", nil }, `provider: got "", want ext; afterCustom: none`},
		{"after custom denies", func(d *Decision) { d.AfterCustom = &Decision{Reason: "denied", Policy: "ns/deny"} }, "afterCustom: allowed: got false, want true; afterCustom: policy: got ns/deny, want ns/allow"},
		{"dry run missing", func(d *Decision) { d.DryRun = nil }, `dryRun: got [], want ["ns/dry DENY"]`},
		{"something audited", func(d *Decision) { d.Audit = []string{"ns/a"} }, `audit: got ["ns/a"], want []`},
		{"one binding", func(d *Decision) { d.Permissive = []string{"ns/b1"} }, `permissive: got ["ns/b1"], want ["ns/b1" "ns/b2"]`},
	} {
		d := match
		tc.edit(&d)
		if got := e.Mismatch(d); got != tc.want {
			t.Errorf("%s: got %q, want %q", tc.name, got, tc.want)
		}
	}

	// What an implementation does not report is not checked, unless it
	// reports its decisions complete.
	partial := Decision{Status: 403}
	if got := e.Mismatch(partial); got != "" {
		t.Errorf("a stock OPA's decision: %q", got)
	}
	one, denied := 1, false
	rule := Expect{Allowed: &denied, Rule: &one, Reason: "denied"}
	if got := rule.Mismatch(Decision{Status: 403}); got != "" {
		t.Errorf("nothing reported: %q", got)
	}
	if got := rule.Mismatch(Decision{Status: 403, Complete: true}); got != "rule: none, want 1; reason: got , want denied" {
		t.Errorf("complete decision without rule and reason: %q", got)
	}
}

func TestDecodeRequiresAfterCustomAllowed(t *testing.T) {
	t.Parallel()
	_, err := Decode(strings.NewReader("- name: x\n  request: {}\n  expect: {allowed: false, afterCustom: {policy: a/b}}\n"))
	if err == nil || !strings.Contains(err.Error(), "afterCustom.allowed") {
		t.Errorf("afterCustom without allowed: %v", err)
	}
}
