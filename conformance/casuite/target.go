package casuite

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"time"
)

// Target is a running implementation of the CA API the suite asks.
type Target interface {
	// Addr is the host:port serving CreateCertificate over TLS.
	Addr() string
	// Roots is the trust bundle: the server's certificate and every
	// issued chain must verify against it.
	Roots() []*x509.Certificate
	// Token returns the bearer token of a TokenCallers name. An error
	// wrapping errors.ErrUnsupported means the implementation has none
	// for it: the cases that need it are skipped, not failed.
	Token(name string) (string, error)
}

// Revoker is a Target that can revoke a certificate it issued, for the
// mtls:revoked caller. Without it those cases are skipped.
type Revoker interface {
	Revoke(ctx context.Context, leaf *x509.Certificate) error
}

// Clock is a Target whose clock is not the wall clock (a server in
// process with a fake clock): issued certificates are checked against it.
type Clock interface {
	Now() time.Time
}

// ClientCerts is a Target that makes the mtls: callers itself (a server
// in process can sign an expired certificate without waiting). Other
// targets get theirs through the API, with the token of MTLSToken.
type ClientCerts interface {
	ClientCert(ctx context.Context, name string) (*tls.Certificate, error)
}

// DefaultTTL is the lifetime expected when a case requests none: istiod's
// DEFAULT_WORKLOAD_CERT_TTL, and Garrison's --ca-default-ttl.
const DefaultTTL = 24 * time.Hour

// MaxBackdate bounds how far before the request NotBefore may lie: both
// istiod and Garrison backdate by 2 minutes for clock skew; more would
// make a certificate valid for time the caller never asked for.
const MaxBackdate = time.Hour

// slack absorbs the truncation of times to seconds in certificates.
const slack = 2 * time.Second
