package jwt

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/garrison-mesh/garrison/policies"
)

// fetchEnv is one rule for attackIssuer whose keys come from srv.
type fetchEnv struct {
	a   *Authenticator
	clk *clock
	srv *jwksServer
	reg *prometheus.Registry
	uri string
}

func newFetchEnv(t *testing.T, cfg Config, body string, code int) *fetchEnv {
	t.Helper()
	srv := newJWKSServer(t, body, false)
	srv.code.Store(int32(code))
	e := &fetchEnv{clk: newClock(testNow), srv: srv, reg: prometheus.NewRegistry(), uri: srv.URL + "/keys"}
	cfg.Clock, cfg.Metrics = e.clk.Now, e.reg
	e.a = newTestAuthenticator(t, cfg)
	e.a.Update(snapshotOf(t, requestAuthn("fetch", `  - {issuer: `+attackIssuer+`, jwksUri: "`+e.uri+`"}`)))
	return e
}

func (e *fetchEnv) token(t *testing.T) string {
	return sign(t, "rsa", map[string]any{"iss": attackIssuer, "sub": "alice", "exp": e.clk.Now().Unix() + 86400*30}, nil)
}

func (e *fetchEnv) status(t *testing.T) FetchStatus {
	t.Helper()
	st := e.a.Status()
	if len(st) != 1 || st[0].URI != e.uri {
		t.Fatalf("status %+v", st)
	}
	return st[0]
}

// waitFor polls cond until it holds (fetches run in the background).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestJWKSFetchFailureFailsClosed(t *testing.T) {
	t.Parallel()
	e := newFetchEnv(t, Config{}, jwksOf(t, "rsa"), http.StatusServiceUnavailable)
	res := authenticate(t, e.a, request("/", bearer(e.token(t))))
	wantRejected(t, res, 401, "Jwks remote fetch is failed")
	// A request without token is still allowed, without identity.
	if res := authenticate(t, e.a, request("/")); res.Outcome != NoToken {
		t.Fatalf("no token: %v", res.Outcome)
	}
	st := e.status(t)
	if st.Ready || st.Keys != 0 || st.Failures == 0 || !strings.Contains(st.LastError, "503") || st.LastErrorAt.IsZero() || !st.LastSuccess.IsZero() {
		t.Fatalf("status %+v", st)
	}
	if len(st.Rules) != 1 || st.Rules[0].String() != "RequestAuthentication foo/fetch jwtRules[0]" {
		t.Fatalf("rules %v", st.Rules)
	}
	if got := testutil.ToFloat64(e.a.metrics.fetches.WithLabelValues(e.uri, "error")); got < 1 {
		t.Fatalf("fetch errors counted: %v", got)
	}
	if got := testutil.ToFloat64(e.a.metrics.up.WithLabelValues(e.uri)); got != 0 {
		t.Fatalf("jwks_up %v", got)
	}
	// The series are in the registry given.
	n, err := testutil.GatherAndCount(e.reg, "garrison_authn_jwks_fetch_total", "garrison_authn_jwks_up", "garrison_authn_jwt_requests_total")
	if err != nil || n < 3 {
		t.Fatalf("gathered %d series: %v", n, err)
	}

	// Once the server recovers, a refresh (due by the clock) brings keys.
	e.srv.code.Store(http.StatusOK)
	e.clk.Advance(DefaultJWKSRefresh)
	authenticate(t, e.a, request("/", bearer(e.token(t))))
	waitFor(t, "recovery", func() bool { return e.status(t).Ready })
	if res := authenticate(t, e.a, request("/", bearer(e.token(t)))); res.Outcome != Verified {
		t.Fatalf("after recovery: %v %q", res.Outcome, res.Reason)
	}
	if got := testutil.ToFloat64(e.a.metrics.up.WithLabelValues(e.uri)); got != 1 {
		t.Fatalf("jwks_up %v", got)
	}
}

func TestJWKSUnreachableFailsClosed(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	uri := "http://" + l.Addr().String() + "/jwks"
	l.Close()
	clk := newClock(testNow)
	a := newTestAuthenticator(t, Config{Clock: clk.Now})
	a.Update(snapshotOf(t, requestAuthn("down", `  - {issuer: `+attackIssuer+`, jwksUri: "`+uri+`"}`)))
	tok := sign(t, "rsa", map[string]any{"iss": attackIssuer, "sub": "alice"}, nil)
	wantRejected(t, authenticate(t, a, request("/", bearer(tok))), 401, "Jwks remote fetch is failed")
	if st := a.Status(); len(st) != 1 || st[0].Ready || !strings.Contains(st[0].LastError, "connect") {
		t.Fatalf("status %+v", st)
	}
}

