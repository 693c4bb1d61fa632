// Package extauthz is Garrison's Envoy external authorization server: the
// envoy.service.auth.v3.Authorization gRPC service that Envoy's ext_authz
// HTTP filter calls before it forwards a request. It asks a Decider (the
// OPA engine in authz/engine) for a decision and turns it into the
// CheckResponse Envoy acts on, records metrics and, optionally, one JSON
// decision-log line per request.
//
// The server fails closed. Envoy treats a failed Check RPC (and, in newer
// versions, a CheckResponse carrying error_response) as an ext_authz
// failure, which failure_mode_allow turns into an allow; so an engine
// error, a nil decision or a panic in the engine is answered with an
// ordinary denied_response (403) and a non-OK status, never with an RPC
// error.
//
// Responses, as Envoy sees them:
//
//   - allowed: status OK, an empty ok_response.
//   - denied: status PERMISSION_DENIED and HTTP 403; UNAUTHENTICATED and 401
//     when the engine says 401 (an invalid JWT); INVALID_ARGUMENT and 400
//     when the engine rejected the request path (Decision.Status 400). With
//     Config.DenyBodyDetails the body names the policy and rule that decided
//     and an x-garrison-decision header carries the same facts; without it
//     the body is Envoy RBAC's own "RBAC: access denied".
//   - engine error: 403 with "RBAC: access denied (policy evaluation
//     failed)", counted as result="error" and logged (rate-limited).
//   - CUSTOM (Decision.Custom set): 403 saying the extension provider is not
//     configured, until delegation to extension providers is wired.
//
// Besides Check, the server registers the standard gRPC health service
// (SERVING exactly when the Decider is Ready) and, when it owns the
// grpc.Server (Listen), gRPC reflection. Listen's server reads CheckRequests
// with a faster codec (codec.go) and serves from stream workers
// (defaultServerOptions).
package extauthz
