package disk_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/garrison-mesh/garrison/ca/authority"
	"github.com/garrison-mesh/garrison/ca/store"
	"github.com/garrison-mesh/garrison/ca/upstream/disk"
)

type ca struct {
	cert *x509.Certificate
	key  crypto.Signer
}

var serial int64

func newCA(t *testing.T, name string, parent *ca, key crypto.Signer, isCA bool) *ca {
	t.Helper()
	serial++
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(365 * 24 * time.Hour),
		IsCA: isCA, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
	signerCert, signerKey := tmpl, key
	if parent != nil {
		signerCert, signerKey = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signerCert, key.Public(), signerKey)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return &ca{cert: c, key: key}
}

func ecKey() crypto.Signer { k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader); return k }

func pemCerts(cs ...*x509.Certificate) []byte {
	var out []byte
	for _, c := range cs {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return out
}

func writeCACerts(t *testing.T, dir string, signing *ca, chain []*x509.Certificate, root *x509.Certificate) {
	t.Helper()
	keyDER, err := x509.MarshalPKCS8PrivateKey(signing.key)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{
		disk.CertFile:  pemCerts(signing.cert),
		disk.KeyFile:   pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
		disk.ChainFile: pemCerts(append([]*x509.Certificate{signing.cert}, chain...)...),
		disk.RootFile:  pemCerts(root),
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

func TestLoadChainHasTheRootOnce(t *testing.T) {
	root := newCA(t, "root", nil, ecKey(), true)
	inter := newCA(t, "intermediate", root, ecKey(), true)
	for name, chain := range map[string][]*x509.Certificate{
		"cert-chain ends with the root": {root.cert},
		"cert-chain without the root":   nil,
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			writeCACerts(t, dir, inter, chain, root.cert)
			m, err := disk.Load(dir)
			if err != nil {
				t.Fatal(err)
			}
			if len(m.Chain) != 1 || !m.Chain[0].Equal(root.cert) || !m.Cert.Equal(inter.cert) {
				t.Fatalf("chain above the signing CA has %d certificates, want the root once", len(m.Chain))
			}
		})
	}
	t.Run("two-level intermediate", func(t *testing.T) {
		inter2 := newCA(t, "intermediate 2", inter, ecKey(), true)
		dir := t.TempDir()
		writeCACerts(t, dir, inter2, []*x509.Certificate{inter.cert, root.cert}, root.cert)
		m, err := disk.Load(dir)
		if err != nil || len(m.Chain) != 2 || !m.Chain[0].Equal(inter.cert) || !m.Chain[1].Equal(root.cert) {
			t.Fatalf("chain %v, %v", m, err)
		}
	})
}

func TestLoadRefuses(t *testing.T) {
	root := newCA(t, "root", nil, ecKey(), true)
	inter := newCA(t, "intermediate", root, ecKey(), true)
	other := newCA(t, "other root", nil, ecKey(), true)
	leaf := newCA(t, "leaf", root, ecKey(), false)
	for _, tc := range []struct {
		name  string
		write func(dir string)
		want  string
	}{
		{"key does not match", func(dir string) {
			writeCACerts(t, dir, &ca{cert: inter.cert, key: ecKey()}, nil, root.cert)
		}, "does not match"},
		{"not a CA", func(dir string) { writeCACerts(t, dir, leaf, nil, root.cert) }, "not a CA"},
		{"chain does not verify to the root", func(dir string) { writeCACerts(t, dir, inter, nil, other.cert) }, "does not verify"},
		{"missing key", func(dir string) {
			writeCACerts(t, dir, inter, nil, root.cert)
			_ = os.Remove(filepath.Join(dir, disk.KeyFile))
		}, "ca-key.pem"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			tc.write(dir)
			_, err := disk.Load(dir)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error saying %q", err, tc.want)
			}
		})
	}
}

