package main

import (
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/garrison-mesh/garrison/authz/compile"
	"github.com/garrison-mesh/garrison/authz/engine"
	"github.com/garrison-mesh/garrison/policies"
)

// TestMeshDecidesAsExpected compiles the generated mesh and decides every
// template in every namespace with Garrison's engine: the expectations the
// bench checks answers against must be the policies' own.
func TestMeshDecidesAsExpected(t *testing.T) {
	for _, n := range []int{10, 30} {
		var rs []*policies.Resource
		aps := 0
		for name, content := range configFiles(n) {
			parsed, problems := policies.Parse(name, []byte(content))
			if err := problems.Err(); err != nil {
				t.Fatal(err)
			}
			for _, r := range parsed {
				if r.Kind == policies.KindAuthorizationPolicy {
					aps++
				}
			}
			rs = append(rs, parsed...)
		}
		if aps != n {
			t.Fatalf("%d policies generated, want %d", aps, n)
		}
		snap, problems := policies.NewSnapshot(1, rs, policies.SnapshotOptions{})
		if err := problems.Err(); err != nil {
			t.Fatal(err)
		}
		res, err := compile.Compile(snap, compile.Options{DenyBodyDetails: true})
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Warnings) > 0 {
			t.Fatalf("warnings: %v", res.Warnings)
		}
		e, err := engine.NewStatic(res, snap)
		if err != nil {
			t.Fatal(err)
		}
		rng := rand.New(rand.NewPCG(1, 2))
		for i := range templates {
			for ns := range n / policiesPerNamespace {
				tm := &templates[i]
				req := checkRequest(tm, ns, rng)
				d, err := e.Decide(context.Background(), req)
				if err != nil {
					t.Fatal(err)
				}
				if d.Allowed != tm.allowed {
					t.Errorf("%d policies, %s in %s: %+v, want allowed %v", n, tm.name, namespaceName(ns), d, tm.allowed)
				}
				// Without the context extensions the engine derives the
				// same workload from the destination identity, except for
				// reviews, whose versions share one.
				if tm.to != "reviews" {
					req.Attributes.ContextExtensions = nil
					if d2, err := e.Decide(context.Background(), req); err != nil || d2.Allowed != tm.allowed {
						t.Errorf("%s derived: %+v, %v", tm.name, d2, err)
					}
				}
			}
		}
		all := requests(n, 500, rng)
		allowed := 0
		for _, r := range all {
			if r.allowed {
				allowed++
			}
		}
		if allowed < 300 || allowed > 450 {
			t.Errorf("%d of 500 requests allowed: the mix should be about 3 in 4", allowed)
		}
	}
}

func TestRequestsLookLikeEnvoys(t *testing.T) {
	r := checkRequest(&templates[0], 3, rand.New(rand.NewPCG(1, 2)))
	if h := r.Attributes.Request.Http.Headers; len(h) < 15 {
		t.Errorf("%d headers", len(h))
	}
	if ext := r.Attributes.ContextExtensions; ext["garrison.io/namespace"] != "bookinfo-3" || ext["garrison.io/label/app"] != "productpage" {
		t.Errorf("extensions %v", ext)
	}
}

func TestFlags(t *testing.T) {
	var stderr strings.Builder
	for _, bad := range [][]string{
		{"-policies", "15"},
		{"-policies", "abc"},
		{"-c", "0"},
		{"-write-config", "x", "-policies", "10,20"},
		{"-addr", "127.0.0.1:1", "-policies", "10,20"},
		{"extra"},
	} {
		if _, err := parseFlags(bad, &stderr); err == nil {
			t.Errorf("%v: no error", bad)
		}
	}
	o, err := parseFlags(nil, &stderr)
	if err != nil || len(o.policies) != 3 || o.load.callers != 16 {
		t.Errorf("defaults: %+v, %v", o, err)
	}
}

func TestWriteConfig(t *testing.T) {
	dir := t.TempDir()
	if err := run(context.Background(), []string{"-write-config", dir, "-policies", "20"}, os.Stdout, os.Stderr); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if len(files) != 2 {
		t.Errorf("files %v", files)
	}
}

func TestProcessCPU(t *testing.T) {
	d, err := processCPU(os.Getpid())
	if err != nil || d < 0 || d > time.Hour {
		t.Errorf("%v, %v", d, err)
	}
}
