package main

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/garrison-mesh/garrison/authz/compile"
	"github.com/garrison-mesh/garrison/policies"
	"github.com/garrison-mesh/garrison/policies/source/file"
)

// policyFlags are what `garrison policy` subcommands share: how the
// configuration is read and compiled, with serve's defaults, so that a
// policy tested or compiled here decides as `garrison serve` deploys it.
type policyFlags struct {
	rootNamespace string
	domainSuffix  string
	trustDomain   string
	denyDetails   bool
}

func (f *policyFlags) register(cmd *cobra.Command) {
	fl := cmd.PersistentFlags()
	fl.StringVar(&f.rootNamespace, "root-namespace", policies.DefaultRootNamespace, "namespace whose policies apply mesh-wide")
	fl.StringVar(&f.domainSuffix, "domain-suffix", policies.DefaultDomainSuffix, "DNS suffix that completes short service names")
	fl.StringVar(&f.trustDomain, "trust-domain", compile.DefaultTrustDomain, "the mesh's SPIFFE trust domain")
	fl.BoolVar(&f.denyDetails, "deny-details", true, "name the deciding policy and rule in deny bodies")
}

func (f *policyFlags) compileOptions() compile.Options {
	return compile.Options{TrustDomain: f.trustDomain, DenyBodyDetails: f.denyDetails}
}

func newPolicyCommand() *cobra.Command {
	f := &policyFlags{}
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "Test, compile and explain authorization policies as code",
		Long: "The policy commands work on directories of Istio YAML, as validate and serve read them\n" +
			"(.yaml, .yml and .json files; hidden files and editor backups are skipped).\n\n" +
			"Decision tests live beside the policies in files named *_test.yaml (or _test.yml,\n" +
			"_test.json): YAML lists of cases in the authz/cases format, which serve and validate never\n" +
			"read as configuration:\n\n" +
			"  - name: reviewers may read\n" +
			"    request:\n" +
			"      source: {principal: cluster.local/ns/default/sa/productpage}\n" +
			"      destination: {namespace: default, labels: {app: reviews}, services: [reviews.default.svc.cluster.local]}\n" +
			"      method: GET\n" +
			"      path: /reviews/1\n" +
			"    expect: {allowed: true, policy: default/reviews-viewer, rule: 0}",
	}
	f.register(cmd)
	cmd.AddCommand(
		newPolicyTestCommand(f),
		newPolicyCompileCommand(f),
		newPolicyExplainCommand(f),
	)
	return cmd
}

// policySet is a directory of configuration read, validated and compiled.
type policySet struct {
	snap *policies.Snapshot
	// problems are every problem found, warnings included, sorted.
	problems policies.Problems
	// testFiles are the *_test.yaml files found, in path order.
	testFiles []string
	// configFiles counts the configuration files read.
	configFiles int
	res         *compile.Result
}

// loadPolicySet reads the configuration under paths (directories or
// files; a named test file is taken as test file), validates it and, when
// it is valid, compiles it. Invalid configuration is not an error: the
// problems are in the result and res is nil.
func loadPolicySet(paths []string, f *policyFlags) (*policySet, error) {
	ps := &policySet{problems: policies.Problems{}}
	var all []*policies.Resource
	seen := map[string]bool{}
	for _, p := range paths {
		p = filepath.Clean(p)
		fi, err := os.Stat(p)
		if err != nil {
			return nil, err
		}
		var configs []string
		switch {
		case !fi.IsDir() && file.IsTestFile(p):
			ps.testFiles = append(ps.testFiles, p)
		case !fi.IsDir():
			configs = []string{p}
		default:
			if configs, err = file.ConfigFiles(p); err != nil {
				return nil, err
			}
			tests, err := testFiles(p)
			if err != nil {
				return nil, err
			}
			ps.testFiles = append(ps.testFiles, tests...)
		}
		for _, c := range configs {
			if seen[c] {
				continue
			}
			seen[c] = true
			data, err := os.ReadFile(c)
			if err != nil {
				return nil, err
			}
			rs, problems := policies.Parse(c, data)
			ps.configFiles++
			all = append(all, rs...)
			ps.problems = append(ps.problems, problems...)
		}
	}
	slices.Sort(ps.testFiles)
	ps.testFiles = slices.Compact(ps.testFiles)
	snap, problems := policies.NewSnapshot(1, all, policies.SnapshotOptions{
		RootNamespace: f.rootNamespace,
		DomainSuffix:  f.domainSuffix,
	})
	ps.problems = append(ps.problems, problems...)
	ps.problems.Sort()
	ps.snap = snap
	if len(ps.problems.Errors()) > 0 {
		return ps, nil
	}
	res, err := compile.Compile(snap, f.compileOptions())
	if err != nil {
		return nil, err
	}
	ps.res = res
	return ps, nil
}

// testFiles lists the decision test files under dir with the file
// source's rules for what it skips: hidden entries (and everything under a
// hidden directory) and editor backups.
func testFiles(dir string) ([]string, error) {
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if p != dir && (strings.HasPrefix(name, ".") || strings.HasSuffix(name, "~") ||
			strings.HasPrefix(name, "#") && strings.HasSuffix(name, "#")) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.IsDir() && file.IsTestFile(name) {
			out = append(out, p)
		}
		return nil
	})
	return out, err
}

// writeProblems prints the errors of an invalid configuration, as validate
// does, and a verdict line.
func writeProblems(w io.Writer, ps *policySet) {
	errs := ps.problems.Errors()
	for _, p := range errs {
		fmt.Fprintln(w, p.Error())
	}
	fmt.Fprintf(w, "INVALID: %d files, %d errors: fix them first (garrison validate shows warnings too)\n", ps.configFiles, len(errs))
}

// writeCompileWarnings prints what the compiler compiled differently from
// what was written, or not at all.
func writeCompileWarnings(w io.Writer, res *compile.Result) {
	for _, msg := range res.Warnings {
		fmt.Fprintln(w, "warning:", msg)
	}
}