// TestAuthorityOnDisk: an RSA plugged-in intermediate signs SVIDs whose
// chain is leaf, intermediate, root; rotation re-reads replaced files and
// refuses unchanged ones; a new root joins the bundle beside the old.
func TestAuthorityOnDisk(t *testing.T) {
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	root := newCA(t, "root", nil, rsaKey, true)
	inter := newCA(t, "intermediate", root, ecKey(), true)
	dir := t.TempDir()
	writeCACerts(t, dir, inter, []*x509.Certificate{root.cert}, root.cert)
	ctx := context.Background()
	st, err := store.Open(ctx, store.Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = st.Close() }()
	up, _ := disk.New(disk.Config{Dir: dir})
	a, err := authority.New(ctx, authority.Config{TrustDomain: "cluster.local", Upstream: up, Store: st})
	if err != nil {
		t.Fatal(err)
	}
	id := spiffeid.RequireFromString("spiffe://cluster.local/ns/a/sa/b")
	iss, err := a.Sign(ctx, authority.SignRequest{PublicKey: ecKey().Public(), ID: id})
	if err != nil {
		t.Fatal(err)
	}
	if len(iss.ChainPEM) != 3 {
		t.Fatalf("chain of %d, want leaf, intermediate, root (root not repeated)", len(iss.ChainPEM))
	}
	// An SVID from another intermediate under the same root chains to a
	// trusted root, but this CA did not issue it: no renewal with it.
	sibling := newCA(t, "another cluster's intermediate", root, ecKey(), true)
	sk, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	u, _ := url.Parse(id.String())
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: big.NewInt(99), NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
		URIs: []*url.URL{u}, KeyUsage: x509.KeyUsageDigitalSignature, BasicConstraintsValid: true,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, sibling.cert, sk.Public(), sibling.key)
	if err != nil {
		t.Fatal(err)
	}
	foreign, _ := x509.ParseCertificate(der)
	if _, _, err := a.VerifyCaller([]*x509.Certificate{foreign, sibling.cert}); err == nil || !strings.Contains(err.Error(), "not issued by this CA") {
		t.Fatalf("renewal with a sibling CA's SVID: %v", err)
	}
	own, _ := iss.Certificate()
	if _, _, err := a.VerifyCaller(append([]*x509.Certificate{own}, iss.Chain...)); err != nil {
		t.Fatalf("renewal with this CA's SVID: %v", err)
	}
	if err := a.Rotate(ctx, authority.MintIntermediate, authority.RotateOptions{}); !errors.Is(err, authority.ErrUnsupported) {
		t.Fatalf("rotation with unchanged files: %v", err)
	}
	inter2 := newCA(t, "intermediate 2", root, ecKey(), true)
	writeCACerts(t, dir, inter2, []*x509.Certificate{root.cert}, root.cert)
	if err := a.Rotate(ctx, authority.MintIntermediate, authority.RotateOptions{}); err != nil {
		t.Fatal(err)
	}
	if !a.SigningChain()[0].Equal(inter2.cert) || len(a.Roots()) != 1 {
		t.Fatal("intermediate rotation from disk not adopted")
	}
	root2 := newCA(t, "root 2", nil, ecKey(), true)
	inter3 := newCA(t, "intermediate 3", root2, ecKey(), true)
	writeCACerts(t, dir, inter3, nil, root2.cert)
	if err := a.Rotate(ctx, authority.MintIntermediate, authority.RotateOptions{}); !errors.Is(err, authority.ErrUnsupported) {
		t.Fatalf("an intermediate rotation that brings a new root: %v", err)
	}
	if err := a.Rotate(ctx, authority.MintRoot, authority.RotateOptions{ActivateAfter: -1}); err != nil {
		t.Fatal(err)
	}
	if roots := a.Roots(); len(roots) != 2 || !roots[0].Equal(root2.cert) || !roots[1].Equal(root.cert) {
		t.Fatal("after a root rotation the bundle must hold the new and the old root")
	}
}
