package policies

import "fmt"

// check collects what is wrong with one document, by field path. Validators
// write to it; Parse resolves each path to a line once, at the end.
type check struct {
	issues []issue
	// empty records lists written as [] : decoded, they cannot be told
	// from absent ones, yet Istio rejects some of them (from: []).
	empty map[FieldPath]bool
}

func (c *check) markEmpty(p FieldPath) {
	if c.empty == nil {
		c.empty = map[FieldPath]bool{}
	}
	c.empty[p] = true
}

// writtenEmpty reports whether the list at p was written as [] rather
// than left out.
func (c *check) writtenEmpty(p FieldPath) bool { return c.empty[p] }

type issue struct {
	path     FieldPath
	message  string
	severity Severity
}

// errorf records a problem that rejects the resource.
func (c *check) errorf(p FieldPath, format string, args ...any) {
	c.issues = append(c.issues, issue{path: p, message: fmt.Sprintf(format, args...), severity: SeverityError})
}

// warnf records a problem that is reported but accepted.
func (c *check) warnf(p FieldPath, format string, args ...any) {
	c.issues = append(c.issues, issue{path: p, message: fmt.Sprintf(format, args...), severity: SeverityWarning})
}

func (c *check) failed() bool {
	for _, is := range c.issues {
		if is.severity == SeverityError {
			return true
		}
	}
	return false
}
