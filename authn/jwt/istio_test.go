package jwt

import (
	"encoding/json"
	"fmt"
	"os"
	"reflect"
	"strings"
	"testing"
)

// Istio's own test data (Apache-2.0), beside the repository.
const (
	istioDir          = "../../../shared/conformance/istio/"
	istioCommonJWKS   = istioDir + "istio@HEAD/tests/common/jwt/jwks.json"
	istioSamplesJWKS  = istioDir + "istio@HEAD/security/tools/jwt/samples/jwks.json"
	istioCommonTokens = istioDir + "derived/tests-common-jwt-tokens.json"
	istioSampleTokens = istioDir + "derived/security-tools-jwt-samples-tokens.json"
)

type istioToken struct {
	Name    string         `json:"name"`
	File    string         `json:"file"`
	Token   string         `json:"token"`
	Payload map[string]any `json:"payload"`
}

func (t istioToken) id() string {
	if t.Name != "" {
		return t.Name
	}
	return strings.TrimSuffix(t.File[strings.LastIndex(t.File, "/")+1:], ".jwt")
}

func readIstio(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("Istio conformance data (shared/conformance/istio beside the repository): %v", err)
	}
	return b
}

func istioTokens(t testing.TB) []istioToken {
	t.Helper()
	var all []istioToken
	for _, f := range []string{istioCommonTokens, istioSampleTokens} {
		var doc struct {
			Tokens []istioToken `json:"tokens"`
		}
		if err := json.Unmarshal(readIstio(t, f), &doc); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		all = append(all, doc.Tokens...)
	}
	return all
}

// istioWant is what one of Istio's tokens must give under a configuration.
type istioWant struct {
	outcome Outcome
	status  int
	reason  string
	// claims that the identity's normalized claims must hold.
	claims map[string]any
	auds   []string
	azp    string
}

func verified(claims map[string]any) istioWant { return istioWant{outcome: Verified, claims: claims} }

func rejected(status int, reason string) istioWant {
	return istioWant{outcome: Rejected, status: status, reason: reason}
}

