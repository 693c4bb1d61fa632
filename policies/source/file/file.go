// Package file is Garrison's embedded-default config source: a directory
// tree of the Istio and Kubernetes YAML (or JSON) that users already have,
// parsed and validated by package policies and published to a Store.
//
// Source loads every *.yaml, *.yml and *.json file under the directory, then
// watches the tree with fsnotify and republishes after each burst of changes
// has settled. Hidden files and directories (.git, Kubernetes' ..data) and
// editor leftovers (*~, #*#, *.swp) are never read.
//
// A running mesh must not lose its policy because someone saved a typo, so
// changes are accepted or rejected one file at a time: a file with any error,
// or one that defines a resource another file already defines, keeps serving
// the content it last had when it was valid (or nothing, if it never was),
// while every other file's changes still go through. Fixing the file, or
// removing the other definition, lets it in without a restart. Rejections
// are logged, counted in metrics and listed by Status until they are fixed.
package file

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/garrison-mesh/garrison/policies"
)

// Updater publishes a complete set of resources as the next snapshot.
// *policies.Store is the implementation; the source asks no more of it.
type Updater interface {
	Update([]*policies.Resource) (*policies.Snapshot, policies.Problems)
}

var _ Updater = (*policies.Store)(nil)

// DefaultDebounce is how long the tree must be quiet before a rebuild: long
// enough to cover an editor's write-rename-chmod save sequence, short enough
// that a fix is served before the operator has switched windows.
const DefaultDebounce = 100 * time.Millisecond

// Config configures a Source.
type Config struct {
	// Dir is the root of the configuration tree. Required.
	Dir string
	// Store receives every new resource set. Required.
	Store Updater
	// Logger receives rejected changes and warnings; nil discards.
	Logger *slog.Logger
	// Debounce is the quiet time after the last change before a rebuild;
	// zero means DefaultDebounce.
	Debounce time.Duration
	// Metrics registers the source's metrics; nil means none are kept.
	Metrics prometheus.Registerer
	// Now stamps Status and the last-success metric; nil means time.Now.
	Now func() time.Time
	// StateDir keeps a copy of every file's last accepted content, so that
	// after a restart a file that has meanwhile become invalid still
	// serves what it served before instead of nothing. Empty disables it.
	StateDir string
}

// Source loads a configuration directory into a Store and keeps it current.
type Source struct {
	dir      string
	lastGood lastGoodDir
	store    Updater
	log      *slog.Logger
	debounce time.Duration
	now      func() time.Time
	metrics  *metrics

	running atomic.Bool

	// statusMu is held from publishing a snapshot until its Status is
	// stored, so whoever receives snapshot N from the store and asks for
	// Status sees N or later. It is not held while files are read.
	statusMu sync.Mutex
	status   *Status

	// mu serialises rebuilds (Run's loop and LoadOnce) and guards the
	// state below.
	mu          sync.Mutex
	files       map[string]*fileState // by path relative to dir
	published   bool
	version     uint64
	resources   int
	lastSuccess time.Time
	lastAttempt time.Time
	lastError   string
	snapProbs   policies.Problems
}

