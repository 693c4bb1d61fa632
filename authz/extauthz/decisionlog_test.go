package extauthz

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/garrison-mesh/garrison/authz/engine"
)

// secretHeaders carry credentials in every header the default mask names,
// and in the access_token query parameter.
var secretHeaders = map[string]string{
	"authorization":       "Bearer eyJhbGciOiJSUzI1NiJ9.SECRET-JWT.sig",
	"cookie":              "session=SECRET-COOKIE; user=jason",
	"proxy-authorization": "Basic SECRET-PROXY",
	"x-api-key":           "SECRET-API-KEY",
	"x-request-id":        "6f1c2b1e-9a4e-4b7e-8a51-1d2c3b4a5f60",
	"x-b3-traceid":        "80f198ee56343ba864fe8b2a57d3eff7",
	"x-b3-spanid":         "e457b5a2e4d86bd1",
	"traceparent":         "00-80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-01",
}

func TestDecisionLogWithFakeDecider(t *testing.T) {
	dec := &engine.Decision{
		Status: 403, Reason: "denied", Policy: "default/deny-post", Kind: "AuthorizationPolicy", Rule: 2,
		Body:          "RBAC: access denied by AuthorizationPolicy default/deny-post rule 2",
		DryRun:        []map[string]any{{"policy": "default/new", "kind": "AuthorizationPolicy", "rule": float64(0), "action": "ALLOW"}},
		Audit:         []map[string]any{{"policy": "default/audit-all", "rule": 3}},
		PolicyVersion: 42,
		Workload:      "Deployment/productpage-v2", // the engine's word beats the context extension
		Notes:         []string{"context extensions derived: namespace only"},
	}
	fd := newFakeDecider(dec)
	var out syncBuffer
	t0 := time.Date(2026, 10, 1, 12, 0, 0, 123456000, time.FixedZone("CEST", 2*3600))
	clock := &stepClock{next: t0, step: 37 * time.Microsecond}
	r := start(t, Config{Decider: fd, DecisionLog: &out, Now: clock.Now, DenyBodyDetails: true}, ListenConfig{})

	path := "/api/v1/products?access_token=SECRET-QUERY&page=2#frag"
	if _, err := r.client.Check(context.Background(), checkRequest("POST", path, secretHeaders)); err != nil {
		t.Fatal(err)
	}
	fd.set(nil, errEngine)
	if _, err := r.client.Check(context.Background(), checkRequest("GET", "/productpage", nil)); err != nil {
		t.Fatal(err)
	}
	fd.set(&engine.Decision{Allowed: true, Status: 200, Reason: "allowed", Policy: "default/viewer", PolicyVersion: 42}, nil)
	if _, err := r.client.Check(context.Background(), checkRequest("GET", "/productpage", nil)); err != nil {
		t.Fatal(err)
	}

	text := out.String()
	if strings.Contains(text, "SECRET") {
		t.Errorf("decision log leaks a masked value:\n%s", text)
	}
	lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	if len(lines) != 3 {
		t.Fatalf("%d lines, want 3:\n%s", len(lines), text)
	}
	var got []map[string]any
	for _, l := range lines {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("line is not JSON: %v\n%s", err, l)
		}
		got = append(got, m)
	}

	want := map[string]any{
		"time":                  "2026-10-01T10:00:00.123456Z",
		"request_id":            "6f1c2b1e-9a4e-4b7e-8a51-1d2c3b4a5f60",
		"b3_trace_id":           "80f198ee56343ba864fe8b2a57d3eff7",
		"b3_span_id":            "e457b5a2e4d86bd1",
		"traceparent":           "00-80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-01",
		"source_address":        "10.0.0.7",
		"source_principal":      "spiffe://cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account",
		"destination_principal": "spiffe://cluster.local/ns/default/sa/bookinfo-productpage",
		"destination_workload":  "Deployment/productpage-v2",
		"method":                "POST",
		"host":                  "productpage:9080",
		"path":                  "/api/v1/products?access_token=[masked]&page=2#frag",
		"decision":              "deny",
		"status":                float64(403),
		"reason":                "denied",
		"policy":                "default/deny-post",
		"kind":                  "AuthorizationPolicy",
		"rule":                  float64(2),
		"dry_run":               []any{map[string]any{"policy": "default/new", "kind": "AuthorizationPolicy", "rule": float64(0), "action": "ALLOW"}},
		"audit":                 []any{map[string]any{"policy": "default/audit-all", "rule": float64(3)}},
		"notes":                 []any{"context extensions derived: namespace only"},
		"policy_version":        float64(42),
		"latency_ns":            float64(37000),
		"headers": map[string]any{
			":authority":          "productpage:9080",
			":method":             "POST",
			":path":               "/api/v1/products?access_token=[masked]&page=2#frag",
			"user-agent":          "curl/8.5.0",
			"authorization":       "[masked]",
			"cookie":              "[masked]",
			"proxy-authorization": "[masked]",
			"x-api-key":           "[masked]",
			"x-request-id":        "6f1c2b1e-9a4e-4b7e-8a51-1d2c3b4a5f60",
			"x-b3-traceid":        "80f198ee56343ba864fe8b2a57d3eff7",
			"x-b3-spanid":         "e457b5a2e4d86bd1",
			"traceparent":         "00-80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-01",
		},
	}
	assertJSONEqual(t, "deny line", got[0], want)

	// The engine failed: the line says so and why, and what was answered.
	e := got[1]
	for k, v := range map[string]any{"decision": "error", "status": float64(403), "reason": "error", "request_id": "1234567890",
		"destination_workload": "Deployment/productpage-v1"} {
		if e[k] != v {
			t.Errorf("error line %s = %v, want %v", k, e[k], v)
		}
	}
	if s, _ := e["error"].(string); !strings.Contains(s, "eval_conflict_error") {
		t.Errorf("error line error = %v", e["error"])
	}
	for _, k := range []string{"policy", "policy_version", "b3_trace_id"} {
		if _, ok := e[k]; ok {
			t.Errorf("error line has %s", k)
		}
	}
	if got[2]["decision"] != "allow" || got[2]["status"] != float64(200) || got[2]["policy"] != "default/viewer" {
		t.Errorf("allow line %v", got[2])
	}
	// Keys in a stable order: identical requests give identical lines.
	if !strings.Contains(lines[0], `"headers":{":authority":"productpage:9080",":method":"POST",":path":`) {
		t.Errorf("headers not sorted: %s", lines[0])
	}
}

