// Package authority is Garrison's certificate authority core: it signs
// X.509-SVIDs (spiffe://<trust-domain>/ns/<ns>/sa/<sa>) exactly as the
// SPIFFE X.509-SVID specification and Istio's CA do, journals every serial
// before the certificate leaves it, rotates its signing CA and root without
// downtime (the trust bundle carries every root a valid certificate still
// chains to), revokes by serial or identity, and publishes the trust bundle
// and a CRL to whoever subscribes.
//
// The identity is always the authenticated caller's, which the CA API
// (ca/server) establishes; the authority never takes it from a CSR.
// Where the signing CA comes from is an Upstream's business
// (ca/upstream/selfsigned, ca/upstream/disk); where state lives is a
// Store's (ca/store).
package authority
