package file

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/garrison-mesh/garrison/policies"
)

// fileState is what the source knows about one configuration file: its
// content as last read, and what it contributes to the snapshot, which is
// not the same thing while the file is invalid.
type fileState struct {
	sum  [sha256.Size]byte
	read bool // sum is meaningful; false after a read error so the next event re-reads

	// parsed and problems describe the content on disk.
	parsed   []*policies.Resource
	problems policies.Problems

	// data is the content on disk, kept until it is accepted or replaced.
	data []byte

	// accepted is true when served is parsed. served is the content the
	// file had when last accepted, and everGood says there was one.
	accepted bool
	served   []*policies.Resource
	everGood bool

	// conflicts keep an otherwise valid content out because another file
	// already defines some of its resources. Such a file is retried on
	// every rebuild, since the fix may be made in the other file.
	conflicts policies.Problems
	// since is when the content on disk stopped being served.
	since time.Time
}

func (f *fileState) valid() bool { return f.problems.Err() == nil }

// allProblems is why the file is not served (plus its warnings).
func (f *fileState) allProblems() policies.Problems {
	return append(slices.Clone(f.problems), f.conflicts...)
}

// rebuild applies c to the known files, decides per file what is served,
// and publishes a new snapshot if that changed. It returns the problems of
// every file that is not served (as a policies.Problems error), or another
// error if the tree could not be read, in which case nothing changes.
func (s *Source) rebuild(c *changes, w *fsnotify.Watcher) error {
	if c.empty() {
		return nil
	}
	start := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()

	s.log.Debug("rebuilding", "full", c.full, "paths", sortedKeys(c.paths))
	present, gone, err := s.collect(c, w)
	if err != nil {
		s.lastAttempt, s.lastError = now, err.Error()
		s.log.Error("cannot read configuration; keeping the last good configuration", "err", err)
		s.metrics.reloaded(false, time.Since(start))
		s.statusMu.Lock()
		s.storeStatus()
		s.statusMu.Unlock()
		return fmt.Errorf("file source: %w", err)
	}
	s.lastError = ""

	changed, seen := map[string]bool{}, map[string]bool{}
	var toParse []pending
	for _, rel := range present {
		data, err := os.ReadFile(s.abs(rel))
		if errors.Is(err, fs.ErrNotExist) {
			gone = append(gone, rel) // removed since the walk
			continue
		}
		seen[rel] = true
		f := s.files[rel]
		if f == nil {
			f = &fileState{}
			s.files[rel] = f
		}
		if err != nil {
			f.read, f.parsed, f.accepted, f.conflicts = false, nil, false, nil
			f.problems = policies.Problems{{File: rel, Message: "cannot read file: " + err.Error(), Severity: policies.SeverityError}}
			changed[rel] = true
			continue
		}
		sum := sha256.Sum256(data)
		if f.read && sum == f.sum {
			// Touched, or rewritten identically by a checkout: parsing
			// again would only cost time.
			continue
		}
		f.sum, f.read, f.data = sum, true, data
		f.accepted, f.conflicts = false, nil
		changed[rel] = true
		toParse = append(toParse, pending{rel: rel, f: f, data: data})
	}
	parseAll(toParse)
	removed, removedServed := false, false
	for _, rel := range gone {
		f, ok := s.files[rel]
		if !ok || seen[rel] {
			continue // the file came back while we looked
		}
		delete(s.files, rel)
		removed, removedServed = true, removedServed || f.everGood
		s.log.Info("configuration file removed", "file", rel, "resources", len(f.served))
	}
	if len(changed) == 0 && !removed && s.published {
		s.log.Debug("nothing changed", "read", len(present))
		return s.invalidProblems()
	}

	if !s.published {
		s.restoreLastGood()
	}
	recovered := s.resolve(now)
	s.lastGood.save(s.log, s.files, recovered)
	if removed || !s.published {
		s.lastGood.prune(s.log, s.files)
	}

	var rejected []string
	acceptedAny := len(recovered) > 0
	for _, rel := range sortedKeys(changed) {
		f := s.files[rel]
		if !f.accepted {
			if f.since.IsZero() {
				f.since = now
			}
			rejected = append(rejected, rel)
			keeping := "nothing"
			if f.everGood {
				keeping = "last good content"
			}
			s.log.Warn("rejected configuration change", "file", rel, "serving", keeping, "problems", f.allProblems())
			continue
		}
		acceptedAny = true
		if ws := f.problems.Warnings(); len(ws) > 0 {
			s.log.Warn("configuration warnings", "file", rel, "problems", ws)
		}
	}
	for _, rel := range recovered {
		if !changed[rel] {
			s.log.Info("configuration file accepted: the conflicting definition is gone", "file", rel)
		}
	}

	s.statusMu.Lock()
	defer s.statusMu.Unlock()
	if acceptedAny || removedServed || !s.published {
		s.publish()
	}
	ok := len(rejected) == 0
	s.lastAttempt = now
	if ok {
		s.lastSuccess = now
	}
	s.metrics.reloaded(ok, time.Since(start))
	if ok {
		s.metrics.succeeded(now)
	}
	s.storeStatus()
	return s.invalidProblems()
}

