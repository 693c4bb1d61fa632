package jwt

import (
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Each attack on token verification has its own test. They share one
// configuration: a rule for issuer attackIssuer, audience attackAudience,
// whose JWKS (RSA, EC P-256 and Ed25519 keys) is served over HTTP.

const (
	attackIssuer   = "https://issuer.example.com"
	attackAudience = "api.example.com"
)

type attackEnv struct {
	a   *Authenticator
	clk *clock
	srv *jwksServer
}

func newAttackEnv(t *testing.T, cfg Config) *attackEnv {
	t.Helper()
	srv := newJWKSServer(t, jwksOf(t, "rsa", "es256", "eddsa"), false)
	clk := newClock(testNow)
	cfg.Clock = clk.Now
	a := newTestAuthenticator(t, cfg)
	a.Update(snapshotOf(t, requestAuthn("attack", `  - issuer: `+attackIssuer+`
    audiences: [`+attackAudience+`]
    jwksUri: `+srv.URL+`/jwks.json`)))
	return &attackEnv{a: a, clk: clk, srv: srv}
}

// claims are valid claims for the attack rule, with changes.
func (e *attackEnv) claims(changes map[string]any) map[string]any {
	now := e.clk.Now().Unix()
	c := map[string]any{"iss": attackIssuer, "sub": "alice", "aud": attackAudience, "iat": now, "exp": now + 3600}
	for k, v := range changes {
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
	}
	return c
}

func (e *attackEnv) send(t *testing.T, tok string) *Result {
	t.Helper()
	return authenticate(t, e.a, request("/", bearer(tok)))
}

func wantRejected(t *testing.T, res *Result, status int, reason string) {
	t.Helper()
	if res.Outcome != Rejected || res.Status != status || res.Reason != reason {
		t.Fatalf("got %v %d %q, want rejected %d %q", res.Outcome, res.Status, res.Reason, status, reason)
	}
	if res.Identity != nil || res.Metadata("") != nil {
		t.Fatalf("a rejection carries an identity: %+v", res)
	}
	if !strings.HasPrefix(res.WWWAuthenticate, `Bearer realm="http://httpbin.foo:8000/"`) {
		t.Fatalf("WWW-Authenticate %q", res.WWWAuthenticate)
	}
}

func wantVerified(t *testing.T, res *Result, sub string) {
	t.Helper()
	if res.Outcome != Verified || res.Identity == nil || res.Identity.Principal != attackIssuer+"/"+sub {
		t.Fatalf("got %v %d %q identity %+v, want verified %s", res.Outcome, res.Status, res.Reason, res.Identity, sub)
	}
}

// unsigned builds a token from raw header and payload JSON.
func unsigned(header, payload, sig string) string {
	return b64.EncodeToString([]byte(header)) + "." + b64.EncodeToString([]byte(payload)) + "." + sig
}

func TestAttackAlgNone(t *testing.T) {
	t.Parallel()
	e := newAttackEnv(t, Config{})
	payload := `{"iss":"` + attackIssuer + `","sub":"mallory","aud":"` + attackAudience + `"}`
	for _, alg := range []string{"none", "None", "NONE", "nOnE"} {
		for _, sig := range []string{"", "c2lnbmF0dXJl"} {
			tok := unsigned(`{"alg":"`+alg+`","kid":"rsa-1","typ":"JWT"}`, payload, sig)
			wantRejected(t, e.send(t, tok), 401, "Jwt header [alg] is not supported")
		}
	}
	// golang-jwt itself signs "none" only with its unsafe marker key; such
	// a token is refused the same way.
	tok, err := jwt.NewWithClaims(jwt.SigningMethodNone, jwt.MapClaims(e.claims(nil))).SignedString(jwt.UnsafeAllowNoneSignatureType)
	if err != nil {
		t.Fatal(err)
	}
	wantRejected(t, e.send(t, tok), 401, "Jwt header [alg] is not supported")
}

func TestAttackHS256WithRSAPublicKey(t *testing.T) {
	t.Parallel()
	e := newAttackEnv(t, Config{})
	pub := testKeys()["rsa"].priv.Public().(*rsa.PublicKey)
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	secrets := map[string][]byte{
		"PEM":      pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}),
		"DER":      der,
		"PKCS1":    x509.MarshalPKCS1PublicKey(pub),
		"modulus":  pub.N.Bytes(),
		"JWK JSON": []byte(jwksOf(t, "rsa")),
	}
	for name, secret := range secrets {
		for _, m := range []jwt.SigningMethod{jwt.SigningMethodHS256, jwt.SigningMethodHS384, jwt.SigningMethodHS512} {
			tk := jwt.NewWithClaims(m, jwt.MapClaims(e.claims(map[string]any{"sub": "mallory"})))
			tk.Header["kid"] = "rsa-1"
			tok, err := tk.SignedString(secret)
			if err != nil {
				t.Fatal(err)
			}
			res := e.send(t, tok)
			if res.Outcome != Rejected || res.Reason != "Jwt verification fails" {
				t.Fatalf("%s as %s secret: %v %q", name, m.Alg(), res.Outcome, res.Reason)
			}
		}
	}
}

