package compile_test

import (
	"os"
	"testing"

	"github.com/garrison-mesh/garrison/authz/compile"
	"github.com/garrison-mesh/garrison/authz/engine"
)

// TestMain gives the tests of package compile the engine's input builder:
// they describe requests as authz/cases does and evaluate the input the
// engine (and opa-envoy-plugin) would build from them, but authz/engine
// imports authz/compile, so those tests cannot import it themselves.
func TestMain(m *testing.M) {
	compile.SetInputBuilder(engine.NewInputBuilder(engine.InputOptions{}).Build)
	os.Exit(m.Run())
}
