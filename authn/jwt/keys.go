package jwt

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// keySource gives a rule its verification keys.
type keySource interface {
	// current returns the usable key set, waiting (within ctx and the fetch
	// timeout) for a first fetch in progress; without keys the status says
	// why, and the token is rejected.
	current(ctx context.Context) (*keySet, status)
	// refetch fetches the keys again for a token whose kid is unknown,
	// unless that happened less than KidRefetchInterval ago; it reports
	// whether it has a new set.
	refetch(ctx context.Context) (*keySet, bool)
}

// staticKeys are a rule's inline jwks.
type staticKeys struct {
	set *keySet
	st  status
}

func (s staticKeys) current(context.Context) (*keySet, status) { return s.set, s.st }

func (staticKeys) refetch(context.Context) (*keySet, bool) { return nil, false }

// fetcher keeps the key set of one jwksUri (or of the jwks_uri an issuer's
// OpenID discovery document names) fetched and fresh. Rules that share the
// URI share the fetcher.
type fetcher struct {
	a   *Authenticator
	uri string // jwksUri, or the discovery document URL
	// discovery: uri is an OpenID configuration naming jwks_uri.
	discovery bool
	// timeout bounds one fetch; rules sharing the URI may change it.
	timeout atomic.Int64

	state atomic.Pointer[fetchState]
	kick  chan struct{}
	stop  context.CancelFunc
	done  chan struct{}
	// lastKidRefetch is the Clock time (unix nanoseconds) of the last fetch
	// caused by an unknown kid.
	lastKidRefetch atomic.Int64

	mu sync.Mutex
	// attempted is closed (and replaced) when a fetch attempt ends.
	attempted chan struct{}
	// first is closed when the first attempt ends.
	first     chan struct{}
	firstDone bool
	stat      FetchStatus
}

// fetchState is what a fetcher last achieved.
type fetchState struct {
	set         *keySet
	fetchedAt   time.Time // Clock time of the fetch that gave set
	lastAttempt time.Time
	jwksURI     string // resolved through discovery
}

func newFetcher(a *Authenticator, uri string, discovery bool, timeout time.Duration) *fetcher {
	f := &fetcher{
		a: a, uri: uri, discovery: discovery,
		kick:      make(chan struct{}, 1),
		done:      make(chan struct{}),
		attempted: make(chan struct{}),
		first:     make(chan struct{}),
	}
	f.setTimeout(timeout)
	f.state.Store(&fetchState{})
	f.stat.URI = uri
	f.a.metrics.up.WithLabelValues(uri).Set(0)
	return f
}

func (f *fetcher) setTimeout(d time.Duration) { f.timeout.Store(int64(d)) }

func (f *fetcher) getTimeout() time.Duration { return time.Duration(f.timeout.Load()) }

func (f *fetcher) start() {
	ctx, cancel := context.WithCancel(context.Background())
	f.stop = cancel
	go f.run(ctx)
}

// close stops the fetcher and waits for its goroutine.
func (f *fetcher) close() {
	f.stop()
	<-f.done
}

func (f *fetcher) run(ctx context.Context) {
	defer close(f.done)
	// Requests still holding a stopped fetcher (the configuration changed
	// under them) must not wait for a fetch that will not come.
	defer f.release()
	var backoff time.Duration
	for {
		wait := f.a.cfg.JWKSRefresh
		if err := f.fetchOnce(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			// Istio retries a failed refresh soon, then less and less often.
			backoff = min(max(2*backoff, time.Second), wait)
			wait = backoff
		} else {
			backoff = 0
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		case <-f.kick:
			t.Stop()
		}
	}
}

func (f *fetcher) release() {
	f.mu.Lock()
	defer f.mu.Unlock()
	close(f.attempted)
	f.attempted = make(chan struct{})
	if !f.firstDone {
		f.firstDone = true
		close(f.first)
	}
}

// trigger asks for a fetch now, without waiting.
func (f *fetcher) trigger() {
	select {
	case f.kick <- struct{}{}:
	default:
	}
}

func (f *fetcher) fetchOnce(ctx context.Context) error {
	start := f.a.cfg.Clock()
	set, jwksURI, err := f.download(ctx)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	old := f.state.Load()
	next := *old
	next.lastAttempt = start
	f.mu.Lock()
	f.stat.LastAttempt = start
	f.stat.Fetches++
	if err != nil {
		f.stat.Failures++
		f.stat.LastError = err.Error()
		f.stat.LastErrorAt = start
		f.a.metrics.fetches.WithLabelValues(f.uri, "error").Inc()
		f.a.log.Warn("JWKS fetch failed; the keys of the last successful fetch are kept", "uri", f.uri, "error", err,
			"lastSuccess", f.stat.LastSuccess, "keys", len(keysOf(old.set)))
	} else {
		next.set, next.fetchedAt, next.jwksURI = set, start, jwksURI
		f.stat.LastSuccess = start
		f.stat.LastError = ""
		f.stat.Keys = len(set.keys)
		f.stat.JWKSURI = jwksURI
		f.a.metrics.fetches.WithLabelValues(f.uri, "success").Inc()
		f.a.metrics.keys.WithLabelValues(f.uri).Set(float64(len(set.keys)))
		f.a.metrics.lastSuccess.WithLabelValues(f.uri).Set(float64(start.UnixNano()) / 1e9)
	}
	f.state.Store(&next)
	f.a.metrics.up.WithLabelValues(f.uri).Set(b2f(f.usable(&next, start)))
	f.mu.Unlock()
	f.release()
	return err
}

