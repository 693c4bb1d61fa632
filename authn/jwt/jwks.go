package jwt

import (
	"github.com/garrison-mesh/garrison/internal/twogen"

	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/json"
	"fmt"

	"github.com/lestrrat-go/jwx/v3/jwk"
)

// JWK parsing uses github.com/lestrrat-go/jwx/v3/jwk: golang-jwt verifies
// signatures but does not read JWKs. jwx is already in the module graph
// (through OPA), is maintained, and validates RSA, EC (point on curve) and
// OKP keys; keyfunc/jwkset would add two modules and their own HTTP
// refresher, while fetching, refreshing and failing closed are done here so
// that they are observable (metrics, Status) and follow Istio. Only key
// parsing is delegated: the JWKS document itself is read here, key by key,
// so that one bad key is skipped rather than failing the set, as Envoy's
// jwt_verify_lib does.

// keyKind is a family of public keys; each accepts a fixed set of JWS
// algorithms (RFC 7518), which is what a token's alg is pinned to.
type keyKind uint8

const (
	keyRSA keyKind = iota
	keyP256
	keyP384
	keyP521
	keyEd25519
	numKeyKinds
)

// methodsFor lists the algorithms a key kind verifies. HS* is never listed:
// a public key used as an HMAC secret is the classic algorithm-confusion
// attack, and symmetric JWKs are not accepted at all.
var methodsFor = [numKeyKinds][]string{
	keyRSA:     {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"},
	keyP256:    {"ES256"},
	keyP384:    {"ES384"},
	keyP521:    {"ES512"},
	keyEd25519: {"EdDSA"},
}

// supportedAlgs are the algorithms Envoy's jwt_verify_lib parses; any other
// alg (none included) is "Jwt header [alg] is not supported".
var supportedAlgs = map[string]bool{
	"RS256": true, "RS384": true, "RS512": true,
	"PS256": true, "PS384": true, "PS512": true,
	"ES256": true, "ES384": true, "ES512": true,
	"HS256": true, "HS384": true, "HS512": true,
	"EdDSA": true,
}

// publicKey is one usable key of a set.
type publicKey struct {
	kid  string
	alg  string // the JWK's alg, "" when it has none
	kind keyKind
	key  crypto.PublicKey
}

// keySet is a parsed JWKS.
type keySet struct {
	keys []*publicKey
	// verified remembers the tokens whose signature these keys verified,
	// as Envoy's jwt_cache does: an RSA or ECDSA check costs tens of
	// microseconds and an end user sends the same token many times. A key
	// set never changes, so an entry is true for as long as the set is
	// the one in use; a new set starts empty.
	verified *twogen.Map[verifiedKey, struct{}]
}

// parseJWKS reads a JSON Web Key Set. It fails as Envoy does: not JSON,
// no "keys", "keys" not a list, or no usable key; keys that cannot be used
// (unknown kty, symmetric, malformed) are skipped.
func parseJWKS(data []byte) (*keySet, status, error) {
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, statusJwksParseError, err
	}
	raw, ok := doc["keys"]
	if !ok {
		return nil, statusJwksNoKeys, fmt.Errorf("no \"keys\"")
	}
	var keys []json.RawMessage
	if err := json.Unmarshal(raw, &keys); err != nil {
		return nil, statusJwksBadKeys, err
	}
	set := &keySet{verified: twogen.New[verifiedKey, struct{}](maxVerifiedTokens / 2)}
	var lastErr error
	for i, k := range keys {
		pk, err := parseJWK(k)
		if err != nil {
			lastErr = fmt.Errorf("key %d: %w", i, err)
			continue
		}
		set.keys = append(set.keys, pk)
	}
	if len(set.keys) == 0 {
		if lastErr == nil {
			lastErr = fmt.Errorf("no keys")
		}
		return nil, statusJwksNoValidKeys, lastErr
	}
	return set, statusOK, nil
}

func parseJWK(data []byte) (*publicKey, error) {
	k, err := jwk.ParseKey(data)
	if err != nil {
		return nil, err
	}
	var raw any
	if err := jwk.Export(k, &raw); err != nil {
		return nil, err
	}
	pk := &publicKey{}
	if kid, ok := k.KeyID(); ok {
		pk.kid = kid
	}
	if alg, ok := k.Algorithm(); ok {
		pk.alg = alg.String()
	}
	// A set that (wrongly) publishes private keys still only verifies.
	if priv, ok := raw.(interface{ Public() crypto.PublicKey }); ok {
		raw = priv.Public()
	}
	switch key := raw.(type) {
	case *rsa.PublicKey:
		pk.kind, pk.key = keyRSA, key
	case *ecdsa.PublicKey:
		switch key.Curve {
		case elliptic.P256():
			pk.kind = keyP256
		case elliptic.P384():
			pk.kind = keyP384
		case elliptic.P521():
			pk.kind = keyP521
		default:
			return nil, fmt.Errorf("unsupported curve %s", key.Curve.Params().Name)
		}
		pk.key = key
	case ed25519.PublicKey:
		pk.kind, pk.key = keyEd25519, key
	default:
		return nil, fmt.Errorf("unsupported key type %T", raw)
	}
	// Envoy rejects a JWK whose alg does not belong to its kty (for example
	// [alg] is not started with [RS] or [PS] for an RSA key).
	if pk.alg != "" && !contains(methodsFor[pk.kind], pk.alg) {
		return nil, fmt.Errorf("alg %q does not fit a %s key", pk.alg, kindName(pk.kind))
	}
	return pk, nil
}

func kindName(k keyKind) string {
	switch k {
	case keyRSA:
		return "RSA"
	case keyP256:
		return "EC P-256"
	case keyP384:
		return "EC P-384"
	case keyP521:
		return "EC P-521"
	case keyEd25519:
		return "Ed25519"
	}
	return "unknown"
}

func contains(l []string, s string) bool {
	for _, e := range l {
		if e == s {
			return true
		}
	}
	return false
}

// verifiedKey is a (provider, token) pair whose signature verified.
type verifiedKey struct {
	p   *provider // the parser's checks (issuer) are the provider's
	raw string
}

// maxVerifiedTokens bounds one key set's cache: tokens are about 1 KB.
const maxVerifiedTokens = 4096
