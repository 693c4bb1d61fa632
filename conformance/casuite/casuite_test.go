package casuite_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	pb "istio.io/api/security/v1alpha1"

	"github.com/garrison-mesh/garrison/conformance/casuite"
)

// sloppyCA gets everything wrong that the suite checks of an issued
// certificate: it takes the identity, DNS SANs and CN from the CSR, issues
// a CA certificate without a digitalSignature or EKUs, ignores the TTL and
// sends the leaf without its root. Any token is accepted.
type sloppyCA struct {
	pb.UnimplementedIstioCertificateServiceServer
	root    *x509.Certificate
	rootKey *ecdsa.PrivateKey
	addr    string
}

func (s *sloppyCA) Addr() string                      { return s.addr }
func (s *sloppyCA) Roots() []*x509.Certificate        { return []*x509.Certificate{s.root} }
func (s *sloppyCA) Token(name string) (string, error) { return "token-" + name, nil }

func (s *sloppyCA) CreateCertificate(_ context.Context, req *pb.IstioCertificateRequest) (*pb.IstioCertificateResponse, error) {
	block, _ := pem.Decode([]byte(req.GetCsr()))
	if block == nil {
		return nil, status.Error(codes.InvalidArgument, "not PEM")
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: csr.Subject, URIs: csr.URIs, DNSNames: csr.DNSNames,
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(48 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}, s.root, csr.PublicKey, s.rootKey)
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	return &pb.IstioCertificateResponse{CertChain: []string{string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))}}, nil
}

func startSloppyCA(t *testing.T) *sloppyCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "sloppy root"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
		URIs: []*url.URL{{Scheme: "spiffe", Host: casuite.TrustDomain}},
	}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	root, _ := x509.ParseCertificate(der)
	srvKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	srvDER, _ := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: big.NewInt(2), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
	}, root, srvKey.Public(), key)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &sloppyCA{root: root, rootKey: key, addr: ln.Addr().String()}
	g := grpc.NewServer(grpc.Creds(credentials.NewTLS(&tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{srvDER}, PrivateKey: srvKey}},
	})))
	pb.RegisterIstioCertificateServiceServer(g, s)
	go func() { _ = g.Serve(ln) }()
	t.Cleanup(g.Stop)
	return s
}

// TestChecksCatchASloppyCA shows that the checks of an issued certificate
// fail, each naming its rule, rather than passing whatever comes back.
func TestChecksCatchASloppyCA(t *testing.T) {
	ca := startSloppyCA(t)
	r, err := casuite.NewRunner(t.Context(), ca, casuite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	res := r.Run(t.Context(), mustCase(t, `
- name: sloppy
  origin: istio
  caller: token:a
  ttl: 3600
  csr: {uris: [spiffe://cluster.local/ns/default/sa/b], dns: [evil.example.com], cn: admin}
  expect: {code: OK, spiffeID: spiffe://cluster.local/ns/default/sa/a}
`))
	for _, want := range []string{
		"root must come last", "x509svid.Verify", "leaf URI SAN spiffe://cluster.local/ns/default/sa/b",
		"CA=true", "lacks digitalSignature", "keyCertSign", "lacks serverAuth or clientAuth",
		"DNS SAN \"evil.example.com\"", "CN \"admin\"", "NotAfter",
	} {
		if !strings.Contains(res.Problem, want) {
			t.Errorf("problem does not mention %q:\n%s", want, res.Problem)
		}
	}
	// A refusal the CA does not make is a problem too.
	res = r.Run(t.Context(), mustCase(t, `
- name: refused
  origin: garrison
  caller: token:a
  csr: {key: rsa1024}
  expect: {code: InvalidArgument}
`))
	if !strings.Contains(res.Problem, "issued, want InvalidArgument") {
		t.Errorf("got %+v", res)
	}
	// Without a revocation hook the revoked caller is skipped, and the CA
	// that ignores the TTL gives no expired certificate to test with.
	for _, fixture := range []string{"revoked", "expired"} {
		res = r.Run(t.Context(), mustCase(t, `
- name: mtls
  origin: istio
  caller: mtls:`+fixture+`
  expect: {code: Unauthenticated}
`))
		if res.Skip == "" {
			t.Errorf("mtls:%s: not skipped: %+v", fixture, res)
		}
	}
}

func TestLoadRefusesBadCases(t *testing.T) {
	for name, text := range map[string]string{
		"origin":  "- {name: x, origin: vendor, caller: none, expect: {code: Unauthenticated}}",
		"caller":  "- {name: x, origin: istio, caller: token:zz, expect: {code: Unauthenticated}}",
		"code":    "- {name: x, origin: istio, caller: none, expect: {code: Nope}}",
		"ok id":   "- {name: x, origin: istio, caller: none, expect: {code: OK}}",
		"key":     "- {name: x, origin: istio, caller: none, csr: {key: dsa}, expect: {code: Unauthenticated}}",
		"field":   "- {name: x, origin: istio, caller: none, expect: {code: Unauthenticated}, wat: 1}",
		"dup":     "- {name: x, origin: istio, caller: none, expect: {code: Unauthenticated}}\n- {name: x, origin: istio, caller: none, expect: {code: Unauthenticated}}",
		"no name": "- {origin: istio, caller: none, expect: {code: Unauthenticated}}",
	} {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "c.yaml"), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := casuite.Load(dir); err == nil {
			t.Errorf("%s: loaded %s", name, text)
		}
	}
}

func mustCase(t *testing.T, text string) casuite.Case {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "c.yaml"), []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := casuite.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	return s.Cases[0]
}
