package pemcert

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"math/big"
	"testing"
	"time"
)

func cert(t *testing.T, serial int64) *x509.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return c
}

func TestRoundTrip(t *testing.T) {
	in := []*x509.Certificate{cert(t, 1), cert(t, 2)}
	data := append(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: []byte{1}}), Encode(in)...)
	out, err := Parse(data)
	if err != nil || len(out) != 2 || out[0].SerialNumber.Int64() != 1 || out[1].SerialNumber.Int64() != 2 {
		t.Fatalf("%v %v", out, err)
	}
	if _, err := Parse([]byte("nothing")); !errors.Is(err, ErrNone) {
		t.Errorf("no block: %v", err)
	}
	if _, err := Parse(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("junk")})); err == nil {
		t.Error("a bad block parsed")
	}
}