func keysOf(s *keySet) []*publicKey {
	if s == nil {
		return nil
	}
	return s.keys
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// usable reports whether st's keys may verify tokens at now: fetched, and
// not older than MaxKeyAge.
func (f *fetcher) usable(st *fetchState, now time.Time) bool {
	return st.set != nil && now.Sub(st.fetchedAt) < f.a.cfg.MaxKeyAge
}

func (f *fetcher) current(ctx context.Context) (*keySet, status) {
	st := f.state.Load()
	if st.lastAttempt.IsZero() {
		// The first fetch is under way (rules just configured): wait for
		// it as Envoy waits for a remote JWKS, within the fetch timeout.
		f.mu.Lock()
		first := f.first
		f.mu.Unlock()
		t := time.NewTimer(f.getTimeout() + time.Second)
		select {
		case <-first:
		case <-ctx.Done():
		case <-t.C:
		}
		t.Stop()
		st = f.state.Load()
	}
	now := f.a.cfg.Clock()
	if now.Sub(st.lastAttempt) >= f.a.cfg.JWKSRefresh && !st.lastAttempt.IsZero() {
		// The background timer runs on real time; a Clock that says the
		// keys are due also gets them refreshed.
		f.trigger()
	}
	if !f.usable(st, now) {
		return nil, statusJwksFetchFail
	}
	return st.set, statusOK
}

func (f *fetcher) refetch(ctx context.Context) (*keySet, bool) {
	now := f.a.cfg.Clock().UnixNano()
	last := f.lastKidRefetch.Load()
	if last != 0 && time.Duration(now-last) < f.a.cfg.KidRefetchInterval || !f.lastKidRefetch.CompareAndSwap(last, now) {
		f.a.metrics.kidRefetch.WithLabelValues(f.uri, "rate_limited").Inc()
		return nil, false
	}
	f.a.metrics.kidRefetch.WithLabelValues(f.uri, "fetched").Inc()
	f.mu.Lock()
	attempted := f.attempted
	f.mu.Unlock()
	f.trigger()
	t := time.NewTimer(f.getTimeout() + time.Second)
	defer t.Stop()
	select {
	case <-attempted:
	case <-ctx.Done():
		return nil, false
	case <-t.C:
		return nil, false
	}
	st := f.state.Load()
	if !f.usable(st, f.a.cfg.Clock()) {
		return nil, false
	}
	return st.set, true
}

// download fetches and parses the key set, resolving jwks_uri through
// OpenID discovery first when the rule names only its issuer.
func (f *fetcher) download(ctx context.Context) (*keySet, string, error) {
	jwksURI := f.uri
	if f.discovery {
		body, err := f.get(ctx, f.uri)
		if err != nil {
			return nil, "", err
		}
		var doc struct {
			JWKSURI string `json:"jwks_uri"`
		}
		if err := json.Unmarshal(body, &doc); err != nil {
			return nil, "", fmt.Errorf("OpenID discovery document: %w", err)
		}
		if doc.JWKSURI == "" {
			return nil, "", errors.New("OpenID discovery document has no jwks_uri")
		}
		jwksURI = doc.JWKSURI
	}
	body, err := f.get(ctx, jwksURI)
	if err != nil {
		return nil, jwksURI, err
	}
	set, st, err := parseJWKS(body)
	if st != statusOK {
		return nil, jwksURI, fmt.Errorf("%s: %w", st, err)
	}
	return set, jwksURI, nil
}

func (f *fetcher) get(ctx context.Context, uri string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, f.getTimeout())
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, uri, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := f.a.cfg.HTTPClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		return nil, fmt.Errorf("GET %s: %s", uri, resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, f.a.cfg.MaxJWKSSize+1))
	if err != nil {
		return nil, err
	}
	if int64(len(body)) > f.a.cfg.MaxJWKSSize {
		return nil, fmt.Errorf("GET %s: document larger than %d bytes", uri, f.a.cfg.MaxJWKSSize)
	}
	return body, nil
}

// discoveryURL is where an issuer publishes its OpenID configuration.
func discoveryURL(issuer string) string {
	return strings.TrimSuffix(issuer, "/") + "/.well-known/openid-configuration"
}

// status reports the fetcher's state for Authenticator.Status.
func (f *fetcher) status() FetchStatus {
	f.mu.Lock()
	s := f.stat
	f.mu.Unlock()
	s.Ready = f.usable(f.state.Load(), f.a.cfg.Clock())
	return s
}
