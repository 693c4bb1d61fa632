package provider

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	meshconfig "istio.io/api/mesh/v1alpha1"
)

// maxBody bounds what is read of a provider's answer: its body is for the
// client, and a misbehaving provider must not make Garrison buffer more.
const maxBody = 64 << 10

// httpCaller asks an HTTP authorization service as Envoy's ext_authz filter
// does with Istio's envoyExtAuthzHttp settings: the original method and
// path (under pathPrefix), the Host, the request headers the provider
// lists, its fixed extra headers, and the body when asked; 200 allows,
// a 5xx or no answer is a failure, anything else denies with the
// provider's status, body and headers.
type httpCaller struct {
	client     *http.Client
	base       string // scheme://host:port
	pathPrefix string
	timeout    time.Duration
	failure    failure

	requestHeaders  headerMatcher
	additional      map[string]string
	withBody        bool
	maxBodyBytes    uint32
	toUpstream      headerMatcher
	toDownstreamOK  headerMatcher
	toDownstreamDen headerMatcher
}

func newHTTPCaller(client *http.Client, p *meshconfig.MeshConfig_ExtensionProvider_EnvoyExternalAuthorizationHttpProvider) (*httpCaller, error) {
	f, err := newFailure(p.GetFailOpen(), p.GetStatusOnError())
	if err != nil {
		return nil, err
	}
	if pp := p.GetPathPrefix(); pp != "" && !strings.HasPrefix(pp, "/") {
		return nil, fmt.Errorf("pathPrefix %q must start with /", pp)
	}
	h := &httpCaller{
		client:         client,
		base:           "http://" + target(p.GetService(), p.GetPort()),
		pathPrefix:     p.GetPathPrefix(),
		timeout:        timeout(p.GetTimeout().AsDuration()),
		failure:        f,
		requestHeaders: newHeaderMatcher(append(p.GetIncludeRequestHeadersInCheck(), p.GetIncludeHeadersInCheck()...)),
		additional:     p.GetIncludeAdditionalHeadersInCheck(),
		toUpstream:     newHeaderMatcher(p.GetHeadersToUpstreamOnAllow()),
		toDownstreamOK: newHeaderMatcher(p.GetHeadersToDownstreamOnAllow()),
	}
	if b := p.GetIncludeRequestBodyInCheck(); b != nil {
		h.withBody, h.maxBodyBytes = true, b.GetMaxRequestBytes()
	}
	if deny := p.GetHeadersToDownstreamOnDeny(); len(deny) > 0 {
		// Envoy adds these whenever the list is set.
		h.toDownstreamDen = newHeaderMatcher(append(deny, ":path", ":status", "content-length", "www-authenticate", "location"))
	}
	return h, nil
}

func (h *httpCaller) check(ctx context.Context, req *authv3.CheckRequest) Result {
	ctx, cancel := context.WithTimeout(ctx, h.timeout)
	defer cancel()
	hr, err := h.request(ctx, req)
	if err != nil {
		return h.failure.result(err)
	}
	resp, err := h.client.Do(hr)
	if err != nil {
		return h.failure.result(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return h.failure.result(err)
	}
	switch {
	case resp.StatusCode >= 500:
		return h.failure.result(fmt.Errorf("%w: %s", errServerError, resp.Status))
	case resp.StatusCode == http.StatusOK:
		return Result{Allowed: true, Response: okResponse(
			sortedHeaderOptions(resp.Header, h.toUpstream.match),
			sortedHeaderOptions(resp.Header, h.toDownstreamOK.match),
		)}
	}
	keep := func(name string) bool {
		if strings.EqualFold(name, "host") {
			return false
		}
		return h.toDownstreamDen == nil || h.toDownstreamDen.match(name)
	}
	return Result{Response: denied(resp.StatusCode, string(body), sortedHeaderOptions(resp.Header, keep))}
}

// request builds the authorization request from what Envoy sent Garrison.
func (h *httpCaller) request(ctx context.Context, req *authv3.CheckRequest) (*http.Request, error) {
	hr := req.GetAttributes().GetRequest().GetHttp()
	method := hr.GetMethod()
	if method == "" {
		method = http.MethodGet
	}
	path := hr.GetPath()
	if path == "" {
		path = "/"
	}
	var body io.Reader
	size := 0
	if h.withBody {
		b := hr.GetBody()
		if raw := hr.GetRawBody(); len(raw) > 0 {
			b = string(raw)
		}
		if h.maxBodyBytes > 0 && len(b) > int(h.maxBodyBytes) {
			b = b[:h.maxBodyBytes]
		}
		body, size = strings.NewReader(b), len(b)
	}
	out, err := http.NewRequestWithContext(ctx, method, h.base+h.pathPrefix+path, body)
	if err != nil {
		return nil, err
	}
	out.Host = hr.GetHost()
	out.ContentLength = int64(size)
	for k, v := range hr.GetHeaders() {
		if strings.HasPrefix(k, ":") || !h.requestHeaders.match(k) || isHopByHop(k) {
			continue
		}
		out.Header.Set(k, v)
	}
	for k, v := range h.additional {
		out.Header.Set(k, v)
	}
	return out, nil
}

// isHopByHop: headers that describe one connection, never forwarded, and
// those the Go client sets itself.
func isHopByHop(name string) bool {
	switch strings.ToLower(name) {
	case "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "te", "trailer",
		"host", "content-length":
		return true
	}
	return false
}
