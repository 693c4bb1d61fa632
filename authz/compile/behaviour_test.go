package compile

import (
	"bytes"
	"os"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/garrison-mesh/garrison/authz/cases"
)

// behaviourCase is one case of testdata/behaviour.yaml: policies and the
// decisions that requests (authz/cases cases) get under them, evaluated by
// real OPA.
type behaviourCase struct {
	Name     string       `yaml:"name"`
	Options  caseOptions  `yaml:"options"`
	Policies string       `yaml:"policies"`
	Requests []cases.Case `yaml:"requests"`
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

// loadCases decodes a whole file at once, strictly: its requests share
// YAML anchors across cases.
func loadCases[T any](t *testing.T, path string) []T {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []T
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&out); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return out
}

// TestBehaviour compiles each case's policies and checks the decision of
// each of its requests.
func TestBehaviour(t *testing.T) {
	all := loadCases[behaviourCase](t, "testdata/behaviour.yaml")
	if len(all) < 30 {
		t.Fatalf("only %d behaviour cases", len(all))
	}
	names := map[string]bool{}
	for _, c := range all {
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
				d := ev.decide(t, caseInput(t, r.Request))
				if m := mismatch(r.Expect, d); m != "" {
					t.Errorf("%s: %s\n  decision: %v", r.Name, m, d)
				}
			}
		})
	}
}
