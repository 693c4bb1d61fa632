// Package admin serves Garrison's monitoring port: liveness and readiness
// for orchestrators, Prometheus metrics, and the debug views operators use
// to see what configuration is live and what was rejected.
package admin

import (
	"github.com/garrison-mesh/garrison/authn/jwt"
	"github.com/garrison-mesh/garrison/ca/authority"

	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/garrison-mesh/garrison/policies"
)

// SnapshotSource hands out the live snapshot (nil before the first one).
type SnapshotSource interface {
	Current() *policies.Snapshot
}

var _ SnapshotSource = (*policies.Store)(nil)

// Config holds the server's dependencies.
type Config struct {
	// Addr is the listen address, such as ":15014".
	Addr      string
	Snapshots SnapshotSource
	// Status reports the config source's health for /debug/status and
	// `garrison status`; it must be JSON-serialisable.
	Status func() any
	// Gatherer is the metrics registry; nil serves no /metrics.
	Gatherer prometheus.Gatherer
	Logger   *slog.Logger
	// Version is reported by /debug/status.
	Version string
	// Components are the planes serving from the configuration (authz,
	// ...): /readyz waits for every one of them, and /debug/status reports
	// the policy version each one serves.
	Components map[string]Component
	// JWKS reports the key sets origin authentication fetches; nil: none.
	JWKS func() []jwt.FetchStatus
	// CA reports the certificate authority; nil: no CA runs.
	CA func(context.Context) (*authority.Status, error)
}

// Component is a plane that becomes ready once it has built its first
// policy set from a snapshot.
type Component interface {
	Ready() bool
	// Version is the snapshot version the component serves.
	Version() uint64
}

// Server is the monitoring HTTP server.
type Server struct {
	cfg Config
	srv *http.Server
	ln  net.Listener
}

// New listens on cfg.Addr at once, so that the caller learns of a busy port
// before it starts anything else, and so tests can use ":0".
func New(cfg Config) (*Server, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Status == nil {
		cfg.Status = func() any { return nil }
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, ln: ln}
	s.srv = &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second}
	return s, nil
}

// Addr is the address the server listens on.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Serve serves until ctx ends, then shuts down gracefully.
func (s *Server) Serve(ctx context.Context) error {
	errc := make(chan error, 1)
	go func() { errc <- s.srv.Serve(s.ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.srv.Shutdown(shutdownCtx); err != nil {
		return err
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// Handler returns the routes of the monitoring port.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", s.ready)
	if s.cfg.Gatherer != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(s.cfg.Gatherer, promhttp.HandlerOpts{}))
	}
	mux.HandleFunc("GET /debug/config", s.config)
	mux.HandleFunc("GET /debug/status", s.status)
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	return mux
}

// ready is 200 once a snapshot is live: before that, the planes would
// answer from no configuration at all.
func (s *Server) ready(w http.ResponseWriter, _ *http.Request) {
	snap := s.cfg.Snapshots.Current()
	if snap == nil {
		http.Error(w, "no configuration loaded yet", http.StatusServiceUnavailable)
		return
	}
	var waiting []string
	for name, c := range s.cfg.Components {
		if !c.Ready() {
			waiting = append(waiting, name)
		}
	}
	if len(waiting) > 0 {
		slices.Sort(waiting)
		http.Error(w, "not ready: "+strings.Join(waiting, ", "), http.StatusServiceUnavailable)
		return
	}
	_, _ = w.Write([]byte("ok\n"))
}

// ConfigDump is the body of /debug/config.
type ConfigDump struct {
	Version       uint64               `json:"version"`
	RootNamespace string               `json:"rootNamespace"`
	Counts        map[string]int       `json:"counts"`
	Resources     []*policies.Resource `json:"resources"`
}

// config dumps the live snapshot. ?kind=VirtualService and ?namespace=ns
// filter it; ?summary=true leaves out the resources.
func (s *Server) config(w http.ResponseWriter, r *http.Request) {
	snap := s.cfg.Snapshots.Current()
	if snap == nil {
		http.Error(w, "no configuration loaded yet", http.StatusServiceUnavailable)
		return
	}
	q := r.URL.Query()
	kind, ns := q.Get("kind"), q.Get("namespace")
	dump := ConfigDump{Version: snap.Version(), RootNamespace: snap.RootNamespace(), Counts: map[string]int{}, Resources: []*policies.Resource{}}
	for gk, n := range snap.CountByKind() {
		dump.Counts[gk.Kind] += n
	}
	if q.Get("summary") != "true" {
		for _, res := range snap.Resources() {
			if (kind == "" || strings.EqualFold(res.Kind.Kind, kind)) && (ns == "" || res.Namespace == ns) {
				dump.Resources = append(dump.Resources, res)
			}
		}
	}
	writeJSON(w, s.cfg.Logger, dump)
}

// StatusReport is the body of /debug/status, read by `garrison status`.
type StatusReport struct {
	Version         string          `json:"version"`
	Ready           bool            `json:"ready"`
	SnapshotVersion uint64          `json:"snapshotVersion"`
	Resources       int             `json:"resources"`
	Source          json.RawMessage `json:"source,omitempty"`
	// Components maps each plane to whether it is ready and the snapshot
	// version it serves (it lags SnapshotVersion while it rebuilds, and
	// stays behind when a snapshot fails to compile).
	Components map[string]ComponentStatus `json:"components,omitempty"`
	// JWKS lists every key set origin authentication uses; one not Ready
	// makes the requests that need it fail closed.
	JWKS []jwt.FetchStatus `json:"jwks,omitempty"`
	// CA is the certificate authority's state when one runs; CAError says
	// why it could not be read.
	CA      *authority.Status `json:"ca,omitempty"`
	CAError string            `json:"caError,omitempty"`
}

// ComponentStatus is one plane's state in a StatusReport.
type ComponentStatus struct {
	Ready   bool   `json:"ready"`
	Version uint64 `json:"version"`
}

func (s *Server) status(w http.ResponseWriter, r *http.Request) {
	rep := StatusReport{Version: s.cfg.Version}
	if snap := s.cfg.Snapshots.Current(); snap != nil {
		rep.Ready, rep.SnapshotVersion, rep.Resources = true, snap.Version(), snap.Len()
	}
	if len(s.cfg.Components) > 0 {
		rep.Components = map[string]ComponentStatus{}
		for name, c := range s.cfg.Components {
			ready := c.Ready()
			rep.Components[name] = ComponentStatus{Ready: ready, Version: c.Version()}
			rep.Ready = rep.Ready && ready
		}
	}
	if s.cfg.JWKS != nil {
		rep.JWKS = s.cfg.JWKS()
	}
	if s.cfg.CA != nil {
		st, err := s.cfg.CA(r.Context())
		if err != nil {
			rep.CAError = err.Error()
		}
		rep.CA = st
	}
	if st := s.cfg.Status(); st != nil {
		raw, err := json.Marshal(st)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		rep.Source = raw
	}
	writeJSON(w, s.cfg.Logger, rep)
}

func writeJSON(w http.ResponseWriter, log *slog.Logger, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		log.Warn("writing debug response", "err", err)
	}
}
