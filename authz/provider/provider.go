// Package provider calls the extension providers that CUSTOM
// AuthorizationPolicies delegate to, as the ext_authz filter Istio would
// have put in front of the workload calls them: Istio's MeshConfig
// extensionProviders of type envoyExtAuthzGrpc (Envoy's ext_authz gRPC
// service, the same CheckRequest Garrison received) and envoyExtAuthzHttp
// (the request's method and path, under pathPrefix, with its allowed
// headers). It applies the providers' timeout, failOpen and statusOnError,
// and turns every answer into the CheckResponse Envoy should act on.
//
// A provider that cannot be reached or times out denies (statusOnError,
// default 403) unless it is configured failOpen: the request was sent to a
// stricter check on purpose, and letting it through on an error would undo
// that.
package provider

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/genproto/googleapis/rpc/code"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	meshconfig "istio.io/api/mesh/v1alpha1"
)

// DefaultTimeout is Istio's default for both provider types.
const DefaultTimeout = 600 * time.Second

// Result is what a provider decided.
type Result struct {
	// Allowed: the provider allowed the request (or failed and is
	// failOpen); Garrison's own DENY and ALLOW policies still apply.
	Allowed bool
	// Response is what Envoy should act on: on a denial the provider's
	// status, body and headers; on an allow the header changes it asked
	// for (an OkResponse, possibly empty).
	Response *authv3.CheckResponse
	// Err is why the provider could not decide (unreachable, timeout, a
	// 5xx answer); the Response then follows failOpen / statusOnError.
	Err error
}

// Config holds the Set's dependencies. Providers is required (it may be
// empty); every other field has a default.
type Config struct {
	// Providers are MeshConfig's extensionProviders; those of other types
	// (tracing, logging) are skipped.
	Providers []*meshconfig.MeshConfig_ExtensionProvider
	// Logger: default discard.
	Logger *slog.Logger
	// HTTPClient calls envoyExtAuthzHttp providers. Default: a client of
	// its own (never http.DefaultClient), with no overall timeout: each
	// call has the provider's.
	HTTPClient *http.Client
	// DialOptions connect to envoyExtAuthzGrpc providers. Default:
	// plaintext, as a sidecar's ext_authz cluster without mTLS.
	DialOptions []grpc.DialOption
	// Metrics: nil records none.
	Metrics prometheus.Registerer
}

// Set holds a client per provider. It is safe for concurrent use.
type Set struct {
	log       *slog.Logger
	providers map[string]caller
	conns     []*grpc.ClientConn
	calls     *prometheus.CounterVec
	closeOnce sync.Once
}

// caller is one provider.
type caller interface {
	check(ctx context.Context, req *authv3.CheckRequest) Result
}

// New builds a client for every ext_authz provider of cfg. gRPC
// connections are made lazily, so an unreachable provider fails its calls,
// not New.
func New(cfg Config) (*Set, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{
			// A provider's redirect is its answer, not something to follow.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	if cfg.DialOptions == nil {
		cfg.DialOptions = []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	}
	s := &Set{log: cfg.Logger.With("component", "authz-provider"), providers: map[string]caller{}}
	for _, p := range cfg.Providers {
		if _, dup := s.providers[p.GetName()]; dup {
			s.Close()
			return nil, fmt.Errorf("provider: duplicate extension provider %q", p.GetName())
		}
		switch prov := p.GetProvider().(type) {
		case *meshconfig.MeshConfig_ExtensionProvider_EnvoyExtAuthzGrpc:
			g := prov.EnvoyExtAuthzGrpc
			f, err := newFailure(g.GetFailOpen(), g.GetStatusOnError())
			if err != nil {
				s.Close()
				return nil, fmt.Errorf("provider %q: %w", p.GetName(), err)
			}
			conn, err := grpc.NewClient(target(g.GetService(), g.GetPort()), cfg.DialOptions...)
			if err != nil {
				s.Close()
				return nil, fmt.Errorf("provider %q: %w", p.GetName(), err)
			}
			s.conns = append(s.conns, conn)
			s.providers[p.GetName()] = &grpcCaller{client: authv3.NewAuthorizationClient(conn), timeout: timeout(g.GetTimeout().AsDuration()), failure: f}
		case *meshconfig.MeshConfig_ExtensionProvider_EnvoyExtAuthzHttp:
			h, err := newHTTPCaller(cfg.HTTPClient, prov.EnvoyExtAuthzHttp)
			if err != nil {
				s.Close()
				return nil, fmt.Errorf("provider %q: %w", p.GetName(), err)
			}
			s.providers[p.GetName()] = h
		}
	}
	if cfg.Metrics != nil {
		s.calls = prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "garrison_authz_provider_checks_total",
			Help: "Requests delegated to CUSTOM extension providers, by provider and result (allow, deny, error: the provider could not decide and failOpen/statusOnError answered).",
		}, []string{"provider", "result"})
		if err := cfg.Metrics.Register(s.calls); err != nil {
			s.Close()
			return nil, fmt.Errorf("provider: registering metrics: %w", err)
		}
	}
	return s, nil
}

// Has reports whether name is a configured ext_authz provider.
func (s *Set) Has(name string) bool {
	_, ok := s.providers[name]
	return ok
}

