package main

import (
	"cmp"

	"github.com/garrison-mesh/garrison/authn/jwt"
	"github.com/garrison-mesh/garrison/ca/authority"

	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"time"

	"github.com/spf13/cobra"

	"github.com/garrison-mesh/garrison/cmd/internal/admin"
	"github.com/garrison-mesh/garrison/policies/source/file"
)

// status exit codes: scripts tell "down" from "serving, but some files
// are rejected".
const (
	statusDown     = 1
	statusDegraded = 2
)

func newStatusCommand() *cobra.Command {
	var addr, output string
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show what a running garrison serves and which files it rejected",
		Long: "Status asks a running garrison's monitoring port. It exits 0 when the configuration is\n" +
			"live and every file is valid, 2 when some files are rejected (their last good contents\n" +
			"are served), and 1 when garrison is unreachable or has no configuration yet.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "text" && output != "json" {
				return fmt.Errorf("-o must be text or json, got %q", output)
			}
			rep, raw, err := fetchStatus(cmd.Context(), addr)
			if err != nil {
				return err
			}
			var src file.Status
			if len(rep.Source) > 0 {
				if err := json.Unmarshal(rep.Source, &src); err != nil {
					return fmt.Errorf("decoding status from %s: %w", addr, err)
				}
			}
			out := cmd.OutOrStdout()
			if output == "json" {
				_, err = out.Write(raw)
			} else {
				err = printStatus(out, rep, &src)
			}
			if err != nil {
				return err
			}
			switch {
			case !rep.Ready:
				return exitError{code: statusDown}
			case len(src.InvalidFiles) > 0 || src.Error != "" || jwksFailing(rep.JWKS):
				return exitError{code: statusDegraded}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&addr, "addr", "127.0.0.1:15014", "monitoring address of the running garrison")
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	return cmd
}

func fetchStatus(ctx context.Context, addr string) (*admin.StatusReport, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/debug/status", nil)
	if err != nil {
		return nil, nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, nil, fmt.Errorf("garrison at %s is unreachable: %w", addr, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, nil, fmt.Errorf("garrison at %s answered %s", addr, resp.Status)
	}
	var rep admin.StatusReport
	if err := json.Unmarshal(raw, &rep); err != nil {
		return nil, nil, fmt.Errorf("decoding status from %s: %w", addr, err)
	}
	return &rep, raw, nil
}

func printStatus(w io.Writer, rep *admin.StatusReport, src *file.Status) error {
	p := func(format string, args ...any) { fmt.Fprintf(w, format, args...) }
	if !rep.Ready {
		p("garrison %s: NOT READY (no configuration loaded yet)\n", rep.Version)
	} else {
		p("garrison %s: serving snapshot %d (%d resources)\n", rep.Version, rep.SnapshotVersion, rep.Resources)
	}
	for _, name := range slices.Sorted(maps.Keys(rep.Components)) {
		c := rep.Components[name]
		switch {
		case !c.Ready:
			p("%s: NOT READY\n", name)
		case c.Version != rep.SnapshotVersion:
			p("%s: serving snapshot %d (snapshot %d did not compile or is being compiled)\n", name, c.Version, rep.SnapshotVersion)
		default:
			p("%s: serving snapshot %d\n", name, c.Version)
		}
	}
	if src.Dir != "" {
		p("config %s: %d files, last reload %s, last success %s\n", src.Dir, src.Files, when(src.LastAttempt), when(src.LastSuccess))
	}
	if src.Error != "" {
		p("error: %s\n", src.Error)
	}
	if n := len(src.InvalidFiles); n > 0 {
		p("%d rejected files:\n", n)
		for _, f := range src.InvalidFiles {
			keeps := "contributes nothing"
			if f.KeepsLastGood {
				keeps = "its last good contents are served"
			}
			p("  %s (since %s; %s)\n", f.File, when(f.Since), keeps)
			for _, pr := range f.Problems {
				p("    %s\n", pr.Error())
			}
		}
	}
	for _, pr := range src.SnapshotProblems {
		p("  %s\n", pr.Error())
	}
	if ca := rep.CA; ca != nil {
		p("ca %s (%s): signing CA expires %s; %d roots, first to expire %s; %d certificates valid, %d revoked\n",
			ca.TrustDomain, ca.Upstream, ca.Signing.NotAfter.Format(time.RFC3339), len(ca.Roots), firstExpiry(ca.Roots),
			ca.Counts.Valid, ca.Counts.Revoked)
		if ca.Pending != nil && ca.Pending.ActivateAt != nil {
			p("ca: a rotated signing CA takes over at %s\n", ca.Pending.ActivateAt.Format(time.RFC3339))
		}
	}
	if rep.CAError != "" {
		p("ca: status unavailable: %s\n", rep.CAError)
	}
	for _, j := range rep.JWKS {
		uri := cmp.Or(j.JWKSURI, j.URI)
		switch {
		case j.Ready && j.LastError == "":
			p("jwks %s: %d keys, fetched %s\n", uri, j.Keys, when(j.LastSuccess))
		case j.Ready:
			p("jwks %s: %d keys from %s; last refresh FAILED at %s: %s\n", uri, j.Keys, when(j.LastSuccess), when(j.LastErrorAt), j.LastError)
		default:
			p("jwks %s: NOT AVAILABLE (tokens of its issuers are rejected): %s\n", uri, cmp.Or(j.LastError, "not fetched yet"))
		}
	}
	return nil
}

// jwksFailing: some key set is unavailable or its last refresh failed.
func jwksFailing(js []jwt.FetchStatus) bool {
	for _, j := range js {
		if !j.Ready || j.LastError != "" {
			return true
		}
	}
	return false
}

func when(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return t.Local().Format(time.DateTime)
}

// firstExpiry is the earliest NotAfter of roots, as RFC 3339.
func firstExpiry(roots []authority.CertStatus) string {
	if len(roots) == 0 {
		return "-"
	}
	first := roots[0].NotAfter
	for _, r := range roots[1:] {
		if r.NotAfter.Before(first) {
			first = r.NotAfter
		}
	}
	return first.Format(time.RFC3339)
}
