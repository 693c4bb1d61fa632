package tokenfile_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/garrison-mesh/garrison/ca/tokenfile"
)

func TestCreateAndAuthenticate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens.yaml")
	now := time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := now
	a1, err := tokenfile.Create(path, "default", "reviews", time.Time{}, now)
	if err != nil {
		t.Fatal(err)
	}
	a2, err := tokenfile.Create(path, "prod", "api", now.Add(time.Hour), now)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(path)
	if strings.Contains(string(raw), a1) || !strings.Contains(string(raw), tokenfile.Hash(a1)) {
		t.Fatal("the file must hold the token's hash, never the token")
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", fi.Mode())
	}
	auth, err := tokenfile.New(tokenfile.Config{Path: path, Clock: func() time.Time { return clock }})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if ns, sa, err := auth.Authenticate(ctx, a1); err != nil || ns != "default" || sa != "reviews" {
		t.Fatalf("%s/%s %v", ns, sa, err)
	}
	if _, _, err := auth.Authenticate(ctx, a2); err != nil {
		t.Fatal(err)
	}
	clock = now.Add(time.Hour)
	if _, _, err := auth.Authenticate(ctx, a2); !errors.Is(err, tokenfile.ErrExpired) {
		t.Fatalf("expired token: %v", err)
	}
	for _, bad := range []string{"", "a b", strings.Repeat("x", 5000)} {
		if _, _, err := auth.Authenticate(ctx, bad); !errors.Is(err, tokenfile.ErrMalformed) {
			t.Errorf("%q: %v", bad, err)
		}
	}
	if _, _, err := auth.Authenticate(ctx, a1+"x"); !errors.Is(err, tokenfile.ErrUnknown) {
		t.Fatalf("unknown token: %v", err)
	}
}

func TestParseRefuses(t *testing.T) {
	for _, tc := range []struct{ name, yaml, want string }{
		{"bad hash", "tokens:\n- {hash: md5:00, namespace: a, serviceAccount: b}\n", "tokens[0].hash"},
		{"short hash", "tokens:\n- {hash: 'sha256:00', namespace: a, serviceAccount: b}\n", "tokens[0].hash"},
		{"no namespace", "tokens:\n- {hash: 'sha256:" + strings.Repeat("0", 64) + "', serviceAccount: b}\n", "namespace"},
		{"unknown field", "tokens:\n- {hash: 'sha256:" + strings.Repeat("0", 64) + "', namespace: a, serviceAccount: b, token: secret}\n", "token"},
		{"twice", "tokens:\n- {hash: 'sha256:" + strings.Repeat("0", 64) + "', namespace: a, serviceAccount: b}\n- {hash: 'sha256:" + strings.Repeat("0", 64) + "', namespace: a, serviceAccount: c}\n", "twice"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := tokenfile.Parse([]byte(tc.yaml)); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
		})
	}
}

// TestReload: a token added to the file works without a restart; a file
// broken afterwards keeps the last good tokens.
func TestReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens.yaml")
	first, err := tokenfile.Create(path, "default", "a", time.Time{}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	auth, err := tokenfile.New(tokenfile.Config{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- auth.Run(ctx) }()
	// Run watches from its start; wait for it by writing until seen.
	second := ""
	deadline := time.Now().Add(10 * time.Second)
	for auth.Len() < 2 {
		if second == "" {
			if second, err = tokenfile.Create(path, "default", "b", time.Time{}, time.Now()); err != nil {
				t.Fatal(err)
			}
		} else if raw, err := os.ReadFile(path); err == nil {
			_ = os.WriteFile(path, raw, 0o600) // touch: an event Run sees once it watches
		}
		if time.Now().After(deadline) {
			t.Fatal("the new token was not loaded")
		}
		// Longer than the quiet time, or the touches would keep postponing the reload.
		time.Sleep(250 * time.Millisecond)
	}
	if _, _, err := auth.Authenticate(ctx, second); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("tokens: [garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := auth.Reload(); err == nil {
		t.Fatal("a broken file reloaded")
	}
	if _, _, err := auth.Authenticate(ctx, first); err != nil {
		t.Fatalf("the last good tokens are gone: %v", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
