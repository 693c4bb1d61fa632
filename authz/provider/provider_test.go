package provider

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/genproto/googleapis/rpc/code"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	meshconfig "istio.io/api/mesh/v1alpha1"

	"github.com/garrison-mesh/garrison/authz/extauthz"
)

var _ extauthz.Delegator = (*Set)(nil)

// grpcProvider is a real ext_authz gRPC server: it allows requests whose
// path starts with /ok (adding a header upstream), blocks /slow until the
// call is cancelled, and denies the rest with 401 and a body.
type grpcProvider struct {
	authv3.UnimplementedAuthorizationServer
	got chan *authv3.CheckRequest
}

func (p *grpcProvider) Check(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	p.got <- req
	path := req.GetAttributes().GetRequest().GetHttp().GetPath()
	switch {
	case strings.HasPrefix(path, "/ok"):
		return &authv3.CheckResponse{
			Status: &rpcstatus.Status{Code: int32(code.Code_OK)},
			HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{
				Headers: []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: "x-ext-user", Value: "alice"}}},
			}},
		}, nil
	case strings.HasPrefix(path, "/slow"):
		<-ctx.Done()
		return nil, ctx.Err()
	case strings.HasPrefix(path, "/bare-deny"):
		return &authv3.CheckResponse{Status: &rpcstatus.Status{Code: int32(code.Code_PERMISSION_DENIED)}}, nil
	}
	return &authv3.CheckResponse{
		Status: &rpcstatus.Status{Code: int32(code.Code_PERMISSION_DENIED)},
		HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
			Status: &typev3.HttpStatus{Code: typev3.StatusCode_Unauthorized},
			Body:   "denied by ext-authz",
		}},
	}, nil
}

func startGRPCProvider(t *testing.T) (*grpcProvider, string, uint32) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	p := &grpcProvider{got: make(chan *authv3.CheckRequest, 16)}
	authv3.RegisterAuthorizationServer(srv, p)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	addr := lis.Addr().(*net.TCPAddr)
	return p, "127.0.0.1", uint32(addr.Port)
}

func grpcProviderConfig(name, host string, port uint32, mutate func(*meshconfig.MeshConfig_ExtensionProvider_EnvoyExternalAuthorizationGrpcProvider)) *meshconfig.MeshConfig_ExtensionProvider {
	g := &meshconfig.MeshConfig_ExtensionProvider_EnvoyExternalAuthorizationGrpcProvider{Service: host, Port: port}
	if mutate != nil {
		mutate(g)
	}
	return &meshconfig.MeshConfig_ExtensionProvider{Name: name, Provider: &meshconfig.MeshConfig_ExtensionProvider_EnvoyExtAuthzGrpc{EnvoyExtAuthzGrpc: g}}
}

func checkRequest(method, path string, headers map[string]string) *authv3.CheckRequest {
	h := map[string]string{":method": method, ":path": path, ":authority": "shop.example.com"}
	for k, v := range headers {
		h[k] = v
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: method, Path: path, Host: "shop.example.com", Headers: h,
		}},
		ContextExtensions: map[string]string{"garrison.io/namespace": "shop"},
	}}
}

func deniedStatus(r Result) int {
	return int(r.Response.GetDeniedResponse().GetStatus().GetCode())
}

