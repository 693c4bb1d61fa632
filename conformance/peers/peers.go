// Package peers pins the independent implementations Garrison is measured
// and checked against, in a module of their own so that the product's
// go.mod stays clean. Build them with `make peers`:
//
//   - opa-envoy-plugin (github.com/open-policy-agent/opa-envoy-plugin),
//     stock OPA with the Envoy ext_authz plugin, loaded with the bundle that
//     `garrison policy compile` emits.
//
// go.sum also carries the checksums of the plugin's command, which no Go
// file here imports (a main package cannot be): do not `go mod tidy`.
package peers

import (
	// The blank import pins the plugin's packages (and so its go.sum
	// entries); its main package is built by path with `go build`.
	_ "github.com/open-policy-agent/opa-envoy-plugin/envoyauth"
)
