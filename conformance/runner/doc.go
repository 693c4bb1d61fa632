// Package runner starts implementations for the conformance suites and, for
// the authorization suite in conformance/authz, drives them through it.
//
// The CA suite (conformance/ca, cases and checks in package casuite) needs
// only a running implementation: GarrisonCA starts `garrison serve` with its
// CA (after `garrison ca init` and a `garrison ca token create` per caller),
// CACommand any implementation of Istio's CA API from a command template
// with {addr}, {roots}, {tokens} and {tmp} placeholders and an optional
// revocation command; both give a CATarget that casuite.Runner asks.
//
// The authorization suite in conformance/authz: every topic directory there holds
// Istio YAML (the configuration the implementation serves) and a cases file
// in the authz/cases format (requests and the decisions Istio would make).
//
// An Implementation is driven per topic: Start gives it the topic's
// configuration and returns a Session that decides the topic's requests.
// Two kinds of implementation are provided:
//
//   - InProcess compiles the configuration with Garrison's own packages
//     (policies.Parse, policies.NewSnapshot, compile.Compile,
//     engine.NewStatic) and decides with the engine directly.
//   - Server starts a process per topic that serves Envoy's ext_authz API
//     (envoy.service.auth.v3.Authorization/Check) for the topic's
//     configuration, and asks it over gRPC: GarrisonServer runs
//     `garrison serve`, Command runs any implementation from a command
//     template with {config} and {addr} placeholders.
//
// Over the wire the decision is read as Envoy reads it (allowed or denied,
// and the HTTP status of a denial) plus, when the server sends it,
// Garrison's x-garrison-decision header naming the reason, policy and rule.
package runner
