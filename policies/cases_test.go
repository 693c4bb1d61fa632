package policies

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// validationCase is one behaviour case of testdata/validation/*.yaml: an
// input file and exactly the problems Parse must report for it. A case with
// no errors must be accepted.
type validationCase struct {
	Name     string            `yaml:"name"`
	Input    string            `yaml:"input"`
	Errors   []expectedProblem `yaml:"errors"`
	Warnings []expectedProblem `yaml:"warnings"`
	// Resources is how many resources must come out; defaults to the
	// number of documents when no error is expected, 0 otherwise.
	Resources *int `yaml:"resources"`
}

type expectedProblem struct {
	Field   string `yaml:"field"`
	Message string `yaml:"message"`
	Line    int    `yaml:"line"`
}

func loadValidationCases(t *testing.T) map[string][]validationCase {
	t.Helper()
	files, err := filepath.Glob("testdata/validation/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no case files in testdata/validation: %v", err)
	}
	out := map[string][]validationCase{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var cases []validationCase
		if err := yamlUnmarshalStrict(data, &cases); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		out[strings.TrimSuffix(filepath.Base(f), ".yaml")] = cases
	}
	return out
}

func TestValidationCases(t *testing.T) {
	t.Parallel()
	for file, cases := range loadValidationCases(t) {
		seen := map[string]bool{}
		for _, tc := range cases {
			if seen[tc.Name] {
				t.Fatalf("%s: duplicate case name %q", file, tc.Name)
			}
			seen[tc.Name] = true
			t.Run(file+"/"+tc.Name, func(t *testing.T) {
				t.Parallel()
				resources, problems := Parse("case.yaml", []byte(tc.Input))
				matchProblems(t, "error", tc.Errors, problems.Errors())
				matchProblems(t, "warning", tc.Warnings, problems.Warnings())
				want := 0
				if tc.Resources != nil {
					want = *tc.Resources
				} else if len(tc.Errors) == 0 {
					want = strings.Count("\n"+strings.TrimSpace(tc.Input), "\napiVersion:")
				}
				if len(resources) != want {
					t.Errorf("got %d resources, want %d", len(resources), want)
				}
			})
		}
	}
}

// matchProblems requires a one-to-one match between expected and actual
// problems: same field, message containing the expected text, same line
// when one is given.
func matchProblems(t *testing.T, what string, want []expectedProblem, got Problems) {
	t.Helper()
	used := make([]bool, len(got))
	for _, w := range want {
		found := false
		for i, g := range got {
			if used[i] || g.Field != w.Field || !strings.Contains(g.Message, w.Message) || (w.Line != 0 && g.Line != w.Line) {
				continue
			}
			used[i], found = true, true
			break
		}
		if !found {
			t.Errorf("missing %s: field %q, message containing %q (line %d)", what, w.Field, w.Message, w.Line)
		}
	}
	for i, g := range got {
		if !used[i] {
			t.Errorf("unexpected %s: %v", what, g)
		}
	}
}

func yamlUnmarshalStrict(data []byte, v any) error {
	dec := yaml.NewDecoder(strings.NewReader(string(data)))
	dec.KnownFields(true)
	return dec.Decode(v)
}