// pending is a file read and waiting to be parsed.
type pending struct {
	rel  string
	f    *fileState
	data []byte
}

// parseAll parses files on one goroutine per CPU: a checkout or the first
// load of a large tree is bound by parsing, and files are independent.
func parseAll(files []pending) {
	workers := min(runtime.GOMAXPROCS(0), len(files))
	next := make(chan pending)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for p := range next {
				p.f.parsed, p.f.problems = parseFile(p.rel, p.data)
			}
		})
	}
	for _, p := range files {
		next <- p
	}
	close(next)
	wg.Wait()
}

// parseFile parses one file; a resource defined twice in it is an error.
func parseFile(rel string, data []byte) ([]*policies.Resource, policies.Problems) {
	parsed, problems := policies.Parse(rel, data)
	return parsed, append(problems, duplicatesWithin(parsed)...)
}

// collect lists the files to read and the known files that are gone.
func (s *Source) collect(c *changes, w *fsnotify.Watcher) (present, gone []string, err error) {
	// under lists the known files at or below rel.
	under := func(rel string) []string {
		var out []string
		for f := range s.files {
			if rel == "." || f == rel || strings.HasPrefix(f, rel+string(os.PathSeparator)) {
				out = append(out, f)
			}
		}
		return out
	}
	// rescan reads a directory again: known files under it that the
	// walk did not find are gone, except below unreadable directories.
	rescan := func(rel string) error {
		files, unreadable, err := s.walk(rel, w)
		if err != nil {
			return err
		}
		present = append(present, files...)
		found := map[string]bool{}
		for _, f := range files {
			found[f] = true
		}
		for _, f := range under(rel) {
			kept := slices.ContainsFunc(unreadable, func(d string) bool {
				return strings.HasPrefix(f, d+string(os.PathSeparator))
			})
			if !found[f] && !kept {
				gone = append(gone, f)
			}
		}
		return nil
	}

	if c.full {
		if err := rescan("."); err != nil {
			return nil, nil, err
		}
		return present, gone, nil
	}
	for _, rel := range sortedKeys(c.paths) {
		fi, err := os.Stat(s.abs(rel))
		switch {
		case errors.Is(err, fs.ErrNotExist):
			gone = append(gone, under(rel)...)
		case err != nil:
			// Present but unusable (a permission problem, say): a known
			// file gets the read error as its problem, and keeps being
			// served as it was.
			if _, known := s.files[rel]; known {
				present = append(present, rel)
			}
		case fi.IsDir():
			if err := rescan(rel); err != nil && !errors.Is(err, fs.ErrNotExist) {
				s.log.Warn("cannot read configuration directory; keeping what was read from it", "dir", rel, "err", err)
			}
		case fi.Mode().IsRegular() && isConfigFile(rel) && !ignored(rel):
			present = append(present, rel)
		default:
			gone = append(gone, under(rel)...)
		}
	}
	slices.Sort(present)
	present = slices.Compact(present)
	return present, gone, nil
}

