package extauthz

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/reflection"
)

// DefaultTCPAddr is where Envoy's ext_authz filter finds Garrison unless
// configured otherwise: the port opa-envoy-plugin uses, so that existing
// Envoy configurations work unchanged.
const DefaultTCPAddr = ":9191"

// ListenConfig says where Listen serves. Every field has a default.
type ListenConfig struct {
	// TCPAddr is the TCP listen address. Default DefaultTCPAddr.
	TCPAddr string
	// UnixSocket is the path of a Unix socket to serve on as well, for an
	// Envoy on the same machine; empty serves none. A stale socket file
	// left by a previous run is replaced; a live one (something answers)
	// or a file that is not a socket is an error. The socket is created
	// with mode 0660.
	UnixSocket string
	// GracePeriod is how long a stop waits for in-flight Checks before it
	// closes connections. Default 10s.
	GracePeriod time.Duration
	// HealthPoll is how often the Decider's readiness is re-read for
	// health Watch streams (Check always reads it afresh). Default 1s.
	HealthPoll time.Duration
	// ServerOptions go to grpc.NewServer: credentials, limits,
	// interceptors.
	ServerOptions []grpc.ServerOption
}

// Endpoint is a grpc.Server serving the Authorization, health and
// reflection services on the listeners Listen opened.
type Endpoint struct {
	srv    *Server
	cfg    ListenConfig
	grpc   *grpc.Server
	tcp    net.Listener
	unix   net.Listener
	unixFI os.FileInfo // the socket file as created, to remove only our own
}

// Listen opens the TCP listener and the Unix socket at once, so that the
// caller learns of a busy port before it starts anything else and tests
// can listen on ":0". Serve answers on them.
func (s *Server) Listen(cfg ListenConfig) (*Endpoint, error) {
	if cfg.TCPAddr == "" {
		cfg.TCPAddr = DefaultTCPAddr
	}
	if cfg.GracePeriod <= 0 {
		cfg.GracePeriod = 10 * time.Second
	}
	if cfg.HealthPoll <= 0 {
		cfg.HealthPoll = time.Second
	}
	ep := &Endpoint{srv: s, cfg: cfg}
	var err error
	if ep.tcp, err = net.Listen("tcp", cfg.TCPAddr); err != nil {
		return nil, fmt.Errorf("extauthz: %w", err)
	}
	if cfg.UnixSocket != "" {
		if ep.unix, ep.unixFI, err = listenUnix(cfg.UnixSocket); err != nil {
			_ = ep.tcp.Close()
			return nil, fmt.Errorf("extauthz: %w", err)
		}
	}
	ep.grpc = grpc.NewServer(append(defaultServerOptions(), cfg.ServerOptions...)...)
	s.Register(ep.grpc)
	reflection.Register(ep.grpc)
	return ep, nil
}

// defaultServerOptions are Listen's gRPC server options, before
// ListenConfig.ServerOptions (which may override them).
//
// Stream workers: by default grpc-go starts a goroutine per request, whose
// stack starts small; a policy evaluation nests deep (OPA evaluates in
// continuation-passing style), so every request grew a fresh stack several
// times over, copying it each time. Workers are goroutines that serve
// request after request and keep their grown stacks; requests beyond 64 at
// once get a goroutine each, as before.
//
// The codec reads CheckRequests faster than protobuf-go (codec.go) and
// leaves every other message to grpc-go's proto codec.
func defaultServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.NumStreamWorkers(64),
		grpc.ForceServerCodecV2(newCheckCodec()),
	}
}

// TCPAddr is the address of the TCP listener.
func (ep *Endpoint) TCPAddr() net.Addr { return ep.tcp.Addr() }

// UnixSocket is the socket's path, or "" when there is none.
func (ep *Endpoint) UnixSocket() string {
	if ep.unix == nil {
		return ""
	}
	return ep.cfg.UnixSocket
}

