package authority

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// retireGrace is how long a root stays in the bundle after it stopped
// being active even when no certificate was issued under it: a signing
// call that read the old state just before a rotation journals its
// certificate a moment later.
const retireGrace = time.Minute

// buildState makes the immutable view of recs; it does not sign the CRL.
func (a *Authority) buildState(ctx context.Context, recs []CARecord, seq uint64) (*state, error) {
	st := &state{seq: seq + 1, records: recs, rootPool: x509.NewCertPool()}
	for _, r := range recs {
		if r.Role == RoleRoot {
			st.bundleSeq++
			if r.State == StateRetired {
				st.bundleSeq++
			}
		}
	}
	byID := map[int64]*CARecord{}
	st.signers = map[string]bool{}
	for i := range recs {
		byID[recs[i].ID] = &recs[i]
		if recs[i].Role == RoleSigning {
			st.signers[string(recs[i].Cert.Raw)] = true
		}
	}
	for i := range recs {
		r := &recs[i]
		if r.Role != RoleSigning || r.State != StateActive {
			continue
		}
		if st.signer != nil {
			return nil, fmt.Errorf("authority: two active signing CAs (%d and %d) in the store", st.signer.id, r.ID)
		}
		if r.Key == nil {
			return nil, fmt.Errorf("authority: signing CA %d has no key", r.ID)
		}
		sc := &signingCA{id: r.ID, rootID: r.RootID, cert: r.Cert, key: r.Key, chain: r.Chain}
		if root := byID[r.RootID]; root != nil {
			sc.rootKey = root.Key
		}
		if k, ok := r.Key.(*ecdsa.PrivateKey); ok {
			sc.fast = k
		}
		// What follows the leaf in every response: the signing CA and the
		// CAs above it, root last (just the root when it signs itself).
		for _, c := range append([]*x509.Certificate{r.Cert}, r.Chain...) {
			sc.chainPEM = append(sc.chainPEM, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})))
		}
		st.signer = sc
	}
	// The active root first, then a pending one, then retiring ones.
	for _, want := range []CAState{StateActive, StatePending, StateRetiring} {
		for i := len(recs) - 1; i >= 0; i-- {
			r := &recs[i]
			if r.Role == RoleRoot && r.State == want {
				st.roots = append(st.roots, r.Cert)
				st.rootIDs = append(st.rootIDs, r.ID)
				st.rootPool.AddCert(r.Cert)
				st.rootsPEM = append(st.rootsPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: r.Cert.Raw})...)
			}
		}
	}
	revs, err := a.cfg.Store.Revocations(ctx, a.cfg.Clock())
	if err != nil {
		return nil, fmt.Errorf("authority: loading revocations: %w", err)
	}
	st.revoked = make(map[string]struct{}, len(revs))
	for _, r := range revs {
		st.revoked[string(r.Serial.Bytes())] = struct{}{}
	}
	st.revCount = len(revs)
	return st, nil
}

