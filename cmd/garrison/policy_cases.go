package main

import (
	"github.com/garrison-mesh/garrison/authn/jwt"

	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/garrison-mesh/garrison/authz/cases"
	"github.com/garrison-mesh/garrison/authz/engine"
	"github.com/garrison-mesh/garrison/policies"
)

// caseResult is the outcome of one case (or of a test file that could not
// be read: Name empty, Error set).
type caseResult struct {
	File string `json:"file"`
	Line int    `json:"line,omitempty"`
	Name string `json:"name,omitempty"`
	Pass bool   `json:"pass"`
	// Failure says how the decision differs from the expectation.
	Failure string `json:"failure,omitempty"`
	// Error is why there is no decision to compare.
	Error    string           `json:"error,omitempty"`
	Decision *engine.Decision `json:"decision,omitempty"`
}

// testReport is the -o json output of garrison policy test.
type testReport struct {
	Pass   bool `json:"pass"`
	Total  int  `json:"total"`
	Passed int  `json:"passed"`
	Failed int  `json:"failed"`
	// Errors counts test files that could not be read and cases that got
	// no decision; each is also failed.
	Errors    int          `json:"errors"`
	TestFiles []string     `json:"test_files"`
	Cases     []caseResult `json:"cases"`
	// Problems are the configuration's errors; when there are any, no case
	// runs.
	Problems policies.Problems `json:"problems,omitempty"`
	// Warnings are the compiler's (Result.Warnings).
	Warnings []string `json:"warnings,omitempty"`
}

