package extauthz

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/garrison-mesh/garrison/authz/engine"
)

// staleSocket leaves a socket file at path that nobody listens on, as a
// killed server does.
func staleSocket(t *testing.T, path string) {
	t.Helper()
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(path); err != nil || fi.Mode().Type() != os.ModeSocket {
		t.Fatalf("no stale socket at %s: %v", path, err)
	}
}

func TestUnixSocketWithFakeDecider(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "authz.sock")
	staleSocket(t, sock)

	fd := newFakeDecider(&engine.Decision{Allowed: true, Status: 200, Reason: "allowed"})
	r := start(t, Config{Decider: fd}, ListenConfig{UnixSocket: sock})
	if r.ep.UnixSocket() != sock {
		t.Errorf("UnixSocket() = %q", r.ep.UnixSocket())
	}
	fi, err := os.Lstat(sock)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != 0o660 {
		t.Errorf("socket mode %v, want socket 0660", fi.Mode())
	}
	// Nothing but the socket is left in the directory (no temporary name).
	if ents, _ := os.ReadDir(filepath.Dir(sock)); len(ents) != 1 {
		t.Errorf("directory holds %v", ents)
	}

	conn := dial(t, "unix://"+sock)
	defer conn.Close()
	resp, err := authv3.NewAuthorizationClient(conn).Check(context.Background(), checkRequest("GET", "/productpage", nil))
	if err != nil {
		t.Fatalf("Check over the Unix socket: %v", err)
	}
	if codes.Code(resp.GetStatus().GetCode()) != codes.OK {
		t.Errorf("Check over the Unix socket: %v", resp)
	}
	// TCP answers at the same time.
	if _, err := r.client.Check(context.Background(), checkRequest("GET", "/productpage", nil)); err != nil {
		t.Fatalf("Check over TCP: %v", err)
	}
	if _, err := healthpb.NewHealthClient(conn).Check(context.Background(), &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatalf("health over the Unix socket: %v", err)
	}

	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(sock); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket left behind after stop: %v", err)
	}
}

func TestUnixSocketRefusesLiveSocketAndOtherFiles(t *testing.T) {
	dir := t.TempDir()
	srv, err := New(Config{Decider: newFakeDecider(nil)})
	if err != nil {
		t.Fatal(err)
	}

	live := filepath.Join(dir, "live.sock")
	ln, err := net.Listen("unix", live)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if _, err := srv.Listen(ListenConfig{TCPAddr: "127.0.0.1:0", UnixSocket: live}); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Errorf("Listen on a live socket: %v, want an in-use error", err)
	}

	regular := filepath.Join(dir, "file")
	if err := os.WriteFile(regular, []byte("keep me"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := srv.Listen(ListenConfig{TCPAddr: "127.0.0.1:0", UnixSocket: regular}); err == nil {
		t.Error("Listen over a regular file succeeded")
	}
	if b, err := os.ReadFile(regular); err != nil || string(b) != "keep me" {
		t.Errorf("regular file touched: %q %v", b, err)
	}
}

func TestListenFailsOnBusyPort(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	srv, err := New(Config{Decider: newFakeDecider(nil)})
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(t.TempDir(), "s.sock")
	if _, err := srv.Listen(ListenConfig{TCPAddr: ln.Addr().String(), UnixSocket: sock}); err == nil {
		t.Fatal("Listen on a busy port succeeded")
	}
	if _, err := os.Lstat(sock); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("failed Listen left a socket: %v", err)
	}
}

// A stop lets an in-flight Check finish with its real answer, turns health
// NOT_SERVING first, and then refuses new connections.
func TestGracefulStopWithFakeDecider(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	fd := newFakeDecider(nil)
	fd.setFunc(func(context.Context, *authv3.CheckRequest) (*engine.Decision, error) {
		close(entered)
		<-release
		return &engine.Decision{Allowed: true, Status: 200, Reason: "allowed"}, nil
	})
	sock := filepath.Join(t.TempDir(), "authz.sock")
	r := start(t, Config{Decider: fd}, ListenConfig{UnixSocket: sock})

	ctx, cancelWatch := context.WithCancel(context.Background())
	defer cancelWatch()
	watch, err := healthpb.NewHealthClient(r.conn).Watch(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if st, err := watch.Recv(); err != nil || st.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health before stop: %v %v", st, err)
	}

	type result struct {
		resp *authv3.CheckResponse
		err  error
	}
	inflight := make(chan result, 1)
	go func() {
		resp, err := r.client.Check(context.Background(), checkRequest("GET", "/productpage", nil))
		inflight <- result{resp, err}
	}()
	<-entered

	r.cancel() // ask Serve to stop
	if st, err := watch.Recv(); err != nil || st.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("health after stop began: %v %v", st, err)
	}
	// The watch is an in-flight RPC too; a health-checking client ends it
	// when it sees NOT_SERVING, as this one does.
	cancelWatch()

	close(release)
	res := <-inflight
	if res.err != nil {
		t.Fatalf("in-flight Check failed during a graceful stop: %v", res.err)
	}
	if codes.Code(res.resp.GetStatus().GetCode()) != codes.OK {
		t.Errorf("in-flight Check answered %v, want its decision (allow)", res.resp)
	}
	if err := r.stop(); err != nil {
		t.Fatalf("Serve after a graceful stop: %v", err)
	}

	// Stopped: new connections are refused on both listeners.
	for _, target := range []string{r.ep.TCPAddr().String(), "unix://" + sock} {
		conn := dial(t, target)
		_, err := authv3.NewAuthorizationClient(conn).Check(context.Background(), checkRequest("GET", "/", nil))
		conn.Close()
		if status.Code(err) != codes.Unavailable {
			t.Errorf("Check on %s after stop: %v, want Unavailable", target, err)
		}
	}
}