// adopt persists new signing material m and returns the state with it
// active: the previous signing CA is retired, and when the root changed
// the previous root becomes retiring (it stays in the bundle). With a
// non-zero activateAt and a new root, the new root and signing CA are
// persisted as pending instead: the root joins the trust bundle now and
// Maintain activates both at activateAt.
func (a *Authority) adopt(ctx context.Context, st *state, m *Material, reason MintReason, activateAt time.Time) (*state, error) {
	if err := checkMaterial(m, a.cfg.Clock()); err != nil {
		return nil, fmt.Errorf("authority: upstream %s: %w", a.cfg.Upstream.Name(), err)
	}
	now := a.cfg.Clock()
	if !activateAt.IsZero() && !slices.ContainsFunc(st.records, func(r CARecord) bool { return r.Role == RoleRoot && r.Cert.Equal(m.Root()) }) {
		return a.adoptPending(ctx, st, m, activateAt)
	}
	recs := slices.Clone(st.records)
	states := map[int64]CAState{}
	var add []CARecord
	rootID := int64(-1)
	for _, r := range recs {
		if r.Role == RoleRoot && r.Cert.Equal(m.Root()) {
			rootID = r.ID
			if r.State != StateActive {
				states[r.ID] = StateActive
			}
		}
	}
	for _, r := range recs {
		switch {
		case r.Role == RoleSigning && r.State == StateActive:
			states[r.ID] = StateRetired
		case r.Role == RoleRoot && r.State == StateActive && r.ID != rootID:
			states[r.ID] = StateRetiring
		}
	}
	if rootID < 0 {
		add = append(add, CARecord{Role: RoleRoot, Cert: m.Root(), Key: m.RootKey, State: StateActive, CreatedAt: now})
	}
	add = append(add, CARecord{Role: RoleSigning, Cert: m.Cert, Chain: m.Chain, Key: m.Key, RootID: rootID, State: StateActive, CreatedAt: now})
	ids, err := a.cfg.Store.SaveCAs(ctx, add, states, now)
	if err != nil {
		return nil, fmt.Errorf("authority: saving CA state: %w", err)
	}
	for i := range recs {
		if s, ok := states[recs[i].ID]; ok {
			recs[i].State, recs[i].StateAt = s, now
		}
	}
	for i := range add {
		add[i].ID = ids[i]
		if add[i].Role == RoleSigning && add[i].RootID < 0 {
			add[i].RootID = ids[0]
		}
		recs = append(recs, add[i])
	}
	a.log.Info("signing CA adopted", "reason", reason.String(), "subject", m.Cert.Subject.String(),
		"not_after", m.Cert.NotAfter, "new_root", rootID < 0)
	return a.buildState(ctx, recs, st.seq)
}

// adoptPending persists a new root and its signing CA as pending.
func (a *Authority) adoptPending(ctx context.Context, st *state, m *Material, activateAt time.Time) (*state, error) {
	now := a.cfg.Clock()
	add := []CARecord{
		{Role: RoleRoot, Cert: m.Root(), Key: m.RootKey, State: StatePending, CreatedAt: now, ActivateAt: activateAt},
		{Role: RoleSigning, Cert: m.Cert, Chain: m.Chain, Key: m.Key, RootID: -1, State: StatePending, CreatedAt: now, ActivateAt: activateAt},
	}
	ids, err := a.cfg.Store.SaveCAs(ctx, add, nil, now)
	if err != nil {
		return nil, fmt.Errorf("authority: saving CA state: %w", err)
	}
	recs := slices.Clone(st.records)
	for i := range add {
		add[i].ID, add[i].StateAt = ids[i], now
		if add[i].Role == RoleSigning {
			add[i].RootID = ids[0]
		}
		recs = append(recs, add[i])
	}
	a.log.Info("new root published in the trust bundle; it signs from activation on",
		"subject", m.Root().Subject.String(), "activate_at", activateAt)
	return a.buildState(ctx, recs, st.seq)
}

// activateDue makes a pending root and signing CA active once their time
// has come: the previous signing CA is retired and the previous root
// becomes retiring. It returns nil when nothing was due.
func (a *Authority) activateDue(ctx context.Context, st *state, now time.Time) (*state, error) {
	var pending *CARecord
	for i := range st.records {
		r := &st.records[i]
		if r.Role == RoleSigning && r.State == StatePending && !now.Before(r.ActivateAt) {
			pending = r
		}
	}
	if pending == nil {
		return nil, nil
	}
	states := map[int64]CAState{pending.ID: StateActive, pending.RootID: StateActive}
	for _, r := range st.records {
		switch {
		case r.Role == RoleSigning && r.State == StateActive:
			states[r.ID] = StateRetired
		case r.Role == RoleRoot && r.State == StateActive && r.ID != pending.RootID:
			states[r.ID] = StateRetiring
		}
	}
	if _, err := a.cfg.Store.SaveCAs(ctx, nil, states, now); err != nil {
		return nil, fmt.Errorf("activating the new root: %w", err)
	}
	recs := slices.Clone(st.records)
	for i := range recs {
		if s, ok := states[recs[i].ID]; ok {
			recs[i].State, recs[i].StateAt = s, now
		}
	}
	a.log.Info("new root active: certificates are signed under it from now on", "subject", pending.Cert.Subject.String())
	return a.buildState(ctx, recs, st.seq)
}

