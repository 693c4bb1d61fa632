package extauthz

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/garrison-mesh/garrison/authz/engine"
)

// Decider makes authorization decisions. An error means no decision could
// be made; the server then denies. Ready reports whether decisions can be
// made at all (a policy set is loaded); it drives the gRPC health status.
type Decider interface {
	Decide(ctx context.Context, req *authv3.CheckRequest) (*engine.Decision, error)
	Ready() bool
}

// Delegator asks the extension provider a CUSTOM policy delegated to
// (authz/provider). allowed means the provider let the request through;
// resp is what Envoy should act on: the provider's denial, or on an allow
// the header changes it asked for.
type Delegator interface {
	Delegate(ctx context.Context, provider string, req *authv3.CheckRequest) (allowed bool, resp *authv3.CheckResponse)
}

// DefaultMaskHeaders are the request headers whose values never reach the
// decision log: they carry credentials.
var DefaultMaskHeaders = []string{"authorization", "cookie", "proxy-authorization", "x-api-key"}

// DefaultMaskQueryParams are the query parameters whose values never reach
// the decision log. access_token is where Istio's RequestAuthentication
// looks for a JWT after the Authorization header.
var DefaultMaskQueryParams = []string{"access_token"}

// DecisionHeader is the response header that, with DenyBodyDetails, tells
// the client which policy and rule denied it.
const DecisionHeader = "x-garrison-decision"

// Bodies of denials. denyBody is Envoy's RBAC filter's own, so that a
// client cannot tell an ext_authz denial from an RBAC one when details are
// off.
const (
	denyBody             = "RBAC: access denied"
	evalFailedBody       = "RBAC: access denied (policy evaluation failed)"
	customUnavailableMsg = "RBAC: access denied (extension provider not configured)"
)

// Config holds the server's dependencies. Decider is required; every other
// field has a default.
type Config struct {
	Decider Decider
	// Logger receives operational messages (engine errors, decision-log
	// write failures), not decisions. Default: discard.
	Logger *slog.Logger
	// Metrics is where the server's collectors are registered. Nil records
	// no metrics; the global registry is never used implicitly.
	Metrics prometheus.Registerer
	// DecisionLog receives one JSON line per Check. Nil turns the decision
	// log off. Writes are serialised and batched; see decisionlog.go.
	DecisionLog io.Writer
	// MaskHeaders are request headers (case-insensitive) whose values are
	// logged as "[masked]". Nil means DefaultMaskHeaders; an empty non-nil
	// slice masks nothing.
	MaskHeaders []string
	// MaskQueryParams are query parameters whose values are logged as
	// "[masked]" in the path. Nil means DefaultMaskQueryParams.
	MaskQueryParams []string
	// DenyBodyDetails names the deciding policy and rule in deny bodies and
	// in the x-garrison-decision header. Off, clients see only
	// "RBAC: access denied".
	DenyBodyDetails bool
	// Now is the clock for latency and log timestamps. Default: time.Now.
	Now func() time.Time
	// Custom asks the extension providers of CUSTOM policies. Nil: a
	// request a CUSTOM policy delegates is denied (no provider configured).
	Custom Delegator
}

// Server implements envoy.service.auth.v3.Authorization.
type Server struct {
	authv3.UnimplementedAuthorizationServer

	decider Decider
	custom  Delegator
	logger  *slog.Logger
	now     func() time.Time
	details bool
	metrics *metrics // nil: no metrics
	declog  *decisionLog
	health  *healthServer
	// One limiter each, so that a failing log cannot hide failing policies.
	evalErrLog  rateLimited
	writeErrLog rateLimited
}

