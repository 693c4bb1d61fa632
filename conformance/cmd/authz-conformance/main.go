// Command authz-conformance runs the authorization conformance suite
// (conformance/authz) against an ext_authz implementation over gRPC, and
// prints one line per case that does not conform.
//
//	go run ./conformance/cmd/authz-conformance -impl 'my-authz --policies {config} --listen {addr}'
//	go run ./conformance/cmd/authz-conformance -garrison bin/garrison
//
// With -impl, each topic's configuration is copied into a directory that
// replaces {config}, and {addr} becomes a free loopback address to serve
// envoy.service.auth.v3.Authorization on ({tmp}: a scratch directory). With
// -garrison, `garrison serve` is started per topic. Known failures
// (known_failures.yaml) are reported as such with -known; otherwise every
// case must conform. Exit status: 0 all conform, 1 some do not, 2 usage or
// setup errors.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"

	"github.com/garrison-mesh/garrison/conformance/runner"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fl := flag.NewFlagSet("authz-conformance", flag.ContinueOnError)
	fl.SetOutput(stderr)
	suite := fl.String("suite", "conformance/authz", "the suite's directory (one directory per topic)")
	impl := fl.String("impl", "", "command template of the implementation, with {config} and {addr}")
	garrison := fl.String("garrison", "", "a garrison binary to run `garrison serve` per topic (instead of -impl)")
	only := fl.String("topic", "", "run only topics whose name starts with this")
	known := fl.Bool("known", false, "report the cases of known_failures.yaml as known failures (for Garrison)")
	verbose := fl.Bool("v", false, "print every case and the servers' output")
	if err := fl.Parse(args); err != nil {
		return 2
	}
	var implementation runner.Implementation
	switch {
	case *impl != "" && *garrison != "":
		fmt.Fprintln(stderr, "authz-conformance: give -impl or -garrison, not both")
		return 2
	case *impl != "":
		c, err := runner.ParseCommand(*impl)
		if err != nil {
			fmt.Fprintln(stderr, "authz-conformance:", err)
			return 2
		}
		if *verbose {
			c.Log = stderr
		}
		implementation = c
	case *garrison != "":
		g := runner.GarrisonServer{Binary: *garrison}
		if *verbose {
			g.Log = stderr
		}
		implementation = g
	default:
		fmt.Fprintln(stderr, "authz-conformance: -impl or -garrison is required")
		fl.Usage()
		return 2
	}
	topics, err := runner.LoadSuite(*suite)
	if err != nil {
		fmt.Fprintln(stderr, "authz-conformance:", err)
		return 2
	}
	knownFailures := runner.KnownFailures{}
	if *known {
		if knownFailures, err = runner.LoadKnownFailures(filepath.Join(*suite, runner.KnownFailuresFile)); err != nil {
			fmt.Fprintln(stderr, "authz-conformance:", err)
			return 2
		}
	}
	var passed, failed, knownFailed, topicErrors int
	for _, t := range topics {
		if !strings.HasPrefix(t.Name, *only) {
			continue
		}
		results, err := runner.RunTopic(ctx, implementation, t)
		if errors.Is(err, context.Canceled) {
			return 2
		}
		if err != nil && results == nil {
			if kf := knownFailures.Lookup(t.Name, runner.WholeTopic, runner.ModeWire); kf != nil {
				knownFailed++
				fmt.Fprintf(stdout, "KNOWN %s: configuration refused (%s)\n", t.Name, strings.TrimSpace(kf.Reason))
				continue
			}
			topicErrors++
			fmt.Fprintf(stdout, "ERROR %s: %v\n", t.Name, err)
			continue
		}
		for _, r := range results {
			kf := knownFailures.Lookup(t.Name, r.Case.Name, runner.ModeWire)
			switch {
			case r.Failed() && kf != nil:
				knownFailed++
				fmt.Fprintf(stdout, "KNOWN %s\n", r)
			case r.Failed():
				failed++
				fmt.Fprintf(stdout, "FAIL  %s\n", r)
			default:
				passed++
				if *verbose {
					fmt.Fprintf(stdout, "ok    %s\n", r)
				}
			}
		}
		if err != nil {
			fmt.Fprintf(stderr, "authz-conformance: %s: stopping the server: %v\n", t.Name, err)
		}
	}
	fmt.Fprintf(stdout, "%s: %d conform, %d fail, %d known failures, %d topics not run\n",
		implementation.Name(), passed, failed, knownFailed, topicErrors)
	if failed > 0 || topicErrors > 0 {
		return 1
	}
	return 0
}