func TestAttackExpired(t *testing.T) {
	t.Parallel()
	e := newAttackEnv(t, Config{})
	now := e.clk.Now().Unix()
	// Envoy: expired once now > exp + 60s.
	wantRejected(t, e.send(t, sign(t, "rsa", e.claims(map[string]any{"exp": now - 61}), nil)), 401, "Jwt is expired")
	wantRejected(t, e.send(t, sign(t, "rsa", e.claims(map[string]any{"exp": now - 86400}), nil)), 401, "Jwt is expired")
	wantVerified(t, e.send(t, sign(t, "rsa", e.claims(map[string]any{"exp": now - 60}), nil)), "alice")
	// Without exp a token never expires, as in Envoy.
	wantVerified(t, e.send(t, sign(t, "rsa", e.claims(map[string]any{"exp": nil}), nil)), "alice")
	// The same token expires as the injected clock moves.
	tok := sign(t, "es256", e.claims(nil), nil)
	wantVerified(t, e.send(t, tok), "alice")
	e.clk.Advance(time.Hour + 61*time.Second)
	wantRejected(t, e.send(t, tok), 401, "Jwt is expired")
}

func TestAttackNotYetValid(t *testing.T) {
	t.Parallel()
	e := newAttackEnv(t, Config{})
	now := e.clk.Now().Unix()
	wantRejected(t, e.send(t, sign(t, "rsa", e.claims(map[string]any{"nbf": now + 61}), nil)), 401, "Jwt not yet valid")
	wantRejected(t, e.send(t, sign(t, "rsa", e.claims(map[string]any{"nbf": now + 3600}), nil)), 401, "Jwt not yet valid")
	// Within the clock skew.
	wantVerified(t, e.send(t, sign(t, "rsa", e.claims(map[string]any{"nbf": now + 60}), nil)), "alice")
	wantVerified(t, e.send(t, sign(t, "rsa", e.claims(map[string]any{"nbf": now + 1}), nil)), "alice")

	// A configured skew applies to both bounds.
	e2 := newAttackEnv(t, Config{ClockSkew: 5 * time.Second})
	wantRejected(t, e2.send(t, sign(t, "rsa", e2.claims(map[string]any{"nbf": now + 6}), nil)), 401, "Jwt not yet valid")
	wantVerified(t, e2.send(t, sign(t, "rsa", e2.claims(map[string]any{"nbf": now + 5}), nil)), "alice")
	wantRejected(t, e2.send(t, sign(t, "rsa", e2.claims(map[string]any{"exp": now - 6}), nil)), 401, "Jwt is expired")
	wantVerified(t, e2.send(t, sign(t, "rsa", e2.claims(map[string]any{"exp": now - 5}), nil)), "alice")
}

func TestAttackWrongIssuer(t *testing.T) {
	t.Parallel()
	e := newAttackEnv(t, Config{})
	for _, iss := range []string{"https://evil.example.com", attackIssuer + "/", "HTTPS://ISSUER.EXAMPLE.COM", ""} {
		claims := e.claims(map[string]any{"iss": iss})
		if iss == "" {
			delete(claims, "iss")
		}
		// Signed with the right key: the issuer alone must fail it.
		wantRejected(t, e.send(t, sign(t, "rsa", claims, nil)), 401, "Jwt issuer is not configured")
	}
}

