package agent

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// maxBody bounds what the agent reads from the CA's HTTPS endpoints.
const maxBody = 4 << 20

// refreshBundle fetches the trust bundle and schedules the next fetch by
// its refresh hint, or retries with backoff, never waiting longer than
// the usual refresh.
func (a *Agent) refreshBundle(ctx context.Context) {
	a.mu.Lock()
	td := a.td
	a.mu.Unlock()
	err := a.fetchBundleFor(ctx, td)
	if err != nil && ctx.Err() == nil {
		delay := min(a.bundleRetry.next(), a.cfg.BundleRefresh)
		a.next.bundle = a.cfg.Now().Add(delay)
		a.logFailure(&a.bundleLog, "trust bundle fetch failed; keeping the current roots", err, "retry_in", delay)
	}
}

// fetchBundleFor fetches /bundle as td's SPIFFE trust bundle and makes its
// X.509 authorities the trust roots.
func (a *Agent) fetchBundleFor(ctx context.Context, td spiffeid.TrustDomain) error {
	err := func() error {
		if td.IsZero() {
			return errors.New("trust domain not known yet")
		}
		body, err := a.get(ctx, "bundle")
		if err != nil {
			return err
		}
		b, err := spiffebundle.Parse(td, body)
		if err != nil {
			return err
		}
		roots := b.X509Authorities()
		if len(roots) == 0 {
			return errors.New("the bundle has no X.509 authority")
		}
		refresh := a.cfg.BundleRefresh
		if hint, ok := b.RefreshHint(); ok && hint > 0 {
			refresh = max(hint, minPoll)
		}
		a.mu.Lock()
		changed := !equalCerts(a.bundleRoots, roots)
		a.bundleRoots = roots
		a.mu.Unlock()
		if changed {
			subjects := make([]string, len(roots))
			for i, r := range roots {
				subjects[i] = r.Subject.String()
			}
			a.log.Info("trust bundle updated", "trust_domain", td.Name(), "roots", subjects, "refresh", refresh)
		}
		a.bundleRetry.reset()
		a.bundleLog.reset()
		a.next.bundle = a.cfg.Now().Add(refresh)
		return nil
	}()
	a.m.fetch.WithLabelValues("bundle", result(err)).Inc()
	return err
}

// refreshCRL fetches the CRL, checks that a CA of a chain the agent holds
// (or held) signed it, and keeps it, one per issuer, until its nextUpdate;
// the next fetch is due before then and at most CRLRefresh away.
func (a *Agent) refreshCRL(ctx context.Context) {
	err := a.fetchCRL(ctx)
	if ctx.Err() != nil {
		return
	}
	a.m.fetch.WithLabelValues("crl", result(err)).Inc()
	if err != nil {
		delay := min(a.crlRetry.next(), a.cfg.CRLRefresh)
		a.next.crl = a.cfg.Now().Add(delay)
		a.logFailure(&a.crlLog, "CRL fetch failed; keeping the current CRLs", err, "retry_in", delay)
	}
}

