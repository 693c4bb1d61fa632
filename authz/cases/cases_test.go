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