func TestAttackWrongAudience(t *testing.T) {
	t.Parallel()
	e := newAttackEnv(t, Config{})
	for _, aud := range []any{"other.example.com", []any{"a", "b"}, nil} {
		wantRejected(t, e.send(t, sign(t, "rsa", e.claims(map[string]any{"aud": aud}), nil)), 403, "Audiences in Jwt are not allowed")
	}
	// One matching audience among several is enough; scheme and trailing
	// slash do not matter (Envoy's sanitizeAudience).
	wantVerified(t, e.send(t, sign(t, "rsa", e.claims(map[string]any{"aud": []any{"x", attackAudience}}), nil)), "alice")
	wantVerified(t, e.send(t, sign(t, "rsa", e.claims(map[string]any{"aud": "https://" + attackAudience + "/"}), nil)), "alice")
}

func TestAttackUnknownKid(t *testing.T) {
	t.Parallel()
	e := newAttackEnv(t, Config{KidRefetchInterval: time.Minute})
	wantVerified(t, e.send(t, sign(t, "rsa", e.claims(nil), nil)), "alice")
	fetches := e.srv.hits.Load()

	// A kid the set lacks makes one refetch, then fails.
	forged := sign(t, "rsa-other", e.claims(map[string]any{"sub": "mallory"}), nil)
	wantRejected(t, e.send(t, forged), 401, "Jwks doesn't have key to match kid or alg from Jwt")
	if got := e.srv.hits.Load(); got != fetches+1 {
		t.Fatalf("unknown kid caused %d fetches, want 1", got-fetches)
	}
	// More such tokens do not fetch again within the interval.
	for range 20 {
		wantRejected(t, e.send(t, sign(t, "rsa-other", e.claims(map[string]any{"sub": "mallory"}), map[string]any{"kid": "rsa-" + time.Now().String()})), 401,
			"Jwks doesn't have key to match kid or alg from Jwt")
	}
	if got := e.srv.hits.Load(); got != fetches+1 {
		t.Fatalf("rate limit broken: %d fetches", got-fetches)
	}
	// The same key signing under a known kid is a bad signature.
	wantRejected(t, e.send(t, sign(t, "rsa-other", e.claims(nil), map[string]any{"kid": "rsa-1"})), 401, "Jwt verification fails")

	// The issuer rotates to the new key: after the interval, its first token
	// fetches the set again and verifies.
	e.srv.set(jwksOf(t, "rsa", "rsa-other"))
	e.clk.Advance(time.Minute)
	wantVerified(t, e.send(t, forged), "mallory")
	if got := e.srv.hits.Load(); got != fetches+2 {
		t.Fatalf("rotation: %d fetches, want 2", got-fetches)
	}
}

func TestAttackTamperedPayload(t *testing.T) {
	t.Parallel()
	e := newAttackEnv(t, Config{})
	for _, key := range []string{"rsa", "ps256", "es256", "eddsa"} {
		tok := sign(t, key, e.claims(nil), nil)
		wantVerified(t, e.send(t, tok), "alice")
		parts := strings.Split(tok, ".")
		for seg := range 3 {
			// Change a character in the middle of the segment (the last
			// character of a segment may only carry padding bits).
			p := []byte(parts[seg])
			i := len(p) / 2
			if p[i] == 'A' {
				p[i] = 'B'
			} else {
				p[i] = 'A'
			}
			tampered := slicesReplace(parts, seg, string(p))
			res := e.send(t, tampered)
			if res.Outcome != Rejected || res.Status != 401 {
				t.Fatalf("%s: segment %d tampered: %v %d %q", key, seg, res.Outcome, res.Status, res.Reason)
			}
		}
		// A payload rewritten as the attacker likes, signature kept.
		forged := parts[0] + "." + b64.EncodeToString([]byte(`{"iss":"`+attackIssuer+`","sub":"admin","aud":"`+attackAudience+`"}`)) + "." + parts[2]
		wantRejected(t, e.send(t, forged), 401, "Jwt verification fails")
	}
}

func slicesReplace(parts []string, i int, s string) string {
	cp := append([]string(nil), parts...)
	cp[i] = s
	return strings.Join(cp, ".")
}

