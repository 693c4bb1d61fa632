package peer_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/garrison-mesh/garrison/authn/peer"
	"github.com/garrison-mesh/garrison/authn/peer/cases"
)

// istioDir is shared/conformance/istio beside the repository: cases derived
// from Istio's data read its files from there (see its MANIFEST.txt).
const istioDir = "../../../shared/conformance/istio"

// TestCases runs every behaviour case of testdata/*.yaml.
func TestCases(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob("testdata/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no case files in testdata: %v", err)
	}
	total := 0
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		cs, err := cases.Decode(data)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		total += len(cs)
		for _, c := range cs {
			t.Run(strings.TrimSuffix(filepath.Base(f), ".yaml")+"/"+c.Name, func(t *testing.T) {
				t.Parallel()
				snap, err := c.Snapshot(istioDir)
				if err != nil {
					t.Fatalf("%s:%d: %v", f, c.Line, err)
				}
				for _, err := range c.Run(peer.New(snap), snap) {
					t.Errorf("%s:%v", f, err)
				}
			})
		}
	}
	t.Logf("%d cases in %d files", total, len(files))
}
