package extauthz

import (
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/genproto/googleapis/rpc/code"

	"github.com/garrison-mesh/garrison/authn/jwt"
	"github.com/garrison-mesh/garrison/authz/compile"
	"github.com/garrison-mesh/garrison/authz/engine"
	"github.com/garrison-mesh/garrison/policies"
)

const istioData = "../../../shared/conformance/istio"

// istioTokens reads Istio's signed test tokens by name
// (tests/common/jwt, extracted into derived/).
func istioTokens(t *testing.T) map[string]string {
	t.Helper()
	raw, err := os.ReadFile(istioData + "/derived/tests-common-jwt-tokens.json")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Tokens []struct{ Name, Token string }
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, tk := range doc.Tokens {
		out[tk.Name] = tk.Token
	}
	return out
}

const jwtPolicies = `apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: jwt, namespace: shop}
spec:
  jwtRules:
  - issuer: test-issuer-1@istio.io
    jwksUri: JWKS_URL
  - issuer: test-issuer-2@istio.io
    jwksUri: JWKS_URL
    outputClaimToHeaders: [{header: x-jwt-sub, claim: sub}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: jwt-rules, namespace: shop}
spec:
  rules:
  - from: [{source: {requestPrincipals: ["test-issuer-1@istio.io/sub-1"]}}]
    to: [{operation: {paths: ["/issuer1"]}}]
  - from: [{source: {requestPrincipals: ["*"]}}]
    to: [{operation: {paths: ["/any-token"]}}]
  - to: [{operation: {paths: ["/group2"]}}]
    when: [{key: "request.auth.claims[groups]", values: ["group-2"]}]
  - to: [{operation: {paths: ["/nested"]}}]
    when: [{key: "request.auth.claims[nested][key1]", values: ["valueA"]}]
  - to: [{operation: {paths: ["/scope"]}}]
    when: [{key: "request.auth.claims[scope]", values: ["read"]}]
  - to: [{operation: {paths: ["/aud"]}}]
    when: [{key: request.auth.audiences, values: ["buzz"]}]
  - to: [{operation: {paths: ["/public"]}}]
---
# Its key set cannot be fetched: its tokens fail closed.
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: jwt, namespace: down}
spec:
  jwtRules:
  - issuer: test-issuer-1@istio.io
    jwksUri: DOWN_URL
`