// New checks cfg and returns a Source that has read nothing yet.
func New(cfg Config) (*Source, error) {
	if cfg.Dir == "" {
		return nil, errors.New("file source: Dir is required")
	}
	if cfg.Store == nil {
		return nil, errors.New("file source: Store is required")
	}
	if cfg.Debounce < 0 {
		return nil, fmt.Errorf("file source: negative Debounce %s", cfg.Debounce)
	}
	if cfg.Debounce == 0 {
		cfg.Debounce = DefaultDebounce
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	// fsnotify reports events under the path that was watched; an absolute
	// root keeps those paths comparable with ours whatever the working
	// directory.
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("file source: %w", err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("file source: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("file source: %s is not a directory", dir)
	}
	s := &Source{
		dir:      dir,
		store:    cfg.Store,
		log:      cfg.Logger.With("source", "file", "dir", dir),
		debounce: cfg.Debounce,
		now:      cfg.Now,
		files:    map[string]*fileState{},
		lastGood: lastGoodDir(cfg.StateDir),
	}
	if cfg.Metrics != nil {
		if s.metrics, err = newMetrics(cfg.Metrics); err != nil {
			return nil, fmt.Errorf("file source: %w", err)
		}
	}
	s.status = &Status{Dir: dir}
	return s, nil
}

// LoadOnce reads the whole tree and publishes it, as Run does first. Files
// with errors are left out (or keep their earlier content, if this Source
// loaded them before) and everything else is published; their problems are
// returned as a policies.Problems error. Any other error means the
// directory could not be read and nothing was published.
func (s *Source) LoadOnce() error {
	return s.rebuild(&changes{full: true}, nil)
}

// Run loads the tree, publishes it, and then republishes after every change
// until ctx is done, when it closes the watcher and returns nil. Invalid
// files do not stop it; a directory unreadable at start or a failing
// watcher does. Once running, a tree that cannot be read is logged and
// reported in Status while the last good configuration stays published.
func (s *Source) Run(ctx context.Context) error {
	if !s.running.CompareAndSwap(false, true) {
		return errors.New("file source: already running")
	}
	defer s.running.Store(false)

	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("file source: %w", err)
	}
	defer w.Close()

	// The watches are added during the initial walk, before the files
	// are read, so a write that races with the load is seen as an event.
	if err := s.rebuild(&changes{full: true}, w); err != nil {
		if _, invalid := policies.AsProblems(err); !invalid {
			return err
		}
	}
	s.log.Info("watching configuration", "debounce", s.debounce)

	var (
		pending = &changes{}
		timer   = time.NewTimer(time.Hour)
		first   time.Time // when the pending burst started
	)
	timer.Stop()
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return errors.New("file source: watcher closed")
			}
			if !s.note(w, ev, pending) {
				continue
			}
		case err, ok := <-w.Errors:
			if !ok {
				return errors.New("file source: watcher closed")
			}
			if !errors.Is(err, fsnotify.ErrEventOverflow) {
				s.log.Error("watching configuration", "err", err)
				continue
			}
			// Events were lost: only a full rescan can tell what changed.
			s.log.Warn("file events overflowed; rescanning the whole tree")
			pending.full = true
		case <-timer.C:
			// Errors are logged and kept in Status; the last good
			// configuration stays published and the next change retries.
			_ = s.rebuild(pending, w)
			pending, first = &changes{}, time.Time{}
			continue
		}
		now := time.Now()
		if first.IsZero() {
			first = now
		}
		// Quiet time restarts the wait, but a tree that never stops
		// changing is still rebuilt every maxDelay.
		wait := min(s.debounce, max(first.Add(s.maxDelay()).Sub(now), 0))
		timer.Reset(wait)
	}
}

func (s *Source) maxDelay() time.Duration { return 20 * s.debounce }

// Status is what an operator needs to know about the source, ready for JSON.
type Status struct {
	// Dir is the absolute root of the tree.
	Dir string `json:"dir"`
	// Version is the snapshot version this source last published; 0 until
	// the first load.
	Version uint64 `json:"version"`
	// LastSuccess is when a rebuild last applied every change it saw.
	LastSuccess time.Time `json:"lastSuccess,omitzero"`
	// LastAttempt is when a change was last processed, accepted or not.
	LastAttempt time.Time `json:"lastAttempt,omitzero"`
	// Files counts the configuration files found, valid or not.
	Files int `json:"files"`
	// Resources counts the resources published.
	Resources int `json:"resources"`
	// InvalidFiles lists every file whose current content is not served,
	// by path.
	InvalidFiles []InvalidFile `json:"invalidFiles,omitempty"`
	// Warnings are the warnings of the served files.
	Warnings []policies.Problem `json:"warnings,omitempty"`
	// SnapshotProblems are those the Store reported across resources.
	SnapshotProblems []policies.Problem `json:"snapshotProblems,omitempty"`
	// Error is set when the last rebuild could not read the tree at all.
	Error string `json:"error,omitempty"`
}

// InvalidFile is a file whose current content was rejected.
type InvalidFile struct {
	File string `json:"file"`
	// Since is when the file stopped being served as it is on disk.
	Since time.Time `json:"since"`
	// KeepsLastGood is true when the snapshot still holds the content the
	// file had when it was last valid, false when it contributes nothing.
	KeepsLastGood bool               `json:"keepsLastGood"`
	Problems      []policies.Problem `json:"problems"`
}

// Status returns the source's state as of the last rebuild.
func (s *Source) Status() Status {
	s.statusMu.Lock()
	st := *s.status
	s.statusMu.Unlock()
	// Callers may keep and modify what they get; the stored status is
	// shared with every other caller.
	st.InvalidFiles = slices.Clone(st.InvalidFiles)
	for i := range st.InvalidFiles {
		st.InvalidFiles[i].Problems = slices.Clone(st.InvalidFiles[i].Problems)
	}
	st.Warnings = slices.Clone(st.Warnings)
	st.SnapshotProblems = slices.Clone(st.SnapshotProblems)
	return st
}
