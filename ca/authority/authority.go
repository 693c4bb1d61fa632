package authority

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Defaults, as Istio's CA has them where Istio has one.
const (
	DefaultTTL = 24 * time.Hour
	// DefaultMaxTTL is istiod's max-workload-cert-ttl (90 days).
	DefaultMaxTTL = 90 * 24 * time.Hour
	// DefaultBackdate is how far NotBefore is set in the past, as istiod
	// does (2 minutes), so that peers whose clocks lag accept a fresh
	// certificate.
	DefaultBackdate = 2 * time.Minute
	// DefaultCRLValidity is the CRL's nextUpdate - thisUpdate. The CRL is
	// re-signed at half of it and on every change; a short validity bounds
	// how long a stale CRL replayed to an agent stays acceptable.
	DefaultCRLValidity = time.Hour
	// DefaultBundleRefreshHint is the spiffe_refresh_hint of the bundle.
	DefaultBundleRefreshHint = 5 * time.Minute
)

// Config holds the authority's dependencies and settings.
type Config struct {
	// TrustDomain is the SPIFFE trust domain, such as "cluster.local".
	TrustDomain string
	Upstream    Upstream
	Store       Store
	// Clock returns the time; time.Now when nil. Tests inject a fake.
	Clock  func() time.Time
	Logger *slog.Logger
	// Metrics registers the authority's metrics; nil registers none.
	Metrics prometheus.Registerer
	// DefaultTTL applies when a request asks for none (24h when zero).
	DefaultTTL time.Duration
	// MaxTTL is the longest TTL a request may ask for; longer requests are
	// refused, not clamped (90 days when zero).
	MaxTTL time.Duration
	// Backdate is subtracted from NotBefore (2 minutes when zero; negative
	// means none).
	Backdate    time.Duration
	CRLValidity time.Duration
	// RefreshHint is the trust bundle's spiffe_refresh_hint.
	RefreshHint time.Duration
	// RootActivationDelay is how long a new root is published before it
	// signs (two refresh hints when zero): agents poll the bundle at the
	// refresh hint, so by then each has it.
	RootActivationDelay time.Duration
	// Rand is the randomness for serials and signatures (crypto/rand when
	// nil).
	Rand io.Reader
}

// Authority signs X.509-SVIDs and keeps the CA state. It is safe for
// concurrent use.
type Authority struct {
	cfg Config
	td  spiffeid.TrustDomain
	log *slog.Logger

	// mu serialises changes of CA state (rotation, revocation, CRL
	// re-signing); signing reads cur without it.
	mu  sync.Mutex
	cur atomic.Pointer[state]

	subsMu sync.Mutex
	subs   map[chan struct{}]struct{}

	metrics *metrics
}

var _ interface {
	Sign(context.Context, SignRequest) (*Issued, error)
	IsRevoked(*big.Int) bool
} = (*Authority)(nil)

// state is an immutable view of the CA swapped atomically on every change,
// so the signing path takes no lock.
type state struct {
	signer *signingCA
	// roots is the trust bundle: the active root first, then retiring ones.
	roots    []*x509.Certificate
	rootIDs  []int64
	rootPool *x509.CertPool
	rootsPEM []byte
	seq      uint64 // bumped on every bundle, signing CA or CRL change
	// bundleSeq changes only when the set of trusted roots does: it is
	// derived from the persisted records (roots ever added plus roots
	// retired), so it only grows, across restarts too.
	bundleSeq uint64
	revoked   map[string]struct{}
	// signers holds the DER of every signing CA this authority has had:
	// a renewal certificate must come from one of them, not merely chain
	// to a shared root (a plugged-in organisation root may have other
	// intermediates).
	signers   map[string]bool
	revCount  int
	crl       []byte
	crlThis   time.Time
	crlNext   time.Time
	crlNumber *big.Int
	records   []CARecord
}

