package legacy

// AuthenticationPolicy is the spec of authentication.istio.io/v1alpha1
// Policy (namespaced) and MeshPolicy (cluster-scoped, named "default").
type AuthenticationPolicy struct {
	Targets          []*TargetSelector             `json:"targets,omitempty"`
	Peers            []*PeerAuthenticationMethod   `json:"peers,omitempty"`
	PeerIsOptional   bool                          `json:"peerIsOptional,omitempty"`
	Origins          []*OriginAuthenticationMethod `json:"origins,omitempty"`
	OriginIsOptional bool                          `json:"originIsOptional,omitempty"`
	PrincipalBinding PrincipalBinding              `json:"principalBinding,omitempty"`
}

// TargetSelector picks the services (by short name in the policy's
// namespace) and optionally ports a Policy applies to.
type TargetSelector struct {
	Name   string            `json:"name,omitempty"`
	Labels map[string]string `json:"labels,omitempty"`
	Ports  []*PortSelector   `json:"ports,omitempty"`
}

// PortSelector is a port number or a port name; exactly one is set.
type PortSelector struct {
	Number uint32 `json:"number,omitempty"`
	Name   string `json:"name,omitempty"`
}

// PeerAuthenticationMethod is mtls or (deprecated, never supported by
// Envoy) jwt. "- mtls:" with no value means mtls with the default mode.
type PeerAuthenticationMethod struct {
	Mtls *MutualTLS `json:"mtls,omitempty" null:"empty"`
	Jwt  *Jwt       `json:"jwt,omitempty"`
}

// MutualTLSMode is STRICT (the default) or PERMISSIVE.
type MutualTLSMode string

const (
	MutualTLSStrict     MutualTLSMode = "STRICT"
	MutualTLSPermissive MutualTLSMode = "PERMISSIVE"
)

// Allowed lists the values Istio accepted.
func (MutualTLSMode) Allowed() []string { return []string{"STRICT", "PERMISSIVE"} }

// MutualTLS configures peer mTLS.
type MutualTLS struct {
	// AllowTLS is deprecated and ignored, as in Istio.
	AllowTLS bool          `json:"allowTls,omitempty"`
	Mode     MutualTLSMode `json:"mode,omitempty"`
}

// EffectiveMode returns Mode, STRICT when unset.
func (m *MutualTLS) EffectiveMode() MutualTLSMode {
	if m == nil || m.Mode == "" {
		return MutualTLSStrict
	}
	return m.Mode
}

// OriginAuthenticationMethod is a JWT the end user presents.
type OriginAuthenticationMethod struct {
	Jwt *Jwt `json:"jwt,omitempty"`
}

// Jwt describes one accepted token issuer.
type Jwt struct {
	Issuer       string         `json:"issuer,omitempty"`
	Audiences    []string       `json:"audiences,omitempty"`
	JwksURI      string         `json:"jwksUri,omitempty"`
	Jwks         string         `json:"jwks,omitempty"`
	JwtHeaders   []string       `json:"jwtHeaders,omitempty"`
	JwtParams    []string       `json:"jwtParams,omitempty"`
	TriggerRules []*TriggerRule `json:"triggerRules,omitempty"`
}

// TriggerRule decides, by request path, whether the JWT is checked.
type TriggerRule struct {
	ExcludedPaths []*StringMatch `json:"excludedPaths,omitempty"`
	IncludedPaths []*StringMatch `json:"includedPaths,omitempty"`
}

// StringMatch is exactly one of exact, prefix, suffix or regex.
type StringMatch struct {
	Exact  string `json:"exact,omitempty"`
	Prefix string `json:"prefix,omitempty"`
	Suffix string `json:"suffix,omitempty"`
	Regex  string `json:"regex,omitempty"`
}

// PrincipalBinding says which identity becomes request.auth.principal.
type PrincipalBinding string

const (
	UsePeer   PrincipalBinding = "USE_PEER"
	UseOrigin PrincipalBinding = "USE_ORIGIN"
)

// Allowed lists the values Istio accepted.
func (PrincipalBinding) Allowed() []string { return []string{"USE_PEER", "USE_ORIGIN"} }
