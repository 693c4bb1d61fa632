package authority

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	mrand "math/rand/v2"
	"net"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// captureSigner hands x509.CreateCertificate the CA's public key and keeps
// the to-be-signed bytes Go wrote (then fails Go's self-check at once).
type captureSigner struct {
	pub crypto.PublicKey
	tbs []byte
}

func (c *captureSigner) Public() crypto.PublicKey { return c.pub }
func (c *captureSigner) Sign(io.Reader, []byte, crypto.SignerOpts) ([]byte, error) {
	return nil, nil
}
func (c *captureSigner) SignMessage(_ io.Reader, msg []byte, _ crypto.SignerOpts) ([]byte, error) {
	c.tbs = append([]byte(nil), msg...)
	return []byte{}, nil
}

func testCA(t testing.TB, curve elliptic.Curve, withSKI bool) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(curve, rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "CA", Organization: []string{"cluster.local"}},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(100 * 365 * 24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	if !withSKI {
		tmpl.SubjectKeyId = nil
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	if !withSKI {
		c.SubjectKeyId = nil
	}
	return c, key
}

// TestEncoderMatchesGo: the direct encoder writes, byte for byte, the
// to-be-signed certificate x509.CreateCertificate writes for the same
// template, and the signed result parses and verifies.
func TestEncoderMatchesGo(t *testing.T) {
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	leafKeys := []crypto.Signer{p256, p384, rsaKey}
	rng := mrand.New(mrand.NewPCG(1, 2))
	for _, ca := range []struct {
		curve elliptic.Curve
		ski   bool
	}{{elliptic.P256(), true}, {elliptic.P384(), true}, {elliptic.P256(), false}} {
		issuer, key := testCA(t, ca.curve, ca.ski)
		alg, _, err := ecdsaAlgorithm(key.Curve)
		if err != nil {
			t.Fatal(err)
		}
		for i := range 300 {
			leaf := leafKeys[i%len(leafKeys)]
			usage := x509.KeyUsageDigitalSignature
			if _, ok := leaf.(*rsa.PrivateKey); ok {
				usage |= x509.KeyUsageKeyEncipherment
			}
			serialBytes := make([]byte, 1+rng.IntN(20))
			for j := range serialBytes {
				serialBytes[j] = byte(rng.Uint32())
			}
			serial := new(big.Int).SetBytes(serialBytes)
			if serial.Sign() == 0 {
				serial.SetInt64(1)
			}
			// Times across the UTCTime/GeneralizedTime boundary of 2050.
			nb := time.Unix(rng.Int64N(4102444800), 0).UTC()
			na := nb.Add(time.Duration(1+rng.Int64N(int64(80*365*24))) * time.Hour)
			req := SignRequest{ID: spiffeid.RequireFromString("spiffe://cluster.local/ns/n" + string(rune('a'+i%26)) + "/sa/s")}
			if i%3 == 0 {
				req.DNSNames = []string{"localhost", "garrison.istio-system.svc"}
				req.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1), net.ParseIP("::1")}
			}
			spki, ski, err := splitSPKI(leaf.Public())
			if err != nil {
				t.Fatal(err)
			}
			capt := &captureSigner{pub: key.Public()}
			tmpl := leafTemplate(serial, nb, na, usage, ski, req)
			_, _ = x509.CreateCertificate(rand.Reader, tmpl, issuer, leaf.Public(), capt)
			mine := encodeTBS(&leafFields{serial: serial, notBefore: nb, notAfter: na, spki: spki, keyUsage: usage, ski: ski,
				aki: issuer.SubjectKeyId, uri: req.ID.String(), dnsNames: req.DNSNames, ips: req.IPAddresses}, issuer, alg)
			if !bytes.Equal(mine, capt.tbs) {
				t.Fatalf("case %d (CA %s, SKI %v): TBS differs from Go's\n mine %x\n go   %x", i, ca.curve.Params().Name, ca.ski, mine, capt.tbs)
			}
			if i%50 == 0 {
				der, err := signLeaf(rand.Reader, &leafFields{serial: serial, notBefore: nb, notAfter: na, spki: spki, keyUsage: usage, ski: ski,
					aki: issuer.SubjectKeyId, uri: req.ID.String(), dnsNames: req.DNSNames, ips: req.IPAddresses}, issuer, key)
				if err != nil {
					t.Fatal(err)
				}
				cert, err := x509.ParseCertificate(der)
				if err != nil {
					t.Fatal(err)
				}
				if err := cert.CheckSignatureFrom(issuer); err != nil {
					t.Fatalf("signature: %v", err)
				}
			}
		}
	}
}

func TestKeyUsageEncoding(t *testing.T) {
	for ku, want := range map[x509.KeyUsage][]byte{
		x509.KeyUsageDigitalSignature:                                {0x03, 0x02, 0x07, 0x80},
		x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment: {0x03, 0x02, 0x05, 0xa0},
		x509.KeyUsageDigitalSignature | x509.KeyUsageDecipherOnly:    {0x03, 0x03, 0x07, 0x80, 0x80},
		x509.KeyUsageCertSign | x509.KeyUsageCRLSign:                 {0x03, 0x02, 0x01, 0x06},
	} {
		if got := appendKeyUsage(nil, ku); !bytes.Equal(got, want) {
			t.Errorf("key usage %b: %x, want %x", ku, got, want)
		}
	}
}

// BenchmarkLeaf compares signing one X.509-SVID with the direct encoder
// against x509.CreateCertificate (encoding by reflection, then verifying
// its own signature), with the same P-256 CA key:
//
//	go test -run '^$' -bench BenchmarkLeaf ./ca/authority/
func BenchmarkLeaf(b *testing.B) {
	issuer, key := testCA(b, elliptic.P256(), true)
	leaf, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	req := SignRequest{ID: spiffeid.RequireFromString("spiffe://cluster.local/ns/default/sa/a")}
	spki, ski, _ := splitSPKI(leaf.Public())
	serial := new(big.Int).Lsh(big.NewInt(1), 127)
	now := time.Now()
	b.Run("direct", func(b *testing.B) {
		for b.Loop() {
			if _, err := signLeaf(rand.Reader, &leafFields{serial: serial, notBefore: now, notAfter: now.Add(time.Hour), spki: spki,
				keyUsage: x509.KeyUsageDigitalSignature, ski: ski, aki: issuer.SubjectKeyId, uri: req.ID.String()}, issuer, key); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("x509.CreateCertificate", func(b *testing.B) {
		for b.Loop() {
			if _, err := x509.CreateCertificate(rand.Reader, leafTemplate(serial, now, now.Add(time.Hour), x509.KeyUsageDigitalSignature, ski, req), issuer, leaf.Public(), key); err != nil {
				b.Fatal(err)
			}
		}
	})
}
