package policies

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"
)

// storeTestResources parses one ServiceAccount per name.
func storeTestResources(t testing.TB, names ...string) []*Resource {
	t.Helper()
	var out []*Resource
	for _, n := range names {
		rs, problems := Parse("store.yaml", fmt.Appendf(nil, "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: %s\n", n))
		if err := problems.Err(); err != nil {
			t.Fatalf("parse: %v", err)
		}
		out = append(out, rs...)
	}
	return out
}

func (s *Store) subscribers() int {
	s.subsMu.Lock()
	defer s.subsMu.Unlock()
	return len(s.subs)
}

// recv waits for the next value on ch; ok is false when ch was closed.
func recv(t *testing.T, ch <-chan *Snapshot) (snap *Snapshot, ok bool) {
	t.Helper()
	select {
	case snap, ok = <-ch:
		return snap, ok
	case <-time.After(5 * time.Second):
		t.Fatal("no snapshot within 5s")
		return nil, false
	}
}

// pending reports a value already waiting on ch without blocking.
func pending(ch <-chan *Snapshot) (*Snapshot, bool) {
	select {
	case snap, ok := <-ch:
		return snap, ok
	default:
		return nil, false
	}
}

func TestStoreVersionsAndCurrent(t *testing.T) {
	t.Parallel()
	s := NewStore(StoreConfig{})
	if s.Current() != nil || s.Ready() {
		t.Fatal("a new store must have no snapshot")
	}
	if s.opts.RootNamespace != "istio-system" || s.opts.DomainSuffix != "cluster.local" {
		t.Errorf("defaults = %+v", s.opts)
	}
	for want := uint64(1); want <= 3; want++ {
		snap, problems := s.Update(storeTestResources(t, "a"))
		if len(problems) != 0 {
			t.Fatalf("problems: %v", problems)
		}
		if snap.Version() != want || s.Current() != snap || !s.Ready() {
			t.Fatalf("update %d: version %d, current %v", want, snap.Version(), s.Current())
		}
	}
}

func TestStoreKeepsItsOwnSlice(t *testing.T) {
	t.Parallel()
	s := NewStore(StoreConfig{})
	rs := storeTestResources(t, "a", "b")
	s.Update(rs)
	rs[0] = nil
	for _, r := range s.Current().Resources() {
		if r == nil {
			t.Fatal("the caller's slice leaked into the snapshot")
		}
	}
}

func TestStoreUpdateReturnsSnapshotProblems(t *testing.T) {
	t.Parallel()
	s := NewStore(StoreConfig{})
	snap, problems := s.Update(storeTestResources(t, "a", "a"))
	if problems.Err() == nil || len(snap.Resources()) != 1 {
		t.Fatalf("duplicate not reported: %v, %d resources", problems, len(snap.Resources()))
	}
	if s.Current() != snap {
		t.Fatal("a snapshot with cross-resource problems is still published")
	}
}

func TestStoreSubscribeOrdering(t *testing.T) {
	t.Parallel()
	s := NewStore(StoreConfig{})
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()

	early := s.Subscribe(ctx)
	if _, ok := pending(early); ok {
		t.Fatal("received a snapshot before any was published")
	}
	for want := uint64(1); want <= 3; want++ {
		s.Update(nil)
		if snap, _ := recv(t, early); snap.Version() != want {
			t.Fatalf("got version %d, want %d", snap.Version(), want)
		}
	}

	late := s.Subscribe(ctx)
	if snap, _ := recv(t, late); snap.Version() != 3 {
		t.Fatalf("a late subscriber got version %d first, want the current 3", snap.Version())
	}
	s.Update(nil)
	for _, ch := range []<-chan *Snapshot{early, late} {
		if snap, _ := recv(t, ch); snap.Version() != 4 {
			t.Fatalf("got version %d, want 4", snap.Version())
		}
	}
}

func TestStoreSlowSubscriberSkipsToLatest(t *testing.T) {
	t.Parallel()
	s := NewStore(StoreConfig{})
	ch := s.Subscribe(t.Context())

	// Nobody reads while the store publishes: Update must not wait.
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 1000 {
			s.Update(nil)
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("a subscriber that does not read blocked the store")
	}

	if snap, _ := recv(t, ch); snap.Version() != 1000 {
		t.Fatalf("slow subscriber got version %d, want the latest 1000", snap.Version())
	}
	if snap, ok := pending(ch); ok {
		t.Fatalf("stale version %d delivered after the latest", snap.Version())
	}
}

func TestStoreManyConcurrentSubscribers(t *testing.T) {
	t.Parallel()
	const (
		subscribers = 50
		updaters    = 4
		updates     = 100
		last        = updaters * updates
	)
	s := NewStore(StoreConfig{})
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()

	var wg sync.WaitGroup
	errs := make(chan error, subscribers)
	for i := range subscribers {
		ch := s.Subscribe(ctx)
		wg.Go(func() {
			var seen uint64
			for snap := range ch {
				if snap.Version() <= seen {
					errs <- fmt.Errorf("subscriber %d: version %d after %d", i, snap.Version(), seen)
					return
				}
				seen = snap.Version()
				if i%3 == 0 {
					runtime.Gosched() // some readers lag behind
				}
				if seen == last {
					return
				}
			}
			errs <- fmt.Errorf("subscriber %d: channel closed at version %d", i, seen)
		})
	}
	var uwg sync.WaitGroup
	for range updaters {
		uwg.Go(func() {
			for range updates {
				s.Update(nil)
			}
		})
	}
	uwg.Wait()

	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()
	select {
	case <-finished:
	case <-time.After(10 * time.Second):
		t.Fatal("not every subscriber reached the last version")
	}
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := s.Current().Version(); got != last {
		t.Errorf("current version %d, want %d", got, last)
	}
}

// Not parallel: it counts goroutines, which parallel tests would disturb.
func TestStoreUnsubscribeOnCancel(t *testing.T) {
	s := NewStore(StoreConfig{})
	s.Update(nil)
	before := runtime.NumGoroutine()

	const n = 100
	cancels := make([]context.CancelFunc, n)
	chans := make([]<-chan *Snapshot, n)
	for i := range n {
		var ctx context.Context
		ctx, cancels[i] = context.WithCancel(t.Context())
		chans[i] = s.Subscribe(ctx)
	}
	if got := s.subscribers(); got != n {
		t.Fatalf("%d subscribers registered, want %d", got, n)
	}
	if now := runtime.NumGoroutine(); now > before {
		t.Errorf("subscriptions started %d goroutines", now-before)
	}
	s.Update(nil)
	for _, c := range cancels {
		c()
	}
	for _, ch := range chans {
		// The close happens asynchronously after cancel, so the snapshot
		// published just before may or may not still be read.
		for {
			if _, ok := recv(t, ch); !ok {
				break
			}
		}
	}
	if got := s.subscribers(); got != 0 {
		t.Fatalf("%d subscribers left after cancel", got)
	}
	s.Update(nil) // must not send on a closed channel

	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			t.Fatalf("goroutines: %d before, %d after unsubscribing", before, runtime.NumGoroutine())
		}
		runtime.Gosched()
	}
}

func TestStoreSubscribeWithDoneContext(t *testing.T) {
	t.Parallel()
	s := NewStore(StoreConfig{})
	s.Update(nil)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, ok := recv(t, s.Subscribe(ctx)); ok {
		t.Fatal("a subscription with a done context must be closed at once")
	}
	if got := s.subscribers(); got != 0 {
		t.Fatalf("%d subscribers registered", got)
	}
}
