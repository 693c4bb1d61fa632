package agent

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	pb "istio.io/api/security/v1alpha1"

	"github.com/garrison-mesh/garrison/ca/pemcert"
)

// errInvalidResponse marks a CA answer the agent cannot use.
type errInvalidResponse struct{ err error }

func (e errInvalidResponse) Error() string { return "invalid CA response: " + e.err.Error() }
func (e errInvalidResponse) Unwrap() error { return e.err }

func invalid(format string, args ...any) error {
	return errInvalidResponse{fmt.Errorf(format, args...)}
}

// errLocal marks a failure before any request was made.
type errLocal struct{ err error }

func (e errLocal) Error() string { return e.err.Error() }
func (e errLocal) Unwrap() error { return e.err }

// classify maps a request's outcome to its metric label. Per the CA's wire
// contract, Unauthenticated, PermissionDenied and InvalidArgument are
// permanent for the credential used; everything else from the CA
// (Unavailable, DeadlineExceeded, a failed handshake, ...) is transient.
func classify(err error) string {
	var inv errInvalidResponse
	var loc errLocal
	switch {
	case err == nil:
		return resultSuccess
	case errors.As(err, &inv):
		return resultInvalid
	case errors.As(err, &loc):
		return resultError
	case refused(err):
		return resultRefused
	}
	return resultUnavailable
}

func refused(err error) bool {
	switch status.Code(err) {
	case codes.Unauthenticated, codes.PermissionDenied, codes.InvalidArgument:
		return true
	}
	return false
}

// renew requests a certificate for a new key: with the held certificate
// while it is valid and has not been refused, with the token otherwise or
// when the CA refuses the certificate.
func (a *Agent) renew(ctx context.Context) {
	auth := ""
	iss, err := func() (*issued, error) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, errLocal{err}
		}
		csr, err := newCSR(key, a.cfg.SPIFFEID)
		if err != nil {
			return nil, errLocal{err}
		}
		var chain []string
		cur := a.current()
		if cur != nil && !a.certRefused && a.cfg.Now().Before(cur.leaf().NotAfter) {
			auth = "certificate"
			chain, err = a.createCertificate(ctx, csr, clientCert(cur), "")
			if refused(err) {
				// The CA may no longer accept this certificate (revoked,
				// signed by a retired CA): the token decides.
				a.log.Warn("CA refused the current certificate; falling back to the token", "err", err)
				a.certRefused = true
			} else if err != nil {
				return nil, err
			}
		}
		if chain == nil {
			auth = "token"
			token, err := readToken(a.cfg.TokenFile)
			if err != nil {
				return nil, errLocal{err}
			}
			if chain, err = a.createCertificate(ctx, csr, nil, token); err != nil {
				return nil, err
			}
		}
		return a.accept(ctx, chain, key)
	}()
	if ctx.Err() != nil {
		return // shutting down: not the CA's failure
	}
	result := classify(err)
	a.m.csr.WithLabelValues(result).Inc()
	if err != nil {
		delay := a.certRetry.next()
		if result == resultRefused {
			delay = a.certRetry.longest()
		}
		a.next.cert = a.cfg.Now().Add(delay)
		args := []any{"result", result, "auth", auth, "retry_in", delay}
		if cur := a.current(); cur != nil {
			args = append(args, "current_not_after", cur.leaf().NotAfter)
		}
		a.logFailure(&a.certLog, "certificate request failed", err, args...)
		return
	}
	a.install(iss, auth)
}

func (a *Agent) install(iss *issued, auth string) {
	now := a.cfg.Now()
	a.mu.Lock()
	prev := a.cur
	if prev != nil {
		for _, c := range prev.chain[1:] {
			if !containsCert(a.prevCAs, c) {
				a.prevCAs = append(a.prevCAs, c)
			}
		}
	}
	var keep []*x509.Certificate
	for _, c := range a.prevCAs {
		if now.Before(c.NotAfter) {
			keep = append(keep, c)
		}
	}
	a.prevCAs = keep
	a.cur = iss
	tdChanged := a.td != iss.id.TrustDomain()
	if tdChanged {
		a.td = iss.id.TrustDomain()
		a.bundleRoots = nil // a bundle of another trust domain is not ours
	}
	a.mu.Unlock()

	a.certRefused = false
	a.certRetry.reset()
	a.certLog.reset()
	a.next.cert = iss.rotateAt
	if prev == nil || tdChanged {
		// The bundle and CRL need the trust domain and the signing CA,
		// which the first certificate gives: fetch them in this round.
		a.next.bundle, a.next.crl = time.Time{}, time.Time{}
	}
	if prev != nil && prev.id != iss.id {
		a.log.Warn("the CA issued a certificate for another identity than the previous one", "previous", prev.id.String(), "spiffe_id", iss.id.String())
	}
	a.log.Info("workload certificate issued", "spiffe_id", iss.id.String(), "serial", serialHex(iss.leaf()),
		"not_before", iss.leaf().NotBefore, "not_after", iss.leaf().NotAfter, "rotate_at", iss.rotateAt, "auth", auth,
		"chain", len(iss.chain))
}

