package jwt

import (
	"context"
	"testing"

	"github.com/golang-jwt/jwt/v5"
)

// BenchmarkAuthenticate measures one request under a RequestAuthentication
// with three rules (Istio's shared-location requirement tree), keys already
// fetched: a request without token, and valid RS256 (RSA-2048), ES256 and
// EdDSA tokens. The golang-jwt-* cases are the floor: golang-jwt alone
// parsing and verifying the same token with the key in hand.
func BenchmarkAuthenticate(b *testing.B) {
	srv := newJWKSServer(b, jwksOf(b, "rsa", "es256", "eddsa"), false)
	a := newTestAuthenticator(b, Config{Clock: newClock(testNow).Now})
	a.Update(snapshotOf(b, requestAuthn("bench", `  - {issuer: https://a.example.com, jwksUri: "`+srv.URL+`"}
  - {issuer: https://b.example.com, jwksUri: "`+srv.URL+`"}
  - {issuer: `+attackIssuer+`, jwksUri: "`+srv.URL+`", audiences: [`+attackAudience+`]}`)))
	claims := map[string]any{"iss": attackIssuer, "sub": "alice", "aud": attackAudience, "exp": 4102444800, "scope": "read write"}
	cases := []struct {
		name string
		req  Request
		want Outcome
	}{
		{"no-token", request("/api/items"), NoToken},
		{"RS256", request("/api/items", bearer(sign(b, "rsa", claims, nil))), Verified},
		{"ES256", request("/api/items", bearer(sign(b, "es256", claims, nil))), Verified},
		{"EdDSA", request("/api/items", bearer(sign(b, "eddsa", claims, nil))), Verified},
	}
	ctx := context.Background()
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			if res, err := a.Authenticate(ctx, c.req); err != nil || res.Outcome != c.want {
				b.Fatalf("%v %+v", err, res)
			}
			b.ReportAllocs()
			for b.Loop() {
				_, _ = a.Authenticate(ctx, c.req)
			}
		})
	}
	for _, key := range []string{"rsa", "es256"} {
		k := testKeys()[key]
		tok := sign(b, key, claims, nil)
		p := jwt.NewParser(jwt.WithValidMethods([]string{k.method.Alg()}))
		b.Run("golang-jwt-"+k.method.Alg(), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := p.Parse(tok, func(*jwt.Token) (any, error) { return k.priv.Public(), nil }); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
