package casuite

import (
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// parseChain reads cert_chain: one PEM certificate per element (what
// istiod sends, and what ztunnel relies on), leaf first.
func parseChain(pems []string) ([]*x509.Certificate, error) {
	if len(pems) == 0 {
		return nil, errors.New("empty cert_chain")
	}
	var chain []*x509.Certificate
	for i, p := range pems {
		block, rest := pem.Decode([]byte(p))
		if block == nil || block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("cert_chain[%d] is not a PEM CERTIFICATE", i)
		}
		if len(strings.TrimSpace(string(rest))) != 0 {
			return nil, fmt.Errorf("cert_chain[%d] holds more than one PEM block", i)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("cert_chain[%d]: %w", i, err)
		}
		chain = append(chain, c)
	}
	return chain, nil
}

// checkIssued applies the X.509-SVID rules and the case's expectations to
// an issued chain; sent and received bracket the call on the target's
// clock.
func (r *Runner) checkIssued(c Case, pems []string, csrKey crypto.PublicKey, sent, received time.Time) Result {
	res := Result{Got: describeChain(pems)}
	chain, err := parseChain(pems)
	if err != nil {
		res.Problem = err.Error()
		return res
	}
	var problems []string
	fail := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	leaf := chain[0]

	// Chain: leaf first, root last, the root one of the target's roots.
	root := chain[len(chain)-1]
	switch {
	case len(chain) < 2:
		fail("cert_chain is the leaf alone; the root must come last")
	case root.CheckSignatureFrom(root) != nil:
		fail("the last element of cert_chain (%s) is not a self-signed root", root.Subject)
	case !slices.ContainsFunc(r.target.Roots(), root.Equal):
		fail("the root at the end of cert_chain (%s) is not among the implementation's roots", root.Subject)
	}
	// The SVID verifies against the trust bundle (go-spiffe also requires
	// one URI SAN, a non-CA leaf, digitalSignature and no keyCertSign or
	// cRLSign).
	td := spiffeid.RequireTrustDomainFromString(TrustDomain)
	bundle := x509bundle.FromX509Authorities(td, r.target.Roots())
	inter := chain
	if len(chain) > 1 {
		inter = chain[:len(chain)-1]
	}
	id, _, err := x509svid.Verify(inter, bundle, x509svid.WithTime(received))
	if err != nil {
		fail("x509svid.Verify: %v", err)
	} else if id.String() != c.Expect.SPIFFEID {
		fail("issued for %s, want %s", id, c.Expect.SPIFFEID)
	}
	// The same rules, said one by one, so a failure names the rule.
	if len(leaf.URIs) != 1 {
		fail("leaf has %d URI SANs, want exactly one (X.509-SVID 2)", len(leaf.URIs))
	} else if leaf.URIs[0].String() != c.Expect.SPIFFEID {
		fail("leaf URI SAN %s, want %s", leaf.URIs[0], c.Expect.SPIFFEID)
	}
	if leaf.IsCA {
		fail("leaf has CA=true (X.509-SVID 4.1)")
	}
	if leaf.KeyUsage&x509.KeyUsageDigitalSignature == 0 {
		fail("leaf key usage lacks digitalSignature (X.509-SVID 4.3)")
	}
	if leaf.KeyUsage&(x509.KeyUsageCertSign|x509.KeyUsageCRLSign) != 0 {
		fail("leaf key usage has keyCertSign or cRLSign (X.509-SVID 4.3)")
	}
	kuCritical := false
	for _, e := range leaf.Extensions {
		if e.Id.Equal(oidKeyUsage) {
			kuCritical = e.Critical
		}
	}
	if !kuCritical {
		fail("leaf key usage extension is absent or not critical (X.509-SVID 4.3)")
	}
	if !slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageServerAuth) || !slices.Contains(leaf.ExtKeyUsage, x509.ExtKeyUsageClientAuth) {
		fail("leaf extended key usage %v lacks serverAuth or clientAuth (X.509-SVID 4.4; Envoy uses an SVID both ways)", leaf.ExtKeyUsage)
	}
	// The certificate is for the caller's key, and the CSR's names are not
	// in it: the identity never comes from the CSR.
	if pub, ok := leaf.PublicKey.(interface{ Equal(crypto.PublicKey) bool }); csrKey != nil && (!ok || !pub.Equal(csrKey)) {
		fail("leaf does not certify the CSR's public key")
	}
	for _, d := range c.CSR.DNS {
		if slices.Contains(leaf.DNSNames, d) {
			fail("leaf carries the CSR's DNS SAN %q", d)
		}
	}
	if c.CSR.CN != "" && leaf.Subject.CommonName == c.CSR.CN {
		fail("leaf carries the CSR's subject CN %q", c.CSR.CN)
	}
	// Lifetime: NotAfter is the time of the request plus the requested
	// TTL (the default without one); NotBefore may be backdated a little.
	want := DefaultTTL
	if c.TTL > 0 {
		want = time.Duration(c.TTL) * time.Second
	}
	lo, hi := sent.Add(want-slack), received.Add(want+slack)
	if leaf.NotAfter.Before(lo) || leaf.NotAfter.After(hi) {
		fail("NotAfter %s is not the time of the request + %s (%s .. %s)", leaf.NotAfter.UTC().Format(time.RFC3339), want,
			lo.UTC().Format(time.RFC3339), hi.UTC().Format(time.RFC3339))
	}
	if leaf.NotBefore.After(received.Add(slack)) {
		fail("NotBefore %s is after the request", leaf.NotBefore.UTC().Format(time.RFC3339))
	}
	if life := leaf.NotAfter.Sub(leaf.NotBefore); life < want-slack || life > want+MaxBackdate {
		fail("NotAfter - NotBefore = %s for a requested %s (backdating up to %s allowed)", life, want, MaxBackdate)
	}
	res.Problem = strings.Join(problems, "; ")
	return res
}
