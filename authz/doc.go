// Package authz is Garrison's authorization plane: Istio RBAC (legacy
// ServiceRole/ServiceRoleBinding/RbacConfig and modern AuthorizationPolicy)
// compiled to Rego by authz/compile, evaluated by embedded OPA in
// authz/engine, and served to Envoy by the ext_authz server in
// authz/extauthz. CONTRACT.md states how the parts fit together.
package authz
