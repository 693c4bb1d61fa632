package selfsigned_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"testing"
	"time"

	"github.com/garrison-mesh/garrison/ca/authority"
	"github.com/garrison-mesh/garrison/ca/upstream/selfsigned"
)

func TestMint(t *testing.T) {
	up, err := selfsigned.New(selfsigned.Config{TrustDomain: "cluster.local"})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)
	ctx := context.Background()
	m, err := up.Mint(ctx, authority.MintRequest{Reason: authority.MintStart, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	root := m.Root()
	for _, c := range []struct {
		name string
		ttl  time.Duration
		got  time.Duration
		pub  any
	}{
		{"root", 10 * 365 * 24 * time.Hour, root.NotAfter.Sub(now), root.PublicKey},
		{"intermediate", 365 * 24 * time.Hour, m.Cert.NotAfter.Sub(now), m.Cert.PublicKey},
	} {
		if c.got != c.ttl {
			t.Errorf("%s lives %s, want %s", c.name, c.got, c.ttl)
		}
		if k, ok := c.pub.(*ecdsa.PublicKey); !ok || k.Curve != elliptic.P256() {
			t.Errorf("%s key is not EC P-256", c.name)
		}
	}
	if !root.IsCA || !m.Cert.IsCA || !m.Cert.MaxPathLenZero || m.Cert.CheckSignatureFrom(root) != nil || root.CheckSignatureFrom(root) != nil {
		t.Fatal("want a self-signed root and an intermediate (path length 0) signed by it")
	}
	if len(m.Cert.URIs) != 1 || m.Cert.URIs[0].String() != "spiffe://cluster.local" {
		t.Errorf("signing CA URI SAN %v, want the trust domain's ID", m.Cert.URIs)
	}
	if m.RootKey == nil || len(m.Chain) != 1 {
		t.Fatal("the root key and the chain [root] are handed over")
	}
	// Later starts keep what exists; rotations mint.
	if again, err := up.Mint(ctx, authority.MintRequest{Reason: authority.MintStart, Current: m, Now: now}); err != nil || again != nil {
		t.Fatalf("restart minted anew: %v", err)
	}
	inter, err := up.Mint(ctx, authority.MintRequest{Reason: authority.MintIntermediate, Current: m, Now: now.Add(time.Hour)})
	if err != nil || !inter.Root().Equal(root) || inter.Cert.Equal(m.Cert) {
		t.Fatalf("intermediate rotation: %v", err)
	}
	newRoot, err := up.Mint(ctx, authority.MintRequest{Reason: authority.MintRoot, Current: m, Now: now.Add(time.Hour)})
	if err != nil || newRoot.Root().Equal(root) || newRoot.Root().Subject.String() == root.Subject.String() {
		t.Fatalf("root rotation must make a root with another name: %v", err)
	}
	// Near the root's end, an intermediate never outlives it.
	late, err := up.Mint(ctx, authority.MintRequest{Reason: authority.MintIntermediate, Current: m, Now: root.NotAfter.Add(-30 * 24 * time.Hour)})
	if err != nil || late.Cert.NotAfter.After(root.NotAfter) {
		t.Fatalf("intermediate outlives its root: %v", err)
	}
}
