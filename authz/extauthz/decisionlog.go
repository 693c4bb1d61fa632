package extauthz

import (
	"encoding/json"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/garrison-mesh/garrison/authz/engine"
)

// The decision log is one JSON object per line, per Check:
//
//	{"time":"2026-10-01T12:00:00.000001Z","request_id":"…","b3_trace_id":"…",
//	 "b3_span_id":"…","traceparent":"…","source_address":"10.0.0.1",
//	 "source_principal":"spiffe://…","destination_principal":"spiffe://…",
//	 "destination_workload":"Deployment/productpage-v1","method":"GET",
//	 "host":"productpage:9080","path":"/api?access_token=[masked]",
//	 "decision":"deny","status":403,"reason":"no-allow-match",
//	 "policy":"default/viewer","kind":"AuthorizationPolicy","rule":0,
//	 "custom_provider":"…","custom_policy":"…","dry_run":[…],"audit":[…],
//	 "rbac_permissive":[…],"notes":["…"],"policy_version":7,"latency_ns":41000,"error":"…",
//	 "headers":{":authority":"…","authorization":"[masked]",…}}
//
// Empty fields are left out. FIELD-NOTES measured decision logs tripling
// opa-envoy-plugin's cost per Check; the two costs there are building a
// generic map and encoding it by reflection, and a write per line. So the
// line is appended field by field into a pooled buffer (no maps, no
// reflection except for the rare dry-run/audit entries of unknown shape),
// and lines are written in batches (lineWriter).

// maskedValue replaces the value of a masked header or query parameter.
const maskedValue = "[masked]"

// maxPooledLine is the largest line buffer kept for reuse; a request with
// huge headers should not pin that much memory per pooled buffer.
const maxPooledLine = 64 << 10

// maxPendingLog bounds the bytes waiting for a slow writer. Beyond it lines
// are dropped (and counted) rather than held in memory or blocking Checks.
const maxPendingLog = 4 << 20

type logEntry struct {
	start  time.Time
	took   time.Duration
	req    *authv3.CheckRequest
	dec    *engine.Decision // nil when err != nil
	err    error
	out    outcome
	status int
}

type decisionLog struct {
	// maskHeaders is a slice, not a map: a handful of names compared by
	// length first beats hashing every header name of every request.
	maskHeaders []string
	maskQuery   []string
	w           *lineWriter
	pool        sync.Pool // *lineBuf
}

type lineBuf struct {
	b       []byte
	headers []header
}

type header struct{ k, v string }

func newDecisionLog(w io.Writer, maskHeaders, maskQuery []string, onErr func(error), onDrop func()) *decisionLog {
	l := &decisionLog{
		w: &lineWriter{w: w, max: maxPendingLog, onErr: onErr, onDrop: onDrop},
	}
	// Envoy sends header names lower-cased.
	for _, h := range maskHeaders {
		if h = strings.ToLower(h); h != "" && !slices.Contains(l.maskHeaders, h) {
			l.maskHeaders = append(l.maskHeaders, h)
		}
	}
	for _, q := range maskQuery {
		if q != "" {
			l.maskQuery = append(l.maskQuery, q)
		}
	}
	l.pool.New = func() any { return &lineBuf{b: make([]byte, 0, 2048), headers: make([]header, 0, 32)} }
	return l
}

func (l *decisionLog) record(e logEntry) {
	lb := l.pool.Get().(*lineBuf)
	lb.b, lb.headers = l.appendLine(lb.b[:0], &e, lb.headers[:0])
	l.w.writeLine(lb.b)
	if cap(lb.b) <= maxPooledLine {
		clear(lb.headers) // drop references to the request's strings
		l.pool.Put(lb)
	}
}

// headerView reads request headers from whichever form Envoy sent: the
// headers map, or header_map when the filter sets encode_raw_headers.
type headerView struct {
	m    map[string]string
	list []*corev3.HeaderValue
}

func (h headerView) get(name string) string {
	if h.m != nil {
		return h.m[name]
	}
	for _, hv := range h.list {
		if hv.GetKey() == name {
			return headerValue(hv)
		}
	}
	return ""
}

func headerValue(hv *corev3.HeaderValue) string {
	if v := hv.GetValue(); v != "" {
		return v
	}
	return string(hv.GetRawValue())
}

