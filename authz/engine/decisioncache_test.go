package engine

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/garrison-mesh/garrison/policies"
)

// cacheTestPolicies read a header, the remote address and the path on top
// of bookinfo's, so that the decision cache's key must tell requests apart
// by each of them.
const cacheTestPolicies = `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: tenant, namespace: default}
spec:
  selector: {matchLabels: {app: details}}
  action: DENY
  rules:
  - when:
    - key: request.headers[X-Tenant]
      values: ["evil"]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: blocked-clients, namespace: default}
spec:
  action: DENY
  rules:
  - from:
    - source: {remoteIpBlocks: ["192.0.2.0/24"]}
`

func cacheTestEngine(t *testing.T, cacheSize int, reg prometheus.Registerer) *Engine {
	t.Helper()
	snap, _ := policies.NewSnapshot(1, append(bookinfoResources(t), parseYAML(t, cacheTestPolicies)...), policies.SnapshotOptions{})
	e, err := newEngine(Config{DecisionCacheSize: cacheSize, Metrics: reg})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Load(context.Background(), mustCompile(t, snap), snap); err != nil {
		t.Fatal(err)
	}
	return e
}

// TestDecisionCacheDecidesAsEvaluation: every request of a varied corpus,
// decided twice by an engine with the cache, gets exactly the decision an
// engine without one evaluates, and the second round is served from the
// cache, also for requests that differ only in what no policy reads.
func TestDecisionCacheDecidesAsEvaluation(t *testing.T) {
	reg := prometheus.NewRegistry()
	cached := cacheTestEngine(t, DefaultDecisionCacheSize, reg)
	plain := cacheTestEngine(t, -1, nil)
	if cached.live.Load().cache == nil || plain.live.Load().cache != nil {
		t.Fatal("cache configuration not applied")
	}
	reqs := bookinfoRequests()
	for i, req := range reqs {
		h := req.Attributes.Request.Http.Headers
		switch i % 4 {
		case 0:
			h["x-tenant"] = "evil"
		case 1:
			h["x-forwarded-for"] = "192.0.2.9"
		case 2:
			h["x-forwarded-for"] = "198.51.100.1, 192.0.2.9"
		}
	}
	reasons := map[string]int{}
	for round := range 2 {
		for i, req := range reqs {
			// Unread fields differ in every round and request.
			req.Attributes.Request.Http.Headers["x-request-id"] = fmt.Sprintf("%d-%d", round, i)
			req.Attributes.Request.Http.Id = strconv.Itoa(i*7 + round)
			got, err := cached.Decide(context.Background(), req)
			if err != nil {
				t.Fatal(err)
			}
			want, err := plain.Decide(context.Background(), req)
			if err != nil {
				t.Fatal(err)
			}
			g, _ := json.Marshal(got)
			w, _ := json.Marshal(want)
			if !bytes.Equal(g, w) {
				t.Fatalf("round %d request %d: cached engine %s, evaluation %s", round, i, g, w)
			}
			if round == 0 {
				reasons[got.Reason+" "+got.Policy]++
			}
		}
	}
	for _, must := range []string{"denied default/tenant", "denied default/blocked-clients", "allowed default/products-viewer"} {
		if reasons[must] == 0 {
			t.Errorf("no request decided %q: the corpus does not exercise the key (%v)", must, reasons)
		}
	}
	hits, misses := metricValue(t, reg, "garrison_authz_decision_cache_total", "hit"), metricValue(t, reg, "garrison_authz_decision_cache_total", "miss")
	if hits < float64(len(reqs)) || misses == 0 || misses > float64(len(reqs)) {
		t.Errorf("%v hits and %v misses for %d requests decided twice: the second round should hit", hits, misses, len(reqs))
	}
	t.Logf("%d requests twice: %v hits, %v misses, %d entries; decisions %v", len(reqs), hits, misses, cached.live.Load().cache.len(), reasons)
}

// TestDecisionCacheIsPerPolicySet: a decision cached under one policy set
// is never served by the next.
func TestDecisionCacheIsPerPolicySet(t *testing.T) {
	allow := `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: p, namespace: default}
spec:
  selector: {matchLabels: {app: details}}
  action: %s
  rules: [{}]
`
	e, err := newEngine(Config{})
	if err != nil {
		t.Fatal(err)
	}
	req := bookinfoRequest("bookinfo-productpage", "bookinfo-details", "GET", "/details/1")
	for i, action := range []string{"ALLOW", "DENY", "ALLOW"} {
		snap, _ := policies.NewSnapshot(uint64(i+1), append(bookinfoResources(t), parseYAML(t, fmt.Sprintf(allow, action))...), policies.SnapshotOptions{})
		if err := e.Load(context.Background(), mustCompile(t, snap), snap); err != nil {
			t.Fatal(err)
		}
		for range 2 {
			d, err := e.Decide(context.Background(), req)
			if err != nil {
				t.Fatal(err)
			}
			if d.Allowed != (action == "ALLOW") || d.PolicyVersion != uint64(i+1) {
				t.Fatalf("set %d (%s): %+v", i+1, action, d)
			}
		}
	}
}

