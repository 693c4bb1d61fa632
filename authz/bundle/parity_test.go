package bundle_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/open-policy-agent/opa/v1/rego"

	"github.com/garrison-mesh/garrison/authz/bundle"
	"github.com/garrison-mesh/garrison/authz/engine"
)

// parityCount tallies what a parity test compared.
type parityCount struct {
	sets, requests, allowed, denied, rejected, derived, skipped int
}

func (c *parityCount) add(o parityCount) {
	c.sets += o.sets
	c.requests += o.requests
	c.allowed += o.allowed
	c.denied += o.denied
	c.rejected += o.rejected
	c.derived += o.derived
	c.skipped += o.skipped
}

func (c *parityCount) log(t *testing.T, against string) {
	t.Helper()
	t.Logf("%d requests in %d policy sets decided identically by Garrison's engine and %s: %d allowed, %d denied (403/401), %d rejected 400; %d had their context extensions derived from the destination principal; %d skipped (a path Envoy's normalize_path refuses, or a plaintext connection to a STRICT port, never reaches an authorization server)",
		c.requests, c.sets, against, c.allowed, c.denied, c.rejected, c.derived, c.skipped)
	if c.requests < 300 || c.allowed == 0 || c.denied == 0 {
		t.Errorf("the corpus is too small to mean anything: %+v", *c)
	}
}

func (c *parityCount) tally(d *engine.Decision) {
	c.requests++
	switch {
	case d.Allowed:
		c.allowed++
	case d.Status == 400:
		c.rejected++
	default:
		c.denied++
	}
}

// TestStockOPAParity loads each bundle Write produces with OPA's own bundle
// loader (rego.LoadBundle, what `opa run --bundle` uses) into a plain rego
// query of data.envoy.authz.allow, the path opa-envoy-plugin queries,
// builds the input as the plugin does (engine.NewInputBuilder with
// EncodingPlugin, checked against the plugin's own code in
// authz/engine/peerparity), and requires for every request of the corpus
// the response Garrison's engine gives: allowed, HTTP status, and the whole
// response object (body and headers) of Explain's envoy_response.
func TestStockOPAParity(t *testing.T) {
	ctx := context.Background()
	var total parityCount
	for _, s := range parityCorpus(t) {
		t.Run(s.name, func(t *testing.T) {
			eng, err := engine.NewStatic(s.res, s.snap)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(t.TempDir(), "bundle.tar.gz")
			writeBundle(t, path, s)
			q, err := rego.New(rego.Query("data.envoy.authz.allow"), rego.LoadBundle(path)).PrepareForEval(ctx)
			if err != nil {
				t.Fatalf("stock OPA cannot prepare the bundle: %v", err)
			}
			inputs := engine.NewInputBuilder(engine.InputOptions{Encoding: engine.EncodingPlugin})
			count := parityCount{sets: 1}
			for _, r := range s.requests {
				sent, derived, ok := asEnvoySends(ctx, t, eng, r.req)
				if !ok {
					count.skipped++
					continue
				}
				if derived {
					count.derived++
				}
				d, err := eng.Decide(ctx, sent)
				if err != nil {
					t.Fatalf("%s: engine: %v", r.name, err)
				}
				count.tally(d)
				in, err := inputs.Build(sent)
				if err != nil {
					// The plugin answers 400 to a request it cannot build
					// an input for.
					if d.Allowed || d.Status != 400 {
						t.Errorf("%s: the plugin answers 400 (%v); the engine decided %+v", r.name, err, d)
					}
					continue
				}
				rs, err := q.Eval(ctx, rego.EvalParsedInput(in))
				if err != nil {
					t.Fatalf("%s: stock OPA: %v", r.name, err)
				}
				if len(rs) != 1 || len(rs[0].Expressions) != 1 {
					t.Errorf("%s: data.envoy.authz.allow is undefined in stock OPA", r.name)
					continue
				}
				got, _ := rs[0].Expressions[0].Value.(map[string]any)
				allowed, _ := got["allowed"].(bool)
				if allowed != d.Allowed {
					t.Errorf("%s: stock OPA allowed=%t, Garrison %+v", r.name, allowed, d)
					continue
				}
				if !allowed {
					if status, _ := got["http_status"].(json.Number); status.String() != jsonInt(d.Status) {
						t.Errorf("%s: stock OPA http_status %v, Garrison %d", r.name, got["http_status"], d.Status)
					}
				}
				x, err := eng.Explain(ctx, sent)
				if err != nil {
					t.Fatalf("%s: explain: %v", r.name, err)
				}
				if want := normalizeJSON(t, x.EnvoyResponse); !reflect.DeepEqual(normalizeJSON(t, got), want) {
					t.Errorf("%s: stock OPA answers %v, Garrison's envoy_response is %v", r.name, normalizeJSON(t, got), want)
				}
			}
			total.add(count)
		})
	}
	total.log(t, "stock OPA loading the bundle")
}

func writeBundle(t *testing.T, path string, s *paritySet) {
	t.Helper()
	fh, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := bundle.Write(fh, s.res, bundle.Options{}); err != nil {
		t.Fatal(err)
	}
	if err := fh.Close(); err != nil {
		t.Fatal(err)
	}
}

func jsonInt(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}

// normalizeJSON makes values from different decoders comparable.
func normalizeJSON(t *testing.T, v any) any {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}
