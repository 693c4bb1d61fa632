// Package compile turns a policies.Snapshot into Rego: one generated module
// per authorization resource, the hand-written library, and the entry point
// opa-envoy-plugin queries. See ../CONTRACT.md.
package compile

import (
	"github.com/garrison-mesh/garrison/policies"
)

// Options tune what is generated.
type Options struct {
	// TrustDomain is the mesh's SPIFFE trust domain (cluster.local).
	TrustDomain string
	// DenyBodyDetails names the deciding policy and rule in deny bodies.
	DenyBodyDetails bool
}

// Result is a compiled policy set: everything an OPA needs to decide.
type Result struct {
	// Modules maps bundle paths (garrison/authz/library.rego, ...) to Rego source.
	Modules map[string]string
	// Data is the base document the modules read, rooted at data.
	Data map[string]any
	// Headers lists the lower-cased request headers some policy reads; the
	// engine may leave every other header out of the input. Nil means all.
	Headers []string
	// SnapshotVersion is the version of the snapshot compiled.
	SnapshotVersion uint64
}

// Compile generates the Rego for every authorization resource of snap.
func Compile(snap *policies.Snapshot, opts Options) (*Result, error) {
	panic("not implemented")
}
