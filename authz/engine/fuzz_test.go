package engine

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/proto"
)

// requestCorpusDir holds the hand-written requests in wire form, for the
// fuzz seeds and for peerparity/, which checks them against
// opa-envoy-plugin's own code. GARRISON_UPDATE_GOLDEN=1 rewrites it.
const requestCorpusDir = "testdata/requests"

var deterministic = proto.MarshalOptions{Deterministic: true}

func TestRequestCorpusUpToDate(t *testing.T) {
	reqs := parityRequests()
	if os.Getenv("GARRISON_UPDATE_GOLDEN") == "1" {
		if err := os.RemoveAll(requestCorpusDir); err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(requestCorpusDir, 0o755); err != nil {
			t.Fatal(err)
		}
		for name, req := range reqs {
			bs, err := deterministic.Marshal(req)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(corpusFile(name), bs, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	files, err := filepath.Glob(filepath.Join(requestCorpusDir, "*.binpb"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != len(reqs) {
		t.Fatalf("%s has %d requests, the tests %d: run with GARRISON_UPDATE_GOLDEN=1", requestCorpusDir, len(files), len(reqs))
	}
	for name, req := range reqs {
		bs, err := os.ReadFile(corpusFile(name))
		if err != nil {
			t.Fatalf("%v: run with GARRISON_UPDATE_GOLDEN=1", err)
		}
		got := &authv3.CheckRequest{}
		if err := proto.Unmarshal(bs, got); err != nil {
			t.Fatal(err)
		}
		if !proto.Equal(got, req) {
			t.Errorf("%s is stale: run with GARRISON_UPDATE_GOLDEN=1", corpusFile(name))
		}
	}
}

func corpusFile(name string) string {
	return filepath.Join(requestCorpusDir, strings.ReplaceAll(name, " ", "-")+".binpb")
}

// FuzzInputParity holds the input builder to both references on arbitrary
// requests: a CheckRequest in wire form (as gRPC hands it over, so strings
// are valid UTF-8) with the path, body and content type, where the
// plugin's parsing lives, given separately so that the fuzzer mutates them
// directly. Each request is also built with a header filter, which must
// change the headers and nothing else.
func FuzzInputParity(f *testing.F) {
	for _, req := range parityRequests() {
		bs, err := deterministic.Marshal(req)
		if err != nil {
			f.Fatal(err)
		}
		h := req.GetAttributes().GetRequest().GetHttp()
		f.Add(bs, h.GetPath(), h.GetBody(), h.GetHeaders()["content-type"])
	}
	f.Add([]byte{}, "/a/../b%2e%2E/c?x=%41&y", `{"k":[1,2]}`, "application/json")
	f.Fuzz(func(t *testing.T, wire []byte, path, body, contentType string) {
		// Size says nothing about parity; large inputs only slow the
		// search (and minimization) down.
		if len(wire)+len(path)+len(body)+len(contentType) > 1<<16 {
			t.Skip()
		}
		req := &authv3.CheckRequest{}
		if err := proto.Unmarshal(wire, req); err != nil {
			t.Skip()
		}
		if path != "" || body != "" || contentType != "" {
			if req.Attributes == nil {
				req.Attributes = &authv3.AttributeContext{}
			}
			if req.Attributes.Request == nil {
				req.Attributes.Request = &authv3.AttributeContext_Request{}
			}
			if req.Attributes.Request.Http == nil {
				req.Attributes.Request.Http = &authv3.AttributeContext_HttpRequest{}
			}
			h := req.Attributes.Request.Http
			h.Path = validUTF8(path)
			h.Body = validUTF8(body)
			if contentType != "" {
				if h.Headers == nil {
					h.Headers = map[string]string{}
				}
				h.Headers["content-type"] = validUTF8(contentType)
			}
		}
		for _, enc := range encodings {
			assertParity(t, NewInputBuilder(InputOptions{Encoding: enc}), req)

			keep := []string{":path", "content-type", "x-request-id"}
			got, gotErr := NewInputBuilder(InputOptions{Encoding: enc, Headers: keep}).Build(req)
			want, wantErr := filteredReference(req, keep, enc)
			if (gotErr != nil) != (wantErr != nil) {
				t.Fatalf("%v filtered: builder error %v, reference error %v", enc, gotErr, wantErr)
			}
			if gotErr == nil {
				if d := valueDiff("input", want, got); d != "" {
					t.Fatalf("%v filtered: %s", enc, d)
				}
			}
		}
	})
}

// validUTF8 is s as a gRPC peer could send it: proto3 strings are UTF-8.
func validUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}

// FuzzNormalizePath checks the properties normalization exists for: it
// leaves no "." or ".." segment, backslash or NUL in the path, keeps the
// query byte for byte, rejects exactly the paths with %00 or a NUL, and,
// when every "%" starts a valid escape, leaves no %00 or encoded unreserved
// character and is idempotent. An invalid escape is copied through and the
// bytes after it read afresh, once, as Envoy does: "/%%32%65" becomes the
// literal "/%2e", so those two properties hold only without one.
func FuzzNormalizePath(f *testing.F) {
	for _, tc := range normalizeCases {
		f.Add(tc.in)
	}
	f.Fuzz(func(t *testing.T, p string) {
		n, err := NormalizePath(p)
		rawPath, query, hasQuery := strings.Cut(p, "?")
		if err != nil {
			if !isRefusedPath(rawPath) {
				t.Fatalf("NormalizePath(%q) rejected a path without %%00 or NUL: %v", p, err)
			}
			return
		}
		if isRefusedPath(rawPath) {
			t.Fatalf("NormalizePath(%q) = %q, want a rejection", p, n)
		}
		if p == "" {
			if n != "" {
				t.Fatalf("NormalizePath(\"\") = %q", n)
			}
			return
		}
		valid := !hasInvalidEscape(rawPath)
		if valid {
			again, err := NormalizePath(n)
			if err != nil || again != n {
				t.Fatalf("not idempotent: %q -> %q -> %q, %v", p, n, again, err)
			}
		}
		nPath, nQuery, nHasQuery := strings.Cut(n, "?")
		if nHasQuery != hasQuery || nQuery != query {
			t.Fatalf("query changed: %q -> %q", p, n)
		}
		if !strings.HasPrefix(nPath, "/") {
			t.Fatalf("%q -> %q: no leading slash", p, n)
		}
		if strings.ContainsAny(nPath, "\\\x00") {
			t.Fatalf("%q -> %q: backslash or NUL left", p, n)
		}
		for _, seg := range strings.Split(nPath, "/") {
			if seg == "." || seg == ".." {
				t.Fatalf("%q -> %q: dot segment left", p, n)
			}
		}
		for i := 0; i < len(nPath); i++ {
			c := nPath[i]
			if c == '%' {
				if !valid {
					continue
				}
				v := unhex(nPath[i+1])<<4 | unhex(nPath[i+2])
				if v == 0 || v == '.' || isUnreserved(v) {
					t.Fatalf("%q -> %q: %%%c%c left encoded", p, n, nPath[i+1], nPath[i+2])
				}
				i += 2
				continue
			}
			if mustEscape(c) {
				t.Fatalf("%q -> %q: %q left unencoded", p, n, c)
			}
		}
	})
}

// isRefusedPath: the path part has %00 or a NUL. An invalid escape's "%"
// is copied and the scan goes on at the next byte, and "%" is not a hex
// digit, so every "%00" in the text is read as one.
func isRefusedPath(p string) bool {
	return strings.Contains(p, "%00") || strings.IndexByte(p, 0) >= 0
}

// hasInvalidEscape: the path part has a "%" not followed by two hex digits.
func hasInvalidEscape(p string) bool {
	for i := 0; i < len(p); i++ {
		if p[i] == '%' && (i+2 >= len(p) || !isHex(p[i+1]) || !isHex(p[i+2])) {
			return true
		}
	}
	return false
}