func assertJSONEqual(t *testing.T, what string, got, want map[string]any) {
	t.Helper()
	g, _ := json.Marshal(got)
	w, _ := json.Marshal(want)
	if string(g) != string(w) {
		t.Errorf("%s:\n got %s\nwant %s", what, g, w)
	}
}

func TestDecisionLogCustomMaskWithFakeDecider(t *testing.T) {
	fd := newFakeDecider(&engine.Decision{Allowed: true, Status: 200})
	var out syncBuffer
	r := start(t, Config{
		Decider: fd, DecisionLog: &out,
		MaskHeaders:     []string{"X-Tenant-Secret"}, // any case: Envoy lower-cases names
		MaskQueryParams: []string{},
	}, ListenConfig{})
	h := map[string]string{"x-tenant-secret": "SECRET", "authorization": "Bearer visible"}
	if _, err := r.client.Check(context.Background(), checkRequest("GET", "/p?access_token=visible", h)); err != nil {
		t.Fatal(err)
	}
	var m struct {
		Path    string            `json:"path"`
		Headers map[string]string `json:"headers"`
	}
	if err := json.Unmarshal([]byte(out.String()), &m); err != nil {
		t.Fatal(err)
	}
	if m.Headers["x-tenant-secret"] != "[masked]" || m.Headers["authorization"] != "Bearer visible" || m.Path != "/p?access_token=visible" {
		t.Errorf("an explicit mask replaces the defaults: got %+v", m)
	}
}

