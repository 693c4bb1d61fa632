package policies

import (
	"testing"

	"github.com/garrison-mesh/garrison/policies/legacy"
)

func TestDryRunReadsBooleansAsIstio(t *testing.T) {
	t.Parallel()
	for v, want := range map[string]bool{"true": true, "True": true, "1": true, "false": false, "0": false, "": false} {
		r := &Resource{Meta: Meta{Annotations: map[string]string{AnnotationDryRun: v}}}
		if got := r.DryRun(); got != want {
			t.Errorf("DryRun(%q) = %v, want %v", v, got, want)
		}
	}
}

func TestLegacyBareMtlsMeansStrict(t *testing.T) {
	t.Parallel()
	rs := mustParse(t, `apiVersion: authentication.istio.io/v1alpha1
kind: Policy
metadata: {name: default, namespace: bookinfo}
spec:
  peers:
  - mtls:
`)
	spec, ok := SpecAs[*legacy.AuthenticationPolicy](rs[0])
	if !ok || len(spec.Peers) != 1 || spec.Peers[0].Mtls == nil {
		t.Fatalf("\"- mtls:\" must mean mtls with the default mode, got %+v", spec)
	}
	if got := spec.Peers[0].Mtls.EffectiveMode(); got != legacy.MutualTLSStrict {
		t.Errorf("mode = %s, want STRICT", got)
	}
}
