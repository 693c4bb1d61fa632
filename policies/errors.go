package policies

import (
	"errors"
	"fmt"
	"sort"
	"strings"
)

// Severity says whether a problem rejects the resource.
type Severity string

const (
	// SeverityError rejects the resource (and the file it came from).
	SeverityError Severity = "error"
	// SeverityWarning is reported but accepted, as Istio's webhook warnings are.
	SeverityWarning Severity = "warning"
)

// Problem is one finding about the configuration, located as precisely as
// the input allows: file, line, the resource and the field.
type Problem struct {
	File      string   `json:"file"`
	Line      int      `json:"line,omitempty"`
	Kind      string   `json:"kind,omitempty"`
	Namespace string   `json:"namespace,omitempty"`
	Name      string   `json:"name,omitempty"`
	Field     string   `json:"field,omitempty"`
	Message   string   `json:"message"`
	Severity  Severity `json:"severity"`
}

// Error renders the problem as
// reviews.yaml:14: VirtualService default/reviews: http[0].route[1].weight: weights must sum to 100.
func (p *Problem) Error() string {
	var b strings.Builder
	b.WriteString(p.File)
	if p.Line > 0 {
		fmt.Fprintf(&b, ":%d", p.Line)
	}
	b.WriteString(": ")
	if p.Severity == SeverityWarning {
		b.WriteString("warning: ")
	}
	if p.Kind != "" {
		b.WriteString(p.Kind)
		if id := p.object(); id != "" {
			b.WriteString(" ")
			b.WriteString(id)
		}
		b.WriteString(": ")
	}
	if p.Field != "" {
		b.WriteString(p.Field)
		b.WriteString(": ")
	}
	b.WriteString(p.Message)
	return b.String()
}

func (p *Problem) object() string {
	switch {
	case p.Namespace != "" && p.Name != "":
		return p.Namespace + "/" + p.Name
	default:
		return p.Name
	}
}

// Problems is a list of findings. As an error it holds at least one
// SeverityError problem; use Err to get that.
type Problems []*Problem

// Error joins every problem, one a line.
func (ps Problems) Error() string {
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = p.Error()
	}
	return strings.Join(lines, "\n")
}

// Errors returns only the problems that reject configuration.
func (ps Problems) Errors() Problems {
	var out Problems
	for _, p := range ps {
		if p.Severity == SeverityError {
			out = append(out, p)
		}
	}
	return out
}

// Warnings returns only the warnings.
func (ps Problems) Warnings() Problems {
	var out Problems
	for _, p := range ps {
		if p.Severity == SeverityWarning {
			out = append(out, p)
		}
	}
	return out
}

// Err returns the error problems as an error, or nil when there are none.
func (ps Problems) Err() error {
	if errs := ps.Errors(); len(errs) > 0 {
		return errs
	}
	return nil
}

// Sort orders problems by file, line and message so output is stable.
func (ps Problems) Sort() {
	sort.SliceStable(ps, func(i, j int) bool {
		a, b := ps[i], ps[j]
		if a.File != b.File {
			return a.File < b.File
		}
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		return a.Message < b.Message
	})
}

// AsProblems extracts Problems from an error returned by this package.
func AsProblems(err error) (Problems, bool) {
	var ps Problems
	if errors.As(err, &ps) {
		return ps, true
	}
	var p *Problem
	if errors.As(err, &p) {
		return Problems{p}, true
	}
	return nil, false
}
