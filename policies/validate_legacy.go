package policies

import (
	"github.com/garrison-mesh/garrison/policies/legacy"
)

// Validation of the legacy rbac.istio.io/v1alpha1 and
// authentication.istio.io/v1alpha1 kinds, after Istio 1.4/1.5's
// pilot/pkg/model/validation.go.

func validateServiceRole(c *check, r *Resource) {
	_ = r.Spec.(*legacy.ServiceRole)
}

func validateServiceRoleBinding(c *check, r *Resource) {
	_ = r.Spec.(*legacy.ServiceRoleBinding)
}

func validateRbacConfig(c *check, r *Resource) {
	_ = r.Spec.(*legacy.RbacConfig)
}

func validateClusterRbacConfig(c *check, r *Resource) {
	_ = r.Spec.(*legacy.RbacConfig)
}

func validateAuthenticationPolicy(c *check, r *Resource) {
	_ = r.Spec.(*legacy.AuthenticationPolicy)
}

func validateMeshPolicy(c *check, r *Resource) {
	_ = r.Spec.(*legacy.AuthenticationPolicy)
}
