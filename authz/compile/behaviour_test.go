package compile

import (
	"bytes"
	"os"
	"testing"

	"gopkg.in/yaml.v3"
)

// behaviourCase is one case of testdata/behaviour.yaml: policies and the
// decisions that requests get under them, evaluated by real OPA.
type behaviourCase struct {
	Name     string      `yaml:"name"`
	Options  caseOptions `yaml:"options"`
	Policies string      `yaml:"policies"`
	Requests []struct {
		Name    string      `yaml:"name"`
		Request testRequest `yaml:"request"`
		Want    want        `yaml:",inline"`
	} `yaml:"requests"`
}

// caseOptions are the compile Options a case may set.
type caseOptions struct {
	TrustDomain        string   `yaml:"trustDomain"`
	TrustDomainAliases []string `yaml:"trustDomainAliases"`
	NumTrustedProxies  int      `yaml:"numTrustedProxies"`
}

func (o caseOptions) options() Options {
	return Options{
		TrustDomain:        o.TrustDomain,
		TrustDomainAliases: o.TrustDomainAliases,
		NumTrustedProxies:  o.NumTrustedProxies,
		DenyBodyDetails:    true,
	}
}

func loadCases[T any](t *testing.T, path string) []T {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var cases []T
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&cases); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return cases
}

// TestBehaviour compiles each case's policies and checks the decision of
// each of its requests.
func TestBehaviour(t *testing.T) {
	cases := loadCases[behaviourCase](t, "testdata/behaviour.yaml")
	if len(cases) < 30 {
		t.Fatalf("only %d behaviour cases", len(cases))
	}
	names := map[string]bool{}
	for _, c := range cases {
		if names[c.Name] {
			t.Fatalf("duplicate case %q", c.Name)
		}
		names[c.Name] = true
		t.Run(c.Name, func(t *testing.T) {
			t.Parallel()
			if len(c.Requests) == 0 {
				t.Fatal("case has no requests")
			}
			res, err := Compile(parseSnapshot(t, c.Name+".yaml", []byte(c.Policies)), c.Options.options())
			if err != nil {
				t.Fatal(err)
			}
			ev := newEvaluator(t, res)
			for _, r := range c.Requests {
				d := ev.decide(t, r.Request.input())
				for _, diff := range r.Want.check(d) {
					t.Errorf("%s: %s\n  decision: %v", r.Name, diff, d)
				}
			}
		})
	}
}