// TestIstioTokens runs every token of Istio's test data against Istio's
// JWKS served over HTTP and over HTTPS, under configurations like those of
// Istio's integration tests. Each token must verify or fail as its name
// says.
func TestIstioTokens(t *testing.T) {
	common := string(readIstio(t, istioCommonJWKS))
	samples := string(readIstio(t, istioSamplesJWKS))
	tokens := istioTokens(t)
	if len(tokens) != 15 {
		t.Fatalf("expected Istio's 15 test tokens, found %d", len(tokens))
	}

	// Issuers 1 and 2 share tests/common's keys; the samples' issuer has
	// its own.
	base := map[string]istioWant{
		"TokenIssuer1":                  verified(map[string]any{"iss": "test-issuer-1@istio.io", "sub": "sub-1", "groups": []any{"group-1"}}),
		"TokenIssuer1WithAud":           {outcome: Verified, auds: []string{"foo"}},
		"TokenIssuer1WithAzp":           {outcome: Verified, azp: "bar"},
		"TokenIssuer1WithNestedClaims1": verified(map[string]any{"nested": map[string]any{"key1": []any{"valueA", "valueB"}, "nested-2": map[string]any{"key1": []any{"valueA", "valueB"}}}}),
		"TokenIssuer1WithNestedClaims2": verified(map[string]any{"nested": map[string]any{"key2": "valueC", "nested-2": map[string]any{"key2": "valueC"}}}),
		"TokenIssuer1WithCollisionResistantName": verified(map[string]any{
			"test-issuer-1@istio.io/simple": "valueC",
			"test-issuer-1@istio.io/nested": map[string]any{"key1": "valueC", "nested-2": map[string]any{"key1": "valueC"}},
		}),
		"TokenIssuer2": verified(map[string]any{"iss": "test-issuer-2@istio.io", "sub": "sub-2", "groups": []any{"group-2"}}),
		// permission and scope are split on spaces by default...
		"TokenIssuer2WithSpaceDelimitedPermission": verified(map[string]any{"permission": []any{"read", "write"}}),
		"TokenIssuer2WithSpaceDelimitedScope":      verified(map[string]any{"scope": []any{"write", "read"}}),
		// ...other claims only when the rule lists them.
		"TokenIssuer2WithCustomScopeSpaceDelimitedScope": verified(map[string]any{"custom_scope": "admin user"}),
		"TokenIssuer3":            rejected(401, "Jwt issuer is not configured"),
		"TokenExpired":            rejected(401, "Jwt is expired"),
		"TokenIssuer1WithAudList": {outcome: Verified, auds: []string{"foo", "buzz"}},
		"demo":                    verified(map[string]any{"iss": "testing@secure.istio.io", "sub": "testing@secure.istio.io", "foo": "bar"}),
		"groups-scope":            verified(map[string]any{"groups": []any{"group1", "group2"}, "scope": []any{"scope1", "scope2"}}),
	}
	with := func(overrides map[string]istioWant) map[string]istioWant {
		m := map[string]istioWant{}
		for k, v := range base {
			m[k] = v
		}
		for k, v := range overrides {
			m[k] = v
		}
		return m
	}

	configs := []struct {
		name  string
		rules string // jwtRules, with COMMON and SAMPLES for the two URIs
		want  map[string]istioWant
	}{{
		name: "issuers 1 and 2 and the samples' issuer",
		rules: `  - {issuer: test-issuer-1@istio.io, jwksUri: COMMON}
  - {issuer: test-issuer-2@istio.io, jwksUri: COMMON}
  - {issuer: testing@secure.istio.io, jwksUri: SAMPLES}`,
		want: base,
	}, {
		name: "issuer 3 configured too, custom_scope space-delimited",
		rules: `  - {issuer: test-issuer-1@istio.io, jwksUri: COMMON}
  - {issuer: test-issuer-2@istio.io, jwksUri: COMMON, spaceDelimitedClaims: [custom_scope]}
  - {issuer: test-issuer-3@istio.io, jwksUri: COMMON}
  - {issuer: testing@secure.istio.io, jwksUri: SAMPLES}`,
		want: with(map[string]istioWant{
			"TokenIssuer3": verified(map[string]any{"iss": "test-issuer-3@istio.io", "groups": []any{"group-1"}}),
			"TokenIssuer2WithCustomScopeSpaceDelimitedScope": verified(map[string]any{"custom_scope": []any{"admin", "user"}}),
		}),
	}, {
		name: "issuer 1 requires audience foo",
		rules: `  - {issuer: test-issuer-1@istio.io, jwksUri: COMMON, audiences: [foo]}
  - {issuer: test-issuer-2@istio.io, jwksUri: COMMON}
  - {issuer: testing@secure.istio.io, jwksUri: SAMPLES}`,
		// A token without the audience is refused with 403, Envoy's
		// answer to the audience alone.
		want: with(map[string]istioWant{
			"TokenIssuer1":                           rejected(403, "Audiences in Jwt are not allowed"),
			"TokenIssuer1WithAzp":                    rejected(403, "Audiences in Jwt are not allowed"),
			"TokenIssuer1WithNestedClaims1":          rejected(403, "Audiences in Jwt are not allowed"),
			"TokenIssuer1WithNestedClaims2":          rejected(403, "Audiences in Jwt are not allowed"),
			"TokenIssuer1WithCollisionResistantName": rejected(403, "Audiences in Jwt are not allowed"),
		}),
	}, {
		name: "issuer 2 requires audience foo",
		rules: `  - {issuer: test-issuer-1@istio.io, jwksUri: COMMON}
  - {issuer: test-issuer-2@istio.io, jwksUri: COMMON, audiences: [foo]}
  - {issuer: testing@secure.istio.io, jwksUri: SAMPLES}`,
		// Envoy aggregates the failures of its requires_any: the audience
		// error of issuer 2's rule outranks the "issuer not configured" of
		// the others, so 403 as well.
		want: with(map[string]istioWant{
			"TokenIssuer2": rejected(403, "Audiences in Jwt are not allowed"),
			"TokenIssuer2WithSpaceDelimitedPermission":       rejected(403, "Audiences in Jwt are not allowed"),
			"TokenIssuer2WithSpaceDelimitedScope":            rejected(403, "Audiences in Jwt are not allowed"),
			"TokenIssuer2WithCustomScopeSpaceDelimitedScope": rejected(403, "Audiences in Jwt are not allowed"),
		}),
	}, {
		name:  "issuer 1 alone, audience buzz",
		rules: `  - {issuer: test-issuer-1@istio.io, jwksUri: COMMON, audiences: [buzz]}`,
		// With one rule Envoy's answer is the audience's: 403.
		want: map[string]istioWant{
			"TokenIssuer1":                                   rejected(403, "Audiences in Jwt are not allowed"),
			"TokenIssuer1WithAud":                            rejected(403, "Audiences in Jwt are not allowed"),
			"TokenIssuer1WithAzp":                            rejected(403, "Audiences in Jwt are not allowed"),
			"TokenIssuer1WithNestedClaims1":                  rejected(403, "Audiences in Jwt are not allowed"),
			"TokenIssuer1WithNestedClaims2":                  rejected(403, "Audiences in Jwt are not allowed"),
			"TokenIssuer1WithCollisionResistantName":         rejected(403, "Audiences in Jwt are not allowed"),
			"TokenIssuer1WithAudList":                        {outcome: Verified, auds: []string{"foo", "buzz"}},
			"TokenIssuer2":                                   rejected(401, "Jwt issuer is not configured"),
			"TokenIssuer2WithSpaceDelimitedPermission":       rejected(401, "Jwt issuer is not configured"),
			"TokenIssuer2WithSpaceDelimitedScope":            rejected(401, "Jwt issuer is not configured"),
			"TokenIssuer2WithCustomScopeSpaceDelimitedScope": rejected(401, "Jwt issuer is not configured"),
			"TokenIssuer3":                                   rejected(401, "Jwt issuer is not configured"),
			"TokenExpired":                                   rejected(401, "Jwt is expired"),
			"demo":                                           rejected(401, "Jwt issuer is not configured"),
			"groups-scope":                                   rejected(401, "Jwt issuer is not configured"),
		},
	}}

	for _, scheme := range []string{"http", "https"} {
		t.Run(scheme, func(t *testing.T) {
			t.Parallel()
			tls := scheme == "https"
			commonSrv := newJWKSServer(t, common, tls)
			samplesSrv := newJWKSServer(t, samples, tls)
			if !strings.HasPrefix(commonSrv.URL, scheme+"://127.0.0.1:") {
				t.Fatalf("server at %s", commonSrv.URL)
			}
			for _, cfg := range configs {
				t.Run(cfg.name, func(t *testing.T) {
					clk := newClock(testNow)
					a := newTestAuthenticator(t, Config{Clock: clk.Now, HTTPClient: samplesSrv.Client()})
					rules := strings.NewReplacer("COMMON", commonSrv.URL+"/jwks.json", "SAMPLES", samplesSrv.URL+"/jwks.json").Replace(cfg.rules)
					a.Update(snapshotOf(t, requestAuthn("istio", rules)))
					for _, tok := range tokens {
						want, ok := cfg.want[tok.id()]
						if !ok {
							t.Fatalf("no expectation for Istio token %s", tok.id())
						}
						res := authenticate(t, a, request("/headers", bearer(tok.Token)))
						checkIstioToken(t, tok, want, res)
					}
				})
			}
			if commonSrv.hits.Load() == 0 || samplesSrv.hits.Load() == 0 {
				t.Errorf("JWKS not fetched: %d, %d", commonSrv.hits.Load(), samplesSrv.hits.Load())
			}
		})
	}
}