func TestJWKSInvalidDocumentFailsClosed(t *testing.T) {
	t.Parallel()
	for body, reason := range map[string]string{
		"not json":      "Jwks is an invalid JSON",
		`{"kty":"RSA"}`: "Jwks does not have [keys] field",
		`{"keys":{}}`:   "[keys] in Jwks is not an array",
		`{"keys":[]}`:   "Jwks doesn't have any valid public key",
		`{"keys":[{"kty":"oct","k":"c2VjcmV0c2VjcmV0c2VjcmV0"}]}`: "Jwks doesn't have any valid public key",
		`{"keys":[{"kty":"RSA","n":"AQAB"}]}`:                     "Jwks doesn't have any valid public key",
		`{"keys":[{"kty":"EC","crv":"P-256","x":"AQ","y":"AQ"}]}`: "Jwks doesn't have any valid public key",
	} {
		e := newFetchEnv(t, Config{}, body, http.StatusOK)
		wantRejected(t, authenticate(t, e.a, request("/", bearer(e.token(t)))), 401, "Jwks remote fetch is failed")
		if st := e.status(t); st.Ready || !strings.HasPrefix(st.LastError, reason) {
			t.Errorf("%s: status %+v", body, st)
		}
	}
}

func TestJWKSSkipsUnusableKeys(t *testing.T) {
	t.Parallel()
	good := jwksOf(t, "rsa")
	// A bad key beside a good one does not spoil the set (Envoy skips it).
	body := strings.Replace(good, `"keys":[`, `"keys":[{"kty":"oct","k":"c2VjcmV0"},{"kty":"RSA","kid":"broken"},{"kty":"RSA","alg":"ES256","n":"AQAB","e":"AQAB"},`, 1)
	e := newFetchEnv(t, Config{}, body, http.StatusOK)
	if res := authenticate(t, e.a, request("/", bearer(e.token(t)))); res.Outcome != Verified {
		t.Fatalf("%v %q", res.Outcome, res.Reason)
	}
	if st := e.status(t); st.Keys != 1 {
		t.Fatalf("keys %d", st.Keys)
	}
}

func TestJWKSKeptWhileRefreshFails(t *testing.T) {
	t.Parallel()
	e := newFetchEnv(t, Config{MaxKeyAge: 24 * time.Hour}, jwksOf(t, "rsa"), http.StatusOK)
	if res := authenticate(t, e.a, request("/", bearer(e.token(t)))); res.Outcome != Verified {
		t.Fatalf("%v %q", res.Outcome, res.Reason)
	}
	// The issuer's endpoint breaks; a refresh is due and fails.
	e.srv.code.Store(http.StatusInternalServerError)
	e.clk.Advance(DefaultJWKSRefresh)
	authenticate(t, e.a, request("/", bearer(e.token(t))))
	waitFor(t, "failed refresh", func() bool { return e.status(t).Failures > 0 })
	// The keys of the last success keep verifying, as in Istio...
	if res := authenticate(t, e.a, request("/", bearer(e.token(t)))); res.Outcome != Verified {
		t.Fatalf("after a failed refresh: %v %q", res.Outcome, res.Reason)
	}
	st := e.status(t)
	if !st.Ready || st.Keys != 1 || st.LastError == "" || st.LastSuccess != testNow {
		t.Fatalf("status %+v", st)
	}
	// ...but not beyond MaxKeyAge.
	e.clk.Set(testNow.Add(24 * time.Hour))
	wantRejected(t, authenticate(t, e.a, request("/", bearer(e.token(t)))), 401, "Jwks remote fetch is failed")
	if e.status(t).Ready {
		t.Fatal("stale keys reported ready")
	}
}

