// Package agent is Garrison's node agent (`garrison agent`). It runs beside
// a workload and:
//
//   - generates the workload's private key in memory (ECDSA P-256, a new
//     key for every certificate), so that it never leaves the machine;
//   - gets a certificate for it from the CA over the Istio CA API
//     (istio.v1.auth.IstioCertificateService/CreateCertificate over TLS),
//     authenticating with a bearer token the first time and with the
//     current certificate afterwards;
//   - hands the key, the chain, the trust bundle and the CRLs to Envoy over
//     SDS (package sds) and, optionally, to proxyless gRPC as files in
//     gRPC-Go's file_watcher layout;
//   - rotates the certificate at a fraction of its lifetime (half, with 1%
//     jitter, as Istio's agent), keeps the trust bundle and the CRL fresh
//     from the CA's HTTPS endpoints, and survives the CA being unreachable
//     by retrying with backoff until it answers.
//
// Everything time-dependent runs on one goroutine (Run) with one timer at a
// time from the injected clock, so tests drive rotation, retries and polling
// with a fake clock.
package agent

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/garrison-mesh/garrison/ca/pemcert"
	"github.com/garrison-mesh/garrison/ca/sds"
)

// Defaults of Config.
const (
	DefaultTTL      = 24 * time.Hour
	DefaultRotateAt = 0.5
	DefaultJitter   = 0.01
	// DefaultBundlePort is where the CA serves /bundle and /crl when no
	// bundle URL is given.
	DefaultBundlePort = "15013"

	defaultRetryInitial  = time.Second
	defaultRetryMax      = time.Minute
	defaultBundleRefresh = 5 * time.Minute
	defaultCRLRefresh    = time.Minute
	defaultCallTimeout   = 10 * time.Second
	defaultLogInterval   = 30 * time.Second
	minPoll              = time.Second
)

// SecretSink receives what the agent holds each time it may have changed;
// the SDS server is one. Equal workloads must be cheap to set again.
type SecretSink interface {
	SetWorkload(sds.Workload) error
}

var _ SecretSink = (*sds.Server)(nil)

// Config holds the agent's settings and dependencies. CAAddr, RootCertFile,
// TokenFile and SDS are required; the rest default.
type Config struct {
	// CAAddr is the CA's gRPC address, host:port (Istio's is port 15012).
	CAAddr string
	// RootCertFile holds the PEM roots the platform gives the workload. They
	// authenticate the CA, and are ROOTCA until the CA's trust bundle has
	// been fetched. The file is read again for every connection to the CA,
	// so a platform that rotates it is followed.
	RootCertFile string
	// BundleURL is the base URL of the CA's /bundle and /crl (default
	// https://<CAAddr's host>:15013).
	BundleURL string
	// TokenFile holds the bearer token for the first certificate (and for
	// any request once the held certificate was refused or has expired). It
	// is read on every use, so a rotated projected token works.
	TokenFile string
	// SPIFFEID, when set, is put in the CSR's URI SAN and required of the
	// issued certificate. The CA takes the identity from the caller, so it
	// is optional.
	SPIFFEID string
	// CAServerID, when set, is the exact SPIFFE ID the CA's server
	// certificate must carry. By default any
	// spiffe://<trust domain>/ns/<namespace>/sa/garrison is accepted, in the
	// workload's trust domain once that is known.
	CAServerID string
	// TTL is the certificate lifetime asked for (default 24h).
	TTL time.Duration
	// RotateAt is the fraction of the lifetime after which the certificate
	// is renewed (default 0.5).
	RotateAt float64
	// Jitter is added to RotateAt, uniformly in ±Jitter, so that workloads
	// started together do not renew together (default 0.01, Istio's;
	// negative: none).
	Jitter float64
	// CertDir, when set, receives cert-chain.pem, key.pem (0600) and
	// root-cert.pem for gRPC-Go's file_watcher certificate provider.
	CertDir string
	// SDS receives the secrets.
	SDS SecretSink

	// Now is the clock (default time.Now).
	Now func() time.Time
	// NewTimer arms a timer on that clock (default NewRealTimer).
	NewTimer func(time.Duration) Timer
	// Rand returns a number in [0, 1) for jitter (default math/rand/v2).
	Rand   func() float64
	Logger *slog.Logger
	// Metrics registers garrison_agent_* metrics; nil registers none.
	Metrics prometheus.Registerer

	// RetryInitial and RetryMax bound the backoff between failed requests
	// (defaults 1s and 1m).
	RetryInitial, RetryMax time.Duration
	// BundleRefresh is how often the bundle is fetched when it has no
	// refresh hint (default 5m); CRLRefresh the longest time between CRL
	// fetches (default 1m).
	BundleRefresh, CRLRefresh time.Duration
	// CallTimeout bounds each call to the CA (default 10s).
	CallTimeout time.Duration
	// LogInterval is the least time between two failure lines of one kind
	// (default 30s); the lines held back are counted in the next one.
	LogInterval time.Duration
}

