package authority_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"math/big"
	"net/url"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/garrison-mesh/garrison/ca/authority"
	"github.com/garrison-mesh/garrison/ca/store"
	"github.com/garrison-mesh/garrison/ca/upstream/selfsigned"
)

// fakeClock is the injected clock: tests move it, nothing sleeps.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *fakeClock { return &fakeClock{now: time.Date(2027, 3, 1, 12, 0, 0, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

const td = "cluster.local"

type fixture struct {
	t     *testing.T
	dir   string
	clock *fakeClock
	st    *store.Store
	ca    *authority.Authority
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{t: t, dir: t.TempDir(), clock: newClock()}
	f.open()
	t.Cleanup(func() {
		if f.st != nil {
			_ = f.st.Close()
		}
	})
	return f
}

func (f *fixture) open() {
	f.t.Helper()
	st, err := store.Open(context.Background(), store.Config{Dir: f.dir})
	if err != nil {
		f.t.Fatal(err)
	}
	up, err := selfsigned.New(selfsigned.Config{TrustDomain: td})
	if err != nil {
		f.t.Fatal(err)
	}
	ca, err := authority.New(context.Background(), authority.Config{TrustDomain: td, Upstream: up, Store: st, Clock: f.clock.Now})
	if err != nil {
		f.t.Fatal(err)
	}
	f.st, f.ca = st, ca
}

func (f *fixture) restart() {
	f.t.Helper()
	if err := f.st.Close(); err != nil {
		f.t.Fatal(err)
	}
	f.st = nil
	f.open()
}

