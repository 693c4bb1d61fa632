package agent

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestBackoff(t *testing.T) {
	t.Parallel()
	for _, r := range []float64{0, 0.999999} {
		b := backoff{initial: time.Second, max: 10 * time.Second, rand: func() float64 { return r }}
		var got []time.Duration
		for range 6 {
			got = append(got, b.next().Round(time.Millisecond))
		}
		want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 10 * time.Second, 10 * time.Second}
		for i := range want {
			if r == 0 {
				want[i] /= 2 // equal jitter: never under half the step
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("rand %v: %v, want %v", r, got, want)
		}
		b.reset()
		if d := b.next(); d > time.Second {
			t.Errorf("after reset: %v", d)
		}
	}
}

func TestClassify(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		err  error
		want string
	}{
		{nil, resultSuccess},
		{status.Error(codes.Unavailable, "x"), resultUnavailable},
		{status.Error(codes.DeadlineExceeded, "x"), resultUnavailable},
		{status.Error(codes.Internal, "x"), resultUnavailable},
		{status.Error(codes.Unauthenticated, "x"), resultRefused},
		{status.Error(codes.PermissionDenied, "x"), resultRefused},
		{status.Error(codes.InvalidArgument, "x"), resultRefused},
		{invalid("x"), resultInvalid},
		{errLocal{errors.New("no token")}, resultError},
	} {
		if got := classify(c.err); got != c.want {
			t.Errorf("classify(%v) = %s, want %s", c.err, got, c.want)
		}
	}
}

// TestRotationJitter: RotateAt ± Jitter of the lifetime, from NotBefore.
func TestRotationJitter(t *testing.T) {
	t.Parallel()
	nb := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	leaf := &x509.Certificate{NotBefore: nb, NotAfter: nb.Add(24 * time.Hour)}
	for _, c := range []struct {
		r    float64
		want time.Duration
	}{
		{0, 12*time.Hour - 14*time.Minute - 24*time.Second},
		{0.5, 12 * time.Hour},
		{1, 12*time.Hour + 14*time.Minute + 24*time.Second},
	} {
		a := &Agent{cfg: Config{RotateAt: 0.5, Jitter: 0.01, Rand: func() float64 { return c.r }}}
		if got := a.rotationTime(leaf).Sub(nb); got != c.want {
			t.Errorf("rand %v: rotation %v after NotBefore, want %v", c.r, got, c.want)
		}
	}
}

func TestLogLimiter(t *testing.T) {
	t.Parallel()
	l := logLimiter{every: time.Minute}
	t0 := time.Unix(0, 0)
	if ok, _ := l.allow(t0); !ok {
		t.Fatal("first line held back")
	}
	for i := 1; i <= 5; i++ {
		if ok, _ := l.allow(t0.Add(time.Duration(i) * time.Second)); ok {
			t.Fatal("line within the interval let through")
		}
	}
	if ok, n := l.allow(t0.Add(time.Minute)); !ok || n != 5 {
		t.Fatalf("after the interval: %v, %d suppressed", ok, n)
	}
}

func TestParseCRLs(t *testing.T) {
	t.Parallel()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	issuer := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "signing"},
		KeyUsage: x509.KeyUsageCRLSign, BasicConstraintsValid: true, IsCA: true, SubjectKeyId: []byte{1}}
	crl := func(n int64) []byte {
		der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{Number: big.NewInt(n), ThisUpdate: time.Now(), NextUpdate: time.Now().Add(time.Hour)}, issuer, key)
		if err != nil {
			t.Fatal(err)
		}
		return der
	}
	if l, err := parseCRLs(crl(1)); err != nil || len(l) != 1 || l[0].Number.Int64() != 1 {
		t.Fatalf("DER: %v %v", l, err)
	}
	pemBody := append(pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: crl(2)}), pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: crl(3)})...)
	if l, err := parseCRLs(pemBody); err != nil || len(l) != 2 || l[1].Number.Int64() != 3 {
		t.Fatalf("PEM: %v %v", l, err)
	}
	if _, err := parseCRLs([]byte("not a CRL")); err == nil {
		t.Fatal("garbage parsed")
	}
}