// New checks cfg and builds a server. It registers the metrics, so calling
// it twice with one registry fails.
func New(cfg Config) (*Server, error) {
	if cfg.Decider == nil {
		return nil, errors.New("extauthz: Config.Decider is required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.MaskHeaders == nil {
		cfg.MaskHeaders = DefaultMaskHeaders
	}
	if cfg.MaskQueryParams == nil {
		cfg.MaskQueryParams = DefaultMaskQueryParams
	}
	s := &Server{
		decider: cfg.Decider,
		custom:  cfg.Custom,
		logger:  cfg.Logger,
		now:     cfg.Now,
		details: cfg.DenyBodyDetails,
	}
	if cfg.Metrics != nil {
		m, err := newMetrics(cfg.Metrics)
		if err != nil {
			return nil, err
		}
		s.metrics = m
	}
	if cfg.DecisionLog != nil {
		s.declog = newDecisionLog(cfg.DecisionLog, cfg.MaskHeaders, cfg.MaskQueryParams, s.logWriteFailed, s.metrics.logLineDropped)
	}
	s.health = newHealthServer(cfg.Decider.Ready)
	return s, nil
}

// Register adds the Authorization service and the gRPC health service to
// reg. Reflection is added by Listen, which owns its grpc.Server; a caller
// with its own server adds reflection itself if it wants it.
func (s *Server) Register(reg grpc.ServiceRegistrar) {
	authv3.RegisterAuthorizationServer(reg, s)
	s.health.register(reg)
}

// outcome is the result label of garrison_authz_decisions_total and the
// decision field of the log.
type outcome uint8

const (
	outcomeAllow outcome = iota
	outcomeDeny
	outcomeError
)

func (o outcome) String() string {
	switch o {
	case outcomeAllow:
		return "allow"
	case outcomeDeny:
		return "deny"
	default:
		return "error"
	}
}

// Check answers one ext_authz request. It never returns an error: see the
// package documentation for why a failure must be a denial.
func (s *Server) Check(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	start := s.now()
	dec, err := s.decide(ctx, req)
	var (
		resp *authv3.CheckResponse
		out  outcome
		code int
	)
	switch {
	case err != nil:
		resp, out, code = respEvalFailed, outcomeError, 403
		s.engineFailed(err, start)
	case dec.Custom != nil:
		// Checked before Allowed: a CUSTOM decision is not the engine's to
		// make, and until a provider answers, the request is denied.
		resp, out, code = s.delegate(ctx, req, dec)
	case dec.Allowed:
		resp, out, code = withAuthnHeaders(respAllow, dec.Authn), outcomeAllow, 200
	case dec.Reason == engine.ReasonJWTRejected:
		resp, code = jwtRejected(dec)
		out = outcomeDeny
	default:
		resp, code = s.denied(dec)
		out = outcomeDeny
	}
	took := s.now().Sub(start)

	s.metrics.observe(out, dec, took)
	if s.declog != nil {
		s.declog.record(logEntry{start: start, took: took, req: req, dec: dec, err: err, out: out, status: code})
	}
	return resp, nil
}

// decide calls the Decider and turns its failures (an error, a nil
// decision, a panic) into an error, so that Check has one path that denies.
// A panic is recovered rather than left to crash the process: a crashed
// ext_authz server is a connection failure to Envoy, which
// failure_mode_allow would let through.
func (s *Server) decide(ctx context.Context, req *authv3.CheckRequest) (dec *engine.Decision, err error) {
	defer func() {
		if p := recover(); p != nil {
			dec, err = nil, fmt.Errorf("decider panicked: %v", p)
		}
	}()
	dec, err = s.decider.Decide(ctx, req)
	if err == nil && dec == nil {
		err = errors.New("decider returned no decision and no error")
	}
	if err != nil {
		dec = nil
	}
	return dec, err
}

// engineFailed logs an engine error at most once a second, with the number
// of errors left unlogged since: a broken policy set fails every request,
// and a log line per request would bury everything else. The counter in
// garrison_authz_decisions_total{result="error"} has the exact count.
func (s *Server) engineFailed(err error, at time.Time) {
	if n, ok := s.evalErrLog.allow(at, time.Second); ok {
		s.logger.Error("ext_authz: policy evaluation failed; request denied", "err", err, "suppressed", n)
	}
}

// logWriteFailed is the decision log's error callback.
func (s *Server) logWriteFailed(err error) {
	s.metrics.logWriteFailed()
	if n, ok := s.writeErrLog.allow(s.now(), time.Second); ok {
		s.logger.Warn("ext_authz: writing decision log failed", "err", err, "suppressed", n)
	}
}

// Precomputed responses: shared, never mutated. gRPC only marshals them,
// and protobuf marshalling of one message from several goroutines is safe.
var (
	statusOK               = status.New(codes.OK, "").Proto()
	statusPermissionDenied = status.New(codes.PermissionDenied, "").Proto()
	statusUnauthenticated  = status.New(codes.Unauthenticated, "").Proto()
	statusInvalidArgument  = status.New(codes.InvalidArgument, "").Proto()

	respAllow = &authv3.CheckResponse{
		Status:       statusOK,
		HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{}},
	}
	// respEvalFailed is a denied_response, not an error_response: Envoy
	// counts error_response as an ext_authz error, which
	// failure_mode_allow turns into an allow.
	respEvalFailed = deniedResponse(403, evalFailedBody, nil)
	respDeny       = map[int]*authv3.CheckResponse{
		400: deniedResponse(400, denyBody, nil),
		401: deniedResponse(401, denyBody, nil),
		403: deniedResponse(403, denyBody, nil),
	}
	respCustomUnavailable = deniedResponse(403, customUnavailableMsg, nil)
)

