// Package legacy holds the retired Istio kinds that users still have in
// their repositories: rbac.istio.io/v1alpha1 (ServiceRole,
// ServiceRoleBinding, RbacConfig, ClusterRbacConfig) and
// authentication.istio.io/v1alpha1 (Policy, MeshPolicy). Their protos last
// shipped in istio.io/api 1.6, which cannot be imported beside a modern
// istio.io/api, so they are plain structs with every field of Istio 1.4/1.5,
// the ones hidden from the documentation included.
package legacy

// EnforcementMode says whether a binding or RbacConfig decides requests
// (ENFORCED, the default) or is only evaluated and logged (PERMISSIVE).
type EnforcementMode string

const (
	Enforced   EnforcementMode = "ENFORCED"
	Permissive EnforcementMode = "PERMISSIVE"
)

// Allowed lists the values Istio accepted.
func (EnforcementMode) Allowed() []string { return []string{"ENFORCED", "PERMISSIVE"} }

// IsPermissive reports PERMISSIVE; empty means ENFORCED.
func (m EnforcementMode) IsPermissive() bool { return m == Permissive }

// ServiceRole is the spec of rbac.istio.io/v1alpha1 ServiceRole.
type ServiceRole struct {
	Rules []*AccessRule `json:"rules,omitempty"`
}

// AccessRule is one permission of a ServiceRole (or an inline binding action).
type AccessRule struct {
	Services    []string      `json:"services,omitempty"`
	Hosts       []string      `json:"hosts,omitempty"`
	NotHosts    []string      `json:"notHosts,omitempty"`
	Paths       []string      `json:"paths,omitempty"`
	NotPaths    []string      `json:"notPaths,omitempty"`
	Methods     []string      `json:"methods,omitempty"`
	NotMethods  []string      `json:"notMethods,omitempty"`
	Ports       []int32       `json:"ports,omitempty"`
	NotPorts    []int32       `json:"notPorts,omitempty"`
	Constraints []*Constraint `json:"constraints,omitempty"`
}

// Constraint is a key (destination.labels[version], request.headers[x]...)
// and the values it may take.
type Constraint struct {
	Key    string   `json:"key,omitempty"`
	Values []string `json:"values,omitempty"`
}

// ServiceRoleBinding is the spec of rbac.istio.io/v1alpha1 ServiceRoleBinding.
type ServiceRoleBinding struct {
	Subjects []*Subject      `json:"subjects,omitempty"`
	RoleRef  *RoleRef        `json:"roleRef,omitempty"`
	Mode     EnforcementMode `json:"mode,omitempty"`
	// Actions is an inline role (hidden field of Istio 1.2+).
	Actions []*AccessRule `json:"actions,omitempty"`
	// Role names a ServiceRole; a leading "/" means the root namespace
	// (hidden field of Istio 1.2+).
	Role string `json:"role,omitempty"`
}

// Subject is one identity a binding grants its role to.
type Subject struct {
	User string `json:"user,omitempty"`
	// Group is deprecated in favour of Groups.
	Group         string            `json:"group,omitempty"`
	Names         []string          `json:"names,omitempty"`
	NotNames      []string          `json:"notNames,omitempty"`
	Groups        []string          `json:"groups,omitempty"`
	NotGroups     []string          `json:"notGroups,omitempty"`
	Namespaces    []string          `json:"namespaces,omitempty"`
	NotNamespaces []string          `json:"notNamespaces,omitempty"`
	Ips           []string          `json:"ips,omitempty"`
	NotIps        []string          `json:"notIps,omitempty"`
	Properties    map[string]string `json:"properties,omitempty"`
}

// RoleRef points at a ServiceRole in the binding's namespace.
type RoleRef struct {
	Kind string `json:"kind,omitempty"`
	Name string `json:"name,omitempty"`
}

// RbacMode turns Istio RBAC on and off.
type RbacMode string

const (
	RbacOff             RbacMode = "OFF"
	RbacOn              RbacMode = "ON"
	RbacOnWithInclusion RbacMode = "ON_WITH_INCLUSION"
	RbacOnWithExclusion RbacMode = "ON_WITH_EXCLUSION"
)

// Allowed lists the values Istio accepted.
func (RbacMode) Allowed() []string {
	return []string{"OFF", "ON", "ON_WITH_INCLUSION", "ON_WITH_EXCLUSION"}
}

// RbacConfig is the spec of both RbacConfig (namespaced, the older name) and
// ClusterRbacConfig (cluster-scoped singleton named "default").
type RbacConfig struct {
	Mode            RbacMode        `json:"mode,omitempty"`
	Inclusion       *RbacTarget     `json:"inclusion,omitempty"`
	Exclusion       *RbacTarget     `json:"exclusion,omitempty"`
	EnforcementMode EnforcementMode `json:"enforcementMode,omitempty"`
}

// EffectiveMode returns Mode, OFF when unset.
func (c *RbacConfig) EffectiveMode() RbacMode {
	if c.Mode == "" {
		return RbacOff
	}
	return c.Mode
}

// RbacTarget lists services (by hostname) and namespaces.
type RbacTarget struct {
	Services   []string `json:"services,omitempty"`
	Namespaces []string `json:"namespaces,omitempty"`
}
