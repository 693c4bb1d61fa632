package store_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/garrison-mesh/garrison/ca/authority"
	"github.com/garrison-mesh/garrison/ca/store"
	"github.com/garrison-mesh/garrison/ca/upstream/selfsigned"
)

// TestKeysAtRest: keys are files of mode 0600; with a passphrase they are
// encrypted, and without the passphrase (or with a wrong one) the CA does
// not start.
func TestKeysAtRest(t *testing.T) {
	ctx := context.Background()
	up, _ := selfsigned.New(selfsigned.Config{TrustDomain: "cluster.local"})
	for _, pass := range []string{"", "correct horse battery staple"} {
		t.Run("passphrase="+pass, func(t *testing.T) {
			dir := t.TempDir()
			open := func(p string) (*store.Store, *authority.Authority, error) {
				st, err := store.Open(ctx, store.Config{Dir: dir, Passphrase: []byte(p)})
				if err != nil {
					return nil, nil, err
				}
				a, err := authority.New(ctx, authority.Config{TrustDomain: "cluster.local", Upstream: up, Store: st})
				if err != nil {
					_ = st.Close()
					return nil, nil, err
				}
				return st, a, nil
			}
			st, a, err := open(pass)
			if err != nil {
				t.Fatal(err)
			}
			root := a.Roots()[0]
			_ = st.Close()
			keys, _ := filepath.Glob(filepath.Join(dir, "keys", "*.key"))
			if len(keys) != 2 {
				t.Fatalf("%d key files, want root and signing", len(keys))
			}
			for _, k := range keys {
				fi, _ := os.Stat(k)
				raw, _ := os.ReadFile(k)
				if fi.Mode().Perm() != 0o600 {
					t.Errorf("%s mode %v", k, fi.Mode())
				}
				if enc := strings.Contains(string(raw), "ENCRYPTED"); enc != (pass != "") {
					t.Errorf("%s encrypted=%v with passphrase %q", k, enc, pass)
				}
			}
			if pass != "" {
				if _, _, err := open(""); err == nil || !strings.Contains(err.Error(), "passphrase") {
					t.Fatalf("started without the passphrase: %v", err)
				}
				if _, _, err := open("wrong"); err == nil || !strings.Contains(err.Error(), "wrong passphrase") {
					t.Fatalf("started with a wrong passphrase: %v", err)
				}
			}
			st, a, err = open(pass)
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = st.Close() }()
			if !a.Roots()[0].Equal(root) {
				t.Fatal("the root changed across a restart")
			}
			k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			if _, err := a.Sign(ctx, authority.SignRequest{PublicKey: k.Public(), ID: spiffeid.RequireFromPath(a.TrustDomain(), "/ns/a/sa/b"), TTL: time.Hour}); err != nil {
				t.Fatal(err)
			}
		})
	}
}
