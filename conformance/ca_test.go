package conformance_test

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/garrison-mesh/garrison/conformance/casuite"
	"github.com/garrison-mesh/garrison/conformance/runner"
)

// caSuiteRoot holds the CA suite's cases; its known_failures directory
// one list per implementation.
const caSuiteRoot = "ca"

// Environment variables that, like -ca-impl and -ca-revoke, name another
// implementation of the CA API and its revocation hook.
const (
	CAImplEnv   = "CA_CONFORMANCE_IMPL"
	CARevokeEnv = "CA_CONFORMANCE_REVOKE"
)

var (
	caImplFlag = flag.String("ca-impl", "", "command template of an implementation of Istio's CA API to run the CA suite against, "+
		"with {addr} (serve the CA API there, over TLS), {roots} (write the trust bundle there), {tokens} (write the callers' bearer tokens there) and {tmp}; "+
		"default $"+CAImplEnv+"; empty: skip TestCAExternal")
	caRevokeFlag = flag.String("ca-revoke", "", "command template that revokes a certificate of -ca-impl, with {serial}, {spiffe_id}, {addr}, {roots}, {tmp}; "+
		"default $"+CARevokeEnv+"; empty: the revoked-caller cases are skipped")
	caKnownFlag = flag.String("ca-known", "", "known failures of -ca-impl, relative to conformance/ (e.g. ca/known_failures/istiod.yaml); empty: every case must conform")
)

func loadCASuite(t *testing.T, knownFile string) (*casuite.Suite, casuite.KnownFailures) {
	t.Helper()
	suite, err := casuite.Load(caSuiteRoot)
	if err != nil {
		t.Fatal(err)
	}
	known := casuite.KnownFailures{}
	if knownFile != "" {
		if known, err = casuite.LoadKnownFailures(knownFile); err != nil {
			t.Fatal(err)
		}
	}
	return suite, known
}

var garrisonCAKnown = filepath.Join(caSuiteRoot, "known_failures", "garrison.yaml")

// TestCAWire runs the CA suite against a real `garrison serve` built from
// the tree, with its CA on loopback ports, over gRPC TLS.
func TestCAWire(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a garrison serve")
	}
	suite, known := loadCASuite(t, garrisonCAKnown)
	impl := runner.GarrisonCA{Binary: garrisonBinary(t)}
	if *verbose {
		impl.Log = testLog{t}
	}
	runCASuite(t, impl, suite, known, true)
}

// TestCACommand runs the CA suite against Garrison through the command
// contract an external implementation uses (testdata/garrison-ca-impl.sh
// wraps it), so the contract's runner is itself tested.
func TestCACommand(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a garrison serve")
	}
	bin := garrisonBinary(t)
	impl, err := runner.ParseCACommand("sh testdata/garrison-ca-impl.sh "+bin+" {addr} {roots} {tokens} {tmp}",
		bin+" ca revoke --data-dir {tmp}/data --serial {serial}")
	if err != nil {
		t.Fatal(err)
	}
	if *verbose {
		impl.Log = testLog{t}
	}
	suite, known := loadCASuite(t, garrisonCAKnown)
	runCASuite(t, impl, suite, known, true)
}

// TestCAExternal runs the CA suite against the implementation -ca-impl
// (or $CA_CONFORMANCE_IMPL) names; its known failures are -ca-known's.
func TestCAExternal(t *testing.T) {
	template, revoke := *caImplFlag, *caRevokeFlag
	if template == "" {
		template = os.Getenv(CAImplEnv)
	}
	if revoke == "" {
		revoke = os.Getenv(CARevokeEnv)
	}
	if template == "" {
		t.Skip("no -ca-impl or $" + CAImplEnv)
	}
	impl, err := runner.ParseCACommand(template, revoke)
	if err != nil {
		t.Fatal(err)
	}
	if *verbose {
		impl.Log = testLog{t}
	}
	suite, known := loadCASuite(t, *caKnownFlag)
	runCASuite(t, impl, suite, known, false)
}

// TestCAKnownFailures keeps the known failures in step with the cases:
// every entry names a case, and every case of Garrison's own policy
// (origin: garrison) is one a stock istiod is listed to fail.
func TestCAKnownFailures(t *testing.T) {
	suite, _ := loadCASuite(t, "")
	files, err := filepath.Glob(filepath.Join(caSuiteRoot, "known_failures", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no known failures files: %v", err)
	}
	for _, f := range files {
		known, err := casuite.LoadKnownFailures(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range known.Stale(suite) {
			t.Errorf("%s lists %q, which is no case of the suite", f, name)
		}
	}
	istiod, err := casuite.LoadKnownFailures(filepath.Join(caSuiteRoot, "known_failures", "istiod.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range suite.Cases {
		if _, listed := istiod[c.Name]; c.Origin == casuite.OriginGarrison && !listed {
			t.Errorf("%s:%d: %q is Garrison's policy (origin: garrison) but known_failures/istiod.yaml does not list it", c.File, c.Line, c.Name)
		}
	}
}

// runCASuite starts impl once and runs every case against it in parallel.
// garrison: the implementation is Garrison, so its error messages are
// checked and no case may be skipped (it has every hook).
func runCASuite(t *testing.T, impl runner.CAImplementation, suite *casuite.Suite, known casuite.KnownFailures, garrison bool) {
	target, err := impl.StartCA(t.Context())
	if err != nil {
		t.Fatalf("%s: %v", impl.Name(), err)
	}
	t.Cleanup(func() {
		if err := target.Close(); err != nil {
			t.Errorf("stopping %s: %v", impl.Name(), err)
		}
	})
	r, err := casuite.NewRunner(t.Context(), target, casuite.Options{Messages: garrison, Log: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	for _, c := range suite.Cases {
		t.Run(c.Name, func(t *testing.T) {
			t.Parallel()
			res := r.Run(t.Context(), c)
			reason, isKnown := known[c.Name]
			where := fmt.Sprintf("%s:%d", c.File, c.Line)
			switch {
			case res.Skip != "" && garrison:
				t.Errorf("%s: skipped against Garrison: %s", where, res.Skip)
			case res.Skip != "":
				t.Skipf("%s: %s", where, res.Skip)
			case isKnown && res.Problem != "":
				t.Logf("%s: known failure (%s): %s", where, reason, res.Problem)
			case isKnown:
				t.Errorf("%s: listed as a known failure but now conforms: remove the entry", where)
			case res.Problem != "":
				t.Errorf("%s: %s\n  got %s", where, res.Problem, res.Got)
			}
		})
	}
}
