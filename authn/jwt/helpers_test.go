package jwt

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/lestrrat-go/jwx/v3/jwk"

	"github.com/garrison-mesh/garrison/policies"
)

// testKey is a signing key of the tests and its public JWK.
type testKey struct {
	kid    string
	alg    string // the JWK's alg, "" to leave it out
	method jwt.SigningMethod
	priv   crypto.Signer
}

var testKeys = sync.OnceValue(func() map[string]*testKey {
	must := func(k crypto.Signer, err error) crypto.Signer {
		if err != nil {
			panic(err)
		}
		return k
	}
	rsa1 := must(rsa.GenerateKey(rand.Reader, 2048))
	rsa2 := must(rsa.GenerateKey(rand.Reader, 2048))
	_, ed, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		panic(err)
	}
	ks := map[string]*testKey{
		"rsa":       {kid: "rsa-1", method: jwt.SigningMethodRS256, priv: rsa1},
		"rsa384":    {kid: "rsa-1", method: jwt.SigningMethodRS384, priv: rsa1},
		"rsa512":    {kid: "rsa-1", method: jwt.SigningMethodRS512, priv: rsa1},
		"ps256":     {kid: "rsa-1", method: jwt.SigningMethodPS256, priv: rsa1},
		"ps512":     {kid: "rsa-1", method: jwt.SigningMethodPS512, priv: rsa1},
		"rsa-other": {kid: "rsa-2", method: jwt.SigningMethodRS256, priv: rsa2},
		"es256":     {kid: "ec-256", alg: "ES256", method: jwt.SigningMethodES256, priv: must(ecdsa.GenerateKey(elliptic.P256(), rand.Reader))},
		"es384":     {kid: "ec-384", method: jwt.SigningMethodES384, priv: must(ecdsa.GenerateKey(elliptic.P384(), rand.Reader))},
		"es512":     {kid: "ec-521", method: jwt.SigningMethodES512, priv: must(ecdsa.GenerateKey(elliptic.P521(), rand.Reader))},
		"eddsa":     {kid: "ed-1", method: jwt.SigningMethodEdDSA, priv: ed},
	}
	return ks
})

// jwksOf renders the public keys named (from testKeys) as a JWKS.
func jwksOf(t testing.TB, names ...string) string {
	t.Helper()
	var keys []json.RawMessage
	seen := map[string]bool{}
	for _, n := range names {
		k := testKeys()[n]
		if k == nil {
			t.Fatalf("no test key %q", n)
		}
		if seen[k.kid] {
			continue
		}
		seen[k.kid] = true
		j, err := jwk.Import(k.priv.Public())
		if err != nil {
			t.Fatal(err)
		}
		_ = j.Set(jwk.KeyIDKey, k.kid)
		if k.alg != "" {
			_ = j.Set(jwk.AlgorithmKey, k.alg)
		}
		b, err := json.Marshal(j)
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, b)
	}
	b, err := json.Marshal(map[string]any{"keys": keys})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// sign makes a token with a test key; header entries override the
// defaults (kid, typ).
func sign(t testing.TB, keyName string, claims map[string]any, header map[string]any) string {
	t.Helper()
	k := testKeys()[keyName]
	if k == nil {
		t.Fatalf("no test key %q", keyName)
	}
	tok := jwt.NewWithClaims(k.method, jwt.MapClaims(claims))
	tok.Header["kid"] = k.kid
	for h, v := range header {
		if v == nil {
			delete(tok.Header, h)
		} else {
			tok.Header[h] = v
		}
	}
	s, err := tok.SignedString(k.priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// clock is a settable Clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock(t time.Time) *clock { return &clock{t: t} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// testNow is the tests' default time: after the Istio tokens' iat, before
// their exp (except TokenExpired's).
var testNow = time.Unix(1_800_000_000, 0)

// jwksServer serves a JWKS whose body can change, counting requests.
type jwksServer struct {
	*httptest.Server
	body  atomic.Pointer[string]
	code  atomic.Int32
	hits  atomic.Int32
	delay atomic.Int64
}

func newJWKSServer(t testing.TB, body string, tls bool) *jwksServer {
	t.Helper()
	s := &jwksServer{}
	s.set(body)
	s.code.Store(http.StatusOK)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.hits.Add(1)
		if d := time.Duration(s.delay.Load()); d > 0 {
			select {
			case <-time.After(d):
			case <-r.Context().Done():
				return
			}
		}
		if c := int(s.code.Load()); c != http.StatusOK {
			http.Error(w, "unavailable", c)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(*s.body.Load()))
	})
	if tls {
		s.Server = httptest.NewTLSServer(h)
	} else {
		s.Server = httptest.NewServer(h)
	}
	t.Cleanup(s.Close)
	return s
}

func (s *jwksServer) set(body string) { s.body.Store(&body) }

// snapshotOf parses YAML into a snapshot, failing on any error.
func snapshotOf(t testing.TB, yaml string) *policies.Snapshot {
	t.Helper()
	rs, problems := policies.Parse("test.yaml", []byte(yaml))
	for _, p := range problems {
		if p.Severity == policies.SeverityError {
			t.Fatalf("invalid test configuration: %v", p)
		}
	}
	snap, problems := policies.NewSnapshot(1, rs, policies.SnapshotOptions{})
	if len(problems) > 0 {
		t.Fatalf("snapshot: %v", problems)
	}
	return snap
}

// newTestAuthenticator returns an Authenticator on the test clock, closed
// at the end of the test.
func newTestAuthenticator(t testing.TB, cfg Config) *Authenticator {
	t.Helper()
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Close() })
	return a
}

// request is a GET to workload foo/app=httpbin with the given headers
// ("name: value" strings).
func request(path string, headers ...string) Request {
	req := Request{
		Namespace: "foo", Labels: map[string]string{"app": "httpbin"},
		Method: "GET", Scheme: "http", Host: "httpbin.foo:8000", Path: path,
		Headers: map[string]string{},
	}
	for _, h := range headers {
		k, v, _ := strings.Cut(h, ":")
		req.Headers[strings.ToLower(strings.TrimSpace(k))] = strings.TrimSpace(v)
	}
	return req
}

func bearer(tok string) string { return "Authorization: Bearer " + tok }

func authenticate(t testing.TB, a *Authenticator, req Request) *Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	res, err := a.Authenticate(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// requestAuthn is a RequestAuthentication for app=httpbin in foo with the
// given jwtRules YAML (indented as a list under jwtRules).
func requestAuthn(name, rules string) string {
	return `apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: ` + name + `, namespace: foo}
spec:
  selector: {matchLabels: {app: httpbin}}
  jwtRules:
` + rules + "\n---\n"
}
