package jwt

import (
	"context"
	"maps"
	"strconv"
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
	// Every request a token never seen before: the signature is checked
	// each time (the verified-token cache misses).
	for _, key := range []string{"rsa", "es256"} {
		toks := make([]Request, 512)
		for i := range toks {
			c := maps.Clone(claims)
			c["jti"] = strconv.Itoa(i)
			toks[i] = request("/api/items", bearer(sign(b, key, c, nil)))
		}
		b.Run("distinct-"+testKeys()[key].method.Alg(), func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if i == len(toks) {
					// Start over with caches that have not seen them.
					b.StopTimer()
					a.Update(snapshotOf(b, requestAuthn("bench", `  - {issuer: `+attackIssuer+`, jwksUri: "`+srv.URL+`?`+strconv.Itoa(b.N)+`", audiences: [`+attackAudience+`]}`)))
					b.StartTimer()
					i = 0
				}
				if res, _ := a.Authenticate(ctx, toks[i]); res.Outcome != Verified {
					b.Fatalf("%+v", res)
				}
				i++
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
