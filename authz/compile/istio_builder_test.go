package compile

import (
	"strings"
	"testing"

	"github.com/garrison-mesh/garrison/authz/cases"
)

// istioBuilderCase is one input of Istio's builder golden pairs and the
// decisions its golden Envoy RBAC output gives to some requests.
type istioBuilderCase struct {
	Input    string      `yaml:"input"`
	Golden   []string    `yaml:"golden"`
	Options  caseOptions `yaml:"options"`
	Requests []struct {
		cases.Case `yaml:",inline"`
		// RBAC is the Envoy RBAC policy of the golden output that decides,
		// "" when none matches.
		RBAC *string `yaml:"rbac"`
	} `yaml:"requests"`
}

// TestIstioBuilderCases runs testdata/istio-builder-cases.yaml against the
// inputs of Istio's AuthorizationPolicy -> Envoy RBAC golden pairs.
func TestIstioBuilderCases(t *testing.T) {
	cases := loadCases[istioBuilderCase](t, "testdata/istio-builder-cases.yaml")
	if len(cases) < 15 {
		t.Fatalf("only %d Istio builder inputs covered, want at least 15", len(cases))
	}
	for _, c := range cases {
		t.Run(strings.TrimSuffix(c.Input, "-in.yaml"), func(t *testing.T) {
			t.Parallel()
			var golden strings.Builder
			if len(c.Golden) == 0 {
				t.Fatal("case names no golden output")
			}
			for _, g := range c.Golden {
				golden.Write(readIstioFile(t, g))
			}
			snap := parseSnapshot(t, c.Input, readIstioFile(t, c.Input))
			res, err := Compile(snap, c.Options.options())
			if err != nil {
				t.Fatal(err)
			}
			ev := newEvaluator(t, res)
			for _, r := range c.Requests {
				// Tie the expectation to the golden output.
				switch {
				case r.RBAC == nil:
					t.Errorf("%s: no rbac: name the golden policy that decides, or \"\"", r.Name)
				case *r.RBAC != "" && !strings.Contains(golden.String(), *r.RBAC+":"):
					t.Errorf("%s: %s is not a policy of %v", r.Name, *r.RBAC, c.Golden)
				}
				d := ev.decide(t, caseInput(t, r.Request))
				if m := mismatch(r.Expect, d); m != "" {
					t.Errorf("%s: %s\n  decision: %v", r.Name, m, d)
				}
			}
		})
	}
}
