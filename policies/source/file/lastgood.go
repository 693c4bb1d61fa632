package file

import (
	"github.com/garrison-mesh/garrison/internal/atomicfile"

	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
)

// lastGoodDir mirrors the configuration tree with each file's last accepted
// content. Without it, the last-good guarantee would end at a restart: a
// file broken while Garrison was down (or broken just before a crash)
// would contribute nothing, and a DENY policy it held would silently stop
// applying. An empty lastGoodDir keeps nothing.
type lastGoodDir string

// save writes the content of files just accepted. A failure is logged, not
// fatal: what is served now is unaffected, only a later restart is.
func (d lastGoodDir) save(log *slog.Logger, files map[string]*fileState, accepted []string) {
	for _, rel := range accepted {
		f := files[rel]
		data := f.data
		f.data = nil // accepted content lives in the state dir, not twice in memory
		if d == "" {
			continue
		}
		if err := writeAtomic(filepath.Join(string(d), rel), data); err != nil {
			log.Error("cannot keep the last good copy of a configuration file; a restart while it is invalid would serve nothing for it",
				"file", rel, "err", err)
		}
	}
}

// prune removes the copies of files that are gone from the tree, so that a
// file deleted while Garrison was down is not brought back.
func (d lastGoodDir) prune(log *slog.Logger, files map[string]*fileState) {
	if d == "" {
		return
	}
	root := string(d)
	err := filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return nil
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return nil
		}
		if _, known := files[rel]; !known {
			if err := os.Remove(p); err != nil {
				log.Warn("cannot remove the last good copy of a deleted file", "file", rel, "err", err)
			}
		}
		return nil
	})
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		log.Warn("cannot prune last good copies", "err", err)
	}
}

// restoreLastGood gives every file that is invalid at the first load the
// content it had when last accepted, if a copy exists and still validates.
// It runs before resolve, so restored content owns its resources exactly as
// it did before the restart.
func (s *Source) restoreLastGood() {
	if s.lastGood == "" {
		return
	}
	for _, rel := range sortedKeys(s.files) {
		f := s.files[rel]
		if f.valid() || f.everGood {
			continue
		}
		data, err := os.ReadFile(filepath.Join(string(s.lastGood), rel))
		if err != nil {
			if !errors.Is(err, fs.ErrNotExist) {
				s.log.Warn("cannot read the last good copy of an invalid file", "file", rel, "err", err)
			}
			continue
		}
		parsed, problems := parseFile(rel, data)
		if problems.Err() != nil {
			// Validation has grown stricter since it was saved.
			s.log.Warn("the last good copy of an invalid file no longer validates; the file contributes nothing",
				"file", rel, "problems", problems.Errors())
			continue
		}
		f.served, f.everGood = parsed, true
		s.log.Warn("configuration file is invalid; serving its last good content from before the restart",
			"file", rel, "problems", f.problems.Errors())
	}
}

// writeAtomic replaces path with data so that a crash leaves the old copy
// or the new one, never half of one.
func writeAtomic(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	return atomicfile.Write(path, data, 0o600)
}