// Agent is the node agent; Run does the work.
type Agent struct {
	cfg       Config
	log       *slog.Logger
	m         *metrics
	bundleURL *url.URL
	http      *http.Client
	wantID    spiffeid.ID
	serverID  spiffeid.ID

	// Run's goroutine writes these; mu guards them for the readers on
	// other goroutines (health, metrics, TLS verification).
	mu          sync.Mutex
	cur         *issued
	td          spiffeid.TrustDomain
	fileRoots   []*x509.Certificate
	bundleRoots []*x509.Certificate
	// prevCAs are the CA certificates of chains held before the current
	// one: CRLs they sign still verify during a signing-CA rotation.
	prevCAs []*x509.Certificate
	crls    map[string]*x509.RevocationList

	// Run's goroutine only.
	next                             struct{ cert, bundle, crl time.Time }
	certRetry, bundleRetry, crlRetry backoff
	certLog, bundleLog, crlLog       logLimiter
	fileLog                          logLimiter
	certRefused                      bool
	renewedFor                       map[string]bool
	expiredLogged                    bool
	written                          map[string][]byte
}

// issued is a certificate the agent holds.
type issued struct {
	// chain is as the CA returned it: leaf first, root last.
	chain    []*x509.Certificate
	key      *ecdsa.PrivateKey
	keyPEM   []byte
	id       spiffeid.ID
	rotateAt time.Time
}

func (i *issued) leaf() *x509.Certificate { return i.chain[0] }

// served is the chain Envoy and gRPC present: without the root.
func (i *issued) served() []*x509.Certificate { return i.chain[:len(i.chain)-1] }