func checkIstioToken(t *testing.T, tok istioToken, want istioWant, res *Result) {
	t.Helper()
	name := tok.id()
	if res.Outcome != want.outcome {
		t.Errorf("%s: outcome %v (%d %s), want %v", name, res.Outcome, res.Status, res.Reason, want.outcome)
		return
	}
	if want.outcome == Rejected {
		if res.Status != want.status || res.Reason != want.reason {
			t.Errorf("%s: %d %q, want %d %q", name, res.Status, res.Reason, want.status, want.reason)
		}
		if !strings.HasSuffix(res.WWWAuthenticate, `, error="invalid_token"`) {
			t.Errorf("%s: WWW-Authenticate %q", name, res.WWWAuthenticate)
		}
		return
	}
	id := res.Identity
	iss, _ := tok.Payload["iss"].(string)
	sub, _ := tok.Payload["sub"].(string)
	if id.Issuer != iss || id.Subject != sub || id.Principal != iss+"/"+sub {
		t.Errorf("%s: identity %q %q %q", name, id.Issuer, id.Subject, id.Principal)
	}
	for k, v := range want.claims {
		if got := id.Claims[k]; !reflect.DeepEqual(got, v) {
			t.Errorf("%s: claim %s = %#v, want %#v", name, k, got, v)
		}
	}
	if want.auds != nil && !reflect.DeepEqual(id.Audiences, want.auds) {
		t.Errorf("%s: audiences %v, want %v", name, id.Audiences, want.auds)
	}
	if id.Presenter != want.azp {
		t.Errorf("%s: presenter %q, want %q", name, id.Presenter, want.azp)
	}
	// The token is not forwarded by default.
	if fmt.Sprint(res.Headers.Remove) != "[authorization]" {
		t.Errorf("%s: header changes %+v", name, res.Headers)
	}
	md := res.Metadata("")
	if md["request.auth.principal"] != iss+"/"+sub {
		t.Errorf("%s: metadata %v", name, md)
	}
	if !reflect.DeepEqual(md["request.auth.claims"], id.Claims) {
		t.Errorf("%s: metadata claims %v", name, md["request.auth.claims"])
	}
}
