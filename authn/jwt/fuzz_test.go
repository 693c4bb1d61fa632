package jwt

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
)

// FuzzAuthenticate sends arbitrary strings as the bearer token of a request
// under rules for Istio's test issuers and the tests' keys. It must never
// panic, and never verify a token unless its signed part is that of a
// genuinely signed seed with the same signature: nothing else can carry a
// valid signature.
func FuzzAuthenticate(f *testing.F) {
	var signed []string
	for _, tok := range istioTokens(f) {
		signed = append(signed, tok.Token)
	}
	claims := map[string]any{"iss": attackIssuer, "sub": "fuzz", "aud": attackAudience, "exp": 4102444800, "scope": "a b", "nested": map[string]any{"k": []any{1, "x"}}}
	for _, key := range []string{"rsa", "ps256", "es256", "eddsa"} {
		signed = append(signed, sign(f, key, claims, nil))
	}
	for _, s := range signed {
		f.Add(s)
	}

	keys := mergeJWKS(f, string(readIstio(f, istioCommonJWKS)), string(readIstio(f, istioSamplesJWKS)), jwksOf(f, "rsa", "es256", "eddsa"))
	a := newTestAuthenticator(f, Config{Clock: newClock(testNow).Now})
	a.Update(snapshotOf(f, requestAuthn("fuzz", `  - {issuer: test-issuer-1@istio.io, jwks: '`+keys+`'}
  - {issuer: test-issuer-2@istio.io, jwks: '`+keys+`', outputPayloadToHeader: x-payload}
  - {issuer: testing@secure.istio.io, jwks: '`+keys+`', outputClaimToHeaders: [{header: x-foo, claim: foo}]}
  - {issuer: `+attackIssuer+`, jwks: '`+keys+`', audiences: [`+attackAudience+`]}`)))

	f.Fuzz(func(t *testing.T, tok string) {
		req := request("/", "Authorization: Bearer "+tok)
		res, err := a.Authenticate(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		switch res.Outcome {
		case Verified:
			extracted := extractJWT(req.Headers["authorization"], len("Bearer "))
			if !sameSignedToken(extracted, signed) {
				t.Fatalf("verified a token that was never signed: %q", extracted)
			}
			if res.Identity == nil || res.Metadata("") == nil {
				t.Fatalf("verified without identity: %+v", res)
			}
		case Rejected:
			if res.Status != 401 && res.Status != 403 || res.Reason == "" || res.Identity != nil {
				t.Fatalf("bad rejection: %+v", res)
			}
		case NoToken:
			if res.Identity != nil {
				t.Fatalf("identity without token: %+v", res)
			}
		}
	})
}

// sameSignedToken reports whether tok has the signing input of a signed
// token and a signature that decodes to the same bytes (base64url may
// encode the last bits in several ways: FIELD-NOTES).
func sameSignedToken(tok string, signed []string) bool {
	i := strings.LastIndexByte(tok, '.')
	if i < 0 {
		return false
	}
	sig, err := b64.DecodeString(tok[i+1:])
	if err != nil {
		return false
	}
	for _, s := range signed {
		j := strings.LastIndexByte(s, '.')
		if s[:j] != tok[:i] {
			continue
		}
		if want, _ := b64.DecodeString(s[j+1:]); bytes.Equal(sig, want) {
			return true
		}
	}
	return false
}

// mergeJWKS joins the keys of several sets.
func mergeJWKS(t testing.TB, sets ...string) string {
	t.Helper()
	var all []json.RawMessage
	for _, s := range sets {
		var doc struct {
			Keys []json.RawMessage `json:"keys"`
		}
		if err := json.Unmarshal([]byte(s), &doc); err != nil {
			t.Fatal(err)
		}
		all = append(all, doc.Keys...)
	}
	b, err := json.Marshal(map[string]any{"keys": all})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