func TestJWKSRefreshPicksUpRotation(t *testing.T) {
	t.Parallel()
	e := newFetchEnv(t, Config{KidRefetchInterval: 24 * time.Hour}, jwksOf(t, "rsa"), http.StatusOK)
	authenticate(t, e.a, request("/", bearer(e.token(t))))
	// Use up the kid refetch so that only the periodic refresh can help.
	rotated := sign(t, "rsa-other", map[string]any{"iss": attackIssuer, "sub": "bob"}, nil)
	wantRejected(t, authenticate(t, e.a, request("/", bearer(rotated))), 401, "Jwks doesn't have key to match kid or alg from Jwt")
	e.srv.set(jwksOf(t, "rsa-other"))
	wantRejected(t, authenticate(t, e.a, request("/", bearer(rotated))), 401, "Jwks doesn't have key to match kid or alg from Jwt")
	fetches := e.status(t).Fetches

	// Less than the refresh interval later nothing changes; past it, the
	// next request triggers a refresh.
	e.clk.Advance(DefaultJWKSRefresh - time.Second)
	authenticate(t, e.a, request("/", bearer(rotated)))
	time.Sleep(20 * time.Millisecond)
	if got := e.status(t).Fetches; got != fetches {
		t.Fatalf("refreshed early: %d fetches", got-fetches)
	}
	e.clk.Advance(time.Second)
	authenticate(t, e.a, request("/", bearer(rotated)))
	waitFor(t, "refresh", func() bool { return e.status(t).Fetches > fetches })
	if res := authenticate(t, e.a, request("/", bearer(rotated))); res.Outcome != Verified {
		t.Fatalf("after refresh: %v %q", res.Outcome, res.Reason)
	}
}

func TestJWKSTimeoutFromRule(t *testing.T) {
	t.Parallel()
	srv := newJWKSServer(t, jwksOf(t, "rsa"), false)
	srv.delay.Store(int64(5 * time.Second))
	a := newTestAuthenticator(t, Config{Clock: newClock(testNow).Now})
	a.Update(snapshotOf(t, requestAuthn("slow", `  - {issuer: `+attackIssuer+`, jwksUri: "`+srv.URL+`", timeout: 200ms}`)))
	start := time.Now()
	tok := sign(t, "rsa", map[string]any{"iss": attackIssuer, "sub": "alice"}, nil)
	wantRejected(t, authenticate(t, a, request("/", bearer(tok))), 401, "Jwks remote fetch is failed")
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("took %v: the rule's 200ms timeout was not applied", d)
	}
	if st := a.Status(); len(st) != 1 || !strings.Contains(st[0].LastError, "deadline") {
		t.Fatalf("status %+v", st)
	}
}

func TestJWKSFirstFetchAwaited(t *testing.T) {
	t.Parallel()
	srv := newJWKSServer(t, jwksOf(t, "rsa"), true)
	srv.delay.Store(int64(300 * time.Millisecond))
	a := newTestAuthenticator(t, Config{Clock: newClock(testNow).Now, HTTPClient: srv.Client()})
	a.Update(snapshotOf(t, requestAuthn("new", `  - {issuer: `+attackIssuer+`, jwksUri: "`+srv.URL+`"}`)))
	// Right after the configuration arrives, a token waits for the keys
	// (as Envoy waits for a remote JWKS) rather than failing.
	tok := sign(t, "rsa", map[string]any{"iss": attackIssuer, "sub": "alice"}, nil)
	if res := authenticate(t, a, request("/", bearer(tok))); res.Outcome != Verified {
		t.Fatalf("%v %q", res.Outcome, res.Reason)
	}
	// The request's context bounds that wait.
	a2 := newTestAuthenticator(t, Config{Clock: newClock(testNow).Now, HTTPClient: srv.Client()})
	srv.delay.Store(int64(5 * time.Second))
	a2.Update(snapshotOf(t, requestAuthn("new", `  - {issuer: `+attackIssuer+`, jwksUri: "`+srv.URL+`/other"}`)))
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	res, err := a2.Authenticate(ctx, request("/", bearer(tok)))
	if err != nil || res.Outcome != Rejected || res.Reason != "Jwks remote fetch is failed" {
		t.Fatalf("%v %+v", err, res)
	}
}