// httpStatus maps the engine's status to the ones a denial may carry: 401
// for an invalid JWT, 400 for a path the engine refused to normalise, 403
// for everything else, whatever else the engine says.
func httpStatus(engineStatus int) int {
	switch engineStatus {
	case 400, 401:
		return engineStatus
	default:
		return 403
	}
}

func deniedResponse(code int, body string, headers []*corev3.HeaderValueOption) *authv3.CheckResponse {
	st := statusPermissionDenied
	switch code {
	case 400:
		st = statusInvalidArgument
	case 401:
		st = statusUnauthenticated
	}
	return &authv3.CheckResponse{
		Status: st,
		HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
			// Always explicit: Envoy would say 403 for a missing status, but
			// 401 and 400 must be stated, and stating 403 too keeps one path.
			Status:  &typev3.HttpStatus{Code: typev3.StatusCode(code)},
			Headers: headers,
			Body:    body,
		}},
	}
}

// denied builds the response to an engine denial.
func (s *Server) denied(dec *engine.Decision) (*authv3.CheckResponse, int) {
	code := httpStatus(dec.Status)
	if !s.details {
		return respDeny[code], code
	}
	body := dec.Body
	if body == "" {
		body = denyBodyFor(dec)
	}
	return deniedResponse(code, body, decisionHeader(decisionHeaderValue(dec))), code
}

// denyBodyFor is the detailed body when the engine supplied none; it reads
// as the body the compiled Rego produces (CONTRACT.md section 5).
func denyBodyFor(dec *engine.Decision) string {
	if dec.Reason == engine.ReasonCertificateRevoked {
		return denyBody + " (peer certificate revoked)"
	}
	if dec.Reason == engine.ReasonMTLSRequired && dec.Policy != "" {
		return denyBody + " (mTLS required by " + dec.Kind + " " + dec.Policy + ")"
	}
	if dec.Policy == "" {
		if dec.Reason == "" {
			return denyBody
		}
		return denyBody + " (" + dec.Reason + ")"
	}
	kind := dec.Kind
	if kind == "" {
		kind = "policy"
	}
	return denyBody + " by " + kind + " " + dec.Policy + " rule " + strconv.Itoa(dec.Rule)
}

// delegate asks the provider a CUSTOM policy named, as Istio's CUSTOM
// action runs before its DENY and ALLOW policies: the provider's denial is
// the answer; when it allows, the decision the policies give without the
// CUSTOM rule (after_custom) is, with the provider's header changes on an
// allow.
func (s *Server) delegate(ctx context.Context, req *authv3.CheckRequest, dec *engine.Decision) (*authv3.CheckResponse, outcome, int) {
	if s.custom == nil {
		return s.customUnavailable(dec), outcomeDeny, 403
	}
	allowed, resp := s.custom.Delegate(ctx, dec.Custom.Provider, req)
	if !allowed {
		if resp == nil || resp.GetDeniedResponse() == nil {
			resp = deniedResponse(403, denyBody, nil)
		}
		code := int(resp.GetDeniedResponse().GetStatus().GetCode())
		if code == 0 {
			code = 403
		}
		return resp, outcomeDeny, code
	}
	after := dec.AfterCustom
	if after == nil {
		// The library always states what applies after a CUSTOM allow;
		// without it there is no decision to stand on.
		s.engineFailed(errors.New("CUSTOM decision without after_custom"), s.now())
		return respEvalFailed, outcomeError, 403
	}
	if !after.Allowed {
		r, code := s.denied(after)
		return r, outcomeDeny, code
	}
	if resp == nil || resp.GetOkResponse() == nil {
		resp = respAllow
	}
	return withAuthnHeaders(resp, dec.Authn), outcomeAllow, 200
}

