package policies

import (
	"context"
	"io"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
)

// StoreConfig configures a Store.
type StoreConfig struct {
	// Options are applied to every snapshot; empty fields get Istio's
	// defaults.
	Options SnapshotOptions
	// Logger receives one line per published snapshot; nil discards.
	Logger *slog.Logger
}

// Store owns the version sequence of a mesh configuration: a config source
// hands it complete resource sets, and it builds, numbers and publishes the
// snapshots that the planes subscribe to. It is safe for concurrent use.
type Store struct {
	opts SnapshotOptions
	log  *slog.Logger

	// update serialises Update, so that versions are handed out in the
	// order the snapshots are published.
	update  sync.Mutex
	version uint64

	current atomic.Pointer[Snapshot]

	// subsMu guards subs and orders publishing against Subscribe, so a new
	// subscriber can neither miss a snapshot nor receive one twice.
	subsMu sync.Mutex
	subs   map[*storeSub]struct{}
}

// storeSub is one subscription. ch has room for exactly one snapshot and
// only the store sends on it: publishing replaces an unread snapshot with the
// newer one, which gives a slow reader the latest value without ever
// blocking the store and without a goroutine per subscriber.
type storeSub struct {
	ch     chan *Snapshot
	closed bool
}

// NewStore returns an empty Store: Current is nil until the first Update.
func NewStore(cfg StoreConfig) *Store {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.Options.RootNamespace == "" {
		cfg.Options.RootNamespace = DefaultRootNamespace
	}
	if cfg.Options.DomainSuffix == "" {
		cfg.Options.DomainSuffix = DefaultDomainSuffix
	}
	return &Store{opts: cfg.Options, log: cfg.Logger, subs: map[*storeSub]struct{}{}}
}

// Update builds the next snapshot from resources, publishes it to Current and
// to every subscriber, and returns it with the problems NewSnapshot found
// across resources. Those problems do not stop publication: NewSnapshot
// drops what it reports, and sources reject invalid input before it gets
// here. The store keeps its own copy of the slice; the resources themselves
// must not be modified afterwards.
func (s *Store) Update(resources []*Resource) (*Snapshot, Problems) {
	s.update.Lock()
	defer s.update.Unlock()
	s.version++
	snap, problems := NewSnapshot(s.version, slices.Clone(resources), s.opts)

	s.subsMu.Lock()
	s.current.Store(snap)
	for sub := range s.subs {
		sub.offer(snap)
	}
	n := len(s.subs)
	s.subsMu.Unlock()

	s.log.Info("published configuration snapshot", "version", snap.Version(),
		"resources", len(snap.Resources()), "problems", len(problems), "subscribers", n)
	return snap, problems
}

// Current returns the latest snapshot, or nil before the first Update.
func (s *Store) Current() *Snapshot { return s.current.Load() }

// Ready reports whether a snapshot has been published.
func (s *Store) Ready() bool { return s.current.Load() != nil }

// Subscribe returns a channel that receives the current snapshot at once,
// if there is one, and then every newer one. A reader that falls behind
// skips intermediate versions but never receives an older snapshot after a
// newer one; the store never waits for it. The channel is closed when ctx
// is done.
func (s *Store) Subscribe(ctx context.Context) <-chan *Snapshot {
	sub := &storeSub{ch: make(chan *Snapshot, 1)}
	s.subsMu.Lock()
	if ctx.Err() != nil {
		s.subsMu.Unlock()
		close(sub.ch)
		return sub.ch
	}
	if cur := s.current.Load(); cur != nil {
		sub.offer(cur)
	}
	s.subs[sub] = struct{}{}
	s.subsMu.Unlock()

	// AfterFunc starts no goroutine until ctx is done, so an idle
	// subscription costs nothing but its channel.
	context.AfterFunc(ctx, func() {
		s.subsMu.Lock()
		defer s.subsMu.Unlock()
		delete(s.subs, sub)
		sub.close()
	})
	return sub.ch
}

// offer puts snap in the subscriber's slot, replacing a snapshot the reader
// has not taken yet. Callers hold subsMu, which makes the store the only
// sender, so after the drain the send cannot block.
func (sub *storeSub) offer(snap *Snapshot) {
	if sub.closed {
		return
	}
	select {
	case <-sub.ch:
	default:
	}
	sub.ch <- snap
}

// close drops an unread snapshot before closing, so a reader that cancelled
// sees the end of the subscription rather than one more configuration.
func (sub *storeSub) close() {
	select {
	case <-sub.ch:
	default:
	}
	sub.closed = true
	close(sub.ch)
}
