package runner

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/garrison-mesh/garrison/authz/cases"
)

// File names inside a topic directory.
const (
	// CasesFile holds the topic's cases. The _test suffix is the convention
	// for decision tests beside policies (garrison policy test): such files
	// are never configuration.
	CasesFile = "cases_test.yaml"
	// ConfigRefFile, when present, names (relative to the topic directory)
	// the directory whose configuration the topic's cases are about, for
	// topics that test a configuration kept elsewhere (an example mesh).
	ConfigRefFile = "config.ref"
	// KnownFailuresFile, at the root of the suite, lists the cases an
	// implementation is known to fail.
	KnownFailuresFile = "known_failures.yaml"
)

// Topic is one directory of the suite: a configuration and the cases about
// it.
type Topic struct {
	// Name is the directory's path relative to the suite root, with
	// forward slashes.
	Name string
	// Dir is the topic directory.
	Dir string
	// ConfigDir is where the configuration lives: Dir, or the directory
	// config.ref names.
	ConfigDir string
	// Files are the configuration files, relative to ConfigDir, sorted.
	Files []string
	// Cases are the cases of CasesFile, in file order.
	Cases []cases.Case
}

// LoadSuite loads every topic under root: each directory that holds a
// CasesFile. Topics come sorted by name.
func LoadSuite(root string) ([]*Topic, error) {
	var dirs []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && path != root && strings.HasPrefix(d.Name(), ".") {
			return filepath.SkipDir
		}
		if !d.IsDir() && d.Name() == CasesFile {
			dirs = append(dirs, filepath.Dir(path))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(dirs) == 0 {
		return nil, fmt.Errorf("no %s under %s", CasesFile, root)
	}
	slices.Sort(dirs)
	topics := make([]*Topic, 0, len(dirs))
	for _, dir := range dirs {
		t, err := LoadTopic(dir)
		if err != nil {
			return nil, err
		}
		rel, err := filepath.Rel(root, dir)
		if err != nil {
			return nil, err
		}
		t.Name = filepath.ToSlash(rel)
		topics = append(topics, t)
	}
	return topics, nil
}

// LoadTopic loads one topic directory.
func LoadTopic(dir string) (*Topic, error) {
	t := &Topic{Name: filepath.Base(dir), Dir: dir, ConfigDir: dir}
	data, err := os.ReadFile(filepath.Join(dir, CasesFile))
	if err != nil {
		return nil, err
	}
	t.Cases, err = cases.Decode(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, CasesFile), err)
	}
	if len(t.Cases) == 0 {
		return nil, fmt.Errorf("%s: no cases", filepath.Join(dir, CasesFile))
	}
	seen := map[string]int{}
	for _, c := range t.Cases {
		if first, dup := seen[c.Name]; dup {
			return nil, fmt.Errorf("%s:%d: case %q already defined at line %d", filepath.Join(dir, CasesFile), c.Line, c.Name, first)
		}
		seen[c.Name] = c.Line
	}
	if ref, err := readConfigRef(filepath.Join(dir, ConfigRefFile)); err != nil {
		return nil, err
	} else if ref != "" {
		t.ConfigDir = filepath.Join(dir, filepath.FromSlash(ref))
	}
	t.Files, err = configFiles(t.ConfigDir)
	if err != nil {
		return nil, fmt.Errorf("topic %s: %w", dir, err)
	}
	if len(t.Files) == 0 {
		return nil, fmt.Errorf("topic %s: no configuration files in %s", dir, t.ConfigDir)
	}
	return t, nil
}

// readConfigRef returns the path a config.ref names, or "" without one.
func readConfigRef(path string) (string, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if filepath.IsAbs(line) {
			return "", fmt.Errorf("%s: the path must be relative to the topic directory, got %q", path, line)
		}
		return line, nil
	}
	return "", fmt.Errorf("%s: names no directory", path)
}

