package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/garrison-mesh/garrison/policies"
	"github.com/garrison-mesh/garrison/policies/source/file"
)

// validateReport is the -o json output of garrison validate.
type validateReport struct {
	Files     int               `json:"files"`
	Resources int               `json:"resources"`
	Errors    int               `json:"errors"`
	Warnings  int               `json:"warnings"`
	Problems  policies.Problems `json:"problems"`
}

func newValidateCommand() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "validate DIR|FILE|- ...",
		Short: "Check Istio and Kubernetes YAML as Istio's webhook would",
		Long: "Validate reads every .yaml, .yml and .json file under the given directories (and the given\n" +
			"files; - is standard input) and reports each problem with its file, line, resource and field.\n" +
			"It exits 1 when any resource is invalid.",
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if output != "text" && output != "json" {
				return fmt.Errorf("-o must be text or json, got %q", output)
			}
			rep, err := validatePaths(args, cmd.InOrStdin())
			if err != nil {
				return err
			}
			if err := writeValidateReport(cmd.OutOrStdout(), output, rep); err != nil {
				return err
			}
			if rep.Errors > 0 {
				return exitError{code: 1}
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	return cmd
}

func validatePaths(paths []string, stdin io.Reader) (*validateReport, error) {
	rep := &validateReport{Problems: policies.Problems{}}
	var all []*policies.Resource
	parse := func(name string, data []byte) {
		rs, problems := policies.Parse(name, data)
		rep.Files++
		all = append(all, rs...)
		rep.Problems = append(rep.Problems, problems...)
	}
	for _, p := range paths {
		if p == "-" {
			data, err := io.ReadAll(stdin)
			if err != nil {
				return nil, fmt.Errorf("reading standard input: %w", err)
			}
			parse("<stdin>", data)
			continue
		}
		files, err := file.ConfigFiles(p)
		if err != nil {
			return nil, err
		}
		for _, f := range files {
			data, err := os.ReadFile(f)
			if err != nil {
				return nil, err
			}
			parse(f, data)
		}
	}
	// Problems across files, such as one resource defined twice.
	snap, problems := policies.NewSnapshot(0, all, policies.SnapshotOptions{})
	rep.Problems = append(rep.Problems, problems...)
	rep.Problems.Sort()
	rep.Resources = snap.Len()
	rep.Errors = len(rep.Problems.Errors())
	rep.Warnings = len(rep.Problems.Warnings())
	return rep, nil
}

func writeValidateReport(w io.Writer, output string, rep *validateReport) error {
	if output == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	for _, p := range rep.Problems {
		if _, err := fmt.Fprintln(w, p.Error()); err != nil {
			return err
		}
	}
	verdict := "valid"
	if rep.Errors > 0 {
		verdict = "INVALID"
	}
	_, err := fmt.Fprintf(w, "%s: %d files, %d resources, %d errors, %d warnings\n",
		verdict, rep.Files, rep.Resources, rep.Errors, rep.Warnings)
	return err
}
