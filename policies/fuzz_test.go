package policies

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// FuzzParse feeds arbitrary bytes to the decoder and validator. Besides not
// panicking, every problem must be located in the file, and every accepted
// resource must survive a round trip: its JSON rendering parses back into an
// accepted resource. Seeds are the behaviour cases' inputs and the examples.
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("testdata/validation/*.yaml")
	for _, name := range files {
		var cases []validationCase
		data, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		if err := yamlUnmarshalStrict(data, &cases); err != nil {
			f.Fatalf("%s: %v", name, err)
		}
		for _, tc := range cases {
			f.Add([]byte(tc.Input))
		}
	}
	examples, _ := filepath.Glob("../deploy/examples/*/*/*.yaml")
	for _, name := range examples {
		if data, err := os.ReadFile(name); err == nil {
			f.Add(data)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		resources, problems := Parse("fuzz.yaml", data)
		for _, p := range problems {
			if p.File != "fuzz.yaml" || p.Line < 0 || p.Message == "" {
				t.Fatalf("badly located problem: %+v", p)
			}
		}
		for _, r := range resources {
			out, err := json.Marshal(r)
			if err != nil {
				t.Fatalf("accepted %s cannot be rendered: %v", r.Key(), err)
			}
			var obj map[string]any
			if err := json.Unmarshal(out, &obj); err != nil {
				t.Fatal(err)
			}
			delete(obj, "source")
			again, _ := json.Marshal(obj)
			back, problems := Parse("roundtrip.json", again)
			if err := problems.Err(); err != nil || len(back) != 1 {
				t.Fatalf("accepted %s does not parse back from %s: %v", r.Key(), again, err)
			}
		}
	})
}