func csrPEM(t testing.TB, key crypto.Signer, uris ...string) []byte {
	t.Helper()
	tmpl := &x509.CertificateRequest{}
	for _, u := range uris {
		pu, err := url.Parse(u)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.URIs = append(tmpl.URIs, pu)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

func ecKey(t testing.TB, c elliptic.Curve) crypto.Signer {
	k, err := ecdsa.GenerateKey(c, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func rsaKey(t testing.TB, bits int) crypto.Signer {
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func parseChain(t testing.TB, chain []string) []*x509.Certificate {
	t.Helper()
	var out []*x509.Certificate
	for _, p := range chain {
		block, rest := pem.Decode([]byte(p))
		if block == nil || len(rest) != 0 {
			t.Fatalf("chain element is not exactly one PEM block: %q", p)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, c)
	}
	return out
}

// CheckSVID verifies an issued chain with go-spiffe against the
// authority's bundle and checks every X.509-SVID rule field by field.
func CheckSVID(t testing.TB, ca *authority.Authority, chain []*x509.Certificate, want spiffeid.ID, now time.Time) {
	t.Helper()
	bundle := x509bundle.FromX509Authorities(ca.TrustDomain(), ca.Roots())
	id, _, err := x509svid.Verify(chain, bundle, x509svid.WithTime(now))
	if err != nil {
		t.Fatalf("x509svid.Verify: %v", err)
	}
	if id != want {
		t.Fatalf("SVID is %s, want %s", id, want)
	}
	leaf := chain[0]
	if len(leaf.URIs) != 1 || leaf.URIs[0].String() != want.String() {
		t.Errorf("URI SANs %v, want exactly [%s]", leaf.URIs, want)
	}
	if len(leaf.DNSNames)+len(leaf.IPAddresses)+len(leaf.EmailAddresses) != 0 {
		t.Errorf("workload SVID carries other SANs: %v %v %v", leaf.DNSNames, leaf.IPAddresses, leaf.EmailAddresses)
	}
	if len(leaf.Subject.ToRDNSequence()) != 0 {
		t.Errorf("subject %q, want empty", leaf.Subject)
	}
	var sawSAN, sawKU, sawBC bool
	for _, ext := range leaf.Extensions {
		switch ext.Id.String() {
		case "2.5.29.17":
			sawSAN = true
			if !ext.Critical {
				t.Error("SAN extension not critical with an empty subject")
			}
		case "2.5.29.15":
			sawKU = true
			if !ext.Critical {
				t.Error("key usage not critical")
			}
		case "2.5.29.19":
			sawBC = true
		}
	}
	if !sawSAN || !sawKU || !sawBC {
		t.Errorf("missing extension: SAN %v, key usage %v, basic constraints %v", sawSAN, sawKU, sawBC)
	}
	if leaf.KeyUsage&x509.KeyUsageDigitalSignature == 0 {
		t.Error("no digitalSignature")
	}
	if leaf.KeyUsage&(x509.KeyUsageCertSign|x509.KeyUsageCRLSign) != 0 {
		t.Error("leaf has keyCertSign or cRLSign")
	}
	if _, isRSA := leaf.PublicKey.(*rsa.PublicKey); !isRSA && leaf.KeyUsage&x509.KeyUsageKeyEncipherment != 0 {
		t.Error("keyEncipherment on a non-RSA key")
	}
	if !slices.Equal(leaf.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}) {
		t.Errorf("EKU %v, want serverAuth, clientAuth", leaf.ExtKeyUsage)
	}
	if !leaf.BasicConstraintsValid || leaf.IsCA {
		t.Error("leaf is not CA:false")
	}
	if len(leaf.SubjectKeyId) != 20 || len(leaf.AuthorityKeyId) == 0 || !slices.Equal(leaf.AuthorityKeyId, chain[1].SubjectKeyId) {
		t.Errorf("SKI %x / AKI %x (issuer SKI %x)", leaf.SubjectKeyId, leaf.AuthorityKeyId, chain[1].SubjectKeyId)
	}
	if leaf.SerialNumber.Sign() <= 0 || leaf.SerialNumber.BitLen() > 128 || leaf.SerialNumber.BitLen() < 64 {
		t.Errorf("serial %x", leaf.SerialNumber)
	}
	if d := now.Sub(leaf.NotBefore); d < 2*time.Minute || d > 2*time.Minute+time.Second {
		t.Errorf("NotBefore backdated by %s, want 2m", d)
	}
	if err := leaf.CheckSignatureFrom(chain[1]); err != nil {
		t.Errorf("leaf signature: %v", err)
	}
	if !slices.ContainsFunc(ca.Roots(), chain[len(chain)-1].Equal) {
		t.Error("chain does not end with a root of the bundle")
	}
}

func TestSignIssuesValidSVIDs(t *testing.T) {
	f := newFixture(t)
	id := spiffeid.RequireFromString("spiffe://cluster.local/ns/default/sa/reviews")
	for _, tc := range []struct {
		name string
		key  crypto.Signer
		ku   x509.KeyUsage
	}{
		{"p256", ecKey(t, elliptic.P256()), x509.KeyUsageDigitalSignature},
		{"p384", ecKey(t, elliptic.P384()), x509.KeyUsageDigitalSignature},
		{"rsa2048", rsaKey(t, 2048), x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment},
		{"rsa3072", rsaKey(t, 3072), x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment},
	} {
		t.Run(tc.name, func(t *testing.T) {
			iss, err := f.ca.SignCSR(context.Background(), csrPEM(t, tc.key, id.String()), id, 0, "test")
			if err != nil {
				t.Fatal(err)
			}
			chain := parseChain(t, iss.ChainPEM)
			if len(chain) != 3 {
				t.Fatalf("chain of %d, want leaf, intermediate, root", len(chain))
			}
			CheckSVID(t, f.ca, chain, id, f.clock.Now())
			if chain[0].KeyUsage != tc.ku {
				t.Errorf("key usage %v, want %v", chain[0].KeyUsage, tc.ku)
			}
			if got := chain[0].NotAfter.Sub(f.clock.Now()); got != 24*time.Hour {
				t.Errorf("TTL %s, want the default 24h", got)
			}
			recs, err := f.ca.List(context.Background(), authority.Filter{SPIFFEID: id.String()})
			if err != nil || !slices.ContainsFunc(recs, func(r authority.Record) bool { return r.Serial.Cmp(chain[0].SerialNumber) == 0 }) {
				t.Fatalf("serial not journaled: %v %v", recs, err)
			}
		})
	}
}

func TestTTL(t *testing.T) {
	f := newFixture(t)
	id := spiffeid.RequireFromString("spiffe://cluster.local/ns/default/sa/a")
	key := ecKey(t, elliptic.P256())
	iss, err := f.ca.Sign(context.Background(), authority.SignRequest{PublicKey: key.Public(), ID: id, TTL: 90 * 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if got := iss.NotAfter.Sub(f.clock.Now()); got != 90*24*time.Hour {
		t.Errorf("TTL %s", got)
	}
	_, err = f.ca.Sign(context.Background(), authority.SignRequest{PublicKey: key.Public(), ID: id, TTL: 90*24*time.Hour + time.Second})
	if !errors.Is(err, authority.ErrInvalidRequest) {
		t.Errorf("TTL above the maximum: %v, want refused", err)
	}
	if _, err := f.ca.Sign(context.Background(), authority.SignRequest{PublicKey: key.Public(), ID: f.ca.TrustDomain().ID()}); !errors.Is(err, authority.ErrInvalidRequest) {
		t.Errorf("the trust domain's own ID as a leaf: %v", err)
	}
	other := spiffeid.RequireFromString("spiffe://example.org/ns/default/sa/a")
	if _, err := f.ca.Sign(context.Background(), authority.SignRequest{PublicKey: key.Public(), ID: other}); !errors.Is(err, authority.ErrPermissionDenied) {
		t.Errorf("foreign trust domain: %v", err)
	}
}

func TestRevocationAndCRL(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	a := spiffeid.RequireFromString("spiffe://cluster.local/ns/default/sa/a")
	b := spiffeid.RequireFromString("spiffe://cluster.local/ns/default/sa/b")
	var serials []*big.Int
	for _, id := range []spiffeid.ID{a, a, b} {
		iss, err := f.ca.Sign(ctx, authority.SignRequest{PublicKey: ecKey(t, elliptic.P256()).Public(), ID: id})
		if err != nil {
			t.Fatal(err)
		}
		serials = append(serials, iss.Serial)
	}
	changed := f.ca.Subscribe(ctx)
	if err := f.ca.Revoke(ctx, serials[2], "keyCompromise"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-changed:
	default:
		t.Fatal("no change notified after a revocation")
	}
	if !f.ca.IsRevoked(serials[2]) || f.ca.IsRevoked(serials[0]) {
		t.Fatal("IsRevoked wrong after Revoke")
	}
	if err := f.ca.Revoke(ctx, big.NewInt(12345), ""); !errors.Is(err, authority.ErrNotFound) {
		t.Fatalf("revoking an unknown serial: %v", err)
	}
	n, err := f.ca.RevokeIdentity(ctx, a, "")
	if err != nil || n != 2 {
		t.Fatalf("RevokeIdentity: %d, %v", n, err)
	}
	der, next := f.ca.CRL()
	crl, err := x509.ParseRevocationList(der)
	if err != nil {
		t.Fatal(err)
	}
	if err := crl.CheckSignatureFrom(f.ca.SigningChain()[0]); err != nil {
		t.Fatalf("CRL not signed by the signing CA: %v", err)
	}
	if !crl.NextUpdate.Equal(next) || next.Sub(f.clock.Now()) != authority.DefaultCRLValidity {
		t.Errorf("nextUpdate %s", crl.NextUpdate)
	}
	var got []string
	for _, e := range crl.RevokedCertificateEntries {
		got = append(got, authority.FormatSerial(e.SerialNumber))
	}
	for _, s := range serials {
		if !slices.Contains(got, authority.FormatSerial(s)) {
			t.Errorf("serial %x missing from the CRL", s)
		}
	}
	// State survives a restart.
	f.restart()
	for _, s := range serials {
		if !f.ca.IsRevoked(s) {
			t.Errorf("revocation of %x lost across a restart", s)
		}
	}
	// Expired entries leave the CRL.
	f.clock.Advance(25 * time.Hour)
	if err := f.ca.Maintain(ctx); err != nil {
		t.Fatal(err)
	}
	der, _ = f.ca.CRL()
	if crl, err = x509.ParseRevocationList(der); err != nil || len(crl.RevokedCertificateEntries) != 0 {
		t.Fatalf("CRL after expiry: %d entries, %v", len(crl.RevokedCertificateEntries), err)
	}
	if f.ca.IsRevoked(serials[0]) {
		t.Error("an expired certificate is still in the revoked set")
	}
}

func TestRotation(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	id := spiffeid.RequireFromString("spiffe://cluster.local/ns/default/sa/a")
	sign := func(ttl time.Duration) []*x509.Certificate {
		t.Helper()
		iss, err := f.ca.SignCSR(ctx, csrPEM(t, ecKey(t, elliptic.P256())), id, ttl, "test")
		if err != nil {
			t.Fatal(err)
		}
		return parseChain(t, iss.ChainPEM)
	}
	before := sign(48 * time.Hour)
	root0 := f.ca.Roots()[0]

	// Intermediate: same root, new signing CA; old leaves still verify.
	if err := f.ca.Rotate(ctx, authority.MintIntermediate, authority.RotateOptions{}); err != nil {
		t.Fatal(err)
	}
	if roots := f.ca.Roots(); len(roots) != 1 || !roots[0].Equal(root0) {
		t.Fatal("intermediate rotation changed the roots")
	}
	afterInter := sign(0)
	if afterInter[1].Equal(before[1]) {
		t.Fatal("intermediate did not change")
	}
	CheckSVID(t, f.ca, before, id, f.clock.Now())
	CheckSVID(t, f.ca, afterInter, id, f.clock.Now())

	// Root: both roots in the bundle while certificates under the old one
	// are valid.
	if err := f.ca.Rotate(ctx, authority.MintRoot, authority.RotateOptions{ActivateAfter: -1}); err != nil {
		t.Fatal(err)
	}
	roots := f.ca.Roots()
	if len(roots) != 2 || roots[0].Equal(root0) || !roots[1].Equal(root0) {
		t.Fatalf("after a root rotation the bundle has %d roots", len(roots))
	}
	afterRoot := sign(0)
	CheckSVID(t, f.ca, afterRoot, id, f.clock.Now())
	CheckSVID(t, f.ca, before, id, f.clock.Now())
	sb := f.ca.SPIFFEBundle()
	raw, err := sb.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := spiffebundle.Parse(f.ca.TrustDomain(), raw)
	if err != nil || len(parsed.X509Authorities()) != 2 {
		t.Fatalf("SPIFFE bundle: %v", err)
	}

	// Restart in the middle: the rotation state survives.
	f.restart()
	if len(f.ca.Roots()) != 2 {
		t.Fatal("root rotation state lost across a restart")
	}
	// The old root stays until the last certificate under it (48h) expires.
	f.clock.Advance(47 * time.Hour)
	if err := f.ca.Maintain(ctx); err != nil {
		t.Fatal(err)
	}
	if len(f.ca.Roots()) != 2 {
		t.Fatal("old root left while a certificate under it is valid")
	}
	f.clock.Advance(2 * time.Hour)
	if err := f.ca.Maintain(ctx); err != nil {
		t.Fatal(err)
	}
	if roots := f.ca.Roots(); len(roots) != 1 || roots[0].Equal(root0) {
		t.Fatalf("old root still in the bundle after every certificate under it expired (%d roots)", len(roots))
	}
	f.restart()
	if len(f.ca.Roots()) != 1 {
		t.Fatal("retired root back after a restart")
	}
}

func TestSelfSignedIntermediateRotatesBeforeMaxTTLNoLongerFits(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	first := f.ca.SigningChain()[0]
	f.clock.Advance(365*24*time.Hour - authority.DefaultMaxTTL - time.Hour)
	if err := f.ca.Maintain(ctx); err != nil {
		t.Fatal(err)
	}
	if !f.ca.SigningChain()[0].Equal(first) {
		t.Fatal("rotated too early")
	}
	f.clock.Advance(2 * time.Hour)
	if err := f.ca.Maintain(ctx); err != nil {
		t.Fatal(err)
	}
	if f.ca.SigningChain()[0].Equal(first) {
		t.Fatal("intermediate not rotated with less than MaxTTL of life left")
	}
}

func TestVerifyCaller(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	id := spiffeid.RequireFromString("spiffe://cluster.local/ns/default/sa/a")
	iss, err := f.ca.SignCSR(ctx, csrPEM(t, ecKey(t, elliptic.P256())), id, time.Hour, "test")
	if err != nil {
		t.Fatal(err)
	}
	chain := parseChain(t, iss.ChainPEM)
	got, _, err := f.ca.VerifyCaller(chain)
	if err != nil || got != id {
		t.Fatalf("VerifyCaller: %v %v", got, err)
	}
	if err := f.ca.Revoke(ctx, iss.Serial, ""); err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.ca.VerifyCaller(chain); err == nil {
		t.Fatal("revoked certificate accepted")
	}
	iss, _ = f.ca.SignCSR(ctx, csrPEM(t, ecKey(t, elliptic.P256())), id, time.Hour, "test")
	f.clock.Advance(2 * time.Hour)
	if _, _, err := f.ca.VerifyCaller(parseChain(t, iss.ChainPEM)); err == nil {
		t.Fatal("expired certificate accepted")
	}
}

func TestStoreIsExclusive(t *testing.T) {
	f := newFixture(t)
	if _, err := store.Open(context.Background(), store.Config{Dir: f.dir}); err == nil {
		t.Fatal("a second Open of the same directory succeeded")
	}
}

// TestStagedRootRotation: a root rotation publishes the new root at once
// and signs under it only from the activation time on, across a restart;
// then the old root retires as usual.
func TestStagedRootRotation(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	id := spiffeid.RequireFromString("spiffe://cluster.local/ns/default/sa/a")
	root0 := f.ca.Roots()[0]
	signer0 := f.ca.SigningChain()[0]
	changed := f.ca.Subscribe(ctx)
	if err := f.ca.Rotate(ctx, authority.MintRoot, authority.RotateOptions{ActivateAfter: 10 * time.Minute}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-changed:
	default:
		t.Fatal("publishing a new root notified nobody")
	}
	roots := f.ca.Roots()
	if len(roots) != 2 || !roots[0].Equal(root0) {
		t.Fatalf("pending root not published beside the active one (%d roots)", len(roots))
	}
	if !f.ca.SigningChain()[0].Equal(signer0) {
		t.Fatal("a pending root signs already")
	}
	if err := f.ca.Rotate(ctx, authority.MintRoot, authority.RotateOptions{}); !errors.Is(err, authority.ErrUnsupported) {
		t.Fatalf("second root rotation while one is pending: %v", err)
	}
	st, err := f.ca.Status(ctx)
	if err != nil || st.Pending == nil || st.Pending.ActivateAt == nil {
		t.Fatalf("status does not show the pending signing CA: %+v %v", st.Pending, err)
	}
	f.restart()
	f.clock.Advance(9 * time.Minute)
	if err := f.ca.Maintain(ctx); err != nil {
		t.Fatal(err)
	}
	if !f.ca.SigningChain()[0].Equal(signer0) || len(f.ca.Roots()) != 2 {
		t.Fatal("activated early, or the pending state was lost across a restart")
	}
	f.clock.Advance(2 * time.Minute)
	if err := f.ca.Maintain(ctx); err != nil {
		t.Fatal(err)
	}
	roots = f.ca.Roots()
	if len(roots) != 2 || roots[0].Equal(root0) || !roots[1].Equal(root0) {
		t.Fatal("after activation: want the new root active and the old one retiring")
	}
	iss, err := f.ca.SignCSR(ctx, csrPEM(t, ecKey(t, elliptic.P256())), id, 0, "test")
	if err != nil {
		t.Fatal(err)
	}
	chain := parseChain(t, iss.ChainPEM)
	if chain[2].Equal(root0) {
		t.Fatal("still signing under the old root after activation")
	}
	CheckSVID(t, f.ca, chain, id, f.clock.Now())
}

// TestConcurrentSigningDuringRotation signs from several goroutines while
// the intermediate rotates and certificates are revoked: every
// certificate verifies, no serial repeats, and the journal has them all.
func TestConcurrentSigningDuringRotation(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	id := spiffeid.RequireFromString("spiffe://cluster.local/ns/default/sa/a")
	key := ecKey(t, elliptic.P256())
	var mu sync.Mutex
	var issued []*authority.Issued
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 40 {
				iss, err := f.ca.Sign(ctx, authority.SignRequest{PublicKey: key.Public(), ID: id, TTL: time.Hour})
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				issued = append(issued, iss)
				mu.Unlock()
			}
		}()
	}
	for range 3 {
		if err := f.ca.Rotate(ctx, authority.MintIntermediate, authority.RotateOptions{}); err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		var victim *big.Int
		if len(issued) > 0 {
			victim = issued[len(issued)-1].Serial
		}
		mu.Unlock()
		if victim != nil {
			if err := f.ca.Revoke(ctx, victim, "superseded"); err != nil {
				t.Fatal(err)
			}
		}
	}
	wg.Wait()
	seen := map[string]bool{}
	for _, iss := range issued {
		s := authority.FormatSerial(iss.Serial)
		if seen[s] {
			t.Fatalf("serial %s issued twice", s)
		}
		seen[s] = true
		CheckSVID(t, f.ca, parseChain(t, iss.ChainPEM), id, f.clock.Now())
	}
	c, err := f.ca.Status(ctx)
	if err != nil || c.Counts.Issued != int64(len(issued)) {
		t.Fatalf("journal holds %d, issued %d (%v)", c.Counts.Issued, len(issued), err)
	}
}

func TestTrustDomainOfTheStateIsKept(t *testing.T) {
	f := newFixture(t)
	if err := f.st.Close(); err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(context.Background(), store.Config{Dir: f.dir})
	if err != nil {
		t.Fatal(err)
	}
	f.st = st
	up, _ := selfsigned.New(selfsigned.Config{TrustDomain: "example.org"})
	if _, err := authority.New(context.Background(), authority.Config{TrustDomain: "example.org", Upstream: up, Store: st}); err == nil {
		t.Fatal("a CA of cluster.local started as example.org")
	}
}
