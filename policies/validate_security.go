package policies

import (
	security "istio.io/api/security/v1beta1"
)

// Validation of security.istio.io kinds, after Istio's
// pkg/config/validation and the CEL rules of its CRDs.

func validateAuthorizationPolicy(c *check, r *Resource) {
	_ = r.Spec.(*security.AuthorizationPolicy)
}

func validatePeerAuthentication(c *check, r *Resource) {
	_ = r.Spec.(*security.PeerAuthentication)
}

func validateRequestAuthentication(c *check, r *Resource) {
	_ = r.Spec.(*security.RequestAuthentication)
}