func TestDecisionLogReadsRawHeaderMap(t *testing.T) {
	// Envoy's encode_raw_headers sends header_map instead of headers.
	req := checkRequest("GET", "/x", nil)
	req.Attributes.Request.Http.Headers = nil
	req.Attributes.Request.Http.HeaderMap = &corev3.HeaderMap{Headers: []*corev3.HeaderValue{
		{Key: ":path", RawValue: []byte("/x?access_token=SECRET")},
		{Key: "authorization", RawValue: []byte("Bearer SECRET")},
		{Key: "x-request-id", RawValue: []byte("rid-1")},
	}}
	l := newDecisionLog(io.Discard, DefaultMaskHeaders, DefaultMaskQueryParams, nil, nil)
	line, _ := l.appendLine(nil, &logEntry{req: req, dec: &engine.Decision{Allowed: true, Status: 200}, status: 200}, nil)
	var m struct {
		RequestID string            `json:"request_id"`
		Headers   map[string]string `json:"headers"`
	}
	if err := json.Unmarshal(line, &m); err != nil {
		t.Fatalf("%v: %s", err, line)
	}
	if m.RequestID != "rid-1" || m.Headers["authorization"] != "[masked]" || m.Headers[":path"] != "/x?access_token=[masked]" {
		t.Errorf("got %+v", m)
	}
}

func TestMaskQuery(t *testing.T) {
	l := newDecisionLog(io.Discard, nil, []string{"access_token", "sig"}, nil, nil)
	for in, want := range map[string]string{
		"/a":                               "/a",
		"/a?":                              "/a?",
		"/a?b=1":                           "/a?b=1",
		"/a?access_token=x":                "/a?access_token=[masked]",
		"/a?b=1&access_token=x&c=3":        "/a?b=1&access_token=[masked]&c=3",
		"/a?access_token=x&sig=y#f":        "/a?access_token=[masked]&sig=[masked]#f",
		"/a?my_access_token=x":             "/a?my_access_token=x",
		"/a?access_token":                  "/a?access_token",
		"/a?access_token=x&access_token=y": "/a?access_token=[masked]&access_token=[masked]",
	} {
		b := l.appendPath(nil, in)
		var got string
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatalf("%s: %v", b, err)
		}
		if got != want {
			t.Errorf("mask(%q) = %q, want %q", in, got, want)
		}
	}
}

// appendJSONString must decode to what encoding/json's encoding decodes
// to: the same string, each invalid UTF-8 byte replaced by U+FFFD.
func TestAppendJSONStringMatchesEncodingJSON(t *testing.T) {
	for _, s := range []string{"", "plain", `q"uote`, `back\slash`, "nl\nr\rt\t", "\x00\x01\x1f\x7f", "ünï€😀", "bad\xffutf8\xc3", "<&>", "\u2028"} {
		checkJSONString(t, s)
	}
}

func checkJSONString(t *testing.T, s string) {
	t.Helper()
	b := appendJSONString(nil, s)
	var back string
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatalf("%q encodes to invalid JSON %s: %v", s, b, err)
	}
	ref, _ := json.Marshal(s)
	var refBack string
	_ = json.Unmarshal(ref, &refBack)
	if back != refBack {
		t.Fatalf("%q round-trips to %q, encoding/json gives %q", s, back, refBack)
	}
}