// New checks cfg and returns an agent that holds nothing yet.
func New(cfg Config) (*Agent, error) {
	if cfg.SDS == nil {
		return nil, errors.New("agent: no SDS sink")
	}
	host, _, err := net.SplitHostPort(cfg.CAAddr)
	if err != nil {
		return nil, fmt.Errorf("CA address %q: %w", cfg.CAAddr, err)
	}
	if cfg.TokenFile == "" {
		return nil, errors.New("a token file is needed for the first certificate")
	}
	if cfg.RootCertFile == "" {
		return nil, errors.New("a root certificate file is needed to authenticate the CA")
	}
	roots, err := readRoots(cfg.RootCertFile)
	if err != nil {
		return nil, fmt.Errorf("root certificate file: %w", err)
	}
	if cfg.BundleURL == "" {
		cfg.BundleURL = "https://" + net.JoinHostPort(host, DefaultBundlePort)
	}
	bu, err := url.Parse(cfg.BundleURL)
	if err != nil || bu.Scheme != "https" || bu.Host == "" {
		return nil, fmt.Errorf("bundle URL %q: must be https://host[:port][/path]", cfg.BundleURL)
	}
	if cfg.TTL <= 0 {
		cfg.TTL = DefaultTTL
	}
	if cfg.TTL < time.Second {
		return nil, fmt.Errorf("TTL %v is under a second", cfg.TTL)
	}
	if cfg.RotateAt == 0 {
		cfg.RotateAt = DefaultRotateAt
	}
	if cfg.RotateAt <= 0 || cfg.RotateAt >= 1 {
		return nil, fmt.Errorf("rotate-at %v: must be a fraction of the lifetime, in (0, 1)", cfg.RotateAt)
	}
	switch {
	case cfg.Jitter == 0:
		cfg.Jitter = DefaultJitter
	case cfg.Jitter < 0:
		cfg.Jitter = 0
	case cfg.Jitter >= cfg.RotateAt || cfg.RotateAt+cfg.Jitter >= 1:
		return nil, fmt.Errorf("jitter %v: rotate-at ± jitter must stay within (0, 1)", cfg.Jitter)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.NewTimer == nil {
		cfg.NewTimer = NewRealTimer
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.Float64
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.RetryInitial <= 0 {
		cfg.RetryInitial = defaultRetryInitial
	}
	if cfg.RetryMax <= 0 {
		cfg.RetryMax = defaultRetryMax
	}
	cfg.RetryMax = max(cfg.RetryMax, cfg.RetryInitial)
	if cfg.BundleRefresh <= 0 {
		cfg.BundleRefresh = defaultBundleRefresh
	}
	if cfg.CRLRefresh <= 0 {
		cfg.CRLRefresh = defaultCRLRefresh
	}
	if cfg.CallTimeout <= 0 {
		cfg.CallTimeout = defaultCallTimeout
	}
	if cfg.LogInterval <= 0 {
		cfg.LogInterval = defaultLogInterval
	}
	a := &Agent{
		cfg:        cfg,
		log:        cfg.Logger,
		bundleURL:  bu,
		fileRoots:  roots,
		crls:       map[string]*x509.RevocationList{},
		renewedFor: map[string]bool{},
		written:    map[string][]byte{},
	}
	if cfg.SPIFFEID != "" {
		if a.wantID, err = spiffeid.FromString(cfg.SPIFFEID); err != nil {
			return nil, fmt.Errorf("SPIFFE ID %q: %w", cfg.SPIFFEID, err)
		}
		a.td = a.wantID.TrustDomain()
	}
	if cfg.CAServerID != "" {
		if a.serverID, err = spiffeid.FromString(cfg.CAServerID); err != nil {
			return nil, fmt.Errorf("CA server SPIFFE ID %q: %w", cfg.CAServerID, err)
		}
	}
	if cfg.CertDir != "" {
		if err := os.MkdirAll(cfg.CertDir, 0o755); err != nil {
			return nil, fmt.Errorf("cert dir: %w", err)
		}
	}
	for _, b := range []*backoff{&a.certRetry, &a.bundleRetry, &a.crlRetry} {
		*b = backoff{initial: cfg.RetryInitial, max: cfg.RetryMax, rand: cfg.Rand}
	}
	for _, l := range []*logLimiter{&a.certLog, &a.bundleLog, &a.crlLog, &a.fileLog} {
		l.every = cfg.LogInterval
	}
	a.http = &http.Client{Transport: &http.Transport{
		TLSClientConfig:     a.caTLSConfig(nil),
		TLSHandshakeTimeout: cfg.CallTimeout,
		MaxIdleConns:        2,
	}}
	if a.m, err = newMetrics(cfg.Metrics, a); err != nil {
		return nil, err
	}
	return a, nil
}

// Run keeps the workload's certificate, trust bundle and CRLs current
// until ctx is done. It does not give up: a CA that is unreachable or
// refuses is retried with backoff, and what the agent holds (even an
// expired certificate) keeps being served meanwhile.
func (a *Agent) Run(ctx context.Context) error {
	defer a.http.CloseIdleConnections()
	// ROOTCA is served from the platform's roots before anything else, so
	// that Envoy can warm what needs only the trust bundle.
	a.publish()
	a.next.cert = time.Time{} // due now
	for {
		now := a.cfg.Now()
		if !now.Before(a.next.cert) {
			a.renew(ctx)
		}
		if a.current() != nil {
			if !now.Before(a.next.bundle) {
				a.refreshBundle(ctx)
			}
			if !now.Before(a.next.crl) {
				a.refreshCRL(ctx)
			}
		}
		a.checkExpiry()
		a.publish()
		if ctx.Err() != nil {
			return nil
		}
		wake := a.next.cert
		if a.current() != nil {
			wake = earliest(wake, a.next.bundle, a.next.crl)
		}
		t := a.cfg.NewTimer(wake.Sub(a.cfg.Now()))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C():
		}
	}
}

func earliest(ts ...time.Time) time.Time {
	e := ts[0]
	for _, t := range ts[1:] {
		if t.Before(e) {
			e = t
		}
	}
	return e
}

func (a *Agent) current() *issued {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.cur
}

// checkExpiry says once that the certificate has expired. The agent keeps
// serving it, as Istio's agent does (its SDS server keeps what Envoy has
// and a failed rotation pushes nothing): Envoy would keep the expired
// secret anyway, since SDS cannot take a secret back from it, and the
// workload's fate is the same either way: peers refuse the handshake until
// a new certificate arrives, which the agent keeps trying to get.
func (a *Agent) checkExpiry() {
	cur := a.current()
	if cur == nil || a.cfg.Now().Before(cur.leaf().NotAfter) {
		a.expiredLogged = false
		return
	}
	if !a.expiredLogged {
		a.expiredLogged = true
		a.log.Error("workload certificate expired; still serving it while retrying the CA",
			"spiffe_id", cur.id.String(), "serial", serialHex(cur.leaf()), "not_after", cur.leaf().NotAfter)
	}
}

// publish hands what the agent holds to SDS and the files.
func (a *Agent) publish() {
	w := a.workload()
	if err := a.cfg.SDS.SetWorkload(w); err != nil {
		a.log.Error("sds: cannot serve secrets", "err", err)
	}
	a.writeFiles(w)
}

func (a *Agent) workload() sds.Workload {
	now := a.cfg.Now()
	a.mu.Lock()
	defer a.mu.Unlock()
	var w sds.Workload
	if a.cur != nil {
		w.CertChainPEM = pemcert.Encode(a.cur.served())
		w.KeyPEM = a.cur.keyPEM
	}
	if !a.td.IsZero() {
		w.TrustDomain = a.td.Name()
	}
	w.RootsPEM = pemcert.Encode(a.trustRootsLocked())
	keys := make([]string, 0, len(a.crls))
	for k, crl := range a.crls {
		// Envoy fails every certificate checked against an expired CRL,
		// so a CRL that could not be refreshed in time is dropped. Leaves
		// are short-lived: one revoked before the CRL's nextUpdate expires
		// soon after it.
		if !crl.NextUpdate.IsZero() && !now.Before(crl.NextUpdate) {
			a.log.Warn("CRL expired without a fresh one; no longer served", "issuer", crl.Issuer.String(), "next_update", crl.NextUpdate)
			delete(a.crls, k)
			continue
		}
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		w.CRLPEM = append(w.CRLPEM, pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: a.crls[k].Raw})...)
	}
	return w
}

