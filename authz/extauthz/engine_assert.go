package extauthz

import "github.com/garrison-mesh/garrison/authz/engine"

// The engine is the Decider in production.
var _ Decider = (*engine.Engine)(nil)