func (a *Agent) fetchCRL(ctx context.Context) error {
	body, err := a.get(ctx, "crl")
	if err != nil {
		return err
	}
	lists, err := parseCRLs(body)
	if err != nil {
		return err
	}
	now := a.cfg.Now()
	next := now.Add(a.cfg.CRLRefresh)
	var errs []error
	for _, crl := range lists {
		if err := a.acceptCRL(crl, now); err != nil {
			errs = append(errs, err)
			continue
		}
		if !crl.NextUpdate.IsZero() {
			// Fetch again halfway to nextUpdate when that is sooner.
			next = earliest(next, now.Add(max(crl.NextUpdate.Sub(now)/2, minPoll)))
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	a.crlRetry.reset()
	a.crlLog.reset()
	a.next.crl = next
	return nil
}

// parseCRLs reads the contract's DER CRL, or PEM "X509 CRL" blocks, which
// lets a CA publish one CRL per signing CA in use (Envoy, checking leaves
// against CRLs, refuses a leaf whose issuer has none).
func parseCRLs(body []byte) ([]*x509.RevocationList, error) {
	var ders [][]byte
	for rest := body; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type == "X509 CRL" {
			ders = append(ders, block.Bytes)
		}
	}
	if len(ders) == 0 {
		ders = [][]byte{body}
	}
	var out []*x509.RevocationList
	for _, der := range ders {
		crl, err := x509.ParseRevocationList(der)
		if err != nil {
			return nil, fmt.Errorf("CRL: %w", err)
		}
		out = append(out, crl)
	}
	return out, nil
}

// acceptCRL keeps a CRL signed by a CA of a chain the agent holds or held.
func (a *Agent) acceptCRL(crl *x509.RevocationList, now time.Time) error {
	if !crl.NextUpdate.IsZero() && !now.Before(crl.NextUpdate) {
		return fmt.Errorf("CRL of %s is stale: nextUpdate %v", crl.Issuer, crl.NextUpdate)
	}
	key := string(crl.RawIssuer) + string(crl.AuthorityKeyId)
	if !a.crlSignedByKnownCA(crl) {
		// A signing CA the agent has no chain from: the CA has rotated its
		// signing CA. A certificate from it brings the CA certificate that
		// verifies the CRL; ask for one now, once per new issuer.
		if !a.renewedFor[key] {
			a.renewedFor[key] = true
			a.next.cert = time.Time{}
			a.log.Info("CRL signed by a new signing CA; renewing the certificate to get its chain", "issuer", crl.Issuer.String())
		}
		return fmt.Errorf("CRL signed by %s, which no chain this agent holds verifies", crl.Issuer)
	}
	a.mu.Lock()
	old := a.crls[key]
	replace := old == nil || (newerCRL(crl, old) && (!sameRevocations(old, crl) || pastHalf(old, now)))
	if replace {
		a.crls[key] = crl
	}
	a.mu.Unlock()
	if replace && (old == nil || !sameRevocations(old, crl)) {
		a.log.Info("CRL updated", "issuer", crl.Issuer.String(), "revoked", len(crl.RevokedCertificateEntries), "next_update", crl.NextUpdate)
	}
	return nil
}

// crlSignedByKnownCA checks the CRL's signature against the CA
// certificates of the held chain and of earlier chains still valid.
func (a *Agent) crlSignedByKnownCA(crl *x509.RevocationList) bool {
	a.mu.Lock()
	var cas []*x509.Certificate
	if a.cur != nil {
		cas = append(cas, a.cur.chain[1:]...)
	}
	cas = append(cas, a.prevCAs...)
	a.mu.Unlock()
	for _, ca := range cas {
		if bytes.Equal(ca.RawSubject, crl.RawIssuer) && crl.CheckSignatureFrom(ca) == nil {
			return true
		}
	}
	return false
}

// pastHalf reports whether a CRL is past half its validity. A CRL with the
// same revocations as the held one replaces it only then: a CA that signs a
// fresh CRL for every request would otherwise have ROOTCA pushed to Envoy,
// which rebuilds every TLS context using it, at every poll; this way the
// served CRL is replaced about twice per validity period and never expires
// while the CA answers.
func pastHalf(c *x509.RevocationList, now time.Time) bool {
	if c.NextUpdate.IsZero() {
		return true
	}
	return !now.Before(c.ThisUpdate.Add(c.NextUpdate.Sub(c.ThisUpdate) / 2))
}

// newerCRL orders CRLs of one issuer by CRL number (RFC 5280 5.2.3), then
// by thisUpdate; an older CRL never replaces a newer one.
func newerCRL(n, o *x509.RevocationList) bool {
	if n.Number != nil && o.Number != nil && n.Number.Cmp(o.Number) != 0 {
		return n.Number.Cmp(o.Number) > 0
	}
	return n.ThisUpdate.After(o.ThisUpdate)
}

func sameRevocations(a, b *x509.RevocationList) bool {
	if len(a.RevokedCertificateEntries) != len(b.RevokedCertificateEntries) {
		return false
	}
	for i := range a.RevokedCertificateEntries {
		if a.RevokedCertificateEntries[i].SerialNumber.Cmp(b.RevokedCertificateEntries[i].SerialNumber) != 0 {
			return false
		}
	}
	return true
}

func (a *Agent) get(ctx context.Context, path string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, a.cfg.CallTimeout)
	defer cancel()
	u := a.bundleURL.JoinPath(path).String()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := a.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", u, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	return body, nil
}

func result(err error) string {
	if err != nil {
		return "error"
	}
	return "success"
}