// appendLine appends e's line, newline included, to b. hs is scratch
// space for sorting headers, returned for reuse.
func (l *decisionLog) appendLine(b []byte, e *logEntry, hs []header) ([]byte, []header) {
	attrs := e.req.GetAttributes()
	http := attrs.GetRequest().GetHttp()
	hv := headerView{m: http.GetHeaders()}
	if len(hv.m) == 0 {
		hv = headerView{list: http.GetHeaderMap().GetHeaders()}
	}

	b = append(b, `{"time":"`...)
	b = e.start.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, '"')

	reqID := hv.get("x-request-id")
	if reqID == "" {
		reqID = http.GetId()
	}
	b = appendStringField(b, "request_id", reqID)
	b = appendStringField(b, "b3_trace_id", hv.get("x-b3-traceid"))
	b = appendStringField(b, "b3_span_id", hv.get("x-b3-spanid"))
	b = appendStringField(b, "traceparent", hv.get("traceparent"))
	b = appendStringField(b, "source_address", attrs.GetSource().GetAddress().GetSocketAddress().GetAddress())
	b = appendStringField(b, "source_principal", attrs.GetSource().GetPrincipal())
	b = appendStringField(b, "destination_principal", attrs.GetDestination().GetPrincipal())
	// The engine knows the workload even when it derived it from the
	// destination principal; the context extension is the fallback.
	workload := attrs.GetContextExtensions()["garrison.io/workload"]
	if e.dec != nil && e.dec.Workload != "" {
		workload = e.dec.Workload
	}
	b = appendStringField(b, "destination_workload", workload)
	b = appendStringField(b, "method", http.GetMethod())
	b = appendStringField(b, "host", http.GetHost())
	if p := http.GetPath(); p != "" {
		b = append(b, `,"path":`...)
		b = l.appendPath(b, p)
	}

	b = appendStringField(b, "decision", e.out.String())
	b = append(b, `,"status":`...)
	b = strconv.AppendInt(b, int64(e.status), 10)
	if d := e.dec; d != nil {
		b = appendStringField(b, "reason", d.Reason)
		if d.Policy != "" {
			b = appendStringField(b, "policy", d.Policy)
			b = appendStringField(b, "kind", d.Kind)
			b = append(b, `,"rule":`...)
			b = strconv.AppendInt(b, int64(d.Rule), 10)
		}
		if a := d.Authn; a != nil {
			b = appendStringField(b, "authn", a.Outcome)
			b = appendStringField(b, "request_principal", a.Principal)
			b = appendStringField(b, "authn_rule", a.Rule)
			b = appendStringField(b, "authn_reason", a.Reason)
		}
		if d.Custom != nil {
			b = appendStringField(b, "custom_provider", d.Custom.Provider)
			b = appendStringField(b, "custom_policy", d.Custom.Policy)
		}
		b = appendEntries(b, "dry_run", d.DryRun)
		b = appendEntries(b, "audit", d.Audit)
		b = appendEntries(b, "rbac_permissive", d.RBACPermissive)
		if len(d.Notes) > 0 {
			b = append(b, `,"notes":[`...)
			for i, n := range d.Notes {
				if i > 0 {
					b = append(b, ',')
				}
				b = appendJSONString(b, n)
			}
			b = append(b, ']')
		}
		b = append(b, `,"policy_version":`...)
		b = strconv.AppendUint(b, d.PolicyVersion, 10)
	} else {
		b = appendStringField(b, "reason", "error")
	}
	b = append(b, `,"latency_ns":`...)
	b = strconv.AppendInt(b, int64(e.took), 10)
	if e.err != nil {
		b = appendStringField(b, "error", e.err.Error())
	}

	b = append(b, `,"headers":{`...)
	if hv.m != nil {
		for k, v := range hv.m {
			hs = append(hs, header{k, v})
		}
		// Sorted, so that lines of identical requests are identical.
		slices.SortFunc(hs, func(a, b header) int { return strings.Compare(a.k, b.k) })
		for i, h := range hs {
			b = l.appendHeader(b, i, h.k, h.v)
		}
	} else {
		for i, h := range hv.list {
			b = l.appendHeader(b, i, h.GetKey(), headerValue(h))
		}
	}
	b = append(b, "}}\n"...)
	return b, hs
}

func (l *decisionLog) appendHeader(b []byte, i int, k, v string) []byte {
	if i > 0 {
		b = append(b, ',')
	}
	b = appendJSONString(b, k)
	b = append(b, ':')
	switch {
	case l.masked(k):
		return appendJSONString(b, maskedValue)
	case k == ":path" || k == "x-envoy-original-path":
		return l.appendPath(b, v)
	default:
		return appendJSONString(b, v)
	}
}

func (l *decisionLog) masked(name string) bool {
	for _, m := range l.maskHeaders {
		if len(m) == len(name) && m == name {
			return true
		}
	}
	return false
}

