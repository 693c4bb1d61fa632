// Package tokenfile authenticates CA callers by bearer tokens listed in a
// YAML file, Garrison's embedded stand-in for Kubernetes TokenReview. The
// file stores only a hash of each token:
//
//	tokens:
//	- hash: sha256:5d41402abc4b2a76b9719d911017c592...   # of the token's bytes
//	  namespace: default
//	  serviceAccount: reviews
//	  expires: 2027-06-01T00:00:00Z                      # optional
//
// `garrison ca token create` appends an entry and prints the token once.
// The file is watched and re-read when it changes; a file that does not
// parse keeps the last good tokens (and is logged), so a bad edit never
// locks every workload out.
package tokenfile

import (
	"github.com/garrison-mesh/garrison/internal/atomicfile"

	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"gopkg.in/yaml.v3"
)

// File is the token file's content.
type File struct {
	Tokens []Entry `yaml:"tokens"`
}

// Entry maps one token's hash to a Kubernetes service account.
type Entry struct {
	Hash           string     `yaml:"hash"`
	Namespace      string     `yaml:"namespace"`
	ServiceAccount string     `yaml:"serviceAccount"`
	Expires        *time.Time `yaml:"expires,omitempty"`
	Created        *time.Time `yaml:"created,omitempty"`
}

// Errors of Authenticate.
var (
	ErrMalformed = errors.New("malformed bearer token")
	ErrUnknown   = errors.New("unknown bearer token")
	ErrExpired   = errors.New("expired bearer token")
)

// maxTokenLen bounds what is hashed per request.
const maxTokenLen = 4096

// Hash is how a token is stored: "sha256:" and the hex SHA-256 of its
// bytes. Tokens are 256 random bits, so an unsalted fast hash is enough:
// there is nothing to guess.
func Hash(token string) string {
	sum := sha256.Sum256([]byte(token))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// Parse reads a token file and checks every entry.
func Parse(data []byte) (*File, error) {
	var f File
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	seen := map[string]bool{}
	for i, e := range f.Tokens {
		hexSum, ok := strings.CutPrefix(e.Hash, "sha256:")
		if b, err := hex.DecodeString(hexSum); !ok || err != nil || len(b) != sha256.Size {
			return nil, fmt.Errorf("tokens[%d].hash: want sha256:<64 hex digits>", i)
		}
		if seen[e.Hash] {
			return nil, fmt.Errorf("tokens[%d].hash: listed twice", i)
		}
		seen[e.Hash] = true
		if _, err := spiffeid.FromSegments(spiffeid.RequireTrustDomainFromString("x"), "ns", e.Namespace, "sa", e.ServiceAccount); err != nil || e.Namespace == "" || e.ServiceAccount == "" {
			return nil, fmt.Errorf("tokens[%d]: namespace %q and serviceAccount %q must be non-empty SPIFFE path segments", i, e.Namespace, e.ServiceAccount)
		}
	}
	return &f, nil
}

// Create appends a new token for namespace/serviceAccount to the file at
// path (creating it, mode 0600) and returns the token, which is stored
// nowhere else. expires zero means never. The file is replaced atomically
// so a watching server never reads half of it.
func Create(path, namespace, serviceAccount string, expires, now time.Time) (string, error) {
	var f File
	data, err := os.ReadFile(path)
	switch {
	case err == nil:
		p, err := Parse(data)
		if err != nil {
			return "", fmt.Errorf("%s: %w", path, err)
		}
		f = *p
	case !errors.Is(err, os.ErrNotExist):
		return "", err
	}
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", err
	}
	token := base64.RawURLEncoding.EncodeToString(raw[:])
	e := Entry{Hash: Hash(token), Namespace: namespace, ServiceAccount: serviceAccount, Created: &now}
	if !expires.IsZero() {
		e.Expires = &expires
	}
	f.Tokens = append(f.Tokens, e)
	if _, err := Parse(mustYAML(f)); err != nil {
		return "", err
	}
	header := "# Garrison CA bearer tokens (hashes only); garrison ca token create appends here.\n"
	return token, atomicfile.Write(path, append([]byte(header), mustYAML(f)...), 0o600)
}

