package authority

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"math/big"
	"time"
)

// Errors the authority returns, wrapped with a message that says what was
// wrong; the CA API maps them to gRPC codes with errors.Is.
var (
	// ErrInvalidRequest: the CSR or the requested TTL is unacceptable
	// (InvalidArgument on the wire).
	ErrInvalidRequest = errors.New("invalid certificate request")
	// ErrPermissionDenied: the caller asked for an identity that is not
	// its own (PermissionDenied on the wire).
	ErrPermissionDenied = errors.New("permission denied")
	// ErrNotFound: no certificate or identity matches (revocation).
	ErrNotFound = errors.New("not found")
	// ErrDuplicateSerial is returned by a Store asked to journal a serial
	// it already holds; the authority draws another serial.
	ErrDuplicateSerial = errors.New("serial number already journaled")
	// ErrUnsupported: the upstream cannot do what was asked (a root
	// rotation of plugged-in CA files that did not change, ...).
	ErrUnsupported = errors.New("not supported by this upstream")
)

// Record is one issued certificate in the journal.
type Record struct {
	Serial    *big.Int
	SPIFFEID  string
	NotBefore time.Time
	NotAfter  time.Time
	IssuedAt  time.Time
	// Caller says who asked: "token:ns/sa", "mtls:spiffe://...",
	// "operator", "garrison" (the CA server's own certificate).
	Caller string
	// SignerID and RootID are the CA records that signed the certificate
	// and the root it chains to: a retiring root stays in the trust bundle
	// until the last certificate under it has expired.
	SignerID int64
	RootID   int64
	// Revoked is filled in by listings.
	Revoked *Revocation `json:",omitempty"`
}

// Revocation is one revoked certificate.
type Revocation struct {
	Serial    *big.Int
	Reason    string
	RevokedAt time.Time
	// NotAfter of the revoked certificate: once past, it leaves the CRL
	// (RFC 5280 5.1.2.6 allows dropping expired entries).
	NotAfter time.Time
}

// Filter selects journal records.
type Filter struct {
	SPIFFEID string // "" = any
	// ValidAt, when not zero, keeps only certificates valid at that time.
	ValidAt time.Time
	Limit   int // 0 = no limit
}

// Counts summarises the journal.
type Counts struct {
	Issued  int64 // every certificate ever journaled
	Valid   int64 // not expired at the time asked
	Revoked int64 // revoked and not expired
}

// Role says what a CA record is for.
type Role string

// CA record roles.
const (
	RoleRoot    Role = "root"
	RoleSigning Role = "signing"
)

// CAState is where a CA record is in its life.
type CAState string

// CA record states. A root is Pending from a root rotation until it
// starts signing (it is in the trust bundle already, so that every agent
// trusts it before the first certificate under it appears), Active while
// it is the root of the signing CA, Retiring while certificates issued
// under it are still valid (it stays in the trust bundle), Retired once
// none is. A signing CA is Pending (under a pending root), Active or
// Retired.
const (
	StatePending  CAState = "pending"
	StateActive   CAState = "active"
	StateRetiring CAState = "retiring"
	StateRetired  CAState = "retired"
)

// CARecord is one CA certificate Garrison holds, with its key when
// Garrison holds that.
type CARecord struct {
	ID   int64
	Role Role
	Cert *x509.Certificate
	// Chain holds the certificates above a signing CA, up to and including
	// its root; empty when the signing CA is the root itself.
	Chain []*x509.Certificate
	// Key is nil when Garrison does not hold it (the root of plugged-in
	// CA files).
	Key crypto.Signer
	// RootID links a signing CA to its root record.
	RootID    int64
	State     CAState
	CreatedAt time.Time
	// StateAt is when the record entered its state.
	StateAt time.Time
	// ActivateAt is when a pending record starts signing.
	ActivateAt time.Time
}

// Store keeps the authority's state across restarts. The sqlite
// implementation lives in ca/store.
type Store interface {
	// Journal records a certificate about to be issued; it returns only
	// once the record is durable, and ErrDuplicateSerial when the serial
	// is already journaled.
	Journal(ctx context.Context, r Record) error
	// Issued lists journal records, newest first.
	Issued(ctx context.Context, f Filter) ([]Record, error)
	// Revoke revokes one journaled certificate; false when the serial is
	// not in the journal. Revoking twice keeps the first revocation.
	Revoke(ctx context.Context, serial *big.Int, reason string, at time.Time) (bool, error)
	// RevokeIdentity revokes every certificate of spiffeID not expired at
	// at, and returns the new revocations.
	RevokeIdentity(ctx context.Context, spiffeID, reason string, at time.Time) ([]Revocation, error)
	// Revocations lists the revoked certificates not expired at now.
	Revocations(ctx context.Context, now time.Time) ([]Revocation, error)
	Counts(ctx context.Context, now time.Time) (Counts, error)
	// LastNotAfter is the latest expiry of the certificates issued under
	// the root record rootID (zero when none).
	LastNotAfter(ctx context.Context, rootID int64) (time.Time, error)
	// CAs loads every CA record with its key.
	CAs(ctx context.Context) ([]CARecord, error)
	// SaveCAs, in one transaction, adds records (returning their IDs in
	// order; a signing record whose RootID is -1 refers to the first root
	// added in the same call) and moves existing records to new states.
	SaveCAs(ctx context.Context, add []CARecord, states map[int64]CAState, at time.Time) ([]int64, error)
	// NextCRLNumber returns a CRL number never returned before.
	NextCRLNumber(ctx context.Context) (*big.Int, error)
}

// MintReason says why the authority asks its upstream for a signing CA.
type MintReason int

// Mint reasons.
const (
	// MintStart: the authority starts. With no current material the
	// upstream must supply some; with current material it may return nil
	// (keep it) or new material (plugged-in files replaced meanwhile).
	MintStart MintReason = iota
	// MintIntermediate: a new signing CA under the same root.
	MintIntermediate
	// MintRoot: a new root, and a signing CA under it.
	MintRoot
)

func (r MintReason) String() string {
	switch r {
	case MintStart:
		return "start"
	case MintIntermediate:
		return "intermediate"
	case MintRoot:
		return "root"
	}
	return "unknown"
}

// MintRequest is what the authority asks of its upstream.
type MintRequest struct {
	Reason MintReason
	// Current is the material in use (nil on the very first start).
	Current *Material
	Now     time.Time
}

// Material is a signing CA as an upstream hands it over.
type Material struct {
	Cert *x509.Certificate
	Key  crypto.Signer
	// Chain holds the certificates above Cert, ending with the root; it is
	// empty when Cert is the root itself.
	Chain []*x509.Certificate
	// RootKey is the root's key when the upstream mints intermediates
	// itself (self-signed); nil otherwise.
	RootKey crypto.Signer
}

// Root is the root certificate the material chains to.
func (m *Material) Root() *x509.Certificate {
	if len(m.Chain) == 0 {
		return m.Cert
	}
	return m.Chain[len(m.Chain)-1]
}

// Upstream supplies signing CAs: self-signed (ca/upstream/selfsigned),
// plugged-in files (ca/upstream/disk), and later Vault PKI, which fits by
// signing an intermediate CSR for a key generated here.
type Upstream interface {
	// Name says which upstream this is, for status and logs.
	Name() string
	// Mint returns signing material for req.Reason; nil (with a nil error)
	// keeps the current material.
	Mint(ctx context.Context, req MintRequest) (*Material, error)
}
