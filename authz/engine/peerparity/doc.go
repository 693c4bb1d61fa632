// Package peerparity holds the engine's input builder to opa-envoy-plugin
// v1.15.2-envoy's own envoyauth.RequestToInput: for every request of
// ../testdata/requests and for fuzzed ones, engine.InputBuilder.Build must
// equal ast.InterfaceToValue of what the plugin returns, errors included.
//
// It is a module of its own so that the product's go.mod does not require
// the plugin. Run it with
//
//	cd authz/engine/peerparity && go test ./...
//
// MVS links the plugin against the product's OPA and go-control-plane
// (v1.22.3 and v1.40.0) rather than the ones it was released with (v1.15.2
// and v1.37.0); the conversion code exercised is the plugin's.
package peerparity