// TestDecisionCacheOffWhenRulesReadTheClock: a policy set calling
// time.now_ns (or a nondeterministic builtin) decides anew every time.
func TestDecisionCacheOffWhenRulesReadTheClock(t *testing.T) {
	snap := bookinfoSnapshot(t)
	for name, rule := range map[string]string{
		"none":          "",
		"time.now_ns":   "recent if time.now_ns() > 0\n",
		"nested call":   "recent if { x := [time.now_ns()]; x[0] > 0 }\n",
		"http.send":     "fetched := http.send({\"method\": \"get\", \"url\": \"http://127.0.0.1:1\"}) if false\n",
		"uuid.rfc4122":  "id := uuid.rfc4122(\"x\")\n",
		"deterministic": "n := count([1, 2])\n",
	} {
		t.Run(name, func(t *testing.T) {
			res := mustCompile(t, snap)
			if rule != "" {
				res.Modules["garrison/authz/extra.rego"] = "package garrison.authz\n\n" + rule
			}
			e, err := NewStatic(res, snap)
			if err != nil {
				t.Fatal(err)
			}
			want := name == "none" || name == "deterministic"
			if got := e.live.Load().cache != nil; got != want {
				t.Errorf("cache on = %t, want %t", got, want)
			}
		})
	}
}

// TestDecisionCacheBounded: the cache never holds more than its size.
func TestDecisionCacheBounded(t *testing.T) {
	c := newDecisionCache(64)
	d := &Decision{Allowed: true}
	for i := range 10000 {
		c.put([]byte(strconv.Itoa(i)), d)
		if n := c.len(); n > 64+cacheShards {
			t.Fatalf("%d entries after %d puts, size 64", n, i+1)
		}
	}
	// What is used survives the generations.
	hot := []byte("hot")
	c.put(hot, d)
	for i := range 10000 {
		c.put([]byte("cold"+strconv.Itoa(i)), d)
		if _, ok := c.get(hot); !ok {
			t.Fatalf("a key looked up between every put was evicted after %d puts", i+1)
		}
	}
	if newDecisionCache(0) != nil || newDecisionCache(-1) != nil {
		t.Error("a size below 1 must be no cache")
	}
}

// TestAppendKeyIsEquality: two values have the same key exactly when OPA
// compares them equal, across the shapes an input holds.
func TestAppendKeyIsEquality(t *testing.T) {
	texts := []string{
		`null`, `true`, `false`, `0`, `-0`, `1`, `1.0`, `1.5`, `10`, `100000000000000000000000000000`,
		`"1"`, `""`, `"a"`, `"a\"b"`, `"ab"`,
		`[]`, `["a"]`, `["a", "b"]`, `["ab"]`, `["a", ["b"]]`, `[["a"], "b"]`,
		`{}`, `{"a": "b"}`, `{"b": "a"}`, `{"a": "b", "c": "d"}`, `{"c": "d", "a": "b"}`, `{"a": ["b"]}`,
		`{"a": {"b": "c"}}`, `{"a": "b", "b": "c"}`,
		`set()`, `{"a"}`, `{"a", "b"}`, `{"b", "a"}`, `{"a,b"}`,
		`{"a": "\", \"b"}`, `{"a": "", "b": ""}`,
	}
	values := make([]ast.Value, len(texts))
	for i, s := range texts {
		values[i] = ast.MustParseTerm(s).Value
	}
	for i, a := range values {
		for j, b := range values {
			equal := a.Compare(b) == 0
			same := bytes.Equal(appendKey(nil, a), appendKey(nil, b))
			if equal != same {
				t.Errorf("%s vs %s: OPA equal %t, keys equal %t", texts[i], texts[j], equal, same)
			}
		}
	}
}

// The builtin list must stay in step with OPA's: a name that is not a
// builtin any more would silently stop protecting the cache.
func TestUncacheableBuiltinsExist(t *testing.T) {
	for name := range uncacheableBuiltins {
		if _, ok := ast.BuiltinMap[name]; !ok {
			t.Errorf("%s is not an OPA builtin", name)
		}
	}
}