func FuzzAppendJSONString(f *testing.F) {
	for _, s := range []string{"", "a", `"\`, "\x00\n", "\xff", "€", "\xed\xa0\x80"} {
		f.Add(s)
	}
	f.Fuzz(checkJSONString)
}

func TestAppendAny(t *testing.T) {
	v := map[string]any{
		"s": "x", "b": true, "n": nil, "i": 3, "i64": int64(-4), "f": 1.5, "fi": float64(7),
		"num": json.Number("12"), "l": []any{"a", float64(1), map[string]any{"k": "v"}},
		"other": []string{"via", "encoding/json"},
	}
	b := appendAny(nil, v)
	var got, want map[string]any
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	ref, _ := json.Marshal(v)
	_ = json.Unmarshal(ref, &want)
	assertJSONEqual(t, "appendAny", got, want)
}

// The writer must see whole lines, never interleaved, however many Checks
// write at once; lines from concurrent Checks are batched.
func TestLineWriterConcurrentLinesStayWhole(t *testing.T) {
	var w countingWriter
	lw := &lineWriter{w: &w, max: 1 << 20, onErr: func(error) { t.Error("write error") }, onDrop: func() { t.Error("dropped") }}
	const goroutines, per = 8, 500
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			line := []byte(strings.Repeat(string(rune('a'+g)), 100) + "\n")
			for range per {
				lw.writeLine(line)
			}
		}()
	}
	wg.Wait()
	lines := strings.Split(strings.TrimSuffix(w.buf.String(), "\n"), "\n")
	if len(lines) != goroutines*per {
		t.Fatalf("%d lines, want %d", len(lines), goroutines*per)
	}
	for _, l := range lines {
		if len(l) != 100 || strings.Count(l, l[:1]) != 100 {
			t.Fatalf("torn line %q", l)
		}
	}
	t.Logf("%d lines in %d writes", len(lines), w.writes)
}

type countingWriter struct {
	mu     sync.Mutex
	buf    strings.Builder
	writes int
}

func (c *countingWriter) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.writes++
	return c.buf.Write(p)
}

// A writer that blocks holds up one Check; the others return, and once
// the pending buffer is full their lines are dropped and counted.
func TestLineWriterDropsWhenWriterIsStuck(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	bw := &blockingWriter{entered: entered, release: release}
	var drops int
	lw := &lineWriter{w: bw, max: 10, onErr: func(error) {}, onDrop: func() { drops++ }}

	done := make(chan struct{})
	go func() {
		lw.writeLine([]byte("first\n")) // becomes the writer and blocks
		close(done)
	}()
	<-entered
	lw.writeLine([]byte("0123\n")) // pending: 5 bytes
	lw.writeLine([]byte("4567\n")) // pending: 10 bytes
	lw.writeLine([]byte("8\n"))    // over max: dropped
	if drops != 1 {
		t.Fatalf("drops = %d, want 1", drops)
	}
	close(release)
	<-done
	if got := bw.buf.String(); got != "first\n0123\n4567\n" {
		t.Errorf("written %q", got)
	}
}

type blockingWriter struct {
	entered chan struct{}
	release chan struct{}
	once    sync.Once
	buf     strings.Builder
}

func (b *blockingWriter) Write(p []byte) (int, error) {
	b.once.Do(func() { close(b.entered); <-b.release })
	return b.buf.Write(p)
}

func TestDecisionLogWriteErrorsAreCountedWithFakeDecider(t *testing.T) {
	reg := prometheus.NewRegistry()
	r := start(t, Config{Decider: newFakeDecider(&engine.Decision{Allowed: true, Status: 200}), Metrics: reg,
		DecisionLog: failingWriter{}}, ListenConfig{})
	for range 3 {
		resp, err := r.client.Check(context.Background(), checkRequest("GET", "/", nil))
		if err != nil || resp.GetOkResponse() == nil {
			t.Fatalf("a failing decision log must not change the decision: %v %v", resp, err)
		}
	}
	if v, _ := metricValue(t, reg, "garrison_authz_decision_log_write_failures_total", nil); v != 3 {
		t.Errorf("write failures = %v, want 3", v)
	}
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestDecisionLogLineAllocatesNothing(t *testing.T) {
	l := newDecisionLog(io.Discard, DefaultMaskHeaders, DefaultMaskQueryParams, nil, nil)
	req := checkRequest("GET", "/productpage?x=1", secretHeaders)
	e := &logEntry{start: time.Now(), took: time.Microsecond, req: req, status: 200,
		dec: &engine.Decision{Allowed: true, Status: 200, Reason: "allowed", Policy: "default/viewer", PolicyVersion: 3}}
	buf, hs := make([]byte, 0, 4096), make([]header, 0, 32)
	if n := testing.AllocsPerRun(100, func() { buf, hs = l.appendLine(buf[:0], e, hs[:0]) }); n != 0 {
		t.Errorf("appendLine allocates %v times per line, want 0", n)
	}
}
