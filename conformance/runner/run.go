package runner

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"

	"github.com/garrison-mesh/garrison/authz/cases"
)

// Result is the outcome of one case.
type Result struct {
	Topic string
	Case  cases.Case
	Got   cases.Decision
	// Mismatch says how Got differs from the case's expectation; empty
	// when it conforms.
	Mismatch string
	// Err is set when no decision was obtained.
	Err error
}

// Failed reports a case that did not conform.
func (r Result) Failed() bool { return r.Err != nil || r.Mismatch != "" }

// String describes the result in one line.
func (r Result) String() string {
	switch {
	case r.Err != nil:
		return fmt.Sprintf("%s: %s (line %d): error: %v", r.Topic, r.Case.Name, r.Case.Line, r.Err)
	case r.Mismatch != "":
		return fmt.Sprintf("%s: %s (line %d): %s", r.Topic, r.Case.Name, r.Case.Line, r.Mismatch)
	}
	return fmt.Sprintf("%s: %s: ok", r.Topic, r.Case.Name)
}

// Check decides one case with a session and compares.
func Check(ctx context.Context, s Session, topic string, c cases.Case) Result {
	r := Result{Topic: topic, Case: c}
	r.Got, r.Err = s.Decide(ctx, &c.Request)
	if r.Err == nil {
		r.Mismatch = c.Expect.Mismatch(r.Got)
	}
	return r
}

// RunTopic starts the implementation with the topic's configuration, runs
// every case in order and stops it.
func RunTopic(ctx context.Context, impl Implementation, t *Topic) ([]Result, error) {
	s, err := impl.Start(ctx, t)
	if err != nil {
		return nil, err
	}
	out := make([]Result, 0, len(t.Cases))
	for _, c := range t.Cases {
		out = append(out, Check(ctx, s, t.Name, c))
	}
	return out, s.Close()
}

// BuildGarrison builds cmd/garrison of the module rooted at moduleRoot into
// dir and returns the binary's path.
func BuildGarrison(ctx context.Context, moduleRoot, dir string) (string, error) {
	bin := filepath.Join(dir, "garrison")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/garrison")
	cmd.Dir = moduleRoot
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/garrison: %v\n%s", err, out)
	}
	return bin, nil
}