func mustYAML(f File) []byte {
	out, err := yaml.Marshal(f)
	if err != nil {
		panic(err) // a File always marshals
	}
	return out
}

// Config of an Authenticator.
type Config struct {
	Path   string
	Clock  func() time.Time
	Logger *slog.Logger
}

// Authenticator answers from the tokens of the file, held in memory by
// hash: a lookup is one SHA-256 and a map access, no I/O.
type Authenticator struct {
	cfg    Config
	tokens atomic.Pointer[map[[32]byte]Entry]
}

// New reads the file; it must exist and parse.
func New(cfg Config) (*Authenticator, error) {
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	a := &Authenticator{cfg: cfg}
	if err := a.Reload(); err != nil {
		return nil, err
	}
	return a, nil
}

// Reload re-reads the file; on error the previous tokens stay. An empty
// file is an error too: it is what an editor that truncates before
// writing leaves for a moment, and taking it would lock every workload
// out (an operator who means "no tokens" writes "tokens: []").
func (a *Authenticator) Reload() error {
	data, err := os.ReadFile(a.cfg.Path)
	if err != nil {
		return err
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return fmt.Errorf("%s is empty", a.cfg.Path)
	}
	f, err := Parse(data)
	if err != nil {
		return fmt.Errorf("%s: %w", a.cfg.Path, err)
	}
	m := make(map[[32]byte]Entry, len(f.Tokens))
	for _, e := range f.Tokens {
		var k [32]byte
		b, _ := hex.DecodeString(strings.TrimPrefix(e.Hash, "sha256:"))
		copy(k[:], b)
		m[k] = e
	}
	a.tokens.Store(&m)
	return nil
}

// Len is the number of tokens loaded.
func (a *Authenticator) Len() int { return len(*a.tokens.Load()) }

// Authenticate returns the namespace and service account of token.
func (a *Authenticator) Authenticate(_ context.Context, token string) (string, string, error) {
	if token == "" || len(token) > maxTokenLen || strings.ContainsAny(token, " \t\r\n") {
		return "", "", ErrMalformed
	}
	sum := sha256.Sum256([]byte(token))
	e, ok := (*a.tokens.Load())[sum]
	if !ok {
		return "", "", ErrUnknown
	}
	// The map lookup already compared the hash; this keeps the comparison
	// itself constant-time in case the map's is not.
	want, _ := hex.DecodeString(strings.TrimPrefix(e.Hash, "sha256:"))
	if subtle.ConstantTimeCompare(want, sum[:]) != 1 {
		return "", "", ErrUnknown
	}
	if e.Expires != nil && !a.cfg.Clock().Before(*e.Expires) {
		return "", "", fmt.Errorf("%w (expired %s)", ErrExpired, e.Expires.Format(time.RFC3339))
	}
	return e.Namespace, e.ServiceAccount, nil
}

// reloadQuiet is how long the file must stay unchanged before it is
// re-read, so that a write in several steps is read once, whole.
const reloadQuiet = 100 * time.Millisecond

// Run re-reads the file whenever it changes until ctx ends. It watches
// the directory, so that editors and Create, which replace the file by
// renaming, are seen too.
func (a *Authenticator) Run(ctx context.Context) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return err
	}
	defer func() { _ = w.Close() }()
	dir, name := filepath.Split(filepath.Clean(a.cfg.Path))
	if dir == "" {
		dir = "."
	}
	if err := w.Add(dir); err != nil {
		return err
	}
	quiet := time.NewTimer(time.Hour)
	quiet.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev := <-w.Events:
			if filepath.Base(ev.Name) == name && ev.Op&(fsnotify.Write|fsnotify.Create|fsnotify.Rename) != 0 {
				quiet.Reset(reloadQuiet)
			}
		case <-quiet.C:
			if err := a.Reload(); err != nil {
				a.cfg.Logger.Error("token file not reloaded; the previous tokens stay", "err", err)
				continue
			}
			a.cfg.Logger.Info("token file reloaded", "path", a.cfg.Path, "tokens", a.Len())
		case err := <-w.Errors:
			a.cfg.Logger.Warn("watching the token file", "err", err)
		}
	}
}
