// Package disk is the upstream for a CA plugged in as files, in Istio's
// cacerts layout: ca-cert.pem (the signing CA), ca-key.pem (its key),
// cert-chain.pem (the signing CA and the CAs above it, usually ending
// with the root) and root-cert.pem (the root). The files are validated
// (the key matches, the certificate is a CA, the chain verifies to the
// root) and re-read at start and on every rotation: rotating means the
// operator replaced the files, then ran `garrison ca rotate`.
//
// Unlike istiod, the root is not appended to the chain again when
// cert-chain.pem already ends with it.
package disk

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/garrison-mesh/garrison/ca/authority"
	"github.com/garrison-mesh/garrison/ca/pemcert"
)

// File names of Istio's cacerts secret.
const (
	CertFile  = "ca-cert.pem"
	KeyFile   = "ca-key.pem"
	ChainFile = "cert-chain.pem"
	RootFile  = "root-cert.pem"
)

// Config names the directory.
type Config struct {
	Dir string
}

// Upstream reads a plugged-in CA from files.
type Upstream struct{ cfg Config }

var _ authority.Upstream = (*Upstream)(nil)

// New returns the upstream; it reads nothing until Mint.
func New(cfg Config) (*Upstream, error) {
	if cfg.Dir == "" {
		return nil, errors.New("disk: the cacerts directory is required")
	}
	return &Upstream{cfg: cfg}, nil
}

// Name implements authority.Upstream.
func (u *Upstream) Name() string { return "disk:" + u.cfg.Dir }

// Mint implements authority.Upstream: it reads and validates the files;
// for a rotation, files that did not change are an error.
func (u *Upstream) Mint(_ context.Context, req authority.MintRequest) (*authority.Material, error) {
	m, err := Load(u.cfg.Dir)
	if err != nil {
		return nil, err
	}
	if req.Current != nil && m.Cert.Equal(req.Current.Cert) {
		if req.Reason == authority.MintStart {
			return nil, nil
		}
		return nil, fmt.Errorf("%w: %s still holds the signing CA in use; replace the files first", authority.ErrUnsupported, u.cfg.Dir)
	}
	if req.Reason != authority.MintStart && req.Now.After(m.Cert.NotAfter) {
		return nil, fmt.Errorf("disk: %s expired at %s", CertFile, m.Cert.NotAfter)
	}
	return m, nil
}

// Load reads and validates the cacerts files in dir.
func Load(dir string) (*authority.Material, error) {
	read := func(name string) ([]*x509.Certificate, error) {
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return nil, err
		}
		certs, err := pemcert.Parse(data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		return certs, nil
	}
	certs, err := read(CertFile)
	if err != nil {
		return nil, err
	}
	cert := certs[0]
	roots, err := read(RootFile)
	if err != nil {
		return nil, err
	}
	var chain []*x509.Certificate
	if _, err := os.Stat(filepath.Join(dir, ChainFile)); err == nil {
		if chain, err = read(ChainFile); err != nil {
			return nil, err
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	keyPEM, err := os.ReadFile(filepath.Join(dir, KeyFile))
	if err != nil {
		return nil, err
	}
	key, err := parseKey(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", KeyFile, err)
	}
	if pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool }); !ok || !pub.Equal(cert.PublicKey) {
		return nil, fmt.Errorf("%s does not match the key of %s", KeyFile, CertFile)
	}
	if !cert.IsCA || !cert.BasicConstraintsValid {
		return nil, fmt.Errorf("%s is not a CA certificate", CertFile)
	}
	if cert.KeyUsage != 0 && cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, fmt.Errorf("%s may not sign certificates (no keyCertSign)", CertFile)
	}
	// cert-chain.pem starts with ca-cert.pem in Istio's layout.
	if len(chain) > 0 && chain[0].Equal(cert) {
		chain = chain[1:]
	}
	pool := x509.NewCertPool()
	for _, r := range roots {
		pool.AddCert(r)
	}
	inter := x509.NewCertPool()
	for _, c := range chain {
		inter.AddCert(c)
	}
	paths, err := cert.Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}, CurrentTime: cert.NotBefore})
	if err != nil {
		return nil, fmt.Errorf("%s does not verify to %s through %s: %w", CertFile, RootFile, ChainFile, err)
	}
	// The verified path is ca-cert, intermediates..., root. Send exactly
	// that above the signing CA: the root once, whether or not
	// cert-chain.pem ended with it.
	path := paths[0]
	return &authority.Material{Cert: cert, Key: key, Chain: path[1:]}, nil
}

func parseKey(data []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("not PEM")
	}
	var (
		k   any
		err error
	)
	switch block.Type {
	case "RSA PRIVATE KEY":
		k, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		k, err = x509.ParseECPrivateKey(block.Bytes)
	default:
		k, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	}
	if err != nil {
		return nil, err
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%T is not a signing key", k)
	}
	return s, nil
}
