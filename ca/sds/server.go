// Package sds serves a workload's secrets to its Envoy over the Secret
// Discovery Service (envoy.service.secret.v3: StreamSecrets, DeltaSecrets and
// FetchSecrets) on a Unix socket, as Istio's node agent does: "default" is the
// workload's key and certificate chain, "ROOTCA" the trust bundle and the
// CRLs, and, as SPIRE's agent does, "ALL" and "spiffe://<trust domain>" a
// SPIFFE certificate validator configuration.
//
// The protocol is go-control-plane's server (pkg/server/v3); the decision of
// what to send is this package's own cache (see secretCache): every changed
// secret is pushed on every open stream without waiting for a request, an
// ACK or a NACK is answered only by the next change, and a name the server
// does not hold is answered with nothing, so Envoy waits for it, and logged.
package sds

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	secretv3 "github.com/envoyproxy/go-control-plane/envoy/service/secret/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	delta "github.com/envoyproxy/go-control-plane/pkg/server/delta/v3"
	rest "github.com/envoyproxy/go-control-plane/pkg/server/rest/v3"
	sotw "github.com/envoyproxy/go-control-plane/pkg/server/sotw/v3"
	"github.com/prometheus/client_golang/prometheus"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// DefaultSocketPath is where the agent serves SDS unless told otherwise.
const DefaultSocketPath = "/var/run/garrison/sds.sock"

// DefaultSocketMode lets only the agent's user connect: the socket hands out
// the workload's private key.
const DefaultSocketMode fs.FileMode = 0o600

// Config holds the server's dependencies; all are optional.
type Config struct {
	Logger *slog.Logger
	// Metrics registers garrison_sds_* metrics; nil registers none.
	Metrics prometheus.Registerer
	// StopTimeout bounds how long Serve waits for open streams to end once
	// its context is done (default 5s).
	StopTimeout time.Duration
}

// Server holds the secrets and serves them to every SDS stream.
type Server struct {
	cfg   Config
	log   *slog.Logger
	cache *secretCache
	m     metrics

	mu sync.Mutex
	// warned records, per open stream, the unknown names already logged,
	// so that a stream asking again and again logs a name once.
	warned map[int64]map[string]bool
}

type metrics struct {
	streams   prometheus.Gauge
	responses prometheus.Counter
	nacks     prometheus.Counter
}

// New returns a server that holds no secret yet.
func New(cfg Config) (*Server, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.StopTimeout <= 0 {
		cfg.StopTimeout = 5 * time.Second
	}
	s := &Server{cfg: cfg, log: cfg.Logger, cache: newSecretCache(), warned: map[int64]map[string]bool{}}
	s.m = metrics{
		streams: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "garrison_sds_streams", Help: "Open SDS streams (StreamSecrets and DeltaSecrets).",
		}),
		responses: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "garrison_sds_responses_total", Help: "SDS responses sent on streams, pushes included.",
		}),
		nacks: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "garrison_sds_nacks_total", Help: "SDS responses the client rejected (requests with error_detail).",
		}),
	}
	if cfg.Metrics != nil {
		for _, c := range []prometheus.Collector{s.m.streams, s.m.responses, s.m.nacks} {
			if err := cfg.Metrics.Register(c); err != nil {
				return nil, fmt.Errorf("sds metrics: %w", err)
			}
		}
	}
	return s, nil
}

// Set adds or replaces secrets by name and pushes the ones that changed to
// every stream subscribed to them. Each secret must pass its Validate().
func (s *Server) Set(secrets ...*tlsv3.Secret) error {
	changed, err := s.cache.set(secrets)
	if err != nil {
		return err
	}
	if len(changed) > 0 {
		s.log.Info("sds secrets updated", "changed", changed)
	}
	return nil
}

// SetWorkload sets the secrets WorkloadSecrets builds from w.
func (s *Server) SetWorkload(w Workload) error {
	return s.Set(WorkloadSecrets(w)...)
}

// Secret returns the secret held under name, or nil.
func (s *Server) Secret(name string) *tlsv3.Secret { return s.cache.get(name) }

// Endpoint is a listening SDS socket.
type Endpoint struct {
	s    *Server
	ln   net.Listener
	path string
	info os.FileInfo
}

// Listen creates the Unix socket at path with the given permissions (0 is
// DefaultSocketMode), creating its directory if needed. A socket left behind
// by an agent that died is removed; a socket someone still answers on, or a
// file that is not a socket, is an error.
func (s *Server) Listen(path string, mode fs.FileMode) (*Endpoint, error) {
	if mode == 0 {
		mode = DefaultSocketMode
	}
	ln, info, err := listenUnix(path, mode)
	if err != nil {
		return nil, err
	}
	return &Endpoint{s: s, ln: ln, path: path, info: info}, nil
}

