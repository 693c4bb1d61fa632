package conformance_test

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/garrison-mesh/garrison/authz/cases"
	"github.com/garrison-mesh/garrison/conformance/runner"
)

// suiteRoot is the authorization suite: one directory per topic.
const suiteRoot = "authz"

// ImplEnv names the environment variable that, like -impl, gives the
// command template of another implementation to run the suite against.
const ImplEnv = "AUTHZ_CONFORMANCE_IMPL"

var implFlag = flag.String("impl", "", "command template of an ext_authz implementation to run the suite against over the wire, "+
	"with {config} (a directory of the topic's YAML), {addr} (host:port to serve gRPC ext_authz on) and {tmp}; "+
	"default $"+ImplEnv+"; empty: skip TestExternal")

var verbose = flag.Bool("conformance.v", false, "copy the output of the servers started to the test log")

var build struct {
	once sync.Once
	dir  string
	bin  string
	err  error
}

func TestMain(m *testing.M) {
	flag.Parse()
	code := m.Run()
	if build.dir != "" {
		os.RemoveAll(build.dir)
	}
	os.Exit(code)
}

// garrisonBinary builds cmd/garrison once per test binary.
func garrisonBinary(t *testing.T) string {
	t.Helper()
	build.once.Do(func() {
		build.dir, build.err = os.MkdirTemp("", "garrison-conformance-bin-")
		if build.err == nil {
			build.bin, build.err = runner.BuildGarrison(context.Background(), "..", build.dir)
		}
	})
	if build.err != nil {
		t.Fatal(build.err)
	}
	return build.bin
}

func loadSuite(t *testing.T) ([]*runner.Topic, runner.KnownFailures) {
	t.Helper()
	topics, err := runner.LoadSuite(suiteRoot)
	if err != nil {
		t.Fatal(err)
	}
	known, err := runner.LoadKnownFailures(filepath.Join(suiteRoot, runner.KnownFailuresFile))
	if err != nil {
		t.Fatal(err)
	}
	return topics, known
}

// TestInProcess runs every topic with Garrison's compiler and engine in
// this process.
func TestInProcess(t *testing.T) {
	topics, known := loadSuite(t)
	runSuite(t, runner.InProcess{}, topics, known, runner.ModeInProcess)
}

// TestWire runs every topic against a real `garrison serve` over gRPC
// ext_authz, one server per topic.
func TestWire(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a garrison serve per topic")
	}
	topics, known := loadSuite(t)
	impl := runner.GarrisonServer{Binary: garrisonBinary(t)}
	if *verbose {
		impl.Log = testLog{t}
	}
	runSuite(t, impl, topics, known, runner.ModeWire)
}

// TestExternal runs every topic against the implementation -impl (or
// $AUTHZ_CONFORMANCE_IMPL) names. Garrison's known failures do not apply:
// every case must conform.
func TestExternal(t *testing.T) {
	template := *implFlag
	if template == "" {
		template = os.Getenv(ImplEnv)
	}
	if template == "" {
		t.Skip("no -impl or $" + ImplEnv)
	}
	impl, err := runner.ParseCommand(template)
	if err != nil {
		t.Fatal(err)
	}
	if *verbose {
		impl.Log = testLog{t}
	}
	topics, _ := loadSuite(t)
	runSuite(t, impl, topics, runner.KnownFailures{}, runner.ModeWire)
}

// TestKnownFailuresNameCases keeps known_failures.yaml in step with the
// cases: an entry for a case that no longer exists is an error.
func TestKnownFailuresNameCases(t *testing.T) {
	topics, known := loadSuite(t)
	for _, kf := range known.Stale(topics) {
		t.Errorf("%s lists %s / %q, which is no case of the suite", runner.KnownFailuresFile, kf.Topic, kf.Case)
	}
}

func runSuite(t *testing.T, impl runner.Implementation, topics []*runner.Topic, known runner.KnownFailures, mode runner.Mode) {
	for _, topic := range topics {
		t.Run(topic.Name, func(t *testing.T) {
			t.Parallel()
			s, err := impl.Start(t.Context(), topic)
			kf := known.Lookup(topic.Name, runner.WholeTopic, mode)
			switch {
			case err != nil && kf != nil:
				t.Skipf("known failure (%s): %v", strings.TrimSpace(kf.Reason), err)
			case err != nil:
				t.Fatalf("%s: %v", impl.Name(), err)
			case kf != nil:
				t.Errorf("%s lists topic %s as failing to start, but it starts: remove the entry", runner.KnownFailuresFile, topic.Name)
			}
			t.Cleanup(func() {
				if err := s.Close(); err != nil {
					t.Errorf("stopping %s: %v", impl.Name(), err)
				}
			})
			for _, c := range topic.Cases {
				t.Run(c.Name, func(t *testing.T) {
					t.Parallel()
					checkCase(t, s, topic, c, known.Lookup(topic.Name, c.Name, mode))
				})
			}
		})
	}
}

func checkCase(t *testing.T, s runner.Session, topic *runner.Topic, c cases.Case, kf *runner.KnownFailure) {
	t.Helper()
	r := runner.Check(t.Context(), s, topic.Name, c)
	where := fmt.Sprintf("%s:%d", filepath.Join(topic.Dir, runner.CasesFile), c.Line)
	problem := r.Mismatch
	if r.Err != nil {
		problem = "error: " + r.Err.Error()
	}
	switch {
	case kf != nil && problem != "":
		t.Logf("%s: known failure (%s): %s", where, strings.TrimSpace(kf.Reason), problem)
	case kf != nil:
		t.Errorf("%s: listed in %s but now conforms: remove the entry", where, runner.KnownFailuresFile)
	case problem != "":
		t.Errorf("%s: %s\n  got %s", where, problem, describe(r.Got))
	}
}

func describe(d cases.Decision) string {
	s := fmt.Sprintf("allowed=%t status=%d", d.Allowed, d.Status)
	if d.Reason != "" {
		s += " reason=" + d.Reason
	}
	if d.Policy != "" {
		s += " policy=" + d.Policy
	}
	if d.Rule != nil {
		s += fmt.Sprintf(" rule=%d", *d.Rule)
	}
	return s
}

// testLog copies server output to the test log.
type testLog struct{ t *testing.T }

func (l testLog) Write(p []byte) (int, error) {
	l.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