// appendPath appends path as a JSON string with the values of masked query
// parameters replaced.
func (l *decisionLog) appendPath(b []byte, path string) []byte {
	q := strings.IndexByte(path, '?')
	if q < 0 || len(l.maskQuery) == 0 || !l.mentionsMaskedParam(path[q+1:]) {
		return appendJSONString(b, path)
	}
	var sb strings.Builder
	sb.Grow(len(path))
	sb.WriteString(path[:q+1])
	query, frag := path[q+1:], ""
	if f := strings.IndexByte(query, '#'); f >= 0 {
		query, frag = query[:f], query[f:]
	}
	for i, param := range strings.Split(query, "&") {
		if i > 0 {
			sb.WriteByte('&')
		}
		name, _, hasValue := strings.Cut(param, "=")
		if hasValue && slices.Contains(l.maskQuery, name) {
			sb.WriteString(name)
			sb.WriteString("=" + maskedValue)
			continue
		}
		sb.WriteString(param)
	}
	sb.WriteString(frag)
	return appendJSONString(b, sb.String())
}

// mentionsMaskedParam is a cheap pre-check so that the common path, with
// no masked parameter, allocates nothing.
func (l *decisionLog) mentionsMaskedParam(query string) bool {
	for _, name := range l.maskQuery {
		if strings.Contains(query, name) {
			return true
		}
	}
	return false
}

// appendStringField appends ,"key":"value" unless value is empty. key must
// need no escaping.
func appendStringField(b []byte, key, value string) []byte {
	if value == "" {
		return b
	}
	b = append(b, ',', '"')
	b = append(b, key...)
	b = append(b, '"', ':')
	return appendJSONString(b, value)
}

// appendEntries appends ,"key":[...] for the decision's dry-run, audit or
// permissive-RBAC entries, unless there are none.
func appendEntries(b []byte, key string, entries []map[string]any) []byte {
	if len(entries) == 0 {
		return b
	}
	b = append(b, ',', '"')
	b = append(b, key...)
	b = append(b, `":[`...)
	for i, e := range entries {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendAny(b, e)
	}
	return append(b, ']')
}

// appendAny encodes the JSON-shaped values OPA results decode to; anything
// else goes through encoding/json.
func appendAny(b []byte, v any) []byte {
	switch v := v.(type) {
	case nil:
		return append(b, "null"...)
	case string:
		return appendJSONString(b, v)
	case bool:
		return strconv.AppendBool(b, v)
	case int:
		return strconv.AppendInt(b, int64(v), 10)
	case int64:
		return strconv.AppendInt(b, v, 10)
	case float64:
		if math.IsInf(v, 0) || math.IsNaN(v) {
			return append(b, "null"...)
		}
		if v == math.Trunc(v) && math.Abs(v) < 1e15 {
			return strconv.AppendInt(b, int64(v), 10)
		}
		return strconv.AppendFloat(b, v, 'g', -1, 64)
	case json.Number:
		return append(b, v...)
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		b = append(b, '{')
		for i, k := range keys {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, k)
			b = append(b, ':')
			b = appendAny(b, v[k])
		}
		return append(b, '}')
	case []any:
		b = append(b, '[')
		for i, x := range v {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendAny(b, x)
		}
		return append(b, ']')
	default:
		raw, err := json.Marshal(v)
		if err != nil {
			return appendJSONString(b, "!"+err.Error())
		}
		return append(b, raw...)
	}
}

const hexDigits = "0123456789abcdef"

// jsonSafe marks the ASCII bytes a JSON string holds unescaped.
var jsonSafe = func() (t [utf8.RuneSelf]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// appendJSONString appends s as a JSON string: quotes, backslashes and
// control characters escaped, invalid UTF-8 replaced by U+FFFD, as
// encoding/json does (without its HTML escaping, which logs do not need).
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if jsonSafe[c] {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i++
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// lineWriter serialises lines to w and batches them: whoever finds no
// write in progress becomes the writer and keeps writing until nothing is
// pending, while lines from concurrent Checks are appended to the pending
// buffer and their Checks return at once. Alone, each line is one write;
// under load, one write carries many lines, which is where per-line
// writes cost most. No goroutine or timer is needed, and no line waits
// for a flush that might never come.
//
// A writer that blocks holds up the one Check that is writing; the others
// keep going until maxPendingLog bytes are waiting, after which lines are
// dropped and counted.
type lineWriter struct {
	w      io.Writer
	max    int
	onErr  func(error)
	onDrop func()

	mu       sync.Mutex
	pending  []byte
	spare    []byte
	flushing bool
}

func (lw *lineWriter) writeLine(line []byte) {
	lw.mu.Lock()
	if len(lw.pending)+len(line) > lw.max {
		lw.mu.Unlock()
		lw.onDrop()
		return
	}
	lw.pending = append(lw.pending, line...)
	if lw.flushing {
		lw.mu.Unlock()
		return
	}
	lw.flushing = true
	for len(lw.pending) > 0 {
		out := lw.pending
		lw.pending = lw.spare[:0]
		lw.mu.Unlock()
		_, err := lw.w.Write(out)
		if err != nil {
			lw.onErr(err)
		}
		lw.mu.Lock()
		lw.spare = out
	}
	lw.flushing = false
	lw.mu.Unlock()
}
