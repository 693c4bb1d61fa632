package peer

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/garrison-mesh/garrison/policies"
)

// Mode is what an inbound port accepts from its peers.
type Mode uint8

// The zero Mode is not a mode: every lookup resolves to one of these, so a
// zero in a result is a bug, never a silent default.
const (
	// Disable accepts plaintext only.
	Disable Mode = iota + 1
	// Permissive accepts mTLS and plaintext.
	Permissive
	// Strict accepts mTLS only.
	Strict
)

// String returns the mode as Istio's YAML spells it.
func (m Mode) String() string {
	switch m {
	case Disable:
		return "DISABLE"
	case Permissive:
		return "PERMISSIVE"
	case Strict:
		return "STRICT"
	}
	return fmt.Sprintf("Mode(%d)", uint8(m))
}

// ParseMode reads a mode as Istio's YAML spells it.
func ParseMode(s string) (Mode, bool) {
	switch s {
	case "DISABLE":
		return Disable, true
	case "PERMISSIVE":
		return Permissive, true
	case "STRICT":
		return Strict, true
	}
	return 0, false
}

// Scope says at which level of precedence a mode was decided.
type Scope uint8

const (
	// ScopeDefault: no resource set a mode; Istio's default, PERMISSIVE.
	ScopeDefault Scope = iota
	// ScopeMesh: a PeerAuthentication without selector in the root
	// namespace, or the MeshPolicy.
	ScopeMesh
	// ScopeNamespace: a PeerAuthentication without selector in the
	// workload's namespace, or that namespace's Policy without targets.
	ScopeNamespace
	// ScopeService: a legacy Policy naming one of the workload's services
	// as a target, without ports.
	ScopeService
	// ScopeWorkload: a PeerAuthentication whose selector picks the workload.
	ScopeWorkload
	// ScopePort: an entry of a PeerAuthentication's portLevelMtls, or a
	// legacy Policy target naming the port.
	ScopePort
)

var scopeNames = [...]string{"default", "mesh", "namespace", "service", "workload", "port"}

func (s Scope) String() string {
	if int(s) < len(scopeNames) {
		return scopeNames[s]
	}
	return fmt.Sprintf("Scope(%d)", uint8(s))
}

// ParseScope reads a scope as String writes it.
func ParseScope(s string) (Scope, bool) {
	i := slices.Index(scopeNames[:], s)
	return Scope(i), i >= 0
}

// Effective is the mode one workload port enforces and why.
type Effective struct {
	Mode  Mode
	Scope Scope
	// Resource is the PeerAuthentication, Policy or MeshPolicy whose
	// setting decided: its Kind, Namespace/Name and Source (file:line).
	// It is nil for ScopeDefault.
	Resource *policies.Resource
	// Port is the portLevelMtls key (ScopePort of a PeerAuthentication),
	// or the service port a legacy Policy target matched (ScopePort of a
	// Policy); 0 otherwise.
	Port uint32
	// Service is the hostname of the service through which a legacy Policy
	// target reached the workload (ScopeService and legacy ScopePort).
	Service string
	// Unset lists, narrowest first, the resources that applied to the
	// workload but set no mode (mtls UNSET or absent; a legacy Policy with
	// no mtls peer), and so left the decision to a broader scope. It is
	// how explain output answers "why did my policy not decide?". Shared:
	// do not modify.
	Unset []*policies.Resource
}

// By names the deciding resource as "Kind namespace/name" ("Kind name"
// for the cluster-scoped MeshPolicy), or "" for the default.
func (e Effective) By() string {
	if e.Resource == nil {
		return ""
	}
	return e.Resource.Key().String()
}

// String explains the result in one line for logs and explain output:
//
//	STRICT: port 8080 of PeerAuthentication foo/ratings (mtls.yaml:12)
//	PERMISSIVE: default, no policy sets a mode; unset by PeerAuthentication foo/default (ns.yaml:1)
func (e Effective) String() string {
	var b strings.Builder
	b.WriteString(e.Mode.String())
	b.WriteString(": ")
	switch {
	case e.Resource == nil:
		b.WriteString("default, no policy sets a mode")
	case e.Scope == ScopePort && e.Service != "":
		fmt.Fprintf(&b, "port %d of service %s, %s", e.Port, e.Service, describe(e.Resource))
	case e.Scope == ScopePort:
		fmt.Fprintf(&b, "port %d of %s", e.Port, describe(e.Resource))
	case e.Scope == ScopeService:
		fmt.Fprintf(&b, "service %s, %s", e.Service, describe(e.Resource))
	default:
		fmt.Fprintf(&b, "%s %s", e.Scope, describe(e.Resource))
	}
	for i, r := range e.Unset {
		if i == 0 {
			b.WriteString("; unset by ")
		} else {
			b.WriteString(", ")
		}
		b.WriteString(describe(r))
	}
	return b.String()
}

func describe(r *policies.Resource) string {
	return fmt.Sprintf("%s (%s)", r.Key(), r.Source)
}

// equal compares two results field by field (Unset by identity).
func (e Effective) equal(o Effective) bool {
	return e.Mode == o.Mode && e.Scope == o.Scope && e.Resource == o.Resource &&
		e.Port == o.Port && e.Service == o.Service && slices.Equal(e.Unset, o.Unset)
}

// WorkloadModes is a workload's mode for every port: the xDS plane builds
// one inbound filter chain per exception and one for everything else.
type WorkloadModes struct {
	// Default applies to every port not in Ports.
	Default Effective
	// Ports are the exceptions by workload (target) port. As in Istio, a
	// portLevelMtls entry is listed even when it resolves to the same mode
	// as Default (an UNSET port), because it still has a filter chain.
	Ports map[uint32]Effective
}

// At returns the result for one port; port 0 means "no particular port".
func (w *WorkloadModes) At(port uint32) Effective {
	if port != 0 {
		if e, ok := w.Ports[port]; ok {
			return e
		}
	}
	return w.Default
}

func (w WorkloadModes) clone() WorkloadModes {
	w.Ports = maps.Clone(w.Ports)
	return w
}
