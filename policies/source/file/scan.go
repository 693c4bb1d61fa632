package file

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/fsnotify/fsnotify"
)

// changes is what a rebuild has to look at: paths relative to the root that
// may have changed (files or whole directories), or everything.
type changes struct {
	full  bool
	paths map[string]struct{}
}

func (c *changes) add(rel string) {
	if c.paths == nil {
		c.paths = map[string]struct{}{}
	}
	c.paths[rel] = struct{}{}
}

func (c *changes) empty() bool { return !c.full && len(c.paths) == 0 }

// isConfigFile reports whether a name is read as configuration.
func isConfigFile(rel string) bool {
	switch strings.ToLower(filepath.Ext(rel)) {
	case ".yaml", ".yml", ".json":
		return !IsTestFile(rel)
	}
	return false
}

// IsTestFile reports whether a name (a path or a base name) is a decision
// test file, *_test.yaml, *_test.yml or *_test.json: cases in the
// authz/cases format that `garrison policy test` runs, kept beside the
// configuration and never read as configuration.
func IsTestFile(name string) bool {
	base := strings.ToLower(filepath.Base(name))
	switch ext := filepath.Ext(base); ext {
	case ".yaml", ".yml", ".json":
		return strings.HasSuffix(strings.TrimSuffix(base, ext), "_test")
	}
	return false
}

// ignoredName reports names that are never configuration even when their
// extension says so: hidden entries (.git, an Emacs lock .#x.yaml, vim's
// .x.yaml.swp, Kubernetes' ..data) and editor backups and swap files.
func ignoredName(name string) bool {
	switch {
	case strings.HasPrefix(name, "."),
		strings.HasSuffix(name, "~"),
		strings.HasPrefix(name, "#") && strings.HasSuffix(name, "#"):
		return true
	}
	switch filepath.Ext(name) {
	case ".swp", ".swo", ".swx":
		return true
	}
	return false
}

// ignored reports whether any element of a relative path is ignored, so
// nothing inside a hidden directory is read.
func ignored(rel string) bool {
	for elem := range strings.SplitSeq(rel, string(filepath.Separator)) {
		if elem != "." && ignoredName(elem) {
			return true
		}
	}
	return false
}

// rel returns name relative to the root, and false for a path outside it.
func (s *Source) rel(name string) (string, bool) {
	r, err := filepath.Rel(s.dir, name)
	if err != nil || (r != "." && !filepath.IsLocal(r)) {
		return "", false
	}
	return r, true
}

func (s *Source) abs(rel string) string { return filepath.Join(s.dir, rel) }

// walk lists the configuration files under rel (a directory relative to
// the root), watching every directory on the way when w is set. Directories
// that cannot be read are returned apart, so that the files known under them
// are kept rather than taken for deleted. err is set only when rel itself
// cannot be read.
func (s *Source) walk(rel string, w *fsnotify.Watcher) (files, unreadable []string, err error) {
	root := s.abs(rel)
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		r, ok := s.rel(p)
		if !ok {
			return filepath.SkipDir
		}
		if err != nil {
			if p == root {
				return err
			}
			// Something vanished mid-walk, as in a git checkout: the
			// event for it is already queued.
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			s.log.Warn("cannot read configuration directory; keeping what was read from it", "dir", r, "err", err)
			unreadable = append(unreadable, r)
			return nil
		}
		if r != "." && ignoredName(d.Name()) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if d.IsDir() {
			if w != nil {
				if err := w.Add(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
					s.log.Error("cannot watch directory; its changes will be missed until the next change above it",
						"dir", r, "err", err, "hint", "raise fs.inotify.max_user_watches if the limit is reached")
				}
			}
			return nil
		}
		if !isConfigFile(r) {
			return nil
		}
		if d.Type()&fs.ModeSymlink != 0 {
			// Kubernetes mounts ConfigMap keys as links into ..data; a
			// link to a directory is not followed, to stay out of loops.
			fi, err := os.Stat(p)
			if err != nil || !fi.Mode().IsRegular() {
				return nil
			}
		} else if !d.Type().IsRegular() {
			return nil
		}
		files = append(files, r)
		return nil
	})
	return files, unreadable, err
}

// note records what an event may have changed and reports whether the
// caller should (re)start the debounce timer.
func (s *Source) note(w *fsnotify.Watcher, ev fsnotify.Event, c *changes) bool {
	rel, ok := s.rel(ev.Name)
	if !ok {
		return false
	}
	if rel == "." {
		if ev.Has(fsnotify.Remove) || ev.Has(fsnotify.Rename) {
			c.full = true // fails, is logged and keeps the last good config
			return true
		}
		return false
	}
	name := filepath.Base(rel)
	if ignored(rel) {
		// Kubernetes updates a mounted ConfigMap by swapping its hidden
		// ..data link: the visible files change without events of their
		// own, so the whole directory has to be looked at again.
		if strings.HasPrefix(name, "..") && (ev.Has(fsnotify.Create) || ev.Has(fsnotify.Rename) || ev.Has(fsnotify.Remove)) {
			c.add(filepath.Dir(rel))
			return true
		}
		return false
	}
	switch {
	case ev.Has(fsnotify.Create):
		if fi, err := os.Lstat(ev.Name); err == nil && fi.IsDir() {
			// fsnotify is not recursive: watch the new tree now, as files
			// may already be appearing in it; the rebuild reads them all.
			if _, _, err := s.walk(rel, w); err != nil && !errors.Is(err, fs.ErrNotExist) {
				s.log.Warn("cannot read new configuration directory", "dir", rel, "err", err)
			}
			c.add(rel)
			return true
		}
		if isConfigFile(rel) {
			c.add(rel)
			return true
		}
	case ev.Has(fsnotify.Remove), ev.Has(fsnotify.Rename):
		// Could be a file or a whole directory; the rebuild finds out.
		s.unwatch(w, ev.Name)
		c.add(rel)
		return true
	case ev.Has(fsnotify.Write), ev.Has(fsnotify.Chmod):
		// Chmod too: a file made readable again should come back.
		if isConfigFile(rel) {
			c.add(rel)
			return true
		}
	}
	return false
}

// unwatch drops the watches at and below a directory that was moved or
// deleted. inotify watches follow the inode, and fsnotify keeps the old
// path for the subdirectories of a moved directory: left alone, they would
// report events under the old name and make a watch on the new name a
// no-op. Dropping them first lets the Create of the new name watch the
// tree afresh.
func (s *Source) unwatch(w *fsnotify.Watcher, dir string) {
	if w == nil {
		return
	}
	prefix := dir + string(filepath.Separator)
	for _, p := range w.WatchList() {
		if p == dir || strings.HasPrefix(p, prefix) {
			// Already gone is fine: fsnotify drops a deleted directory's
			// watch by itself.
			_ = w.Remove(p)
		}
	}
}

// ConfigFiles lists, in path order, the files a Source rooted at path would
// read, so that one-shot tools (garrison validate) see exactly what serve
// does. A path naming a file is returned as given, whatever its extension.
func ConfigFiles(path string) ([]string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !fi.IsDir() {
		return []string{path}, nil
	}
	s := &Source{dir: path, log: slog.New(slog.DiscardHandler)}
	files, unreadable, err := s.walk(".", nil)
	if err != nil {
		return nil, err
	}
	if len(unreadable) > 0 {
		return nil, fmt.Errorf("cannot read %s", filepath.Join(path, unreadable[0]))
	}
	slices.Sort(files)
	for i, f := range files {
		files[i] = filepath.Join(path, f)
	}
	return files, nil
}
