package sds

import (
	"fmt"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/types/known/anypb"
)

// The resource names Envoy asks for. Istio's sidecar configuration names
// "default" and "ROOTCA" (security/pkg/nodeagent/cache: WorkloadKeyCertResourceName,
// RootCertReqResourceName); SPIRE's agent also answers "ALL" and the trust
// domain's SPIFFE ID with a SPIFFE certificate validator
// (pkg/agent/endpoints/sdsv3/handler.go: DefaultAllBundlesName,
// buildOne/buildAll), so Envoy configurations written for either work.
const (
	// WorkloadSecretName is the workload's key and certificate chain.
	WorkloadSecretName = "default"
	// RootCASecretName is the validation context with every trusted root
	// of the trust domain and the current CRLs.
	RootCASecretName = "ROOTCA"
	// AllBundlesSecretName is a validation context that validates peers
	// with Envoy's SPIFFE certificate validator.
	AllBundlesSecretName = "ALL"
	// SPIFFEValidatorName is the name of Envoy's SPIFFE certificate
	// validator extension.
	SPIFFEValidatorName = "envoy.tls.cert_validator.spiffe"
)

// Workload is what the node agent holds for its workload; SetWorkload turns
// it into the secrets Envoy asks for. Empty fields produce no secret: a
// secret Envoy asks for and that does not exist yet keeps Envoy waiting,
// which is what it should do before the first certificate is issued.
type Workload struct {
	// CertChainPEM is the workload's certificate chain, leaf first, then
	// the intermediates, without the root (the peer has the root; Istio's
	// agent serves the chain the same way).
	CertChainPEM []byte
	// KeyPEM is the private key of the leaf.
	KeyPEM []byte
	// TrustDomain is the SPIFFE trust domain, such as "cluster.local"
	// (without "spiffe://"); empty until the first certificate names it.
	TrustDomain string
	// RootsPEM is every trusted root of the trust domain (old and new
	// during a root rotation).
	RootsPEM []byte
	// CRLPEM holds the current certificate revocation lists, PEM "X509
	// CRL" blocks, each signed by a CA that signs leaves.
	CRLPEM []byte
}

// WorkloadSecrets builds the secrets Envoy may ask for about w:
//
//   - "default": a TlsCertificate with the chain and the key;
//   - "ROOTCA": a CertificateValidationContext with the roots as trusted_ca
//     and the CRLs as crl, with only_verify_leaf_cert_crl set because the
//     CRLs cover leaves only (their signers' own revocation status is not
//     published, and without the flag Envoy fails every chain whose
//     intermediates have no CRL);
//   - "ALL" and "spiffe://<trust domain>": a CertificateValidationContext
//     whose custom_validator_config is Envoy's SPIFFE validator, with the
//     trust domain mapped to the roots.
//
// The SPIFFE validator resources carry no CRL: with a custom validator,
// Envoy ignores the validation context's crl field, and the SPIFFE validator
// only reads CRLs embedded in a trust bundle, where it turns on
// X509_V_FLAG_CRL_CHECK_ALL (Envoy's spiffe_validator.cc), which would fail
// every chain with an intermediate, since no CRL for the intermediates
// exists. Revocation is therefore enforced by Envoy through "ROOTCA" only.
func WorkloadSecrets(w Workload) []*tlsv3.Secret {
	var out []*tlsv3.Secret
	if len(w.CertChainPEM) > 0 && len(w.KeyPEM) > 0 {
		out = append(out, &tlsv3.Secret{
			Name: WorkloadSecretName,
			Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
				CertificateChain: inline(w.CertChainPEM),
				PrivateKey:       inline(w.KeyPEM),
			}},
		})
	}
	if len(w.RootsPEM) == 0 {
		return out
	}
	vc := &tlsv3.CertificateValidationContext{TrustedCa: inline(w.RootsPEM)}
	if len(w.CRLPEM) > 0 {
		vc.Crl = inline(w.CRLPEM)
		vc.OnlyVerifyLeafCertCrl = true
	}
	out = append(out, &tlsv3.Secret{
		Name: RootCASecretName,
		Type: &tlsv3.Secret_ValidationContext{ValidationContext: vc},
	})
	if w.TrustDomain != "" {
		for _, name := range []string{AllBundlesSecretName, "spiffe://" + w.TrustDomain} {
			out = append(out, spiffeValidationContext(name, w.TrustDomain, w.RootsPEM))
		}
	}
	return out
}

func spiffeValidationContext(name, trustDomain string, rootsPEM []byte) *tlsv3.Secret {
	cfg, err := anypb.New(&tlsv3.SPIFFECertValidatorConfig{
		TrustDomains: []*tlsv3.SPIFFECertValidatorConfig_TrustDomain{{
			Name:        trustDomain,
			TrustBundle: inline(rootsPEM),
		}},
	})
	if err != nil {
		// Marshalling a generated message with no unknown fields cannot fail.
		panic(fmt.Sprintf("sds: marshal SPIFFECertValidatorConfig: %v", err))
	}
	return &tlsv3.Secret{
		Name: name,
		Type: &tlsv3.Secret_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
			CustomValidatorConfig: &corev3.TypedExtensionConfig{Name: SPIFFEValidatorName, TypedConfig: cfg},
		}},
	}
}

func inline(b []byte) *corev3.DataSource {
	return &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: b}}
}