// Path is the socket's path.
func (e *Endpoint) Path() string { return e.path }

// Serve serves SDS until ctx is done, then ends the open streams, stops and
// removes the socket.
func (e *Endpoint) Serve(ctx context.Context) error {
	defer e.removeSocket()
	g := grpc.NewServer()
	// The xDS server's streams end when ctx is done; GracefulStop then has
	// nothing left to wait for.
	secretv3.RegisterSecretDiscoveryServiceServer(g, e.s.service(ctx))
	errc := make(chan error, 1)
	go func() { errc <- g.Serve(e.ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("sds: %w", err)
	case <-ctx.Done():
	}
	stopped := make(chan struct{})
	go func() { g.GracefulStop(); close(stopped) }()
	t := time.NewTimer(e.s.cfg.StopTimeout)
	defer t.Stop()
	select {
	case <-stopped:
	case <-t.C:
		g.Stop()
	}
	<-errc
	return nil
}

// removeSocket removes the socket unless another agent has replaced it.
func (e *Endpoint) removeSocket() {
	if cur, err := os.Lstat(e.path); err == nil && os.SameFile(cur, e.info) {
		_ = os.Remove(e.path)
	}
}

// listenUnix binds the socket in a private directory, sets its mode there
// and renames it into place, so that it is never reachable with the wider
// permissions the process umask would give it.
func listenUnix(path string, mode fs.FileMode) (net.Listener, os.FileInfo, error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, nil, fmt.Errorf("sds socket: %w", err)
	}
	if err := removeStaleSocket(path); err != nil {
		return nil, nil, err
	}
	tmp, err := os.MkdirTemp(dir, ".sds-")
	if err != nil {
		return nil, nil, fmt.Errorf("sds socket: %w", err)
	}
	defer os.RemoveAll(tmp)
	tmpPath := filepath.Join(tmp, "s")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmpPath, Net: "unix"})
	if err != nil {
		return nil, nil, fmt.Errorf("sds socket: %w", err)
	}
	// Closing would unlink the temporary name, which no longer exists;
	// Serve removes the real one.
	ln.SetUnlinkOnClose(false)
	if err := os.Chmod(tmpPath, mode); err != nil {
		ln.Close()
		return nil, nil, fmt.Errorf("sds socket: %w", err)
	}
	if err := os.Rename(tmpPath, path); err != nil {
		ln.Close()
		return nil, nil, fmt.Errorf("sds socket: %w", err)
	}
	info, err := os.Lstat(path)
	if err != nil {
		ln.Close()
		return nil, nil, fmt.Errorf("sds socket: %w", err)
	}
	return ln, info, nil
}

func removeStaleSocket(path string) error {
	info, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("sds socket: %w", err)
	}
	if info.Mode()&fs.ModeSocket == 0 {
		return fmt.Errorf("sds socket: %s exists and is not a socket", path)
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return fmt.Errorf("sds socket: %s is in use by another process", path)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("sds socket: removing stale %s: %w", path, err)
	}
	return nil
}

// service is envoy.service.secret.v3.SecretDiscoveryService on top of
// go-control-plane's protocol servers. It is assembled here rather than
// taken from go-control-plane's pkg/server/v3, which would bring in the
// module of every other xDS service (rate limit included) for one service.
type service struct {
	secretv3.UnimplementedSecretDiscoveryServiceServer
	sotw  sotw.Server
	delta delta.Server
	rest  rest.Server
}

var _ secretv3.SecretDiscoveryServiceServer = (*service)(nil)

func (s *Server) service(ctx context.Context) *service {
	cb := callbacks{s}
	opt := sotw.WithLogger(xdsLogger{s.log})
	return &service{
		sotw:  sotw.NewServer(ctx, s.cache, cb, opt),
		delta: delta.NewServer(ctx, s.cache, cb, opt),
		rest:  rest.NewServer(s.cache, cb),
	}
}

func (v *service) StreamSecrets(stream secretv3.SecretDiscoveryService_StreamSecretsServer) error {
	return v.sotw.StreamHandler(stream, resource.SecretType)
}

func (v *service) DeltaSecrets(stream secretv3.SecretDiscoveryService_DeltaSecretsServer) error {
	return v.delta.DeltaStreamHandler(stream, resource.SecretType)
}

func (v *service) FetchSecrets(ctx context.Context, req *discovery.DiscoveryRequest) (*discovery.DiscoveryResponse, error) {
	if req == nil {
		return nil, status.Error(codes.InvalidArgument, "empty request")
	}
	req.TypeUrl = resource.SecretType
	return v.rest.Fetch(ctx, req)
}

