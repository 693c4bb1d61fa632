package agent_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/tls/certprovider"
	"google.golang.org/grpc/credentials/tls/certprovider/pemfile"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/garrison-mesh/garrison/ca/agent"
)

// TestCertFilesForGRPC: the agent writes cert-chain.pem, key.pem (0600) and
// root-cert.pem; a gRPC-Go server and client whose credentials come from
// gRPC's file_watcher provider (pemfile) on those files complete an mTLS
// handshake, and a rotation reaches the provider.
func TestCertFilesForGRPC(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	first := e.call()
	e.clk.waitPending(t) // files are written before the agent sleeps

	for name, mode := range map[string]os.FileMode{agent.KeyFile: 0o600, agent.CertChainFile: 0o644, agent.RootCertFile: 0o644} {
		info, err := os.Stat(filepath.Join(e.certDir, name))
		if err != nil {
			t.Fatal(err)
		}
		if info.Mode().Perm() != mode {
			t.Errorf("%s has mode %v, want %v", name, info.Mode().Perm(), mode)
		}
	}
	if entries, _ := os.ReadDir(e.certDir); len(entries) != 3 {
		t.Errorf("cert dir holds %d entries, want the 3 files only", len(entries))
	}

	opts := pemfile.Options{
		CertFile:        filepath.Join(e.certDir, agent.CertChainFile),
		KeyFile:         filepath.Join(e.certDir, agent.KeyFile),
		RootFile:        filepath.Join(e.certDir, agent.RootCertFile),
		RefreshDuration: 20 * time.Millisecond,
	}
	serverProv, err := pemfile.NewProvider(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer serverProv.Close()
	clientProv, err := pemfile.NewProvider(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer clientProv.Close()

	var mu sync.Mutex
	var seenByServer, seenByClient *big.Int
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.Creds(providerCreds(serverProv, true, e.clk.Now, func(s *big.Int) { mu.Lock(); seenByServer = s; mu.Unlock() })))
	healthpb.RegisterHealthServer(srv, health.NewServer())
	go func() { _ = srv.Serve(ln) }()
	defer srv.Stop()

	rpc := func() {
		t.Helper()
		conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(
			providerCreds(clientProv, false, e.clk.Now, func(s *big.Int) { mu.Lock(); seenByClient = s; mu.Unlock() })))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		if _, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
			t.Fatalf("RPC over mTLS with the agent's files: %v", err)
		}
	}
	rpc()
	mu.Lock()
	if seenByServer.Cmp(first.Serial) != 0 || seenByClient.Cmp(first.Serial) != 0 {
		t.Fatalf("peers saw serials %x and %x, want %x", seenByServer, seenByClient, first.Serial)
	}
	mu.Unlock()

	// After a rotation the provider serves the new pair.
	e.clk.Set(e.agent.Status().RotateAt)
	renewal := e.call()
	e.clk.waitPending(t)
	deadline := time.Now().Add(wait)
	for {
		km, err := clientProv.KeyMaterial(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if km.Certs[0].Leaf.SerialNumber.Cmp(renewal.Serial) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the file_watcher provider did not pick up the rotated certificate")
		}
		time.Sleep(10 * time.Millisecond) // the provider polls on its own timer
	}
	rpc()
}

// providerCreds builds TLS credentials from a certificate provider as
// gRPC's xDS credentials do: identity from the provider's certificate,
// peers verified against its roots (at the test's clock), and the peer's
// SPIFFE ID required.
func providerCreds(p certprovider.Provider, server bool, now func() time.Time, seen func(*big.Int)) credentials.TransportCredentials {
	km := func() (*certprovider.KeyMaterial, error) {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		return p.KeyMaterial(ctx)
	}
	verify := func(raw [][]byte, _ [][]*x509.Certificate) error {
		k, err := km()
		if err != nil {
			return err
		}
		var certs []*x509.Certificate
		for _, r := range raw {
			c, err := x509.ParseCertificate(r)
			if err != nil {
				return err
			}
			certs = append(certs, c)
		}
		inter := x509.NewCertPool()
		for _, c := range certs[1:] {
			inter.AddCert(c)
		}
		if _, err := certs[0].Verify(x509.VerifyOptions{Roots: k.Roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}, CurrentTime: now()}); err != nil {
			return err
		}
		if len(certs[0].URIs) != 1 || certs[0].URIs[0].String() != "spiffe://cluster.local/ns/default/sa/default" {
			return errors.New("peer is not spiffe://cluster.local/ns/default/sa/default")
		}
		seen(certs[0].SerialNumber)
		return nil
	}
	cert := func() (*tls.Certificate, error) {
		k, err := km()
		if err != nil {
			return nil, err
		}
		if len(k.Certs) == 0 {
			return nil, fmt.Errorf("no identity certificate")
		}
		return &k.Certs[0], nil
	}
	conf := &tls.Config{
		MinVersion: tls.VersionTLS13,
		// SPIFFE certificates name no host: the chain and the SPIFFE ID are
		// checked by verify.
		InsecureSkipVerify:    true,
		VerifyPeerCertificate: verify,
	}
	if server {
		conf.ClientAuth = tls.RequireAnyClientCert
		conf.GetCertificate = func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return cert() }
	} else {
		conf.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert() }
	}
	return credentials.NewTLS(conf)
}
