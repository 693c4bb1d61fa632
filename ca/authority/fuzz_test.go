package authority_test

import (
	"crypto/elliptic"
	"errors"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/garrison-mesh/garrison/ca/authority"
)

// FuzzParseCSR feeds arbitrary bytes to the CSR checks every caller's
// request goes through. Whatever the input, ParseCSR either refuses it
// with ErrInvalidRequest or returns a CSR whose key CheckPublicKey
// accepts and whose signature verifies; it never panics. The seed corpus
// (testdata/fuzz/FuzzParseCSR) holds valid P-256, P-384 and RSA CSRs,
// CA:true and keyCertSign requests, weak keys and truncated PEM.
func FuzzParseCSR(f *testing.F) {
	f.Add(csrPEM(f, ecKey(f, elliptic.P256()), "spiffe://cluster.local/ns/default/sa/a"))
	f.Add([]byte("-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----\n"))
	f.Add([]byte{})
	id := spiffeid.RequireFromString("spiffe://cluster.local/ns/default/sa/a")
	f.Fuzz(func(t *testing.T, data []byte) {
		csr, err := authority.ParseCSR(data)
		if err != nil {
			if !errors.Is(err, authority.ErrInvalidRequest) {
				t.Fatalf("refusal not marked invalid request: %v", err)
			}
			return
		}
		if err := authority.CheckPublicKey(csr.PublicKey); err != nil {
			t.Fatalf("accepted CSR with a refused key: %v", err)
		}
		if err := csr.CheckSignature(); err != nil {
			t.Fatalf("accepted CSR with a bad signature: %v", err)
		}
		if err := authority.CheckCSRIdentity(csr, id); err != nil && !errors.Is(err, authority.ErrPermissionDenied) {
			t.Fatalf("identity check: %v", err)
		}
	})
}
