package engine

import (
	"errors"
	"fmt"
	"strings"
)

// ErrInvalidPath is wrapped by NormalizePath's errors. Envoy and Garrison
// answer such a request with 400 before any policy sees it.
var ErrInvalidPath = errors.New("invalid request path")

// NormalizePath returns path as Envoy's normalize_path leaves it, which is
// Istio's BASE normalization (Garrison's xDS turns it on, so stock OPA
// behind Envoy sees the same path):
//
//   - the part before the first "?" is the path; the query after it is
//     kept byte for byte;
//   - "\" becomes "/";
//   - %XX of an unreserved character (ALPHA, DIGIT, "-", ".", "_", "~") is
//     decoded, once; any other valid %XX is kept as written (so %2F and %5C
//     stay: decoding them is Istio's DECODE_AND_MERGE_SLASHES, not BASE);
//   - "." and ".." segments are resolved as RFC 3986 section 5.2.4 says,
//     "%2e" counting as "."; ".." never climbs above the root;
//   - characters that may not appear in a path (controls, space, `"#<>^{|}`
//     and backquote, DEL, non-ASCII bytes) are percent-encoded;
//   - a path not starting with a slash gets one; slashes are not merged.
//
// This is the behaviour of the Chromium URL path canonicalizer that Envoy's
// normalize_path runs (source/common/chromium_url), in one pass as Envoy
// runs it: an invalid escape ("%", "%4", "%zz") is copied through as
// written and the bytes after its "%" are read afresh, so "/a%%30" becomes
// "/a%0" and Istio matches that. Only %00 and a NUL byte are refused; the
// rejections wrap ErrInvalidPath. An empty path is returned as is.
func NormalizePath(path string) (string, error) {
	if path == "" || isNormalPath(path) {
		return path, nil
	}
	raw, query := path, ""
	if i := strings.IndexByte(path, '?'); i >= 0 {
		raw, query = path[:i], path[i:]
	}
	out := make([]byte, 0, len(raw)+1+len(query))
	if raw == "" || !isSlash(raw[0]) {
		out = append(out, '/')
	}
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		if dl := dotLen(raw, i); dl > 0 {
			// The output always starts with a slash by now, so a dot is
			// a segment of its own only when a slash precedes it.
			if out[len(out)-1] != '/' {
				out = append(out, '.')
				i += dl - 1
				continue
			}
			switch consumed, kind := classifyAfterDot(raw, i+dl); kind {
			case dotInName:
				out = append(out, '.')
				i += dl - 1
			case dotCurrent:
				i += dl + consumed - 1
			case dotParent:
				out = backUpToPreviousSlash(out)
				i += dl + consumed - 1
			}
			continue
		}
		switch {
		case c == '\\':
			out = append(out, '/')
		case c == '%':
			if i+2 >= len(raw) || !isHex(raw[i+1]) || !isHex(raw[i+2]) {
				out = append(out, '%')
				continue
			}
			v := unhex(raw[i+1])<<4 | unhex(raw[i+2])
			switch {
			case v == 0:
				return "", fmt.Errorf("%w: %%00 at byte %d", ErrInvalidPath, i)
			case isUnreserved(v):
				out = append(out, v)
			default:
				// Kept as written, hex case included: a server may care.
				out = append(out, raw[i:i+3]...)
			}
			i += 2
		case c == 0:
			return "", fmt.Errorf("%w: NUL at byte %d", ErrInvalidPath, i)
		case mustEscape(c):
			out = append(out, '%', upperHex[c>>4], upperHex[c&0xf])
		default:
			out = append(out, c)
		}
	}
	return string(append(out, query...)), nil
}

// isNormalPath reports, without allocating, whether NormalizePath would
// return path unchanged for a reason this scan can see: a leading slash,
// no dot right after a slash, nothing to decode, encode or reject. Most
// real paths pass, so the common request costs one scan.
func isNormalPath(path string) bool {
	if path[0] != '/' {
		return false
	}
	for i := 0; i < len(path); i++ {
		c := path[i]
		switch {
		case c == '?':
			return true
		case c == '.':
			if path[i-1] == '/' {
				return false
			}
		case c == '%' || c == '\\' || c == 0 || mustEscape(c):
			return false
		}
	}
	return true
}

type dotKind int

const (
	dotInName  dotKind = iota // part of a file name: "/.well-known"
	dotCurrent                // "." segment
	dotParent                 // ".." segment
)

// dotLen is the length of a dot at path[i]: 1 for ".", 3 for "%2e" or
// "%2E", 0 for anything else.
func dotLen(path string, i int) int {
	switch {
	case path[i] == '.':
		return 1
	case path[i] == '%' && i+2 < len(path) && path[i+1] == '2' && (path[i+2] == 'e' || path[i+2] == 'E'):
		return 3
	}
	return 0
}

// classifyAfterDot looks at what follows a dot that starts a segment and
// returns how many more bytes the segment takes (its closing slash
// included).
func classifyAfterDot(path string, after int) (int, dotKind) {
	if after == len(path) {
		return 0, dotCurrent
	}
	if isSlash(path[after]) {
		return 1, dotCurrent
	}
	if second := dotLen(path, after); second > 0 {
		end := after + second
		if end == len(path) {
			return second, dotParent
		}
		if isSlash(path[end]) {
			return second + 1, dotParent
		}
	}
	return 0, dotInName
}

// backUpToPreviousSlash drops the last segment of out, which ends with a
// slash; at the root it does nothing.
func backUpToPreviousSlash(out []byte) []byte {
	i := len(out) - 1
	if i == 0 {
		return out
	}
	i--
	for i > 0 && out[i] != '/' {
		i--
	}
	return out[:i+1]
}

func isSlash(c byte) bool { return c == '/' || c == '\\' }

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c <= 'F':
		return c - 'A' + 10
	}
	return c - 'a' + 10
}

const upperHex = "0123456789ABCDEF"

// isUnreserved: RFC 3986 unreserved characters other than ".", which
// dotLen handles.
func isUnreserved(c byte) bool {
	return 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '~'
}

// mustEscape: the characters Chromium's path table percent-encodes.
func mustEscape(c byte) bool {
	switch {
	case c < 0x20 || c >= 0x7f:
		return c != 0
	}
	switch c {
	case ' ', '"', '#', '<', '>', '?', '^', '`', '{', '|', '}':
		return true
	}
	return false
}