// IsConfigFile reports whether a file of a topic's configuration directory
// is configuration: YAML or JSON, not hidden, not a test file (*_test.yaml)
// and not the suite's known failures.
func IsConfigFile(name string) bool {
	base := filepath.Base(name)
	if strings.HasPrefix(base, ".") || base == KnownFailuresFile {
		return false
	}
	ext := strings.ToLower(filepath.Ext(base))
	switch ext {
	case ".yaml", ".yml", ".json":
	default:
		return false
	}
	return !strings.HasSuffix(strings.TrimSuffix(base, filepath.Ext(base)), "_test")
}

// configFiles lists the configuration files under dir, relative to it.
func configFiles(dir string) ([]string, error) {
	var files []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if path != dir && strings.HasPrefix(d.Name(), ".") {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() || !IsConfigFile(d.Name()) {
			return nil
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil {
			return err
		}
		files = append(files, rel)
		return nil
	})
	slices.Sort(files)
	return files, err
}

// Stage copies the topic's configuration files into dst (which must exist),
// keeping their relative paths, so that an implementation given dst reads
// exactly the configuration and nothing else.
func (t *Topic) Stage(dst string) error {
	for _, rel := range t.Files {
		data, err := os.ReadFile(filepath.Join(t.ConfigDir, rel))
		if err != nil {
			return err
		}
		out := filepath.Join(dst, rel)
		if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(out, data, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// Mode names how cases are run, for known failures.
type Mode string

// Modes of the suite's own tests.
const (
	ModeInProcess Mode = "in-process"
	ModeWire      Mode = "wire"
)

// KnownFailure is a case an implementation is known to decide differently
// from Istio. The suite asserts that it still fails, so that a fix is
// noticed and the entry removed.
type KnownFailure struct {
	Topic string `yaml:"topic"`
	Case  string `yaml:"case"`
	// Modes lists where the case fails; empty means every mode.
	Modes  []Mode `yaml:"modes"`
	Reason string `yaml:"reason"`
}

// WholeTopic, as the case of a known failure, says that the topic's
// configuration itself is refused, so that none of its cases can run.
const WholeTopic = "*"

// KnownFailures indexes known failures by topic and case.
type KnownFailures map[string]*KnownFailure

func knownKey(topic, name string) string { return topic + "\x00" + name }

// LoadKnownFailures reads a known failures file; a missing file is an empty
// list.
func LoadKnownFailures(path string) (KnownFailures, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return KnownFailures{}, nil
	}
	if err != nil {
		return nil, err
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var list []*KnownFailure
	if err := dec.Decode(&list); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	out := KnownFailures{}
	for _, kf := range list {
		if kf.Topic == "" || kf.Case == "" || strings.TrimSpace(kf.Reason) == "" {
			return nil, fmt.Errorf("%s: every known failure needs topic, case and reason: %+v", path, *kf)
		}
		for _, m := range kf.Modes {
			if m != ModeInProcess && m != ModeWire {
				return nil, fmt.Errorf("%s: %s/%s: unknown mode %q", path, kf.Topic, kf.Case, m)
			}
		}
		k := knownKey(kf.Topic, kf.Case)
		if _, dup := out[k]; dup {
			return nil, fmt.Errorf("%s: %s/%s listed twice", path, kf.Topic, kf.Case)
		}
		out[k] = kf
	}
	return out, nil
}

// Lookup returns the known failure of a case in a mode, or nil.
func (k KnownFailures) Lookup(topic, name string, mode Mode) *KnownFailure {
	kf := k[knownKey(topic, name)]
	if kf == nil {
		return nil
	}
	if len(kf.Modes) == 0 || slices.Contains(kf.Modes, mode) {
		return kf
	}
	return nil
}

// Stale returns the entries that name no case of topics.
func (k KnownFailures) Stale(topics []*Topic) []*KnownFailure {
	exists := map[string]bool{}
	for _, t := range topics {
		exists[knownKey(t.Name, WholeTopic)] = true
		for _, c := range t.Cases {
			exists[knownKey(t.Name, c.Name)] = true
		}
	}
	var out []*KnownFailure
	for key, kf := range k {
		if !exists[key] {
			out = append(out, kf)
		}
	}
	slices.SortFunc(out, func(a, b *KnownFailure) int {
		return strings.Compare(knownKey(a.Topic, a.Case), knownKey(b.Topic, b.Case))
	})
	return out
}