// trustRootsLocked is ROOTCA: the CA's bundle once fetched (it lists every
// root, old and new during a rotation), the platform's roots before; plus
// the root of the held chain, which the CA vouched for over an
// authenticated channel, should a bundle fetch lag behind it.
func (a *Agent) trustRootsLocked() []*x509.Certificate {
	roots := a.fileRoots
	if a.bundleRoots != nil {
		roots = a.bundleRoots
	}
	roots = slices.Clone(roots)
	if a.cur != nil {
		if root := a.cur.chain[len(a.cur.chain)-1]; !containsCert(roots, root) {
			roots = append(roots, root)
		}
	}
	return roots
}

// Ready reports whether the agent holds a certificate that has not
// expired.
func (a *Agent) Ready() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.cur != nil && a.cfg.Now().Before(a.cur.leaf().NotAfter)
}

// Status describes what the agent holds, for health endpoints and logs.
type Status struct {
	Ready    bool      `json:"ready"`
	SPIFFEID string    `json:"spiffe_id,omitempty"`
	Serial   string    `json:"serial,omitempty"`
	NotAfter time.Time `json:"not_after,omitzero"`
	RotateAt time.Time `json:"rotate_at,omitzero"`
	Roots    int       `json:"roots"`
	CRLs     int       `json:"crls"`
}

// Status reports what the agent holds now.
func (a *Agent) Status() Status {
	now := a.cfg.Now()
	a.mu.Lock()
	defer a.mu.Unlock()
	s := Status{Roots: len(a.trustRootsLocked()), CRLs: len(a.crls)}
	if a.cur != nil {
		s.Ready = now.Before(a.cur.leaf().NotAfter)
		s.SPIFFEID = a.cur.id.String()
		s.Serial = serialHex(a.cur.leaf())
		s.NotAfter = a.cur.leaf().NotAfter
		s.RotateAt = a.cur.rotateAt
	}
	return s
}

func (a *Agent) expirySeconds() float64 {
	now := a.cfg.Now()
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.cur == nil {
		return 0
	}
	return a.cur.leaf().NotAfter.Sub(now).Seconds()
}

// logFailure logs a failure through its limiter.
func (a *Agent) logFailure(l *logLimiter, msg string, err error, args ...any) {
	ok, suppressed := l.allow(a.cfg.Now())
	if !ok {
		return
	}
	args = append(args, "err", err)
	if suppressed > 0 {
		args = append(args, "suppressed", suppressed)
	}
	a.log.Warn(msg, args...)
}

func readRoots(path string) ([]*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return pemcert.Parse(data)
}

func containsCert(certs []*x509.Certificate, c *x509.Certificate) bool {
	return slices.ContainsFunc(certs, func(x *x509.Certificate) bool { return bytes.Equal(x.Raw, c.Raw) })
}

func equalCerts(a, b []*x509.Certificate) bool {
	return slices.EqualFunc(a, b, func(x, y *x509.Certificate) bool { return bytes.Equal(x.Raw, y.Raw) })
}

func serialHex(c *x509.Certificate) string { return fmt.Sprintf("%x", c.SerialNumber) }
