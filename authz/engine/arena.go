package engine

import (
	"math"
	"strconv"

	"github.com/open-policy-agent/opa/v1/ast"
)

// arena allocates the terms of one input in blocks. Building an input is
// mostly allocation (a request of 15 headers and a JWT identity makes a few
// hundred terms), and on a busy server the garbage collector's share of
// that cost grows with the number of objects rather than their size: one
// block of 64 terms costs about what one term does. Every term of a block
// belongs to the same input and dies with it.
type arena struct {
	terms []ast.Term
	ptrs  []*ast.Term
}

const arenaBlock = 64

func (a *arena) term(v ast.Value) *ast.Term {
	if len(a.terms) == cap(a.terms) {
		a.terms = make([]ast.Term, 0, arenaBlock)
	}
	a.terms = append(a.terms, ast.Term{Value: v})
	return &a.terms[len(a.terms)-1]
}

// str is a string term, shared when s is a common header name, header
// value or metadata key, which then costs no allocation at all.
func (a *arena) str(s string) *ast.Term {
	if len(s) <= maxInterned {
		if t, ok := interned[s]; ok {
			return t
		}
	}
	return a.term(ast.String(s))
}

// object is an object term of kvs (which NewObject copies, so callers keep
// them on the stack).
func (a *arena) object(kvs ...[2]*ast.Term) *ast.Term {
	if len(kvs) == 0 {
		return ast.InternedEmptyObject
	}
	return a.term(ast.NewObject(kvs...))
}

// elems returns n element slots for an array, from a shared block.
func (a *arena) elems(n int) []*ast.Term {
	if n > arenaBlock {
		return make([]*ast.Term, n)
	}
	if cap(a.ptrs)-len(a.ptrs) < n {
		a.ptrs = make([]*ast.Term, 0, arenaBlock)
	}
	s := a.ptrs[len(a.ptrs) : len(a.ptrs)+n : len(a.ptrs)+n]
	a.ptrs = a.ptrs[:len(a.ptrs)+n]
	return s
}

// array is an array term of elems (kept by the array: elems must come from
// a.elems or be owned by the caller no more).
func (a *arena) array(elems []*ast.Term) *ast.Term {
	if len(elems) == 0 {
		return ast.InternedEmptyArray
	}
	return a.term(ast.NewArray(elems...))
}

// int is what ast.InterfaceToValue makes of a signed integer.
func (a *arena) int(i int64) *ast.Term {
	if ast.HasInternedIntNumberTerm(int(i)) {
		return ast.IntNumberTerm(int(i))
	}
	return a.term(ast.Number(strconv.FormatInt(i, 10)))
}

func (a *arena) uint(u uint64) *ast.Term {
	if u <= math.MaxInt64 {
		return a.int(int64(u))
	}
	return a.term(ast.Number(strconv.FormatUint(u, 10)))
}

// maxInterned bounds the strings looked up in interned: hashing a long
// header value (a token, a cookie) costs more than it could save.
const maxInterned = 40

// interned holds the strings that recur in almost every request: Envoy's
// and Istio's header names and the usual values of method, scheme and
// protocol, Istio's authn metadata keys and JWT claim names. A shared term
// is safe because nothing modifies an input once built (OPA shares its own
// interned terms the same way).
var interned = func() map[string]*ast.Term {
	m := map[string]*ast.Term{}
	for _, s := range []string{
		// Pseudo-headers and common request headers, lower-cased as Envoy
		// sends them.
		":authority", ":method", ":path", ":scheme", ":protocol",
		"accept", "accept-encoding", "accept-language", "authorization", "cache-control",
		"connection", "content-encoding", "content-length", "content-type", "cookie", "forwarded",
		"grpc-accept-encoding", "grpc-encoding", "grpc-timeout", "host", "if-match", "if-modified-since",
		"if-none-match", "origin", "pragma", "priority", "referer", "te", "traceparent", "tracestate",
		"upgrade", "user-agent", "via", "x-api-key", "x-b3-flags", "x-b3-parentspanid", "x-b3-sampled",
		"x-b3-spanid", "x-b3-traceid", "x-client-trace-id", "x-envoy-attempt-count",
		"x-envoy-auth-partial-body", "x-envoy-decorator-operation", "x-envoy-expected-rq-timeout-ms",
		"x-envoy-external-address", "x-envoy-internal", "x-envoy-original-path", "x-envoy-peer-metadata",
		"x-envoy-peer-metadata-id", "x-forwarded-client-cert", "x-forwarded-for", "x-forwarded-host",
		"x-forwarded-port", "x-forwarded-proto", "x-ot-span-context", "x-real-ip", "x-request-id",
		"sec-fetch-dest", "sec-fetch-mode", "sec-fetch-site", "sec-fetch-user",
		"sec-ch-ua", "sec-ch-ua-mobile", "sec-ch-ua-platform", "upgrade-insecure-requests",
		// Their usual values.
		"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE",
		"http", "https", "HTTP/1.0", "HTTP/1.1", "HTTP/2", "HTTP/3",
		"0", "1", "true", "false", "*/*", "application/json", "application/grpc", "trailers",
		"gzip", "gzip, deflate", "gzip, deflate, br", "identity", "no-cache", "keep-alive", "close",
		// Istio's authn filter metadata and JWT claims.
		"istio_authn", "source.principal", "source.namespace", "source.user",
		"request.auth.principal", "request.auth.audiences", "request.auth.presenter",
		"request.auth.claims", "request.auth.raw_claims",
		"iss", "sub", "aud", "exp", "iat", "nbf", "jti", "azp", "scope", "scp", "groups", "roles",
		"email", "email_verified", "name", "preferred_username",
		// Garrison's context extension keys.
		ExtNamespace, ExtServices, ExtWorkload,
		ExtLabelPrefix + "app", ExtLabelPrefix + "version",
	} {
		if len(s) > maxInterned {
			panic("interned string too long: " + s)
		}
		m[s] = ast.StringTerm(s)
	}
	return m
}()