// jwtRejected is the answer Envoy's jwt_authn filter gives a refused token:
// its status (401, 403 for a wrong audience), its reason as the body and
// its WWW-Authenticate header, whatever DenyBodyDetails says, as a sidecar
// answers.
func jwtRejected(dec *engine.Decision) (*authv3.CheckResponse, int) {
	code := httpStatus(dec.Status)
	var body string
	var headers []*corev3.HeaderValueOption
	if a := dec.Authn; a != nil {
		body = a.Reason
		if a.WWWAuthenticate != "" {
			headers = append(headers, &corev3.HeaderValueOption{
				Header:       &corev3.HeaderValue{Key: "www-authenticate", Value: a.WWWAuthenticate},
				AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
			})
		}
	}
	return deniedResponse(code, body, headers), code
}

// withAuthnHeaders adds to an allow the request changes origin
// authentication asks for (the token removed unless forwarded, payload and
// claim headers set), as Envoy's jwt_authn filter would have made them
// before the request went upstream. resp is not modified.
func withAuthnHeaders(resp *authv3.CheckResponse, a *engine.Authn) *authv3.CheckResponse {
	if a == nil || len(a.SetHeaders) == 0 && len(a.RemoveHeaders) == 0 {
		return resp
	}
	ok := resp.GetOkResponse()
	out := &authv3.OkHttpResponse{
		Headers:              slices.Clone(ok.GetHeaders()),
		HeadersToRemove:      slices.Concat(ok.GetHeadersToRemove(), a.RemoveHeaders),
		ResponseHeadersToAdd: ok.GetResponseHeadersToAdd(),
		QueryParametersToSet: ok.GetQueryParametersToSet(),
		DynamicMetadata:      ok.GetDynamicMetadata(),
	}
	for _, h := range a.SetHeaders {
		out.Headers = append(out.Headers, &corev3.HeaderValueOption{
			Header:       &corev3.HeaderValue{Key: h.Name, Value: h.Value},
			AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
		})
	}
	return &authv3.CheckResponse{
		Status:          resp.GetStatus(),
		HttpResponse:    &authv3.CheckResponse_OkResponse{OkResponse: out},
		DynamicMetadata: resp.GetDynamicMetadata(),
	}
}

// customUnavailable denies a request a CUSTOM policy delegated to an
// extension provider when no providers are configured: failing open would
// let through exactly the requests an operator sent to a stricter check.
func (s *Server) customUnavailable(dec *engine.Decision) *authv3.CheckResponse {
	s.metrics.customUnavailable(dec.Custom.Provider)
	if !s.details {
		return respCustomUnavailable
	}
	policy := dec.Custom.Policy
	if policy == "" {
		policy = dec.Policy
	}
	body := "RBAC: access denied (extension provider " + strconv.Quote(dec.Custom.Provider) +
		" of CUSTOM policy " + policy + " is not configured)"
	hv := "reason=custom; provider=" + dec.Custom.Provider + "; policy=" + policy
	return deniedResponse(403, body, decisionHeader(hv))
}

// decisionHeaderValue is "reason=<r>; policy=<ns/name>; kind=<Kind>;
// rule=<n>", leaving out what the decision does not have.
func decisionHeaderValue(dec *engine.Decision) string {
	var b strings.Builder
	b.Grow(64)
	b.WriteString("reason=")
	b.WriteString(dec.Reason)
	if dec.Policy != "" {
		b.WriteString("; policy=")
		b.WriteString(dec.Policy)
		if dec.Kind != "" {
			b.WriteString("; kind=")
			b.WriteString(dec.Kind)
		}
		b.WriteString("; rule=")
		b.WriteString(strconv.Itoa(dec.Rule))
	}
	return b.String()
}

func decisionHeader(value string) []*corev3.HeaderValueOption {
	return []*corev3.HeaderValueOption{{
		Header:       &corev3.HeaderValue{Key: DecisionHeader, Value: value},
		AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
	}}
}

// rateLimited lets one event through per interval and counts the rest.
type rateLimited struct {
	last       atomic.Int64 // unix nanoseconds of the last event let through
	suppressed atomic.Int64
}

// allow reports whether an event at now may be logged and, if so, how many
// were suppressed since the last one.
func (r *rateLimited) allow(now time.Time, every time.Duration) (int64, bool) {
	t := now.UnixNano()
	last := r.last.Load()
	if last != 0 && t-last < int64(every) || !r.last.CompareAndSwap(last, t) {
		r.suppressed.Add(1)
		return 0, false
	}
	return r.suppressed.Swap(0), true
}