// checkMaterial refuses signing material that cannot sign SVIDs.
func checkMaterial(m *Material, now time.Time) error {
	if m.Cert == nil || m.Key == nil {
		return errors.New("signing CA without certificate or key")
	}
	if !m.Cert.IsCA || (m.Cert.KeyUsage != 0 && m.Cert.KeyUsage&x509.KeyUsageCertSign == 0) {
		return errors.New("signing certificate is not a CA allowed to sign certificates")
	}
	if !publicKeysEqual(m.Key.Public(), m.Cert.PublicKey) {
		return errors.New("signing key does not match the signing certificate")
	}
	if now.After(m.Cert.NotAfter) {
		return fmt.Errorf("signing CA expired at %s", m.Cert.NotAfter)
	}
	pool := x509.NewCertPool()
	pool.AddCert(m.Root())
	inter := x509.NewCertPool()
	for _, c := range m.Chain {
		inter.AddCert(c)
	}
	if _, err := m.Cert.Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return fmt.Errorf("signing CA does not chain to its root: %w", err)
	}
	return nil
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	ea, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && ea.Equal(b)
}

// resignCRL signs st's CRL (st is not yet published).
func (a *Authority) resignCRL(ctx context.Context, st *state) error {
	now := a.cfg.Clock()
	revs, err := a.cfg.Store.Revocations(ctx, now)
	if err != nil {
		return fmt.Errorf("authority: loading revocations: %w", err)
	}
	num, err := a.cfg.Store.NextCRLNumber(ctx)
	if err != nil {
		return fmt.Errorf("authority: CRL number: %w", err)
	}
	tmpl := &x509.RevocationList{
		Number:     num,
		ThisUpdate: now.Truncate(time.Second),
		NextUpdate: now.Add(a.cfg.CRLValidity).Truncate(time.Second),
	}
	for _, r := range revs {
		tmpl.RevokedCertificateEntries = append(tmpl.RevokedCertificateEntries, x509.RevocationListEntry{
			SerialNumber: r.Serial, RevocationTime: r.RevokedAt, ReasonCode: reasonCodes[r.Reason],
		})
	}
	der, err := x509.CreateRevocationList(a.cfg.Rand, tmpl, st.signer.cert, st.signer.key)
	if err != nil {
		// A plugged-in CA without cRLSign cannot sign a CRL; revocation
		// still works in-process (IsRevoked) and the endpoint says why.
		a.log.Warn("cannot sign a CRL with the signing CA", "err", err)
		st.crl = nil
	} else {
		st.crl = der
	}
	st.crlThis, st.crlNext, st.crlNumber = tmpl.ThisUpdate, tmpl.NextUpdate, num
	return nil
}

// reasonCodes are RFC 5280 5.3.1's CRLReason names.
var reasonCodes = map[string]int{
	"unspecified":          0,
	"keyCompromise":        1,
	"cACompromise":         2,
	"affiliationChanged":   3,
	"superseded":           4,
	"cessationOfOperation": 5,
	"privilegeWithdrawn":   9,
}

// publish swaps in st and tells subscribers.
func (a *Authority) publish(st *state) {
	a.cur.Store(st)
	a.notify()
}

// RotateOptions tune a rotation.
type RotateOptions struct {
	// ActivateAfter is, for a root rotation, how long the new root is
	// only published in the trust bundle before it signs, so that every
	// agent trusts it before the first certificate under it (the CA
	// server's own included) appears. Zero takes
	// Config.RootActivationDelay; negative activates at once.
	ActivateAfter time.Duration
}