// callbacks observes the protocol servers: metrics, NACKs and names the
// server does not hold. The state-of-the-world and delta servers number
// their streams independently, so delta streams are keyed by negative IDs.
type callbacks struct{ s *Server }

var (
	_ sotw.Callbacks  = callbacks{}
	_ delta.Callbacks = callbacks{}
	_ rest.Callbacks  = callbacks{}
)

func (c callbacks) OnStreamOpen(_ context.Context, id int64, _ string) error {
	c.s.streamOpened(id)
	return nil
}

func (c callbacks) OnStreamClosed(id int64, node *corev3.Node) { c.s.streamClosed(id, node) }

func (c callbacks) OnStreamRequest(id int64, req *discovery.DiscoveryRequest) error {
	c.s.request(id, req.GetNode(), req.GetResourceNames(), req.GetResponseNonce(), req.GetErrorDetail())
	return nil
}

func (c callbacks) OnStreamResponse(_ context.Context, id int64, _ *discovery.DiscoveryRequest, resp *discovery.DiscoveryResponse) {
	c.s.m.responses.Inc()
	c.s.log.Debug("sds response", "stream", id, "version", resp.GetVersionInfo(), "nonce", resp.GetNonce(), "resources", len(resp.GetResources()))
}

func (c callbacks) OnDeltaStreamOpen(_ context.Context, id int64, _ string) error {
	c.s.streamOpened(-id)
	return nil
}

func (c callbacks) OnDeltaStreamClosed(id int64, node *corev3.Node) { c.s.streamClosed(-id, node) }

func (c callbacks) OnStreamDeltaRequest(id int64, req *discovery.DeltaDiscoveryRequest) error {
	c.s.request(-id, req.GetNode(), req.GetResourceNamesSubscribe(), req.GetResponseNonce(), req.GetErrorDetail())
	return nil
}

func (c callbacks) OnStreamDeltaResponse(id int64, _ *discovery.DeltaDiscoveryRequest, resp *discovery.DeltaDiscoveryResponse) {
	c.s.m.responses.Inc()
	c.s.log.Debug("sds delta response", "stream", -id, "version", resp.GetSystemVersionInfo(), "nonce", resp.GetNonce(), "resources", len(resp.GetResources()))
}

func (c callbacks) OnFetchRequest(_ context.Context, req *discovery.DiscoveryRequest) error {
	if unknown := c.s.cache.unknown(req.GetResourceNames()); len(unknown) > 0 {
		c.s.log.Warn("sds fetch names secrets this agent does not hold", "names", unknown, "node", req.GetNode().GetId())
	}
	return nil
}

func (c callbacks) OnFetchResponse(*discovery.DiscoveryRequest, *discovery.DiscoveryResponse) {}

func (s *Server) streamOpened(id int64) {
	s.m.streams.Inc()
	s.mu.Lock()
	s.warned[id] = map[string]bool{}
	s.mu.Unlock()
	s.log.Debug("sds stream opened", "stream", id)
}

func (s *Server) streamClosed(id int64, node *corev3.Node) {
	s.m.streams.Dec()
	s.mu.Lock()
	delete(s.warned, id)
	s.mu.Unlock()
	s.log.Debug("sds stream closed", "stream", id, "node", node.GetId())
}

func (s *Server) request(id int64, node *corev3.Node, names []string, nonce string, nack *rpcstatus.Status) {
	if nack != nil {
		s.m.nacks.Inc()
		s.log.Warn("sds client rejected secrets", "stream", id, "node", node.GetId(), "names", names, "nonce", nonce, "error", nack.GetMessage())
	}
	unknown := s.cache.unknown(names)
	if len(unknown) == 0 {
		return
	}
	s.mu.Lock()
	var fresh []string
	if w := s.warned[id]; w != nil {
		for _, n := range unknown {
			if !w[n] {
				w[n] = true
				fresh = append(fresh, n)
			}
		}
	}
	s.mu.Unlock()
	if len(fresh) > 0 {
		s.log.Warn("sds client asks for secrets this agent does not hold; it will wait for them",
			"stream", id, "node", node.GetId(), "names", fresh)
	}
}

// xdsLogger sends go-control-plane's log lines to slog; its Info lines
// (such as stale nonces) are routine protocol events, hence Debug.
type xdsLogger struct{ log *slog.Logger }

func (l xdsLogger) Debugf(format string, args ...any) { l.log.Debug(fmt.Sprintf(format, args...)) }
func (l xdsLogger) Infof(format string, args ...any)  { l.log.Debug(fmt.Sprintf(format, args...)) }
func (l xdsLogger) Warnf(format string, args ...any)  { l.log.Warn(fmt.Sprintf(format, args...)) }
func (l xdsLogger) Errorf(format string, args ...any) { l.log.Error(fmt.Sprintf(format, args...)) }
