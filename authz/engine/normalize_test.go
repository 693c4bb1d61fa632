package engine

import (
	"errors"
	"testing"
)

// normalizeCases: Istio's documented examples for BASE, RFC 3986's
// dot-segment rules, and what Envoy's Chromium-derived canonicalizer does
// with the characters around them. want "" with err means rejected.
var normalizeCases = []struct {
	in, want string
	err      bool
}{
	{in: "", want: ""},
	{in: "/", want: "/"},
	{in: "/a/b", want: "/a/b"},
	{in: "/api/v1/reviews/0?rating=5", want: "/api/v1/reviews/0?rating=5"},
	// Istio's examples (reference/config/security/normalization).
	{in: "/some%2fdata/%61%62%63", want: "/some%2fdata/abc"},
	{in: `/some\data`, want: "/some/data"},
	{in: "/some//data///abc", want: "/some//data///abc"},
	{in: "/public/./data/abc/../xyz", want: "/public/data/xyz"},
	{in: "/foo?v=1", want: "/foo?v=1"},
	// Dot segments.
	{in: "/a/./b", want: "/a/b"},
	{in: "/a/../b", want: "/b"},
	{in: "/../a", want: "/a"},
	{in: "/../../..", want: "/"},
	{in: "/a/..", want: "/"},
	{in: "/a/.", want: "/a/"},
	{in: "/a/b/../../..", want: "/"},
	{in: "/a/b/c/./../../g", want: "/a/g"},
	{in: "/%2e%2e/a", want: "/a"},
	{in: "/a/%2E%2e/b", want: "/b"},
	{in: "/a/.%2e/b", want: "/b"},
	{in: "/a/%2e", want: "/a/"},
	{in: "/a/..?q=../x", want: "/?q=../x"},
	{in: `\..\a`, want: "/a"},
	{in: `/a\..\b`, want: "/b"},
	{in: "/.well-known/x", want: "/.well-known/x"},
	{in: "/a/...", want: "/a/..."},
	{in: "/a/..b", want: "/a/..b"},
	{in: "/a/b..", want: "/a/b.."},
	{in: "/a/%2e%2e%2e", want: "/a/..."},
	{in: "/a.%2e/b", want: "/a../b"},
	// Escapes: unreserved decoded once, the rest kept as written.
	{in: "/a%2db%5f%7e%41%7a%30", want: "/a-b_~Az0"},
	{in: "/a%20b", want: "/a%20b"},
	{in: "/a%2F%2f%5C%5c", want: "/a%2F%2f%5C%5c"},
	{in: "/%252e%252e/", want: "/%252e%252e/"},
	{in: "/%25", want: "/%25"},
	// Characters a path may not carry are encoded.
	{in: "/a b", want: "/a%20b"},
	{in: "/ü", want: "/%C3%BC"},
	{in: "/a\"<>^`{|}", want: "/a%22%3C%3E%5E%60%7B%7C%7D"},
	{in: "/a#b", want: "/a%23b"},
	{in: "/a\tb\x7f", want: "/a%09b%7F"},
	{in: "/a;b=c/d:e@f!$&'()*+,=[]", want: "/a;b=c/d:e@f!$&'()*+,=[]"},
	// A leading slash is added; the query is never touched.
	{in: "a/b", want: "/a/b"},
	{in: "?x", want: "/?x"},
	{in: "/a?x=%00&y=%zz#\\", want: "/a?x=%00&y=%zz#\\"},
	// Invalid escapes pass through as Chromium's canonicalizer leaves
	// them; what follows the "%" is read afresh, once.
	{in: "/a%zz", want: "/a%zz"},
	{in: "/a%4", want: "/a%4"},
	{in: "/a%", want: "/a%"},
	{in: "/a%%30%30", want: "/a%00"},
	{in: "/a%G0/../b", want: "/b"},
	{in: "/%%2e%2e/a", want: "/%../a"},
	// Rejected.
	{in: "/a%00", err: true},
	{in: "/a%00b?x", err: true},
	{in: "/a\x00", err: true},
}

func TestNormalizePath(t *testing.T) {
	for _, tc := range normalizeCases {
		got, err := NormalizePath(tc.in)
		if tc.err {
			if !errors.Is(err, ErrInvalidPath) {
				t.Errorf("NormalizePath(%q) = %q, %v; want ErrInvalidPath", tc.in, got, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("NormalizePath(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

// TestNormalizePathNoAllocation: the common, already normal path costs a
// scan and nothing else.
func TestNormalizePathNoAllocation(t *testing.T) {
	p := "/api/v1/reviews/0?rating=5&sort=desc"
	if n := testing.AllocsPerRun(100, func() { _, _ = NormalizePath(p) }); n != 0 {
		t.Fatalf("%v allocations", n)
	}
}