// Rotate replaces the signing CA: MintIntermediate keeps the root,
// MintRoot makes a new one too (staged, see RotateOptions); the old root
// stays in the trust bundle until every certificate issued under it has
// expired. Certificates already issued stay valid. The new state is
// durable before Rotate returns.
func (a *Authority) Rotate(ctx context.Context, reason MintReason, opts RotateOptions) error {
	if reason != MintIntermediate && reason != MintRoot {
		return fmt.Errorf("%w: rotation must be of the intermediate or the root", ErrInvalidRequest)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	var activateAt time.Time
	if reason == MintRoot {
		for _, r := range a.cur.Load().records {
			if r.State == StatePending {
				return fmt.Errorf("%w: a root rotation is already pending until %s", ErrUnsupported, r.ActivateAt.Format(time.RFC3339))
			}
		}
		delay := opts.ActivateAfter
		if delay == 0 {
			delay = a.cfg.RootActivationDelay
		}
		if delay > 0 {
			activateAt = a.cfg.Clock().Add(delay)
		}
	}
	return a.rotateLocked(ctx, reason, activateAt)
}

func (a *Authority) rotateLocked(ctx context.Context, reason MintReason, activateAt time.Time) error {
	st := a.cur.Load()

	m, err := a.cfg.Upstream.Mint(ctx, MintRequest{Reason: reason, Current: st.signer.material(), Now: a.cfg.Clock()})
	if err != nil {
		return fmt.Errorf("upstream %s: %w", a.cfg.Upstream.Name(), err)
	}
	if m == nil || m.Cert.Equal(st.signer.cert) {
		return fmt.Errorf("%w: upstream %s has no new signing CA", ErrUnsupported, a.cfg.Upstream.Name())
	}
	if reason == MintIntermediate && !m.Root().Equal(st.roots[0]) {
		return fmt.Errorf("%w: upstream %s supplied a new root for an intermediate rotation", ErrUnsupported, a.cfg.Upstream.Name())
	}
	next, err := a.adopt(ctx, st, m, reason, activateAt)
	if err != nil {
		return err
	}
	if err := a.resignCRL(ctx, next); err != nil {
		return err
	}
	a.publish(next)
	if a.metrics != nil {
		a.metrics.rotations.WithLabelValues(reason.String()).Inc()
	}
	return nil
}

// Revoke revokes one certificate by serial. reason is an RFC 5280
// CRLReason name ("" = unspecified).
func (a *Authority) Revoke(ctx context.Context, serial *big.Int, reason string) error {
	if reason == "" {
		reason = "unspecified"
	}
	if _, ok := reasonCodes[reason]; !ok {
		return fmt.Errorf("%w: unknown revocation reason %q", ErrInvalidRequest, reason)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	ok, err := a.cfg.Store.Revoke(ctx, serial, reason, a.cfg.Clock())
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("%w: no certificate with serial %s was issued", ErrNotFound, FormatSerial(serial))
	}
	a.log.Info("certificate revoked", "serial", FormatSerial(serial), "reason", reason)
	return a.refreshLocked(ctx)
}

// RevokeIdentity revokes every unexpired certificate of id and returns
// how many it revoked.
func (a *Authority) RevokeIdentity(ctx context.Context, id spiffeid.ID, reason string) (int, error) {
	if reason == "" {
		reason = "unspecified"
	}
	if _, ok := reasonCodes[reason]; !ok {
		return 0, fmt.Errorf("%w: unknown revocation reason %q", ErrInvalidRequest, reason)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	revs, err := a.cfg.Store.RevokeIdentity(ctx, id.String(), reason, a.cfg.Clock())
	if err != nil {
		return 0, err
	}
	a.log.Info("identity revoked", "spiffe_id", id.String(), "certificates", len(revs), "reason", reason)
	if len(revs) == 0 {
		return 0, nil
	}
	return len(revs), a.refreshLocked(ctx)
}

// refreshLocked rebuilds the state from the current records (revocations
// changed) and re-signs the CRL.
func (a *Authority) refreshLocked(ctx context.Context) error {
	st := a.cur.Load()
	next, err := a.buildState(ctx, st.records, st.seq)
	if err != nil {
		return err
	}
	if err := a.resignCRL(ctx, next); err != nil {
		return err
	}
	a.publish(next)
	return nil
}

// IsRevoked reports whether the certificate with this serial is revoked
// (and not expired); an in-memory lookup, for ext_authz's request path.
func (a *Authority) IsRevoked(serial *big.Int) bool {
	_, ok := a.cur.Load().revoked[string(serial.Bytes())]
	return ok
}

// Maintain does what time asks for: re-signs the CRL at half its
// validity (and drops expired entries), takes a retiring root out of the
// bundle once no certificate under it is valid, and has a self-minting
// upstream rotate the signing CA when fewer than MaxTTL of its life
// remain (so that every TTL a caller may ask for still fits under it).
// Run calls it periodically; tests call it after moving their clock.
func (a *Authority) Maintain(ctx context.Context) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.cfg.Clock()
	st := a.cur.Load()
	if next, err := a.activateDue(ctx, st, now); err != nil {
		return err
	} else if next != nil {
		if err := a.resignCRL(ctx, next); err != nil {
			return err
		}
		a.publish(next)
		st = next
	}
	if st.signer.rootKey != nil && st.signer.cert.NotAfter.Sub(now) < a.cfg.MaxTTL {
		a.log.Info("signing CA nearing expiry, rotating", "not_after", st.signer.cert.NotAfter)
		if err := a.rotateLocked(ctx, MintIntermediate, time.Time{}); err != nil {
			a.log.Error("rotating the signing CA", "err", err)
		}
		st = a.cur.Load()
	}
	states := map[int64]CAState{}
	for _, r := range st.records {
		if r.Role != RoleRoot || r.State != StateRetiring || now.Sub(r.StateAt) < retireGrace {
			continue
		}
		last, err := a.cfg.Store.LastNotAfter(ctx, r.ID)
		if err != nil {
			return err
		}
		if !now.Before(last) || !now.Before(r.Cert.NotAfter) {
			states[r.ID] = StateRetired
		}
	}
	if len(states) > 0 {
		if _, err := a.cfg.Store.SaveCAs(ctx, nil, states, now); err != nil {
			return fmt.Errorf("retiring roots: %w", err)
		}
		recs := slices.Clone(st.records)
		for i := range recs {
			if s, ok := states[recs[i].ID]; ok {
				recs[i].State, recs[i].StateAt = s, now
				a.log.Info("root left the trust bundle: no certificate under it is valid any more",
					"subject", recs[i].Cert.Subject.String(), "not_after", recs[i].Cert.NotAfter)
			}
		}
		next, err := a.buildState(ctx, recs, st.seq)
		if err != nil {
			return err
		}
		if err := a.resignCRL(ctx, next); err != nil {
			return err
		}
		a.publish(next)
		return nil
	}
	if now.Sub(st.crlThis) >= a.cfg.CRLValidity/2 {
		return a.refreshLocked(ctx)
	}
	return nil
}

// Run calls Maintain every interval until ctx ends.
func (a *Authority) Run(ctx context.Context) error {
	const interval = 30 * time.Second
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if err := a.Maintain(ctx); err != nil {
				a.log.Error("CA maintenance", "err", err)
			}
		}
	}
}