func TestAttackTokenInUnconfiguredLocation(t *testing.T) {
	t.Parallel()
	srv := newJWKSServer(t, jwksOf(t, "rsa"), false)
	a := newTestAuthenticator(t, Config{Clock: newClock(testNow).Now})
	a.Update(snapshotOf(t, requestAuthn("custom-location", `  - issuer: `+attackIssuer+`
    jwksUri: `+srv.URL+`
    fromHeaders: [{name: x-jwt-assertion, prefix: "Token "}]`)))
	good := sign(t, "rsa", map[string]any{"iss": attackIssuer, "sub": "alice"}, nil)
	bad := "not-even-a-token"
	for name, req := range map[string]Request{
		"bearer":             request("/", bearer(bad)),
		"valid bearer":       request("/", bearer(good)),
		"access_token":       request("/?access_token=" + bad),
		"cookie":             request("/", "Cookie: access_token="+bad),
		"header, no prefix":  request("/", "x-jwt-assertion: "+bad),
		"header, bearer":     request("/", "x-jwt-assertion: Bearer "+bad),
		"other header":       request("/", "x-jwt: Token "+bad),
		"prefix, lower case": request("/", "x-jwt-assertion: token "+bad),
	} {
		res := authenticate(t, a, req)
		if res.Outcome != NoToken || res.Identity != nil {
			t.Errorf("%s: %v %q, want ignored", name, res.Outcome, res.Reason)
		}
	}
	if res := authenticate(t, a, request("/", "x-jwt-assertion: Token "+good)); res.Outcome != Verified {
		t.Errorf("configured location: %v %q", res.Outcome, res.Reason)
	}
	if res := authenticate(t, a, request("/", "x-jwt-assertion: Token "+bad)); res.Outcome != Rejected {
		t.Errorf("configured location, bad token: %v", res.Outcome)
	}
}

func TestAttackOversizedToken(t *testing.T) {
	t.Parallel()
	e := newAttackEnv(t, Config{MaxTokenSize: 4096})
	big := sign(t, "rsa", e.claims(map[string]any{"pad": strings.Repeat("x", 4096)}), nil)
	wantRejected(t, e.send(t, big), 401, "Jwt is larger than the maximum token size")
	// Garbage is refused by size before any decoding.
	wantRejected(t, e.send(t, strings.Repeat("A", 4097)), 401, "Jwt is larger than the maximum token size")
	ok := sign(t, "rsa", e.claims(map[string]any{"pad": strings.Repeat("x", 2500)}), nil)
	if len(ok) > 4096 {
		t.Fatalf("test token of %d bytes", len(ok))
	}
	wantVerified(t, e.send(t, ok), "alice")
	// The default limit is 8 KiB.
	d := newAttackEnv(t, Config{})
	wantRejected(t, d.send(t, sign(t, "rsa", d.claims(map[string]any{"pad": strings.Repeat("x", 8192)}), nil)), 401, "Jwt is larger than the maximum token size")
}

func TestAttackMalformedToken(t *testing.T) {
	t.Parallel()
	e := newAttackEnv(t, Config{})
	hdr := `{"alg":"RS256","kid":"rsa-1"}`
	pay := `{"iss":"` + attackIssuer + `","sub":"alice","aud":"` + attackAudience + `"}`
	enc := b64.EncodeToString
	// Envoy takes the base64url run after "Bearer ": bad base64 is made of
	// base64url characters (one character is never valid).
	cases := []struct{ token, reason string }{
		{"abc", "Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections"},
		{"a.b", "Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections"},
		{"a.b.c.d", "Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections"},
		{"..", "Jwt header is an invalid JSON"},
		{"A." + enc([]byte(pay)) + ".c2ln", "Jwt header is an invalid Base64url encoded"},
		{enc([]byte("not json")) + "." + enc([]byte(pay)) + ".c2ln", "Jwt header is an invalid JSON"},
		{enc([]byte(`[1,2]`)) + "." + enc([]byte(pay)) + ".c2ln", "Jwt header is an invalid JSON"},
		{unsigned(`{"kid":"rsa-1"}`, pay, "c2ln"), "Jwt header [alg] field is required and must be a string"},
		{unsigned(`{"alg":256}`, pay, "c2ln"), "Jwt header [alg] field is required and must be a string"},
		{unsigned(`{"alg":"XS256"}`, pay, "c2ln"), "Jwt header [alg] is not supported"},
		{unsigned(`{"alg":"RS256","kid":7}`, pay, "c2ln"), "Jwt header [kid] field is not a string"},
		{enc([]byte(hdr)) + ".A.c2ln", "Jwt payload is an invalid Base64url encoded"},
		{unsigned(hdr, `not json`, "c2ln"), "Jwt payload is an invalid JSON"},
		{unsigned(hdr, `"a string"`, "c2ln"), "Jwt payload is an invalid JSON"},
		{unsigned(hdr, `{"iss":5}`, "c2ln"), "Jwt payload [iss] field is not a string"},
		{unsigned(hdr, `{"sub":true}`, "c2ln"), "Jwt payload [sub] field is not a string"},
		{unsigned(hdr, `{"exp":"tomorrow"}`, "c2ln"), "Jwt payload [exp] field is not an integer"},
		{unsigned(hdr, `{"exp":-1}`, "c2ln"), "Jwt payload [exp] field is not a positive 64 bit integer"},
		{unsigned(hdr, `{"nbf":"now"}`, "c2ln"), "Jwt payload [nbf] field is not an integer"},
		{unsigned(hdr, `{"iat":[]}`, "c2ln"), "Jwt payload [iat] field is not an integer"},
		{unsigned(hdr, `{"jti":1}`, "c2ln"), "Jwt payload [jti] field is not a string"},
		{unsigned(hdr, `{"aud":7}`, "c2ln"), "Jwt payload [aud] field is not a string or string list"},
		{unsigned(hdr, `{"aud":["a",7]}`, "c2ln"), "Jwt payload [aud] field is not a string or string list"},
		{unsigned(hdr, pay, "A"), "Jwt signature is an invalid Base64url encoded"},
		{unsigned(hdr, pay, "c2lnbmF0dXJl"), "Jwt verification fails"},
		{unsigned(hdr, pay, ""), "Jwt verification fails"},
	}
	for _, c := range cases {
		res := e.send(t, c.token)
		if res.Outcome != Rejected || res.Status != 401 || res.Reason != c.reason {
			t.Errorf("%q: %v %d %q, want %q", c.token, res.Outcome, res.Status, res.Reason, c.reason)
		}
	}
}