type signingCA struct {
	id, rootID int64
	cert       *x509.Certificate
	key        crypto.Signer
	chain      []*x509.Certificate // above cert, ending with the root
	// chainPEM is cert then chain, PEM-encoded once: every response ends
	// with it.
	chainPEM []string
	fast     *ecdsa.PrivateKey // set when the fast signing path applies
	rootKey  crypto.Signer
}

func (s *signingCA) material() *Material {
	return &Material{Cert: s.cert, Key: s.key, Chain: s.chain, RootKey: s.rootKey}
}

// New loads the CA state from the store, asks the upstream for a signing
// CA when there is none (first start) or when it has a new one (plugged-in
// files replaced while Garrison was down), and signs the first CRL.
func New(ctx context.Context, cfg Config) (*Authority, error) {
	if cfg.Upstream == nil || cfg.Store == nil {
		return nil, errors.New("authority: Upstream and Store are required")
	}
	td, err := spiffeid.TrustDomainFromString(cfg.TrustDomain)
	if err != nil {
		return nil, fmt.Errorf("authority: trust domain: %w", err)
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.DefaultTTL == 0 {
		cfg.DefaultTTL = DefaultTTL
	}
	if cfg.MaxTTL == 0 {
		cfg.MaxTTL = DefaultMaxTTL
	}
	if cfg.DefaultTTL > cfg.MaxTTL {
		return nil, fmt.Errorf("authority: default TTL %s exceeds the maximum %s", cfg.DefaultTTL, cfg.MaxTTL)
	}
	switch {
	case cfg.Backdate == 0:
		cfg.Backdate = DefaultBackdate
	case cfg.Backdate < 0:
		cfg.Backdate = 0
	}
	if cfg.CRLValidity == 0 {
		cfg.CRLValidity = DefaultCRLValidity
	}
	if cfg.RefreshHint == 0 {
		cfg.RefreshHint = DefaultBundleRefreshHint
	}
	if cfg.RootActivationDelay == 0 {
		cfg.RootActivationDelay = 2 * cfg.RefreshHint
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Reader
	}
	a := &Authority{cfg: cfg, td: td, log: cfg.Logger, subs: map[chan struct{}]struct{}{}}
	a.mu.Lock()
	defer a.mu.Unlock()
	recs, err := cfg.Store.CAs(ctx)
	if err != nil {
		return nil, fmt.Errorf("authority: loading CA state: %w", err)
	}
	// A root Garrison made names its trust domain (selfsigned's URI SAN):
	// signing for another one from the same state is a misconfiguration
	// (ca init and serve given different --trust-domain).
	for _, r := range recs {
		for _, u := range r.Cert.URIs {
			if r.Role == RoleRoot && u.Scheme == "spiffe" && u.Host != td.Name() {
				return nil, fmt.Errorf("authority: the CA state holds a root of trust domain %q, not %q", u.Host, td.Name())
			}
		}
	}
	st, err := a.buildState(ctx, recs, 0)
	if err != nil {
		return nil, err
	}
	var current *Material
	if st.signer != nil {
		current = st.signer.material()
	}
	m, err := cfg.Upstream.Mint(ctx, MintRequest{Reason: MintStart, Current: current, Now: cfg.Clock()})
	if err != nil {
		return nil, fmt.Errorf("authority: upstream %s: %w", cfg.Upstream.Name(), err)
	}
	if m == nil && current == nil {
		return nil, fmt.Errorf("authority: upstream %s supplied no signing CA", cfg.Upstream.Name())
	}
	if m != nil && (current == nil || !m.Cert.Equal(current.Cert)) {
		if st, err = a.adopt(ctx, st, m, MintStart, time.Time{}); err != nil {
			return nil, err
		}
	}
	if err := a.resignCRL(ctx, st); err != nil {
		return nil, err
	}
	a.cur.Store(st)
	if a.metrics, err = newMetrics(cfg.Metrics, a); err != nil {
		return nil, err
	}
	a.log.Info("certificate authority ready", "trust_domain", td.Name(), "upstream", cfg.Upstream.Name(),
		"signing_ca_expires", st.signer.cert.NotAfter, "roots", len(st.roots))
	return a, nil
}

// TrustDomain is the authority's trust domain.
func (a *Authority) TrustDomain() spiffeid.TrustDomain { return a.td }

// MaxTTL is the longest TTL a request may ask for.
func (a *Authority) MaxTTL() time.Duration { return a.cfg.MaxTTL }

// SignRequest asks for a certificate for ID. The caller has been
// authenticated as ID already (ca/server) or is the operator.
type SignRequest struct {
	PublicKey crypto.PublicKey
	ID        spiffeid.ID
	// TTL is the requested lifetime; zero is the default. Above the maximum
	// the request is refused.
	TTL time.Duration
	// Caller is journaled as who asked.
	Caller string
	// DNSNames and IPAddresses go into the SAN extension beside the SPIFFE
	// ID; only the CA server's own certificate uses them (workload
	// requests never do: the identity is the URI SAN alone).
	DNSNames    []string
	IPAddresses []net.IP
}

// Issued is a signed certificate and the chain to send with it.
type Issued struct {
	Serial    *big.Int
	DER       []byte
	NotBefore time.Time
	NotAfter  time.Time
	// ChainPEM is the certificate first, then every CA above it, root
	// last: the CA API's cert_chain.
	ChainPEM []string
	// Chain is the same chain, parsed, with the leaf left out (callers
	// that need the leaf parse DER).
	Chain []*x509.Certificate
}

// Certificate parses the issued certificate.
func (i *Issued) Certificate() (*x509.Certificate, error) { return x509.ParseCertificate(i.DER) }

// SignCSR parses and checks a PEM CSR (ParseCSR, CheckCSRIdentity) and
// signs a certificate for id with its key.
func (a *Authority) SignCSR(ctx context.Context, pemCSR []byte, id spiffeid.ID, ttl time.Duration, caller string) (*Issued, error) {
	csr, err := ParseCSR(pemCSR)
	if err != nil {
		return nil, err
	}
	if err := CheckCSRIdentity(csr, id); err != nil {
		return nil, err
	}
	return a.Sign(ctx, SignRequest{PublicKey: csr.PublicKey, ID: id, TTL: ttl, Caller: caller})
}

// CheckTTL resolves a requested TTL: zero is the default, above the
// maximum or negative is refused with ErrInvalidRequest. istiod refuses
// too rather than clamping: a caller that asked for a year and got a day
// would plan its rotation wrongly.
func (a *Authority) CheckTTL(ttl time.Duration) (time.Duration, error) {
	switch {
	case ttl == 0:
		return a.cfg.DefaultTTL, nil
	case ttl < 0:
		return 0, fmt.Errorf("%w: negative TTL %s", ErrInvalidRequest, ttl)
	case ttl > a.cfg.MaxTTL:
		return 0, fmt.Errorf("%w: requested TTL %s exceeds the maximum %s", ErrInvalidRequest, ttl, a.cfg.MaxTTL)
	}
	return ttl, nil
}

// Sign issues an X.509-SVID for req.ID. The serial is journaled before
// the certificate is signed, so a certificate that leaves the authority is
// always in the journal, and a serial is never used twice even across a
// crash.
func (a *Authority) Sign(ctx context.Context, req SignRequest) (*Issued, error) {
	ttl, err := a.CheckTTL(req.TTL)
	if err != nil {
		return nil, err
	}
	if !req.ID.MemberOf(a.td) {
		return nil, fmt.Errorf("%w: %q is not in trust domain %q", ErrPermissionDenied, req.ID, a.td.Name())
	}
	if req.ID.Path() == "" {
		// X.509-SVID 4.1: a leaf's SPIFFE ID has a path; the bare trust
		// domain ID names the CA.
		return nil, fmt.Errorf("%w: %q names the trust domain, not a workload", ErrInvalidRequest, req.ID)
	}
	if err := CheckPublicKey(req.PublicKey); err != nil {
		return nil, err
	}
	st := a.cur.Load()
	sc := st.signer
	now := a.cfg.Clock()
	notBefore := now.Add(-a.cfg.Backdate).Truncate(time.Second)
	notAfter := now.Add(ttl).Truncate(time.Second)
	if notBefore.Before(sc.cert.NotBefore) {
		notBefore = sc.cert.NotBefore
	}
	// A leaf must not outlive its issuer (RFC 5280 path validation would
	// reject it at that point anyway); the self-signed upstream rotates its
	// intermediate long before this matters, plugged-in files may not.
	if notAfter.After(sc.cert.NotAfter) {
		notAfter = sc.cert.NotAfter
	}
	spki, ski, err := splitSPKI(req.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidRequest, err)
	}
	var serial *big.Int
	for attempt := 0; ; attempt++ {
		if serial, err = a.newSerial(); err != nil {
			return nil, err
		}
		err = a.cfg.Store.Journal(ctx, Record{
			Serial: serial, SPIFFEID: req.ID.String(), NotBefore: notBefore, NotAfter: notAfter,
			IssuedAt: now, Caller: req.Caller, SignerID: sc.id, RootID: sc.rootID,
		})
		if err == nil {
			break
		}
		if !errors.Is(err, ErrDuplicateSerial) || attempt == 3 {
			return nil, fmt.Errorf("journaling serial: %w", err)
		}
	}
	usage := x509.KeyUsageDigitalSignature
	if _, ok := req.PublicKey.(*rsa.PublicKey); ok {
		// X.509-SVID 4.3 allows keyEncipherment; only RSA keys can use it
		// (TLS 1.2 RSA key transport), so only they get it.
		usage |= x509.KeyUsageKeyEncipherment
	}
	var der []byte
	if sc.fast != nil {
		der, err = signLeaf(a.cfg.Rand, &leafFields{
			serial: serial, notBefore: notBefore, notAfter: notAfter, spki: spki, keyUsage: usage,
			ski: ski, aki: sc.cert.SubjectKeyId, uri: req.ID.String(), dnsNames: req.DNSNames, ips: req.IPAddresses,
		}, sc.cert, sc.fast)
	} else {
		der, err = x509.CreateCertificate(a.cfg.Rand, leafTemplate(serial, notBefore, notAfter, usage, ski, req), sc.cert, req.PublicKey, sc.key)
	}
	if err != nil {
		return nil, fmt.Errorf("signing: %w", err)
	}
	chain := make([]string, 0, 1+len(sc.chainPEM))
	chain = append(chain, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
	chain = append(chain, sc.chainPEM...)
	parsed := make([]*x509.Certificate, 0, 1+len(sc.chain))
	parsed = append(append(parsed, sc.cert), sc.chain...)
	return &Issued{Serial: serial, DER: der, NotBefore: notBefore, NotAfter: notAfter, ChainPEM: chain, Chain: parsed}, nil
}

// newSerial draws a random 128-bit positive serial (RFC 5280 4.1.2.2
// allows up to 20 octets; CA/B Forum asks for at least 64 random bits).
func (a *Authority) newSerial() (*big.Int, error) {
	var b [16]byte
	for {
		if _, err := io.ReadFull(a.cfg.Rand, b[:]); err != nil {
			return nil, fmt.Errorf("drawing a serial: %w", err)
		}
		if s := new(big.Int).SetBytes(b[:]); s.Sign() > 0 {
			return s, nil
		}
	}
}

// leafTemplate is the X.509-SVID as x509.CreateCertificate takes it, for
// signing keys the direct encoder does not handle (encode.go writes the
// same certificate).
func leafTemplate(serial *big.Int, notBefore, notAfter time.Time, usage x509.KeyUsage, ski []byte, req SignRequest) *x509.Certificate {
	return &x509.Certificate{
		SerialNumber: serial,
		// Empty subject: X.509-SVID 2 leaves it to the SAN, and Go then
		// marks the SAN extension critical as RFC 5280 4.2.1.6 requires.
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              usage,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		IsCA:                  false,
		URIs:                  []*url.URL{req.ID.URL()},
		DNSNames:              req.DNSNames,
		IPAddresses:           req.IPAddresses,
		SubjectKeyId:          ski,
	}
}
