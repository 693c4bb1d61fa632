package policies

import (
	networking "istio.io/api/networking/v1alpha3"
)

// Validation of networking.istio.io kinds, after Istio's
// pkg/config/validation and the CEL rules of its CRDs.

func validateVirtualService(c *check, r *Resource) {
	_ = r.Spec.(*networking.VirtualService)
}

func validateDestinationRule(c *check, r *Resource) {
	_ = r.Spec.(*networking.DestinationRule)
}

func validateGateway(c *check, r *Resource) {
	_ = r.Spec.(*networking.Gateway)
}

func validateServiceEntry(c *check, r *Resource) {
	_ = r.Spec.(*networking.ServiceEntry)
}

func validateWorkloadEntry(c *check, r *Resource) {
	_ = r.Spec.(*networking.WorkloadEntry)
}

func validateSidecar(c *check, r *Resource) {
	_ = r.Spec.(*networking.Sidecar)
}