func TestAttackWrongKeyTypeForAlg(t *testing.T) {
	t.Parallel()
	e := newAttackEnv(t, Config{})
	// A token claims the alg of one key family but names a key of
	// another: golang-jwt's WithValidMethods, pinned per key kind, refuses.
	for _, c := range []struct{ key, kid string }{
		{"es256", "rsa-1"},  // ES256 against the RSA key
		{"eddsa", "rsa-1"},  // EdDSA against the RSA key
		{"rsa", "ec-256"},   // RS256 against the EC key: the JWK's alg ES256 differs
		{"rsa", "ed-1"},     // RS256 against the Ed25519 key
		{"es384", "ec-256"}, // ES384 against a P-256 key
		{"eddsa", "ec-256"},
	} {
		res := e.send(t, sign(t, c.key, e.claims(nil), map[string]any{"kid": c.kid}))
		if res.Outcome != Rejected || res.Status != 401 {
			t.Errorf("%s token with kid %s: %v %q", c.key, c.kid, res.Outcome, res.Reason)
		}
	}
	// The P-256 key's JWK says alg ES256: a token of another alg does not
	// even match it.
	wantRejected(t, e.send(t, sign(t, "rsa", e.claims(nil), map[string]any{"kid": "ec-256"})), 401, "Jwks doesn't have key to match kid or alg from Jwt")
	// Without kid every key is tried; only the right one verifies.
	for _, key := range []string{"rsa", "es256", "eddsa"} {
		wantVerified(t, e.send(t, sign(t, key, e.claims(nil), map[string]any{"kid": nil})), "alice")
	}
	wantRejected(t, e.send(t, sign(t, "es384", e.claims(nil), map[string]any{"kid": nil})), 401, "Jwt verification fails")
}

// TestAlgorithms verifies a token of every supported algorithm.
func TestAlgorithms(t *testing.T) {
	t.Parallel()
	srv := newJWKSServer(t, jwksOf(t, "rsa", "es256", "es384", "es512", "eddsa"), false)
	a := newTestAuthenticator(t, Config{Clock: newClock(testNow).Now})
	a.Update(snapshotOf(t, requestAuthn("algs", `  - {issuer: `+attackIssuer+`, jwksUri: `+srv.URL+`}`)))
	for _, key := range []string{"rsa", "rsa384", "rsa512", "ps256", "ps512", "es256", "es384", "es512", "eddsa"} {
		res := authenticate(t, a, request("/", bearer(sign(t, key, map[string]any{"iss": attackIssuer, "sub": key}, nil))))
		if res.Outcome != Verified || res.Identity.Subject != key {
			t.Errorf("%s: %v %q", key, res.Outcome, res.Reason)
		}
	}
}
