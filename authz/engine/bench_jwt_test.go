package engine

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"
	"strconv"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	gojwt "github.com/golang-jwt/jwt/v5"

	"github.com/garrison-mesh/garrison/authn/jwt"
	"github.com/garrison-mesh/garrison/authz/compile"
	"github.com/garrison-mesh/garrison/authz/internal/meshgen"
	"github.com/garrison-mesh/garrison/policies"
)

// BenchmarkDecideJWT is Decide with origin authentication: the benchmark
// mesh of BenchmarkDecide at 1,000 policies plus a RequestAuthentication
// for ns-0 (inline RSA and EC keys) and a policy requiring the token's
// principal. "none" is the same request without a token and without the
// rule, the figure to compare with; "repeat" sends one token again and
// again (its signature is remembered), "distinct" a new token each time
// (the signature is checked every time). The decision cache is off, so
// the evaluation is counted too.
func BenchmarkDecideJWT(b *testing.B) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		b.Fatal(err)
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	b64 := base64.RawURLEncoding.EncodeToString
	jwks, _ := json.Marshal(map[string]any{"keys": []any{
		map[string]any{"kty": "RSA", "kid": "rsa", "alg": "RS256", "n": b64(rsaKey.N.Bytes()), "e": b64(big.NewInt(int64(rsaKey.E)).Bytes())},
		map[string]any{"kty": "EC", "kid": "ec", "alg": "ES256", "crv": "P-256", "x": b64(ecKey.X.FillBytes(make([]byte, 32))), "y": b64(ecKey.Y.FillBytes(make([]byte, 32)))},
	}})
	const issuer = "https://idp.example.com"
	extra := fmt.Sprintf(`---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: jwt, namespace: ns-0}
spec:
  jwtRules:
  - issuer: %s
    jwks: '%s'
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: require-jwt, namespace: ns-0}
spec:
  selector: {matchLabels: {app: app-3}}
  rules:
  - from: [{source: {requestPrincipals: ["%s/*"]}}]
`, issuer, jwks, issuer)
	build := func(withJWT bool) *Engine {
		y := meshgen.AuthorizationPolicies(1000, true)
		if withJWT {
			y += extra
		}
		rs, problems := policies.Parse("bench.yaml", []byte(y))
		if err := problems.Err(); err != nil {
			b.Fatal(err)
		}
		snap, _ := policies.NewSnapshot(1, rs, policies.SnapshotOptions{})
		res, err := compile.Compile(snap, compile.Options{DenyBodyDetails: true})
		if err != nil {
			b.Fatal(err)
		}
		authn, err := jwt.New(jwt.Config{})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = authn.Close() })
		e, err := NewStaticConfig(Config{Authenticator: authn, DecisionCacheSize: -1}, res, snap)
		if err != nil {
			b.Fatal(err)
		}
		return e
	}
	sign := func(method gojwt.SigningMethod, kid string, key any, n int) string {
		t := gojwt.NewWithClaims(method, gojwt.MapClaims{"iss": issuer, "sub": "user-" + strconv.Itoa(n), "exp": 4102444800})
		t.Header["kid"] = kid
		s, err := t.SignedString(key)
		if err != nil {
			b.Fatal(err)
		}
		return s
	}
	withToken := func(tok string) *authv3.CheckRequest {
		req := benchRequest(true)
		if tok != "" {
			req.Attributes.Request.Http.Headers["authorization"] = "Bearer " + tok
		}
		return req
	}
	plain, protected := build(false), build(true)
	ctx := context.Background()
	run := func(name string, e *Engine, reqs []*authv3.CheckRequest) {
		b.Run(name, func(b *testing.B) {
			for _, r := range reqs[:1] {
				if d, err := e.Decide(ctx, r); err != nil || !d.Allowed {
					b.Fatalf("%+v %v", d, err)
				}
			}
			b.ReportAllocs()
			cpu := startCPU()
			i := 0
			for b.Loop() {
				if _, err := e.Decide(ctx, reqs[i%len(reqs)]); err != nil {
					b.Fatal(err)
				}
				i++
			}
			cpu.report(b)
		})
	}
	run("none", plain, []*authv3.CheckRequest{withToken("")})
	for _, alg := range []struct {
		name   string
		method gojwt.SigningMethod
		kid    string
		key    any
	}{{"RS256", gojwt.SigningMethodRS256, "rsa", rsaKey}, {"ES256", gojwt.SigningMethodES256, "ec", ecKey}} {
		run(alg.name+"/repeat", protected, []*authv3.CheckRequest{withToken(sign(alg.method, alg.kid, alg.key, 0))})
		distinct := make([]*authv3.CheckRequest, 10000)
		for i := range distinct {
			distinct[i] = withToken(sign(alg.method, alg.kid, alg.key, i))
		}
		run(alg.name+"/distinct", protected, distinct)
	}
}