func TestJWKSFetchersFollowUpdates(t *testing.T) {
	t.Parallel()
	srvA := newJWKSServer(t, jwksOf(t, "rsa"), false)
	srvB := newJWKSServer(t, jwksOf(t, "es256"), false)
	reg := prometheus.NewRegistry()
	a := newTestAuthenticator(t, Config{Clock: newClock(testNow).Now, Metrics: reg})
	two := requestAuthn("one", `  - {issuer: a, jwksUri: "`+srvA.URL+`"}`) +
		requestAuthn("two", `  - {issuer: b, jwksUri: "`+srvA.URL+`"}
  - {issuer: c, jwksUri: "`+srvB.URL+`"}`)
	a.Update(snapshotOf(t, two))
	st := a.Status()
	byURI := map[string]FetchStatus{}
	for _, s := range st {
		byURI[s.URI] = s
	}
	if len(st) != 2 || len(byURI[srvA.URL].Rules) != 2 || len(byURI[srvB.URL].Rules) != 1 {
		t.Fatalf("status %+v", st)
	}
	waitFor(t, "first fetches", func() bool { return srvA.hits.Load() == 1 && srvB.hits.Load() == 1 })
	fA := a.fetchers[srvA.URL]

	// The same URI in the next snapshot keeps its fetcher (and keys).
	a.Update(snapshotOf(t, requestAuthn("one", `  - {issuer: a, jwksUri: "`+srvA.URL+`"}`)))
	if st := a.Status(); len(st) != 1 || a.fetchers[srvA.URL] != fA {
		t.Fatalf("status %+v", st)
	}
	select {
	case <-a.fetchers[srvA.URL].done:
		t.Fatal("kept fetcher stopped")
	default:
	}
	if srvA.hits.Load() != 1 {
		t.Fatalf("kept fetcher fetched again: %d", srvA.hits.Load())
	}
	// Its metrics stay; the dropped URI's go.
	if n, _ := testutil.GatherAndCount(reg, "garrison_authn_jwks_up"); n != 1 {
		t.Fatalf("jwks_up series: %d", n)
	}

	// No rule left: every fetcher stops.
	a.Update(snapshotOf(t, ""))
	if st := a.Status(); len(st) != 0 {
		t.Fatalf("status %+v", st)
	}
	<-fA.done
}

func TestOpenIDDiscovery(t *testing.T) {
	t.Parallel()
	srv := newJWKSServer(t, jwksOf(t, "rsa"), false)
	mux := http.NewServeMux()
	mux.HandleFunc("/realm/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(`{"issuer":"x","jwks_uri":"` + srv.URL + `/certs"}`))
	})
	issuerSrv := newJWKSServer(t, "", false)
	issuerSrv.Config.Handler = mux
	issuer := issuerSrv.URL + "/realm"
	a := newTestAuthenticator(t, Config{Clock: newClock(testNow).Now})
	a.Update(snapshotOf(t, requestAuthn("oidc", `  - {issuer: "`+issuer+`"}`)))
	tok := sign(t, "rsa", map[string]any{"iss": issuer, "sub": "alice"}, nil)
	if res := authenticate(t, a, request("/", bearer(tok))); res.Outcome != Verified {
		t.Fatalf("%v %q", res.Outcome, res.Reason)
	}
	st := a.Status()
	if len(st) != 1 || st[0].URI != issuer+"/.well-known/openid-configuration" || st[0].JWKSURI != srv.URL+"/certs" {
		t.Fatalf("status %+v", st)
	}
}

func TestInlineJWKS(t *testing.T) {
	t.Parallel()
	a := newTestAuthenticator(t, Config{Clock: newClock(testNow).Now})
	a.Update(snapshotOf(t, requestAuthn("inline", `  - issuer: a
    jwks: '`+jwksOf(t, "es256")+`'
  - issuer: b
    jwks: '{"kty": "RSA", "n": "AQAB", "e": "AQAB"}'`)))
	if res := authenticate(t, a, request("/", bearer(sign(t, "es256", map[string]any{"iss": "a", "sub": "x"}, nil)))); res.Outcome != Verified {
		t.Fatalf("%v %q", res.Outcome, res.Reason)
	}
	// A single JWK is not a set: Envoy refuses it, and so every token of b.
	wantRejected(t, authenticate(t, a, request("/", bearer(sign(t, "rsa", map[string]any{"iss": "b", "sub": "x"}, nil)))), 401, "Jwks does not have [keys] field")
	if st := a.Status(); len(st) != 0 {
		t.Fatalf("inline keys are not fetched: %+v", st)
	}
}

func TestNoSnapshot(t *testing.T) {
	t.Parallel()
	a := newTestAuthenticator(t, Config{})
	if _, err := a.Authenticate(context.Background(), request("/")); !errors.Is(err, ErrNoSnapshot) {
		t.Fatalf("err %v", err)
	}
}

func TestConfig(t *testing.T) {
	t.Parallel()
	for _, cfg := range []Config{{ClockSkew: -time.Second}, {ClockSkew: 1500 * time.Millisecond}, {MaxTokenSize: -1}} {
		if _, err := New(cfg); err == nil {
			t.Errorf("%+v accepted", cfg)
		}
	}
	// Two Authenticators may share a registry.
	reg := prometheus.NewRegistry()
	newTestAuthenticator(t, Config{Metrics: reg})
	newTestAuthenticator(t, Config{Metrics: reg})
}