// resolve accepts every valid file whose content is not served yet unless
// it collides with a resource that another file serves, and returns the
// accepted ones. A rejected file keeps serving its earlier content, which
// may in turn collide with a file accepted a moment before in path order;
// that one is then rejected too, until nothing changes. The result never
// displaces an accepted resource and holds each key once.
func (s *Source) resolve(now time.Time) []string {
	var candidates []string
	for rel, f := range s.files {
		if !f.accepted && f.valid() {
			candidates = append(candidates, rel)
		}
	}
	slices.Sort(candidates)
	in := map[string]bool{}
	for _, rel := range candidates {
		in[rel] = true
	}
	conflicts := map[string]policies.Problems{}
	for {
		owners := map[policies.Key]*policies.Resource{}
		for rel, f := range s.files {
			if !in[rel] {
				for _, r := range f.served {
					owners[r.Key()] = r
				}
			}
		}
		dropped := false
		for _, rel := range candidates {
			if !in[rel] {
				continue
			}
			f := s.files[rel]
			var probs policies.Problems
			for _, r := range f.parsed {
				if o, taken := owners[r.Key()]; taken {
					probs = append(probs, &policies.Problem{File: r.Source.File, Line: r.Source.Line, Kind: r.Kind.Kind,
						Namespace: r.Namespace, Name: r.Name, Severity: policies.SeverityError,
						Message: fmt.Sprintf("already defined at %s; this file is kept out until one of the two definitions is removed", o.Source)})
				}
			}
			if len(probs) > 0 {
				conflicts[rel] = probs
				delete(in, rel)
				dropped = true
				continue
			}
			for _, r := range f.parsed {
				owners[r.Key()] = r
			}
		}
		if !dropped {
			break
		}
	}

	var accepted []string
	for _, rel := range candidates {
		f := s.files[rel]
		if in[rel] {
			f.accepted, f.served, f.everGood, f.conflicts, f.since = true, f.parsed, true, nil, time.Time{}
			accepted = append(accepted, rel)
			continue
		}
		f.conflicts = conflicts[rel]
		if f.since.IsZero() {
			f.since = now
		}
	}
	return accepted
}

// publish hands everything served to the store.
func (s *Source) publish() {
	var all []*policies.Resource
	for _, rel := range sortedKeys(s.files) {
		all = append(all, s.files[rel].served...)
	}
	snap, problems := s.store.Update(all)
	s.published = true
	s.version = snap.Version()
	s.resources = len(snap.Resources())
	s.snapProbs = problems
	if len(problems) > 0 {
		s.log.Warn("snapshot problems across files", "version", s.version, "problems", problems)
	}
	s.log.Info("published configuration", "version", s.version, "files", len(s.files), "resources", s.resources)
	s.metrics.published(snap)
}

// invalidProblems returns the errors of every file not served, or nil.
func (s *Source) invalidProblems() error {
	var out policies.Problems
	for _, f := range s.files {
		if !f.accepted {
			out = append(out, f.allProblems().Errors()...)
		}
	}
	if len(out) == 0 {
		return nil
	}
	out.Sort()
	return out
}

// storeStatus records the state for Status and the invalid-files gauge.
// Callers hold mu and statusMu.
func (s *Source) storeStatus() {
	st := &Status{
		Dir:              s.dir,
		Version:          s.version,
		LastSuccess:      s.lastSuccess,
		LastAttempt:      s.lastAttempt,
		Files:            len(s.files),
		Resources:        s.resources,
		SnapshotProblems: values(s.snapProbs),
		Error:            s.lastError,
	}
	for _, rel := range sortedKeys(s.files) {
		f := s.files[rel]
		if f.accepted {
			st.Warnings = append(st.Warnings, values(f.problems.Warnings())...)
			continue
		}
		st.InvalidFiles = append(st.InvalidFiles, InvalidFile{File: rel, Since: f.since, KeepsLastGood: f.everGood,
			Problems: values(f.allProblems())})
	}
	s.status = st
	s.metrics.invalid(len(st.InvalidFiles))
}

// duplicatesWithin reports a resource defined twice in one file, which
// would otherwise reach the snapshot and lose one definition silently.
func duplicatesWithin(rs []*policies.Resource) policies.Problems {
	var out policies.Problems
	first := map[policies.Key]*policies.Resource{}
	for _, r := range rs {
		if f, dup := first[r.Key()]; dup {
			out = append(out, &policies.Problem{File: r.Source.File, Line: r.Source.Line, Kind: r.Kind.Kind,
				Namespace: r.Namespace, Name: r.Name, Severity: policies.SeverityError,
				Message: fmt.Sprintf("defined twice in this file, first at line %d", f.Source.Line)})
			continue
		}
		first[r.Key()] = r
	}
	return out
}

// values copies problems out, so Status shares nothing with the source.
func values(ps policies.Problems) []policies.Problem {
	if len(ps) == 0 {
		return nil
	}
	out := make([]policies.Problem, len(ps))
	for i, p := range ps {
		out[i] = *p
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
