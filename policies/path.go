package policies

import (
	"strconv"
	"strings"
)

// FieldPath names a field inside a document the way users read it:
// spec.http[0].route[1].weight, metadata.labels[app.kubernetes.io/name].
// It is built while decoding and validating, and resolved back to a line
// only when an error needs one.
type FieldPath string

// Field appends a named field.
func (p FieldPath) Field(name string) FieldPath {
	if p == "" {
		return FieldPath(name)
	}
	return p + "." + FieldPath(name)
}

// Index appends a list index.
func (p FieldPath) Index(i int) FieldPath {
	return p + "[" + FieldPath(strconv.Itoa(i)) + "]"
}

// Key appends a map key.
func (p FieldPath) Key(k string) FieldPath {
	return p + "[" + FieldPath(k) + "]"
}

// String renders the path for humans: the spec prefix is implied.
func (p FieldPath) String() string {
	s := string(p)
	if s == "spec" {
		return "spec"
	}
	return strings.TrimPrefix(s, "spec.")
}

// pathStep is one step of a parsed FieldPath: a field name, or a bracketed
// index or key (which one depends on the node it is applied to).
type pathStep struct {
	name    string
	bracket bool
}

// steps splits a path into its steps. Brackets may hold dots (label keys), so
// this is a small scanner rather than a strings.Split.
func (p FieldPath) steps() []pathStep {
	var out []pathStep
	s := string(p)
	for len(s) > 0 {
		switch s[0] {
		case '.':
			s = s[1:]
		case '[':
			end := strings.IndexByte(s, ']')
			if end < 0 {
				out = append(out, pathStep{name: s[1:], bracket: true})
				return out
			}
			out = append(out, pathStep{name: s[1:end], bracket: true})
			s = s[end+1:]
		default:
			end := strings.IndexAny(s, ".[")
			if end < 0 {
				end = len(s)
			}
			out = append(out, pathStep{name: s[:end]})
			s = s[end:]
		}
	}
	return out
}