// Check asks provider name about req. An unknown provider denies (403),
// as Istio turns a CUSTOM policy naming one into a denial.
func (s *Set) Check(ctx context.Context, name string, req *authv3.CheckRequest) Result {
	c, ok := s.providers[name]
	if !ok {
		return Result{Response: denied(http.StatusForbidden, "", nil), Err: fmt.Errorf("extension provider %q is not configured", name)}
	}
	r := c.check(ctx, req)
	result := "deny"
	switch {
	case r.Err != nil:
		result = "error"
		s.log.Warn("extension provider failed", "provider", name, "allowed", r.Allowed, "err", r.Err)
	case r.Allowed:
		result = "allow"
	}
	if s.calls != nil {
		s.calls.WithLabelValues(name, result).Inc()
	}
	return r
}

// Delegate is Check for the ext_authz server (extauthz.Delegator): whether
// the provider allowed the request and the response Envoy acts on.
func (s *Set) Delegate(ctx context.Context, name string, req *authv3.CheckRequest) (bool, *authv3.CheckResponse) {
	r := s.Check(ctx, name, req)
	return r.Allowed, r.Response
}

// Close closes the gRPC connections.
func (s *Set) Close() {
	s.closeOnce.Do(func() {
		for _, c := range s.conns {
			_ = c.Close()
		}
	})
}

// target is the provider's address. Istio's service may be written
// "<namespace>/<hostname>" to pick among services of one name; the
// namespace only disambiguates the registry, so it is dropped.
func target(service string, port uint32) string {
	if i := strings.IndexByte(service, '/'); i >= 0 {
		service = service[i+1:]
	}
	return service + ":" + strconv.FormatUint(uint64(port), 10)
}

func timeout(d time.Duration) time.Duration {
	if d <= 0 {
		return DefaultTimeout
	}
	return d
}

// failure is what a provider that could not decide answers.
type failure struct {
	open   bool
	status int
}

func newFailure(open bool, statusOnError string) (failure, error) {
	f := failure{open: open, status: http.StatusForbidden}
	if statusOnError != "" {
		n, err := strconv.Atoi(statusOnError)
		if err != nil || http.StatusText(n) == "" {
			return f, fmt.Errorf("statusOnError %q is not an HTTP status", statusOnError)
		}
		f.status = n
	}
	return f, nil
}

func (f failure) result(err error) Result {
	if f.open {
		return Result{Allowed: true, Response: okResponse(nil, nil), Err: err}
	}
	return Result{Response: denied(f.status, "", nil), Err: err}
}

// grpcCaller forwards the CheckRequest to an Envoy ext_authz gRPC service.
type grpcCaller struct {
	client  authv3.AuthorizationClient
	timeout time.Duration
	failure failure
}

func (g *grpcCaller) check(ctx context.Context, req *authv3.CheckRequest) Result {
	ctx, cancel := context.WithTimeout(ctx, g.timeout)
	defer cancel()
	resp, err := g.client.Check(ctx, req)
	if err != nil {
		return g.failure.result(err)
	}
	if code.Code(resp.GetStatus().GetCode()) == code.Code_OK {
		if resp.GetOkResponse() == nil {
			resp.HttpResponse = &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{}}
		}
		return Result{Allowed: true, Response: resp}
	}
	// A denial without a denied_response is a 403, as Envoy answers it.
	if resp.GetDeniedResponse() == nil {
		resp.HttpResponse = &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
			Status: &typev3.HttpStatus{Code: typev3.StatusCode_Forbidden},
		}}
	}
	return Result{Response: resp}
}

func okResponse(upstream, downstream []*corev3.HeaderValueOption) *authv3.CheckResponse {
	return &authv3.CheckResponse{
		Status:       &rpcstatus.Status{Code: int32(code.Code_OK)},
		HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{Headers: upstream, ResponseHeadersToAdd: downstream}},
	}
}

func denied(status int, body string, headers []*corev3.HeaderValueOption) *authv3.CheckResponse {
	return &authv3.CheckResponse{
		Status: &rpcstatus.Status{Code: int32(code.Code_PERMISSION_DENIED)},
		HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
			Status:  &typev3.HttpStatus{Code: typev3.StatusCode(status)},
			Body:    body,
			Headers: headers,
		}},
	}
}

// headerMatcher is Istio's header list syntax for the HTTP provider's
// header lists: "abc" exact, "abc*" prefix, "*abc" suffix, case-insensitive
// as header names are.
type headerMatcher []string

func newHeaderMatcher(patterns []string) headerMatcher {
	m := make(headerMatcher, 0, len(patterns))
	for _, p := range patterns {
		m = append(m, strings.ToLower(p))
	}
	return m
}

func (m headerMatcher) match(name string) bool {
	name = strings.ToLower(name)
	for _, p := range m {
		switch {
		case p == "*":
			return true
		case strings.HasSuffix(p, "*"):
			if strings.HasPrefix(name, p[:len(p)-1]) {
				return true
			}
		case strings.HasPrefix(p, "*"):
			if strings.HasSuffix(name, p[1:]) {
				return true
			}
		case p == name:
			return true
		}
	}
	return false
}

var errServerError = errors.New("provider answered with a server error")

// sortedHeaderOptions returns headers as Envoy header options, in name
// order so that responses are stable.
func sortedHeaderOptions(h http.Header, keep func(string) bool) []*corev3.HeaderValueOption {
	names := make([]string, 0, len(h))
	for k := range h {
		if keep(k) {
			names = append(names, k)
		}
	}
	slices.Sort(names)
	var out []*corev3.HeaderValueOption
	for _, k := range names {
		for _, v := range h.Values(k) {
			out = append(out, &corev3.HeaderValueOption{
				Header:       &corev3.HeaderValue{Key: strings.ToLower(k), Value: v},
				AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
			})
		}
	}
	return out
}