// Subscribe returns a channel that receives a value after every change of
// the trust bundle, the signing CA or the CRL (coalesced: a slow reader
// sees one value for several changes), until ctx ends.
func (a *Authority) Subscribe(ctx context.Context) <-chan struct{} {
	ch := make(chan struct{}, 1)
	a.subsMu.Lock()
	a.subs[ch] = struct{}{}
	a.subsMu.Unlock()
	go func() {
		<-ctx.Done()
		a.subsMu.Lock()
		delete(a.subs, ch)
		a.subsMu.Unlock()
	}()
	return ch
}

func (a *Authority) notify() {
	a.subsMu.Lock()
	defer a.subsMu.Unlock()
	for ch := range a.subs {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// Sequence increases with every change of bundle, signing CA or CRL.
func (a *Authority) Sequence() uint64 { return a.cur.Load().seq }

// BundleSequence increases when the set of trusted roots changes, and
// only then; it is the SPIFFE bundle's spiffe_sequence.
func (a *Authority) BundleSequence() uint64 { return a.cur.Load().bundleSeq }

// Roots are the trust bundle's roots: the active one first, then the
// retiring ones.
func (a *Authority) Roots() []*x509.Certificate { return slices.Clone(a.cur.Load().roots) }

// RootsPEM is the trust bundle as concatenated PEM (Istio's
// root-cert.pem).
func (a *Authority) RootsPEM() []byte { return bytes.Clone(a.cur.Load().rootsPEM) }

// SPIFFEBundle is the trust domain's SPIFFE bundle with every trusted
// root, the refresh hint and the sequence number.
func (a *Authority) SPIFFEBundle() *spiffebundle.Bundle {
	st := a.cur.Load()
	b := spiffebundle.FromX509Authorities(a.td, st.roots)
	b.SetRefreshHint(a.cfg.RefreshHint)
	b.SetSequenceNumber(st.bundleSeq)
	return b
}

// CRL is the current DER CRL (nil when the signing CA cannot sign one)
// and its nextUpdate.
func (a *Authority) CRL() ([]byte, time.Time) {
	st := a.cur.Load()
	return st.crl, st.crlNext
}

// CRLNumber is the current CRL's number (RFC 5280 5.2.3).
func (a *Authority) CRLNumber() *big.Int { return new(big.Int).Set(a.cur.Load().crlNumber) }

// SigningChain is the signing CA then every CA above it, root last.
func (a *Authority) SigningChain() []*x509.Certificate {
	sc := a.cur.Load().signer
	if len(sc.chain) == 0 {
		return []*x509.Certificate{sc.cert}
	}
	return append([]*x509.Certificate{sc.cert}, sc.chain...)
}

// VerifyCaller verifies a client certificate chain presented for renewal:
// the leaf must be an X.509-SVID of this trust domain that chains to a
// root of the current bundle, is valid now, and is not revoked. It
// returns the SVID's identity and the leaf.
func (a *Authority) VerifyCaller(chain []*x509.Certificate) (spiffeid.ID, *x509.Certificate, error) {
	if len(chain) == 0 {
		return spiffeid.ID{}, nil, errors.New("no client certificate")
	}
	st := a.cur.Load()
	leaf := chain[0]
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	chains, err := leaf.Verify(x509.VerifyOptions{
		Roots: st.rootPool, Intermediates: inter, CurrentTime: a.cfg.Clock(),
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	if err != nil {
		return spiffeid.ID{}, nil, fmt.Errorf("client certificate does not verify against the trust bundle: %w", err)
	}
	if !slices.ContainsFunc(chains, func(c []*x509.Certificate) bool { return len(c) > 1 && st.signers[string(c[1].Raw)] }) {
		return spiffeid.ID{}, nil, errors.New("client certificate was not issued by this CA (another CA under the same root?)")
	}
	if leaf.IsCA {
		return spiffeid.ID{}, nil, errors.New("client certificate is a CA")
	}
	id, err := x509svid.IDFromCert(leaf)
	if err != nil {
		return spiffeid.ID{}, nil, fmt.Errorf("client certificate is not an X.509-SVID: %w", err)
	}
	if !id.MemberOf(a.td) {
		return spiffeid.ID{}, nil, fmt.Errorf("client certificate names %q, outside trust domain %q", id, a.td.Name())
	}
	if _, revoked := st.revoked[string(leaf.SerialNumber.Bytes())]; revoked {
		return spiffeid.ID{}, nil, fmt.Errorf("client certificate %s is revoked", FormatSerial(leaf.SerialNumber))
	}
	return id, leaf, nil
}

// FormatSerial writes a serial as lower-case hex, how the journal, the
// CLI and the logs show it.
func FormatSerial(s *big.Int) string { return hex.EncodeToString(s.Bytes()) }

// ParseSerial reads a serial in hex (colons allowed, as openssl prints
// them).
func ParseSerial(s string) (*big.Int, error) {
	b, err := hex.DecodeString(string(bytes.ReplaceAll([]byte(s), []byte(":"), nil)))
	if err != nil || len(b) == 0 || len(b) > 20 {
		return nil, fmt.Errorf("%w: serial %q is not 1 to 20 bytes of hex", ErrInvalidRequest, s)
	}
	return new(big.Int).SetBytes(b), nil
}

// Fingerprint is the SHA-256 of a certificate, hex, as status shows it.
func Fingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return hex.EncodeToString(sum[:])
}