// createCertificate is one CreateCertificate call on a connection of its
// own: the credential differs between calls (a client certificate or a
// token), calls are hours apart, and a fresh connection follows a CA that
// moved.
func (a *Agent) createCertificate(ctx context.Context, csr []byte, cert *tls.Certificate, token string) ([]string, error) {
	conn, err := grpc.NewClient(a.cfg.CAAddr,
		grpc.WithTransportCredentials(credentials.NewTLS(a.caTLSConfig(cert))),
		// gRPC would otherwise take a proxy from HTTPS_PROXY; the agent's
		// settings are its flags (its HTTP client uses no proxy either).
		grpc.WithNoProxy())
	if err != nil {
		return nil, errLocal{err}
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, a.cfg.CallTimeout)
	defer cancel()
	if token != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
	}
	resp, err := pb.NewIstioCertificateServiceClient(conn).CreateCertificate(ctx, &pb.IstioCertificateRequest{
		Csr:              string(csr),
		ValidityDuration: int64(a.cfg.TTL / time.Second),
	})
	if err != nil {
		return nil, err
	}
	return resp.GetCertChain(), nil
}

// accept checks the CA's answer: a chain leaf first and root last, whose
// leaf is an X.509-SVID with exactly one URI SAN (the --spiffe-id, when
// given) for the key the agent generated, verified up to a trusted root.
func (a *Agent) accept(ctx context.Context, pems []string, key *ecdsa.PrivateKey) (*issued, error) {
	var chain []*x509.Certificate
	for i, p := range pems {
		certs, err := pemcert.Parse([]byte(p))
		if err != nil {
			return nil, invalid("cert_chain[%d]: %v", i, err)
		}
		chain = append(chain, certs...)
	}
	if len(chain) < 2 {
		return nil, invalid("cert_chain has %d certificates, want the leaf, any intermediates and the root", len(chain))
	}
	leaf := chain[0]
	if pub, ok := leaf.PublicKey.(*ecdsa.PublicKey); !ok || !pub.Equal(&key.PublicKey) {
		return nil, invalid("the leaf is not for the key of the CSR")
	}
	if len(leaf.URIs) != 1 {
		return nil, invalid("the leaf has %d URI SANs, want exactly one", len(leaf.URIs))
	}
	id, err := spiffeid.FromURI(leaf.URIs[0])
	if err != nil {
		return nil, invalid("the leaf's URI SAN: %v", err)
	}
	if !a.wantID.IsZero() && id != a.wantID {
		return nil, invalid("issued for %s, but --spiffe-id is %s", id, a.wantID)
	}
	verify := func() error {
		_, _, err := x509svid.Verify(chain[:len(chain)-1], anyTrustDomain(a.verificationRoots()), x509svid.WithTime(a.cfg.Now()))
		return err
	}
	if err := verify(); err != nil {
		// The CA may have started issuing under a root this agent has not
		// fetched yet: fetch the bundle once and try again.
		if a.fetchBundleFor(ctx, id.TrustDomain()) != nil || verify() != nil {
			return nil, invalid("the chain does not verify against the trust bundle: %v", err)
		}
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, errLocal{err}
	}
	return &issued{
		chain:    chain,
		key:      key,
		keyPEM:   pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}),
		id:       id,
		rotateAt: a.rotationTime(leaf),
	}, nil
}

// rotationTime is RotateAt of the way through the leaf's validity, moved
// by up to ±Jitter of it, as Istio's agent (secretcache.go rotateTime:
// grace ratio 0.5, jitter 0.01, either direction).
func (a *Agent) rotationTime(leaf *x509.Certificate) time.Time {
	life := leaf.NotAfter.Sub(leaf.NotBefore)
	f := a.cfg.RotateAt
	if a.cfg.Jitter > 0 {
		f += a.cfg.Jitter * (2*a.cfg.Rand() - 1)
	}
	f = min(max(f, 0), 1)
	return leaf.NotBefore.Add(time.Duration(f * float64(life)))
}

// newCSR builds a CSR for key with no subject and, only when the operator
// named the identity, that SPIFFE ID as its URI SAN: the CA takes the
// identity from the caller and ignores the CSR's SANs.
func newCSR(key *ecdsa.PrivateKey, spiffeID string) ([]byte, error) {
	tmpl := &x509.CertificateRequest{}
	if spiffeID != "" {
		u, err := url.Parse(spiffeID)
		if err != nil {
			return nil, err
		}
		tmpl.URIs = []*url.URL{u}
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), nil
}

func clientCert(i *issued) *tls.Certificate {
	c := &tls.Certificate{PrivateKey: i.key, Leaf: i.leaf()}
	for _, x := range i.served() {
		c.Certificate = append(c.Certificate, x.Raw)
	}
	return c
}

func readToken(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("token file: %w", err)
	}
	t := strings.TrimSpace(string(b))
	if t == "" {
		return "", fmt.Errorf("token file %s is empty", path)
	}
	return t, nil
}
