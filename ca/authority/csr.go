package authority

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"fmt"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// MaxCSRSize bounds the PEM a caller may send: an RSA-4096 CSR is under
// 2 KiB, and parsing cost should not be the caller's choice.
const MaxCSRSize = 16 << 10

var (
	oidBasicConstraints = asn1.ObjectIdentifier{2, 5, 29, 19}
	oidKeyUsage         = asn1.ObjectIdentifier{2, 5, 29, 15}
)

// ParseCSR decodes a PEM certificate signing request and checks
// everything about it that does not depend on the caller: the signature
// (proof that the caller holds the key), the key (see CheckPublicKey), and
// that it does not ask for a CA certificate. Every failure wraps
// ErrInvalidRequest. The CSR's subject and SANs are not used for the
// certificate: the identity comes from the authenticated caller (see
// CheckCSRIdentity).
func ParseCSR(pemCSR []byte) (*x509.CertificateRequest, error) {
	if len(pemCSR) == 0 {
		return nil, fmt.Errorf("%w: empty CSR", ErrInvalidRequest)
	}
	if len(pemCSR) > MaxCSRSize {
		return nil, fmt.Errorf("%w: CSR of %d bytes exceeds %d", ErrInvalidRequest, len(pemCSR), MaxCSRSize)
	}
	block, _ := pem.Decode(pemCSR)
	if block == nil {
		return nil, fmt.Errorf("%w: CSR is not PEM", ErrInvalidRequest)
	}
	if block.Type != "CERTIFICATE REQUEST" && block.Type != "NEW CERTIFICATE REQUEST" {
		return nil, fmt.Errorf("%w: PEM block is %q, want CERTIFICATE REQUEST", ErrInvalidRequest, block.Type)
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%w: parsing CSR: %v", ErrInvalidRequest, err)
	}
	if err := CheckPublicKey(csr.PublicKey); err != nil {
		return nil, err
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("%w: CSR signature does not verify: %v", ErrInvalidRequest, err)
	}
	for _, ext := range csr.Extensions {
		switch {
		case ext.Id.Equal(oidBasicConstraints):
			var bc struct {
				IsCA       bool `asn1:"optional"`
				MaxPathLen int  `asn1:"optional,default:-1"`
			}
			if rest, err := asn1.Unmarshal(ext.Value, &bc); err != nil || len(rest) > 0 {
				return nil, fmt.Errorf("%w: CSR has a malformed basicConstraints extension", ErrInvalidRequest)
			}
			if bc.IsCA {
				return nil, fmt.Errorf("%w: CSR asks for a CA certificate (basicConstraints CA:true); only leaf SVIDs are issued", ErrInvalidRequest)
			}
		case ext.Id.Equal(oidKeyUsage):
			var bits asn1.BitString
			if rest, err := asn1.Unmarshal(ext.Value, &bits); err != nil || len(rest) > 0 {
				return nil, fmt.Errorf("%w: CSR has a malformed keyUsage extension", ErrInvalidRequest)
			}
			// keyCertSign is bit 5, cRLSign bit 6 (RFC 5280 4.2.1.3).
			if bits.At(5) == 1 || bits.At(6) == 1 {
				return nil, fmt.Errorf("%w: CSR asks for keyCertSign or cRLSign key usage; only leaf SVIDs are issued", ErrInvalidRequest)
			}
		}
	}
	return csr, nil
}

// CheckPublicKey accepts the keys a workload certificate may carry: ECDSA
// P-256 (what Garrison's agent makes) and P-384, and RSA of 2048, 3072 or
// 4096 bits. Refused, each with ErrInvalidRequest:
//   - RSA under 2048 bits (NIST SP 800-131A; istiod signs RSA-1024, we do
//     not) and odd or larger sizes, which no mesh client makes;
//   - P-224 (112-bit security) and P-521, which are outside the set the
//     issue names and BoringSSL-based Envoys have not always accepted;
//   - Ed25519: Envoy (BoringSSL) does not serve Ed25519 certificates, so
//     issuing one only moves the failure to the first handshake.
func CheckPublicKey(pub crypto.PublicKey) error {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256(), elliptic.P384():
			return nil
		}
		return fmt.Errorf("%w: ECDSA curve %s is not accepted (use P-256 or P-384)", ErrInvalidRequest, k.Curve.Params().Name)
	case *rsa.PublicKey:
		switch bits := k.N.BitLen(); bits {
		case 2048, 3072, 4096:
			return nil
		default:
			return fmt.Errorf("%w: RSA key of %d bits is not accepted (use 2048, 3072 or 4096)", ErrInvalidRequest, bits)
		}
	case ed25519.PublicKey:
		return fmt.Errorf("%w: Ed25519 keys are not accepted: Envoy cannot serve them (use ECDSA P-256)", ErrInvalidRequest)
	}
	return fmt.Errorf("%w: unsupported public key type %T", ErrInvalidRequest, pub)
}

// CheckCSRIdentity refuses a CSR whose URI SANs name anything but id.
//
// Istio ignores the CSR's SANs and signs for the caller. We still ignore
// them for the certificate (it only ever carries the caller's identity),
// but a CSR that names another identity is refused with
// ErrPermissionDenied rather than silently answered with a certificate the
// caller did not ask for: it is either a misconfigured agent, which should
// learn so at once, or an impersonation attempt, which should be visible in
// the metrics and logs. A CSR with no URI SAN, or with the caller's own,
// is fine (stock istio-agent puts the workload's SPIFFE ID there). DNS, IP
// and e-mail SANs and the subject are ignored: they name no identity in
// the mesh.
func CheckCSRIdentity(csr *x509.CertificateRequest, id spiffeid.ID) error {
	for _, u := range csr.URIs {
		if u.String() != id.String() {
			return fmt.Errorf("%w: CSR names %q but the caller is %q", ErrPermissionDenied, u.String(), id.String())
		}
	}
	return nil
}
