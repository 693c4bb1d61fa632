package policies

import (
	"os"
	"path/filepath"
	"testing"
)

// bookinfoNetworking holds Istio's own bookinfo routing samples: Istio
// accepts every one of them, so Garrison must too.
const bookinfoNetworking = "../../shared/conformance/istio/istio@HEAD/samples/bookinfo/networking"

func TestNetworkingBookinfoSamplesAreValid(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob(filepath.Join(bookinfoNetworking, "*"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Skipf("no samples under %s", bookinfoNetworking)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			t.Parallel()
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			resources, problems := Parse(filepath.Base(f), data)
			for _, p := range problems.Errors() {
				t.Errorf("%v", p)
			}
			for _, p := range problems.Warnings() {
				t.Logf("%v", p)
			}
			if len(resources) == 0 {
				t.Errorf("no resources read from %s", f)
			}
		})
	}
}
