// Package casuite is the CA conformance suite's case format and checker:
// YAML cases in conformance/ca of what
// istio.v1.auth.IstioCertificateService/CreateCertificate does with a CSR
// from a caller (issued, with which identity, or refused, with which gRPC
// code), run over the wire against any implementation of Istio's CA API.
//
// The package knows nothing of how an implementation is started: a Target
// is one that runs (its address, its roots, bearer tokens for the callers
// the cases name), and a Runner asks it every case. conformance/runner
// starts `garrison serve` or any implementation from a command template;
// ca/server's own test runs the same cases against its server in process.
//
// The checks of an issued certificate are the X.509-SVID rules, not
// Garrison's encoding: any conforming implementation passes them.
package casuite
