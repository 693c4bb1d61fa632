// Package jwt authenticates end users (Istio's "origin" authentication) from
// the JSON Web Tokens their requests carry, the way an Istio sidecar does it
// with Envoy's jwt_authn filter.
//
// An Authenticator is fed every new policies.Snapshot through Update. Off the
// request path it compiles, per workload, the rules that apply to it:
//
//   - security.istio.io RequestAuthentication: every jwtRules entry of every
//     resource that selects the workload (its own selector, its namespace,
//     the root namespace) is merged, sorted by issuer, and turned into the
//     requirement tree Istio's pilot generates for Envoy
//     (pilot/pkg/security/authn/policy_applier.go, convertToEnvoyJwtConfig):
//     a missing token is allowed, an invalid one is rejected with 401 (403
//     when only the audience is wrong, as Envoy does).
//   - authentication.istio.io/v1alpha1 Policy and MeshPolicy origins, used
//     for a workload only when no RequestAuthentication applies to it, as in
//     Istio 1.5: Envoy verified every token it found without rejecting
//     (allow_missing_or_failed) and Istio's authn filter then required a
//     verified token for every origin whose triggerRules match the path,
//     unless originIsOptional.
//
// It also starts one fetcher per jwksUri (or OpenID discovery document),
// which keeps the key set cached and refreshed. Rules whose keys are not
// available reject tokens: verification fails closed.
//
// Authenticate then decides one request, described by a Request the caller
// fills from whatever protocol it speaks (the ext_authz server adapts its
// CheckRequest). The Result says whether the request is allowed, who the
// verified end user is, which header changes Envoy would have made
// upstream, and Metadata renders the identity with the keys of Istio's
// istio_authn filter metadata that the authorization plane reads.
//
// The error strings in results are Envoy's (jwt_verify_lib's status
// strings), so that logs read the same as a sidecar's.
//
// An ext_authz server adapts a CheckRequest as follows: Request.Method,
// Scheme, Host, Path and Headers from attributes.request.http, Namespace
// and Labels from Garrison's context extensions, Port from the destination
// address. A Rejected result is a DeniedHttpResponse with Result.Status,
// the WWW-Authenticate header when not empty, and Reason as body. Otherwise
// Result.Headers become the OkHttpResponse's header changes (see
// HeaderMutations), and Metadata(peer principal) is merged into the
// istio_authn filter metadata the authorization engine reads.
package jwt