// Serve answers on every listener until ctx ends or one of them fails.
// Then it marks the health status NOT_SERVING, so health-checking clients
// move away, lets in-flight Checks finish for up to GracePeriod, and
// closes everything. It returns nil after a stop asked for by ctx. Serve
// must be called once; the Server's health status stays NOT_SERVING after.
func (ep *Endpoint) Serve(ctx context.Context) error {
	listeners := []net.Listener{ep.tcp}
	if ep.unix != nil {
		listeners = append(listeners, ep.unix)
		defer ep.removeSocket()
	}
	pollCtx, stopPoll := context.WithCancel(ctx)
	defer stopPoll()
	go ep.srv.health.poll(pollCtx, ep.cfg.HealthPoll)

	errc := make(chan error, len(listeners))
	for _, ln := range listeners {
		go func() { errc <- ep.grpc.Serve(ln) }()
	}
	pending := len(listeners)
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
		// A listener failed; the server cannot be half up.
		pending--
		err = fmt.Errorf("extauthz: serving: %w", err)
	}
	ep.stop()
	// Every Serve returns once the server is stopped; wait for them so that
	// no goroutine outlives Serve.
	for ; pending > 0; pending-- {
		if e := <-errc; e != nil && !errors.Is(e, grpc.ErrServerStopped) && err == nil {
			err = fmt.Errorf("extauthz: serving: %w", e)
		}
	}
	return err
}

// stop drains health, then stops gracefully, then forcibly after the
// grace period.
func (ep *Endpoint) stop() {
	ep.srv.health.drain()
	done := make(chan struct{})
	go func() {
		ep.grpc.GracefulStop()
		close(done)
	}()
	t := time.NewTimer(ep.cfg.GracePeriod)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		ep.grpc.Stop()
		<-done
	}
}

// listenUnix listens on a Unix socket at path with mode 0660. The socket is
// bound under a temporary name in the same directory, given its mode, and
// renamed into place: bound at path directly, it would be connectable with
// the umask's permissions until the chmod.
func listenUnix(path string) (*net.UnixListener, os.FileInfo, error) {
	if err := removeStaleSocket(path); err != nil {
		return nil, nil, err
	}
	var rnd [6]byte
	_, _ = rand.Read(rnd[:])
	tmp := filepath.Join(filepath.Dir(path), ".garrison-"+hex.EncodeToString(rnd[:])+".sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmp, Net: "unix"})
	if err != nil {
		return nil, nil, err
	}
	// The listener must not unlink on close: its name is gone after the
	// rename, and the final path is removed by Serve, only if still ours.
	ln.SetUnlinkOnClose(false)
	fail := func(err error) (*net.UnixListener, os.FileInfo, error) {
		_ = ln.Close()
		_ = os.Remove(tmp)
		return nil, nil, err
	}
	if err := os.Chmod(tmp, 0o660); err != nil {
		return fail(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fail(err)
	}
	fi, err := os.Lstat(path)
	if err != nil {
		return fail(err)
	}
	return ln, fi, nil
}

// removeStaleSocket removes a socket file nobody listens on. A socket that
// answers belongs to a running server (another Garrison, say): taking it
// over would silently split traffic, so that is an error, as is a file at
// path that is not a socket.
func removeStaleSocket(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.Mode().Type() != os.ModeSocket {
		return fmt.Errorf("%s exists and is not a socket", path)
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		_ = c.Close()
		return fmt.Errorf("%s is in use by another server", path)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("removing stale socket: %w", err)
	}
	return nil
}

// removeSocket removes the socket file if it is still the one Listen
// created; a successor may already have replaced it.
func (ep *Endpoint) removeSocket() {
	fi, err := os.Lstat(ep.cfg.UnixSocket)
	if err == nil && os.SameFile(fi, ep.unixFI) {
		_ = os.Remove(ep.cfg.UnixSocket)
	}
}