// TestConcurrentUpdates authenticates from several goroutines while
// snapshots replace each other (run with -race).
func TestConcurrentUpdates(t *testing.T) {
	t.Parallel()
	srvA := newJWKSServer(t, jwksOf(t, "rsa"), false)
	srvB := newJWKSServer(t, jwksOf(t, "es256"), false)
	a := newTestAuthenticator(t, Config{Clock: newClock(testNow).Now})
	snaps := []string{
		requestAuthn("x", `  - {issuer: `+attackIssuer+`, jwksUri: "`+srvA.URL+`"}`),
		requestAuthn("x", `  - {issuer: `+attackIssuer+`, jwksUri: "`+srvB.URL+`"}`),
		`apiVersion: authentication.istio.io/v1alpha1
kind: Policy
metadata: {name: default, namespace: foo}
spec:
  origins:
  - jwt: {issuer: ` + attackIssuer + `, jwksUri: "` + srvA.URL + `"}
`,
	}
	parsed := make([]*policies.Snapshot, len(snaps))
	for i, s := range snaps {
		parsed[i] = snapshotOf(t, s)
	}
	a.Update(snapshotOf(t, snaps[0]))
	toks := []string{
		sign(t, "rsa", map[string]any{"iss": attackIssuer, "sub": "a"}, nil),
		sign(t, "es256", map[string]any{"iss": attackIssuer, "sub": "b"}, nil),
	}
	done := make(chan struct{})
	errs := make(chan error, 4)
	for g := range 4 {
		go func() {
			for i := 0; ; i++ {
				select {
				case <-done:
					errs <- nil
					return
				default:
				}
				labels := map[string]string{"app": "httpbin", "n": string(rune('a' + (i+g)%8))}
				req := request("/", bearer(toks[i%2]))
				req.Labels = labels
				res, err := a.Authenticate(context.Background(), req)
				if err != nil || res.Outcome == Rejected && res.Status != 401 {
					errs <- fmt.Errorf("%v %+v", err, res)
					return
				}
			}
		}()
	}
	for i := range 12 {
		a.Update(parsed[i%len(parsed)])
		_ = a.Status()
	}
	close(done)
	for range 4 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

// TestVerifiedTokensDieWithTheirKeys: a token whose signature was verified
// (and is remembered) is refused once its key has left the key set.
func TestVerifiedTokensDieWithTheirKeys(t *testing.T) {
	t.Parallel()
	e := newFetchEnv(t, Config{}, jwksOf(t, "rsa"), http.StatusOK)
	tok := e.token(t)
	for range 2 { // the second is served from the verified-token cache
		if res := authenticate(t, e.a, request("/", bearer(tok))); res.Outcome != Verified {
			t.Fatalf("%v %q", res.Outcome, res.Reason)
		}
	}
	e.srv.set(jwksOf(t, "rsa-other"))
	fetches := e.status(t).Fetches
	e.clk.Advance(DefaultJWKSRefresh)
	authenticate(t, e.a, request("/", bearer(tok)))
	waitFor(t, "refresh", func() bool { return e.status(t).Fetches > fetches })
	wantRejected(t, authenticate(t, e.a, request("/", bearer(tok))), 401, "Jwks doesn't have key to match kid or alg from Jwt")
}

// TestVerifiedTokensArePerProvider: a signature remembered for one provider
// (whose parser checks its issuer) does not count for another sharing the
// key set. Bounds and retention are internal/twogen's, tested there.
func TestVerifiedTokensArePerProvider(t *testing.T) {
	set, st, err := parseJWKS([]byte(jwksOf(t, "rsa")))
	if err != nil || st != statusOK {
		t.Fatal(st, err)
	}
	a, b := &provider{}, &provider{}
	set.verified.Put(verifiedKey{a, "tok"}, struct{}{})
	if _, ok := set.verified.Get(verifiedKey{a, "tok"}); !ok {
		t.Fatal("not remembered")
	}
	if _, ok := set.verified.Get(verifiedKey{b, "tok"}); ok {
		t.Error("a token verified for one provider counts for another")
	}
	if n := set.verified.Len(); n != 1 {
		t.Errorf("%d entries", n)
	}
}
