// Package peer computes the peer mTLS mode (STRICT, PERMISSIVE or DISABLE)
// that each workload must enforce on each inbound port, exactly as Istio
// does, from the PeerAuthentication resources of a snapshot and, for meshes
// that still carry them, the retired authentication.istio.io/v1alpha1
// Policy and MeshPolicy.
//
// It exists so that the one question "what does this workload accept on
// this port, and which resource says so" has one answer in Garrison: the
// xDS plane programs inbound listeners from it (a mode per workload plus
// the ports that differ), and explain output and logs quote the deciding
// resource, its scope and its file:line from the same Effective.
//
// The computation is pure: New indexes a snapshot once (by namespace and by
// the label pairs of workload selectors), and every lookup afterwards reads
// only the namespace and the labels it is asked about, never every policy.
// A Modes is immutable and safe for concurrent use; build a new one for
// each snapshot.
//
// Precedence, for PeerAuthentication (Istio's ComposePeerAuthentication in
// pilot/pkg/security/authn/policy_applier.go and AuthenticationPolicies in
// pilot/pkg/model/authentication.go):
//
//   - a policy with a non-empty selector in the workload's namespace
//     (workload scope) beats one without a selector in that namespace
//     (namespace scope), which beats one without a selector in the root
//     namespace (mesh scope); nothing at all is PERMISSIVE;
//   - within a scope the oldest policy decides (creationTimestamp, then
//     Garrison's file order for equal timestamps, then name);
//   - a mode UNSET (or no mtls) inherits the parent scope's mode;
//   - portLevelMtls is read only from the deciding workload-scope policy,
//     and a port UNSET takes that policy's resolved mode;
//   - a policy with a selector in the root namespace is ignored.
//
// The legacy Policy and MeshPolicy are consulted only when no
// PeerAuthentication applies to the workload at all, as in Istio 1.5, the
// last release that read both APIs: see legacy.go.
package peer
