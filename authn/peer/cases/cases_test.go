package cases

import (
	"strings"
	"testing"
)

func TestDecodeRejects(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct{ yaml, want string }{
		"unknown field": {`- {name: a, resources: "", queries: [{namespace: foo, mode: STRICT}], bogus: 1}`, "field bogus not found"},
		"no name":       {`- {resources: "", queries: [{namespace: foo, mode: STRICT}]}`, "needs a name"},
		"duplicate":     {"- {name: a, resources: \"\", queries: [{namespace: foo, mode: STRICT}]}\n- {name: a, resources: \"\", queries: [{namespace: foo, mode: STRICT}]}", "duplicate case name"},
		"no queries":    {`- {name: a, resources: ""}`, "has no queries"},
		"bad mode":      {`- {name: a, resources: "", queries: [{namespace: foo, mode: strict}]}`, `mode "strict"`},
		"bad scope":     {`- {name: a, resources: "", queries: [{namespace: foo, mode: STRICT, scope: pod}]}`, `unknown scope "pod"`},
		"no workload":   {`- {name: a, resources: "", queries: [{mode: STRICT}]}`, "names a workload, or a namespace"},
		"both":          {`- {name: a, resources: "", queries: [{namespace: foo, workload: foo/a, mode: STRICT}]}`, "names a workload, or a namespace"},
	} {
		if _, err := Decode([]byte(tc.yaml)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one containing %q", name, err, tc.want)
		}
	}
}

func TestDecodeLines(t *testing.T) {
	t.Parallel()
	cs, err := Decode([]byte(`# header
- name: a
  resources: ""
  queries:
  - {namespace: foo, mode: STRICT}
  - {namespace: bar, mode: DISABLE}
`))
	if err != nil {
		t.Fatal(err)
	}
	if cs[0].Line != 2 || cs[0].Queries[0].Line != 5 || cs[0].Queries[1].Line != 6 {
		t.Errorf("lines: case %d, queries %d and %d; want 2, 5 and 6", cs[0].Line, cs[0].Queries[0].Line, cs[0].Queries[1].Line)
	}
}
