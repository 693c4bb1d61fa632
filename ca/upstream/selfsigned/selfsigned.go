// Package selfsigned is the upstream Garrison uses when no other CA is
// configured: on first start it makes a root (EC P-256, 10 years) and an
// intermediate signing CA under it (1 year by default); leaves are signed
// by the intermediate, so the root key signs only intermediates and can
// rotate them without changing the trust bundle. A root rotation makes a
// new root and an intermediate under it.
package selfsigned

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/url"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/garrison-mesh/garrison/ca/authority"
)

// Defaults.
const (
	DefaultRootTTL         = 10 * 365 * 24 * time.Hour
	DefaultIntermediateTTL = 365 * 24 * time.Hour
)

// Config sets the lifetimes and names of the CAs made.
type Config struct {
	// TrustDomain names the CAs (organization) and is their URI SAN
	// (spiffe://<td>), as X.509-SVID 3 allows for signing certificates.
	TrustDomain     string
	RootTTL         time.Duration
	IntermediateTTL time.Duration
	// Rand is the randomness for keys, serials and signatures.
	Rand io.Reader
}

// Upstream mints self-signed roots and intermediates.
type Upstream struct {
	cfg Config
	td  spiffeid.TrustDomain
}

var _ authority.Upstream = (*Upstream)(nil)

// New returns the upstream.
func New(cfg Config) (*Upstream, error) {
	td, err := spiffeid.TrustDomainFromString(cfg.TrustDomain)
	if err != nil {
		return nil, fmt.Errorf("selfsigned: %w", err)
	}
	if cfg.RootTTL == 0 {
		cfg.RootTTL = DefaultRootTTL
	}
	if cfg.IntermediateTTL == 0 {
		cfg.IntermediateTTL = DefaultIntermediateTTL
	}
	if cfg.IntermediateTTL > cfg.RootTTL {
		return nil, errors.New("selfsigned: the intermediate cannot outlive the root")
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Reader
	}
	return &Upstream{cfg: cfg, td: td}, nil
}

// Name implements authority.Upstream.
func (u *Upstream) Name() string { return "selfsigned" }

// Mint implements authority.Upstream: a new root and intermediate on
// first start and for a root rotation, a new intermediate under the
// current root for an intermediate rotation; at a later start, nothing
// new.
func (u *Upstream) Mint(_ context.Context, req authority.MintRequest) (*authority.Material, error) {
	cur := req.Current
	switch {
	case req.Reason == authority.MintStart && cur != nil:
		return nil, nil
	case req.Reason == authority.MintIntermediate && cur != nil:
		if cur.RootKey == nil {
			return nil, fmt.Errorf("%w: the root key is not held", authority.ErrUnsupported)
		}
		return u.intermediate(req.Now, cur.Root(), cur.RootKey)
	}
	root, rootKey, err := u.root(req.Now)
	if err != nil {
		return nil, err
	}
	return u.intermediate(req.Now, root, rootKey)
}

func (u *Upstream) root(now time.Time) (*x509.Certificate, crypto.Signer, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), u.cfg.Rand)
	if err != nil {
		return nil, nil, err
	}
	tmpl, err := u.template(now, u.cfg.RootTTL, "Garrison Root CA")
	if err != nil {
		return nil, nil, err
	}
	der, err := x509.CreateCertificate(u.cfg.Rand, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	return cert, key, err
}

func (u *Upstream) intermediate(now time.Time, root *x509.Certificate, rootKey crypto.Signer) (*authority.Material, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), u.cfg.Rand)
	if err != nil {
		return nil, err
	}
	tmpl, err := u.template(now, u.cfg.IntermediateTTL, "Garrison Intermediate CA")
	if err != nil {
		return nil, err
	}
	if tmpl.NotAfter.After(root.NotAfter) {
		tmpl.NotAfter = root.NotAfter
	}
	tmpl.MaxPathLenZero = true
	der, err := x509.CreateCertificate(u.cfg.Rand, tmpl, root, &key.PublicKey, rootKey)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &authority.Material{Cert: cert, Key: key, Chain: []*x509.Certificate{root}, RootKey: rootKey}, nil
}

// template is a CA certificate valid from now (backdated a little, as
// leaves are) for ttl. The common name carries the creation time so that
// old and new roots are told apart during a rotation.
func (u *Upstream) template(now time.Time, ttl time.Duration, name string) (*x509.Certificate, error) {
	serial, err := rand.Int(u.cfg.Rand, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, err
	}
	return &x509.Certificate{
		SerialNumber: serial.Add(serial, big.NewInt(1)),
		Subject: pkix.Name{
			Organization: []string{u.td.Name()},
			CommonName:   name + " " + now.UTC().Format("2006-01-02T15:04:05Z"),
		},
		NotBefore:             now.Add(-authority.DefaultBackdate).Truncate(time.Second),
		NotAfter:              now.Add(ttl).Truncate(time.Second),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		URIs:                  []*url.URL{u.td.ID().URL()},
	}, nil
}
