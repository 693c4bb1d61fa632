package jwt

import (
	"context"
	"hash/maphash"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/garrison-mesh/garrison/policies"
)

// Authenticator verifies end-user JWTs for every workload of the mesh.
// Authenticate is safe for concurrent use, and with Update.
type Authenticator struct {
	cfg          Config
	log          *slog.Logger
	metrics      *metrics
	clockSkew    time.Duration
	maxTokenSize int
	seed         maphash.Seed

	state atomic.Pointer[state]

	mu       sync.Mutex // serializes Update and Close
	fetchers map[string]*fetcher
	closed   bool
}

// New returns an Authenticator with no configuration: Authenticate fails
// with ErrNoSnapshot until the first Update.
func New(cfg Config) (*Authenticator, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	m, err := newMetrics(cfg.Metrics)
	if err != nil {
		return nil, err
	}
	return &Authenticator{
		cfg: cfg, log: cfg.Logger, metrics: m,
		clockSkew: cfg.ClockSkew, maxTokenSize: cfg.MaxTokenSize,
		seed:     maphash.MakeSeed(),
		fetchers: map[string]*fetcher{},
	}, nil
}

// state is one snapshot's compiled configuration; it is immutable but for
// the cache of rule sets computed for workloads the snapshot did not list.
type state struct {
	version  uint64
	b        *builder
	byWL     map[uint64][]wlEntry
	dynMu    sync.Mutex
	dynamic  map[uint64][]wlEntry
	dynCount int
}

// wlEntry is the rule set of one workload (namespace and labels).
type wlEntry struct {
	ns     string
	labels map[string]string
	rs     *ruleSet
}

// maxDynamicEntries bounds the rule sets cached for workloads unknown to
// the snapshot (requests naming arbitrary labels must not grow memory).
const maxDynamicEntries = 4096

// Update compiles the rules of a new configuration snapshot, starts the key
// fetchers it needs and stops those it no longer needs. Requests keep using
// the previous configuration until it returns.
func (a *Authenticator) Update(snap *policies.Snapshot) {
	if snap == nil {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return
	}
	b := newBuilder(a, snap)
	st := &state{version: snap.Version(), b: b, byWL: map[uint64][]wlEntry{}, dynamic: map[uint64][]wlEntry{}}
	// Every workload the snapshot knows gets its rule set now, so that the
	// request path only looks it up.
	for _, w := range snap.Workloads() {
		h := a.workloadHash(w.Namespace, w.Labels)
		if findEntry(st.byWL[h], w.Namespace, w.Labels) != nil {
			continue
		}
		st.byWL[h] = append(st.byWL[h], wlEntry{ns: w.Namespace, labels: w.Labels, rs: b.ruleSetFor(w.Namespace, w.Labels)})
	}
	// Start what is new before requests can see it; stop what is gone
	// once they cannot.
	var started []*fetcher
	for key, f := range b.fetchers {
		if _, ok := a.fetchers[key]; !ok {
			a.fetchers[key] = f
			started = append(started, f)
		}
	}
	for _, f := range started {
		f.start()
	}
	a.state.Store(st)
	for key, f := range a.fetchers {
		if _, ok := b.fetchers[key]; !ok {
			delete(a.fetchers, key)
			f.close()
			a.metrics.forget(f.uri)
		}
	}
	a.log.Debug("JWT rules updated", "version", snap.Version(), "workloads", len(snap.Workloads()), "jwksFetchers", len(a.fetchers))
}

// Close stops every key fetcher. Authenticate keeps answering with the keys
// already fetched.
func (a *Authenticator) Close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.closed = true
	for key, f := range a.fetchers {
		f.close()
		delete(a.fetchers, key)
	}
	return nil
}

// workloadHash identifies namespace and labels whatever the map's order.
func (a *Authenticator) workloadHash(ns string, labels map[string]string) uint64 {
	h := maphash.String(a.seed, ns)
	for k, v := range labels {
		var mh maphash.Hash
		mh.SetSeed(a.seed)
		mh.WriteString(k)
		mh.WriteByte(0)
		mh.WriteString(v)
		h += mh.Sum64()
	}
	return h
}

func findEntry(es []wlEntry, ns string, labels map[string]string) *ruleSet {
	for i := range es {
		if es[i].ns == ns && maps.Equal(es[i].labels, labels) {
			return es[i].rs
		}
	}
	return nil
}

// ruleSetFor finds the rules of the request's workload.
func (a *Authenticator) ruleSetFor(st *state, ns string, labels map[string]string) *ruleSet {
	h := a.workloadHash(ns, labels)
	if rs := findEntry(st.byWL[h], ns, labels); rs != nil {
		return rs
	}
	st.dynMu.Lock()
	defer st.dynMu.Unlock()
	if rs := findEntry(st.dynamic[h], ns, labels); rs != nil {
		return rs
	}
	rs := st.b.ruleSetFor(ns, labels)
	if st.dynCount < maxDynamicEntries {
		st.dynamic[h] = append(st.dynamic[h], wlEntry{ns: ns, labels: maps.Clone(labels), rs: rs})
		st.dynCount++
	}
	return rs
}

// Authenticate verifies the tokens of one request against the rules of its
// destination workload. The error is ErrNoSnapshot before the first Update;
// every other problem is a rejection in the Result.
func (a *Authenticator) Authenticate(ctx context.Context, req Request) (*Result, error) {
	st := a.state.Load()
	if st == nil {
		return nil, ErrNoSnapshot
	}
	rs := a.ruleSetFor(st, req.Namespace, req.Labels)
	res := rs.authenticate(ctx, a, &req)
	a.metrics.byOutcome[res.Outcome].Inc()
	return res, nil
}

// isCORSPreflight is Envoy's (and Istio's authn filter's) test: such
// requests carry no credentials and bypass JWT verification.
func isCORSPreflight(req *Request) bool {
	return req.Method == "OPTIONS" && req.Headers["origin"] != "" && req.Headers["access-control-request-method"] != ""
}

// realm is Envoy's Utility::buildOriginalUri with jwt_authn's 256-byte
// limit on the path.
func realm(req *Request) string {
	path := req.Path
	if len(path) > 256 {
		path = path[:256]
	}
	scheme := req.Scheme
	if scheme == "" {
		scheme = "http"
	}
	return scheme + "://" + req.Host + path
}

// FetchStatus is the state of one jwksUri's key set.
type FetchStatus struct {
	// URI is the jwksUri, or the OpenID discovery document of an issuer
	// whose rule names no jwksUri.
	URI string
	// JWKSURI is the key set's address once fetched (the same as URI
	// without discovery).
	JWKSURI string
	// Rules are the rules that use these keys.
	Rules []RuleRef
	// Ready is true while tokens can be verified with these keys.
	Ready       bool
	Keys        int
	LastAttempt time.Time
	LastSuccess time.Time
	LastError   string
	LastErrorAt time.Time
	Fetches     uint64
	Failures    uint64
}

// Status reports every key set fetched, by URI.
func (a *Authenticator) Status() []FetchStatus {
	st := a.state.Load()
	a.mu.Lock()
	var out []FetchStatus
	for key, f := range a.fetchers {
		s := f.status()
		if st != nil {
			s.Rules = slices.Clone(st.b.fetcherRules[key])
		}
		out = append(out, s)
	}
	a.mu.Unlock()
	slices.SortFunc(out, func(x, y FetchStatus) int { return strings.Compare(x.URI, y.URI) })
	return out
}