func TestGRPCProvider(t *testing.T) {
	p, host, port := startGRPCProvider(t)
	_, closedPort := closedAddr(t)
	reg := prometheus.NewRegistry()
	s, err := New(Config{Metrics: reg, Providers: []*meshconfig.MeshConfig_ExtensionProvider{
		grpcProviderConfig("ext", host, port, nil),
		grpcProviderConfig("ext-ns", "other-ns/"+host, port, nil),
		grpcProviderConfig("quick", host, port, func(g *meshconfig.MeshConfig_ExtensionProvider_EnvoyExternalAuthorizationGrpcProvider) {
			g.Timeout = durationpb.New(50 * time.Millisecond)
		}),
		grpcProviderConfig("down", host, closedPort, func(g *meshconfig.MeshConfig_ExtensionProvider_EnvoyExternalAuthorizationGrpcProvider) {
			g.StatusOnError = "503"
		}),
		grpcProviderConfig("down-open", host, closedPort, func(g *meshconfig.MeshConfig_ExtensionProvider_EnvoyExternalAuthorizationGrpcProvider) {
			g.FailOpen = true
		}),
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	ctx := context.Background()

	t.Run("allow keeps the provider's headers and sees the request as sent", func(t *testing.T) {
		req := checkRequest("GET", "/ok/1", map[string]string{"x-a": "1"})
		r := s.Check(ctx, "ext", req)
		if !r.Allowed || r.Err != nil {
			t.Fatalf("got %+v", r)
		}
		if h := r.Response.GetOkResponse().GetHeaders(); len(h) != 1 || h[0].GetHeader().GetValue() != "alice" {
			t.Errorf("upstream headers %v", h)
		}
		if got := <-p.got; !proto.Equal(got, req) {
			t.Errorf("provider saw %v, want %v", got, req)
		}
	})
	t.Run("deny passes the provider's status and body through", func(t *testing.T) {
		r := s.Check(ctx, "ext-ns", checkRequest("GET", "/private", nil))
		<-p.got
		if r.Allowed || deniedStatus(r) != 401 || r.Response.GetDeniedResponse().GetBody() != "denied by ext-authz" {
			t.Fatalf("got %+v", r)
		}
	})
	t.Run("a denial without a response is a 403", func(t *testing.T) {
		r := s.Check(ctx, "ext", checkRequest("GET", "/bare-deny", nil))
		<-p.got
		if r.Allowed || deniedStatus(r) != 403 {
			t.Fatalf("got %+v", r)
		}
	})
	t.Run("timeout fails closed", func(t *testing.T) {
		r := s.Check(ctx, "quick", checkRequest("GET", "/slow", nil))
		<-p.got
		if r.Allowed || deniedStatus(r) != 403 || r.Err == nil {
			t.Fatalf("got %+v", r)
		}
	})
	t.Run("unreachable uses statusOnError", func(t *testing.T) {
		r := s.Check(ctx, "down", checkRequest("GET", "/ok", nil))
		if r.Allowed || deniedStatus(r) != 503 || r.Err == nil {
			t.Fatalf("got %+v", r)
		}
	})
	t.Run("unreachable and failOpen allows", func(t *testing.T) {
		r := s.Check(ctx, "down-open", checkRequest("GET", "/private", nil))
		if !r.Allowed || r.Err == nil || r.Response.GetOkResponse() == nil {
			t.Fatalf("got %+v", r)
		}
	})
	t.Run("unknown provider denies", func(t *testing.T) {
		r := s.Check(ctx, "nope", checkRequest("GET", "/ok", nil))
		if r.Allowed || deniedStatus(r) != 403 || r.Err == nil || s.Has("nope") || !s.Has("ext") {
			t.Fatalf("got %+v", r)
		}
	})
	if n := testutil.ToFloat64(s.calls.WithLabelValues("ext", "allow")); n != 1 {
		t.Errorf("allow counter %v", n)
	}
	if n := testutil.ToFloat64(s.calls.WithLabelValues("down-open", "error")); n != 1 {
		t.Errorf("error counter %v", n)
	}
}

// closedAddr is a loopback port nothing listens on.
func closedAddr(t *testing.T) (string, uint32) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := lis.Addr().(*net.TCPAddr).Port
	lis.Close()
	return "127.0.0.1", uint32(port)
}

// seenRequest is what the HTTP provider received.
type seenRequest struct {
	method, path, host, body string
	header                   http.Header
}

func TestHTTPProvider(t *testing.T) {
	seen := make(chan seenRequest, 16)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		seen <- seenRequest{r.Method, r.URL.RequestURI(), r.Host, string(b), r.Header.Clone()}
		w.Header().Set("x-ext-user", "alice")
		w.Header().Set("x-ext-trace", "t1")
		w.Header().Set("x-other", "o")
		switch {
		case strings.HasPrefix(r.URL.Path, "/check/ok"):
			w.WriteHeader(http.StatusOK)
		case strings.HasPrefix(r.URL.Path, "/check/created"):
			w.WriteHeader(http.StatusCreated) // only 200 allows
		case strings.HasPrefix(r.URL.Path, "/check/broken"):
			w.WriteHeader(http.StatusBadGateway)
		default:
			w.Header().Set("www-authenticate", `Bearer realm="shop"`)
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte("log in first"))
		}
	}))
	t.Cleanup(srv.Close)
	host, portText, _ := net.SplitHostPort(srv.Listener.Addr().String())
	port, _ := strconv.Atoi(portText)
	provider := func(name string, mutate func(*meshconfig.MeshConfig_ExtensionProvider_EnvoyExternalAuthorizationHttpProvider)) *meshconfig.MeshConfig_ExtensionProvider {
		h := &meshconfig.MeshConfig_ExtensionProvider_EnvoyExternalAuthorizationHttpProvider{
			Service: host, Port: uint32(port), PathPrefix: "/check",
			IncludeRequestHeadersInCheck:    []string{"x-user", "x-tenant-*", "*-token"},
			IncludeAdditionalHeadersInCheck: map[string]string{"x-from": "garrison", "x-user": "overridden"},
			HeadersToUpstreamOnAllow:        []string{"x-ext-*"},
			HeadersToDownstreamOnAllow:      []string{"x-other"},
		}
		if mutate != nil {
			mutate(h)
		}
		return &meshconfig.MeshConfig_ExtensionProvider{Name: name, Provider: &meshconfig.MeshConfig_ExtensionProvider_EnvoyExtAuthzHttp{EnvoyExtAuthzHttp: h}}
	}
	s, err := New(Config{Providers: []*meshconfig.MeshConfig_ExtensionProvider{
		provider("http", nil),
		provider("http-body", func(h *meshconfig.MeshConfig_ExtensionProvider_EnvoyExternalAuthorizationHttpProvider) {
			h.IncludeRequestBodyInCheck = &meshconfig.MeshConfig_ExtensionProvider_EnvoyExternalAuthorizationRequestBody{MaxRequestBytes: 4}
			h.HeadersToDownstreamOnDeny = []string{"x-ext-trace"}
		}),
		provider("http-open", func(h *meshconfig.MeshConfig_ExtensionProvider_EnvoyExternalAuthorizationHttpProvider) {
			h.FailOpen = true
		}),
	}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	headers := map[string]string{"x-user": "bob", "x-tenant-id": "t9", "session-token": "s", "cookie": "secret", "x-unlisted": "u"}

	t.Run("allow: method, prefixed path, host and listed headers sent; listed headers returned", func(t *testing.T) {
		r := s.Check(ctx, "http", checkRequest("DELETE", "/ok/items?id=1", headers))
		got := <-seen
		if !r.Allowed || r.Err != nil {
			t.Fatalf("got %+v", r)
		}
		if got.method != "DELETE" || got.path != "/check/ok/items?id=1" || got.host != "shop.example.com" || got.body != "" {
			t.Errorf("provider saw %+v", got)
		}
		for k, want := range map[string]string{"X-Tenant-Id": "t9", "Session-Token": "s", "X-From": "garrison", "X-User": "overridden", "Cookie": "", "X-Unlisted": ""} {
			if v := got.header.Get(k); v != want {
				t.Errorf("provider header %s = %q, want %q", k, v, want)
			}
		}
		up := r.Response.GetOkResponse().GetHeaders()
		down := r.Response.GetOkResponse().GetResponseHeadersToAdd()
		if len(up) != 2 || up[0].GetHeader().GetKey() != "x-ext-trace" || up[1].GetHeader().GetKey() != "x-ext-user" {
			t.Errorf("upstream headers %v", up)
		}
		if len(down) != 1 || down[0].GetHeader().GetKey() != "x-other" {
			t.Errorf("downstream headers %v", down)
		}
	})
	t.Run("deny: status, body and every header but Host", func(t *testing.T) {
		r := s.Check(ctx, "http", checkRequest("GET", "/private", headers))
		<-seen
		d := r.Response.GetDeniedResponse()
		if r.Allowed || d.GetStatus().GetCode() != 401 || d.GetBody() != "log in first" {
			t.Fatalf("got %+v", r)
		}
		keys := map[string]bool{}
		for _, h := range d.GetHeaders() {
			keys[h.GetHeader().GetKey()] = true
		}
		if !keys["www-authenticate"] || !keys["x-other"] || !keys["x-ext-user"] || keys["host"] {
			t.Errorf("denial headers %v", keys)
		}
	})
	t.Run("deny with a header list: the list and Envoy's automatic ones; body sent, truncated", func(t *testing.T) {
		req := checkRequest("POST", "/private", headers)
		req.Attributes.Request.Http.Body = "0123456789"
		r := s.Check(ctx, "http-body", req)
		got := <-seen
		if got.body != "0123" {
			t.Errorf("body sent %q", got.body)
		}
		keys := map[string]bool{}
		for _, h := range r.Response.GetDeniedResponse().GetHeaders() {
			keys[h.GetHeader().GetKey()] = true
		}
		if !keys["www-authenticate"] || !keys["x-ext-trace"] || keys["x-other"] || keys["x-ext-user"] {
			t.Errorf("denial headers %v", keys)
		}
	})
	t.Run("only 200 allows", func(t *testing.T) {
		r := s.Check(ctx, "http", checkRequest("GET", "/created", nil))
		<-seen
		if r.Allowed || deniedStatus(r) != 201 {
			t.Fatalf("got %+v", r)
		}
	})
	t.Run("a 5xx is a failure: closed, or open when failOpen", func(t *testing.T) {
		r := s.Check(ctx, "http", checkRequest("GET", "/broken", nil))
		<-seen
		if r.Allowed || deniedStatus(r) != 403 || r.Err == nil {
			t.Fatalf("closed: got %+v", r)
		}
		r = s.Check(ctx, "http-open", checkRequest("GET", "/broken", nil))
		<-seen
		if !r.Allowed || r.Err == nil {
			t.Fatalf("open: got %+v", r)
		}
	})
}

func TestNewRejectsBadProviders(t *testing.T) {
	for name, p := range map[string]*meshconfig.MeshConfig_ExtensionProvider{
		"status": grpcProviderConfig("a", "x", 1, func(g *meshconfig.MeshConfig_ExtensionProvider_EnvoyExternalAuthorizationGrpcProvider) {
			g.StatusOnError = "teapot"
		}),
		"path prefix": {Name: "b", Provider: &meshconfig.MeshConfig_ExtensionProvider_EnvoyExtAuthzHttp{EnvoyExtAuthzHttp: &meshconfig.MeshConfig_ExtensionProvider_EnvoyExternalAuthorizationHttpProvider{Service: "x", Port: 1, PathPrefix: "check"}}},
	} {
		if _, err := New(Config{Providers: []*meshconfig.MeshConfig_ExtensionProvider{p}}); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	dup := grpcProviderConfig("a", "x", 1, nil)
	if _, err := New(Config{Providers: []*meshconfig.MeshConfig_ExtensionProvider{dup, dup}}); err == nil {
		t.Error("duplicate names accepted")
	}
}