func newPolicyTestCommand(f *policyFlags) *cobra.Command {
	var (
		output  string
		verbose bool
		run     string
	)
	cmd := &cobra.Command{
		Use:   "test DIR|FILE ...",
		Short: "Run the decision tests (*_test.yaml) beside the policies",
		Long: "Test reads the configuration under the given directories as validate does, compiles it, and\n" +
			"runs every case of the *_test.yaml files found there (and of test files named as arguments)\n" +
			"through Garrison's authorization engine, with all of the configuration loaded at once.\n" +
			"It prints each failure and a summary (-v: every case) and exits 1 when a case fails, a\n" +
			"test file cannot be read or the configuration is invalid.\n\n" +
			"A case's request names the destination workload by namespace, labels and services (what\n" +
			"Garrison's xDS sends Envoy as context extensions), or only by destination principal, from\n" +
			"which the workload is then looked up in the configuration. A CUSTOM policy's delegation\n" +
			"shows as a denial with reason custom: the test does not ask the extension provider.",
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if output != "text" && output != "json" {
				return fmt.Errorf("-o must be text or json, got %q", output)
			}
			var filter *regexp.Regexp
			if run != "" {
				var err error
				if filter, err = regexp.Compile(run); err != nil {
					return fmt.Errorf("--run: %w", err)
				}
			}
			ps, err := loadPolicySet(args, f)
			if err != nil {
				return err
			}
			rep, err := runPolicyTests(cmd.Context(), ps, filter)
			if err != nil {
				return err
			}
			if err := writeTestReport(cmd.OutOrStdout(), cmd.ErrOrStderr(), output, verbose, ps, rep); err != nil {
				return err
			}
			if !rep.Pass {
				return exitError{code: 1}
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	cmd.Flags().BoolVarP(&verbose, "verbose", "v", false, "show every case, not only failures")
	cmd.Flags().StringVar(&run, "run", "", "run only the cases whose name matches this regular expression")
	return cmd
}

// runPolicyTests runs the cases of ps's test files whose names match
// filter (nil: all).
func runPolicyTests(ctx context.Context, ps *policySet, filter *regexp.Regexp) (*testReport, error) {
	rep := &testReport{TestFiles: append([]string{}, ps.testFiles...), Cases: []caseResult{}}
	if ps.res == nil {
		rep.Problems = ps.problems.Errors()
		return rep, nil
	}
	rep.Warnings = ps.res.Warnings
	eng, closeEngine, err := staticEngine(ps)
	if err != nil {
		return nil, err
	}
	defer closeEngine()
	for _, name := range ps.testFiles {
		cs, err := readCases(name)
		if err != nil {
			rep.Cases = append(rep.Cases, caseResult{File: name, Error: err.Error()})
			continue
		}
		for _, c := range cs {
			if filter != nil && !filter.MatchString(c.Name) {
				continue
			}
			rep.Cases = append(rep.Cases, runCase(ctx, eng, name, c))
		}
	}
	for _, r := range rep.Cases {
		if r.Name != "" {
			rep.Total++
		}
		switch {
		case r.Pass:
			rep.Passed++
		case r.Error != "":
			rep.Errors++
			rep.Failed++
		default:
			rep.Failed++
		}
	}
	rep.Pass = rep.Failed == 0
	return rep, nil
}

func readCases(name string) ([]cases.Case, error) {
	fh, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	cs, err := cases.Decode(fh)
	if err != nil {
		return nil, fmt.Errorf("reading cases: %w", err)
	}
	return cs, nil
}

// runCase decides one case and compares the decision with its expectation.
func runCase(ctx context.Context, eng *engine.Engine, file string, c cases.Case) caseResult {
	r := caseResult{File: file, Line: c.Line, Name: c.Name}
	req, err := c.Request.CheckRequest()
	if err != nil {
		r.Error = "request: " + err.Error()
		return r
	}
	d, err := eng.Decide(ctx, req)
	if err != nil {
		r.Error = "no decision: " + err.Error()
		return r
	}
	r.Decision = d
	r.Failure = c.Expect.Mismatch(caseDecision(d))
	r.Pass = r.Failure == ""
	return r
}

// caseDecision is the engine's decision in the terms cases.Expect checks.
func caseDecision(d *engine.Decision) cases.Decision {
	out := cases.Decision{Allowed: d.Allowed, Status: d.Status, Policy: d.Policy, Reason: d.Reason}
	if d.Policy != "" {
		rule := d.Rule
		out.Rule = &rule
	}
	return out
}

// decidedBy says in a few words what decided: the policy and rule, or the
// reason when no policy did; withNotes adds the engine's notes.
func decidedBy(d *engine.Decision, withNotes bool) string {
	if d == nil {
		return ""
	}
	var s string
	if d.Policy != "" {
		s = "decided by " + d.Policy + " rule " + strconv.Itoa(d.Rule)
		if d.Reason != "" {
			s += ", reason " + d.Reason
		}
	} else {
		s = "reason " + d.Reason
	}
	if d.Custom != nil {
		s += ", delegated to provider " + d.Custom.Provider
	}
	if withNotes {
		for _, n := range d.Notes {
			s += "; note: " + n
		}
	}
	return s
}

func writeTestReport(stdout, stderr io.Writer, output string, verbose bool, ps *policySet, rep *testReport) error {
	if output == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	if ps.res == nil {
		writeProblems(stdout, ps)
		return nil
	}
	if verbose {
		writeCompileWarnings(stderr, ps.res)
	}
	var b strings.Builder
	for _, r := range rep.Cases {
		switch {
		case r.Name == "":
			fmt.Fprintf(&b, "FAIL: %s: %s\n", r.File, r.Error)
		case r.Error != "":
			fmt.Fprintf(&b, "FAIL: %s:%d: %s: %s\n", r.File, r.Line, r.Name, r.Error)
		case !r.Pass:
			fmt.Fprintf(&b, "FAIL: %s:%d: %s: %s (%s)\n", r.File, r.Line, r.Name, r.Failure, decidedBy(r.Decision, true))
		case verbose:
			fmt.Fprintf(&b, "PASS: %s:%d: %s\n", r.File, r.Line, r.Name)
		}
	}
	switch {
	case len(rep.TestFiles) == 0:
		b.WriteString("no test files (*_test.yaml)\n")
	case rep.Pass:
		fmt.Fprintf(&b, "PASS %d/%d\n", rep.Passed, rep.Total)
	default:
		fmt.Fprintf(&b, "FAIL %d/%d (%d failed", rep.Passed, rep.Total, rep.Failed)
		switch {
		case rep.Errors == 1:
			b.WriteString(", 1 error")
		case rep.Errors > 1:
			fmt.Fprintf(&b, ", %d errors", rep.Errors)
		}
		b.WriteString(")\n")
	}
	_, err := io.WriteString(stdout, b.String())
	return err
}

// staticEngine decides with ps's policies as garrison serve would,
// end-user tokens verified against its RequestAuthentications (inline
// jwks, or jwksUri fetched as serve fetches it). close stops the fetchers.
func staticEngine(ps *policySet) (eng *engine.Engine, close func(), err error) {
	authn, err := jwt.New(jwt.Config{})
	if err != nil {
		return nil, nil, err
	}
	eng, err = engine.NewStaticConfig(engine.Config{Authenticator: authn}, ps.res, ps.snap)
	if err != nil {
		_ = authn.Close()
		return nil, nil, err
	}
	return eng, func() { _ = authn.Close() }, nil
}
