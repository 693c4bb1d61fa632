package main

import (
	"github.com/garrison-mesh/garrison/internal/atomicfile"

	"bytes"
	"errors"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/garrison-mesh/garrison/authz/bundle"
)

func newPolicyCompileCommand(f *policyFlags) *cobra.Command {
	var (
		out      string
		regoDir  string
		revision string
		split    bool
	)
	cmd := &cobra.Command{
		Use:   "compile DIR|FILE ... (-o BUNDLE.tar.gz | --rego-dir DIR)",
		Short: "Compile the policies to a standard OPA bundle",
		Long: "Compile reads the configuration under the given directories as validate does and compiles its\n" +
			"authorization policies (AuthorizationPolicy and legacy RBAC) to Rego, written as a standard OPA\n" +
			"bundle that stock OPA and opa-envoy-plugin load unchanged:\n\n" +
			"  opa-envoy-plugin run --server --bundle bundle.tar.gz\n\n" +
			"decides Envoy's ext_authz requests as Garrison does, at the plugin's default path\n" +
			"envoy/authz/allow, given the context extensions Garrison's xDS puts on each listener. The\n" +
			"bundle holds .manifest (roots garrison and envoy, rego_version 1, a revision that hashes the\n" +
			"content), data.json, the library, the generated rules and envoy/authz/allow.rego.\n\n" +
			"-o writes a gzipped tarball (- for standard output); --rego-dir writes the same files to a\n" +
			"directory, for review in git (stale .rego files under DIR/garrison and DIR/envoy are removed;\n" +
			"`opa run --bundle DIR` loads it too). The generated rules are one module by default, which is\n" +
			"what OPA loads fastest; --split writes one module per resource instead.\n" +
			"Compiler warnings go to standard error. Exits 1 when the configuration is invalid.",
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if (out == "") == (regoDir == "") {
				return errors.New("give exactly one of -o FILE and --rego-dir DIR")
			}
			ps, err := loadPolicySet(args, f)
			if err != nil {
				return err
			}
			if ps.res == nil {
				writeProblems(cmd.ErrOrStderr(), ps)
				return exitError{code: 1}
			}
			writeCompileWarnings(cmd.ErrOrStderr(), ps.res)
			opts := bundle.Options{Revision: revision, Split: split}
			if regoDir != "" {
				return bundle.WriteDir(regoDir, ps.res, opts)
			}
			var buf bytes.Buffer
			if err := bundle.Write(&buf, ps.res, opts); err != nil {
				return err
			}
			if out == "-" {
				_, err := cmd.OutOrStdout().Write(buf.Bytes())
				return err
			}
			return writeFileAtomic(out, buf.Bytes())
		},
	}
	fl := cmd.Flags()
	fl.StringVarP(&out, "output", "o", "", "write the bundle as a .tar.gz to this file (- for standard output)")
	fl.StringVar(&regoDir, "rego-dir", "", "write the bundle's files to this directory instead")
	fl.StringVar(&revision, "revision", "", "the manifest's revision (default: a hash of the content)")
	fl.BoolVar(&split, "split", false, "one module per resource instead of one for all generated rules")
	return cmd
}

// writeFileAtomic replaces name with data, so that an OPA polling the file
// never reads half a bundle.
func writeFileAtomic(name string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		return err
	}
	return atomicfile.Write(name, data, 0o644)
}