// TestJWTEndToEnd: Istio's own signed tokens, verified against Istio's
// JWKS served over HTTP on loopback, through the real engine and this
// server, asked over gRPC: each token verifies or fails as its name says,
// and what it proves reaches the AuthorizationPolicy (requestPrincipals,
// nested and space-delimited claims, audiences).
func TestJWTEndToEnd(t *testing.T) {
	jwks, err := os.ReadFile(istioData + "/istio@HEAD/tests/common/jwt/jwks.json")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(jwks) }))
	t.Cleanup(srv.Close)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := "http://" + lis.Addr().String() + "/jwks"
	lis.Close()

	yaml := strings.NewReplacer("JWKS_URL", srv.URL+"/jwks", "DOWN_URL", down).Replace(jwtPolicies)
	rs, problems := policies.Parse("jwt.yaml", []byte(yaml))
	if errs := problems.Errors(); len(errs) > 0 {
		t.Fatal(errs)
	}
	snap, _ := policies.NewSnapshot(1, rs, policies.SnapshotOptions{})
	res, err := compile.Compile(snap, compile.Options{DenyBodyDetails: true})
	if err != nil {
		t.Fatal(err)
	}
	authn, err := jwt.New(jwt.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = authn.Close() })
	eng, err := engine.NewStaticConfig(engine.Config{Authenticator: authn}, res, snap)
	if err != nil {
		t.Fatal(err)
	}
	var declog syncBuffer
	r := start(t, Config{Decider: eng, DenyBodyDetails: true, DecisionLog: &declog}, ListenConfig{})
	tokens := istioTokens(t)
	tampered := tokens["TokenIssuer1"]
	mid := strings.IndexByte(tampered, '.') + 10
	tampered = tampered[:mid] + string(rune(tampered[mid]^1)) + tampered[mid+1:]

	for _, tc := range []struct {
		name, ns, token, path string
		status                int    // 0: allowed
		body                  string // a denial's body contains it
		upstream              string // on an allow, the x-jwt-sub header set upstream
	}{
		{name: "issuer 1 matches its requestPrincipal", token: "TokenIssuer1", path: "/issuer1"},
		{name: "issuer 2 is not issuer 1's principal", token: "TokenIssuer2", path: "/issuer1", status: 403},
		{name: "any verified token", token: "TokenIssuer2", path: "/any-token", upstream: "sub-2"},
		{name: "no token is no requestPrincipal", path: "/any-token", status: 403},
		{name: "no token is allowed where nothing is required", path: "/public"},
		{name: "groups claim list", token: "TokenIssuer2", path: "/group2", upstream: "sub-2"},
		{name: "groups claim of another token", token: "TokenIssuer1", path: "/group2", status: 403},
		{name: "nested claim list", token: "TokenIssuer1WithNestedClaims1", path: "/nested"},
		{name: "nested claim with another value", token: "TokenIssuer1WithNestedClaims2", path: "/nested", status: 403},
		{name: "space-delimited scope", token: "TokenIssuer2WithSpaceDelimitedScope", path: "/scope", upstream: "sub-2"},
		{name: "audience list", token: "TokenIssuer1WithAudList", path: "/aud"},
		{name: "single audience is not buzz", token: "TokenIssuer1WithAud", path: "/aud", status: 403},
		{name: "issuer 3 is not configured", token: "TokenIssuer3", path: "/public", status: 401, body: "Jwt issuer is not configured"},
		{name: "expired", token: "TokenExpired", path: "/public", status: 401, body: "Jwt is expired"},
		{name: "tampered", token: tampered, path: "/public", status: 401},
		{name: "key set unavailable: the token fails closed", ns: "down", token: "TokenIssuer1", path: "/", status: 401},
		{name: "key set unavailable: no token still passes", ns: "down", path: "/"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			headers := map[string]string{}
			if tc.token != "" {
				tok := tokens[tc.token]
				if tok == "" {
					tok = tc.token
				}
				headers["authorization"] = "Bearer " + tok
			}
			req := checkRequest("GET", tc.path, headers)
			req.Attributes.ContextExtensions = map[string]string{"garrison.io/namespace": "shop"}
			if tc.ns != "" {
				req.Attributes.ContextExtensions["garrison.io/namespace"] = tc.ns
			}
			resp, err := r.client.Check(t.Context(), req)
			if err != nil {
				t.Fatal(err)
			}
			allowed := code.Code(resp.GetStatus().GetCode()) == code.Code_OK
			if allowed != (tc.status == 0) {
				t.Fatalf("allowed %t, want status %d: %v", allowed, tc.status, resp)
			}
			if allowed {
				checkUpstream(t, resp, tc.token != "", tc.upstream)
				return
			}
			d := resp.GetDeniedResponse()
			if int(d.GetStatus().GetCode()) != tc.status || !strings.Contains(d.GetBody(), tc.body) {
				t.Errorf("denied %d %q, want %d with %q", d.GetStatus().GetCode(), d.GetBody(), tc.status, tc.body)
			}
			if tc.status == 401 {
				var www string
				for _, h := range d.GetHeaders() {
					if h.GetHeader().GetKey() == "www-authenticate" {
						www = h.GetHeader().GetValue()
					}
				}
				if !strings.HasPrefix(www, `Bearer realm="http://`) || !strings.Contains(www, `error="invalid_token"`) {
					t.Errorf("www-authenticate %q", www)
				}
			}
		})
	}
	if !strings.Contains(declog.String(), `"authn":"verified","request_principal":"test-issuer-1@istio.io/sub-1"`) ||
		!strings.Contains(declog.String(), `"authn":"rejected"`) {
		t.Errorf("the decision log does not record authentication:\n%s", declog.String())
	}
}

// checkUpstream: a verified token is removed before the request goes
// upstream (forwardOriginalToken is off) and outputClaimToHeaders sets its
// header.
func checkUpstream(t *testing.T, resp *authv3.CheckResponse, hadToken bool, sub string) {
	t.Helper()
	ok := resp.GetOkResponse()
	removed := false
	for _, h := range ok.GetHeadersToRemove() {
		removed = removed || h == "authorization"
	}
	if removed != hadToken {
		t.Errorf("authorization removed: %t, want %t (%v)", removed, hadToken, ok)
	}
	var got string
	for _, h := range ok.GetHeaders() {
		if h.GetHeader().GetKey() == "x-jwt-sub" {
			got = h.GetHeader().GetValue()
		}
	}
	if got != sub {
		t.Errorf("x-jwt-sub %q, want %q", got, sub)
	}
}
