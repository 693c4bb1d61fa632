package engine

import (
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// Requests as Envoy's ext_authz filter sends them from an Istio-style
// sidecar, plus the corners of the proto and of the plugin's body parsing.

func socket(addr string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address: addr, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port}}}}
}

func mustStruct(m map[string]any) *structpb.Struct {
	s, err := structpb.NewStruct(m)
	if err != nil {
		panic(err)
	}
	return s
}

// realisticRequest is an inbound GET from sleep to reviews with the 15
// headers a browser-ish client and Envoy put on a request, a JWT identity in
// Istio's authn metadata and Garrison's context extensions.
func realisticRequest() *authv3.CheckRequest {
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source: &authv3.AttributeContext_Peer{
			Address:   socket("10.244.1.17", 43122),
			Principal: "spiffe://cluster.local/ns/default/sa/sleep",
		},
		Destination: &authv3.AttributeContext_Peer{
			Address:   socket("10.244.2.9", 9080),
			Principal: "spiffe://cluster.local/ns/default/sa/bookinfo-reviews",
		},
		Request: &authv3.AttributeContext_Request{
			Time: &timestamppb.Timestamp{Seconds: 1767225600, Nanos: 123456000},
			Http: &authv3.AttributeContext_HttpRequest{
				Id:     "13359530607844510314",
				Method: "GET",
				Headers: map[string]string{
					":authority":        "reviews.default.svc.cluster.local:9080",
					":method":           "GET",
					":path":             "/api/v1/reviews/0?rating=5&sort=desc",
					":scheme":           "http",
					"accept":            "application/json",
					"accept-encoding":   "gzip, deflate",
					"accept-language":   "en-US,en;q=0.9",
					"authorization":     "Bearer eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJ0ZXN0aW5nQHNlY3VyZS5pc3Rpby5pbyJ9.c2ln",
					"cookie":            "session=abc123; theme=dark",
					"user-agent":        "Mozilla/5.0 (X11; Linux x86_64) curl/8.5.0",
					"x-b3-sampled":      "1",
					"x-b3-spanid":       "a2fb4a1d1a96d312",
					"x-b3-traceid":      "463ac35c9f6413ad48485a3953bb6124",
					"x-forwarded-proto": "http",
					"x-request-id":      "5c7b9f7e-1c5e-4d3e-9a0f-6f1a2b3c4d5e",
				},
				Path:     "/api/v1/reviews/0?rating=5&sort=desc",
				Host:     "reviews.default.svc.cluster.local:9080",
				Scheme:   "http",
				Size:     -1,
				Protocol: "HTTP/1.1",
			},
		},
		ContextExtensions: map[string]string{
			ExtNamespace:               "default",
			ExtLabelPrefix + "app":     "reviews",
			ExtLabelPrefix + "version": "v2",
			ExtServices:                "reviews.default.svc.cluster.local",
			ExtWorkload:                "Deployment/reviews-v2",
		},
		MetadataContext: &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{
			"istio_authn": mustStruct(map[string]any{
				"source.principal":       "cluster.local/ns/default/sa/sleep",
				"source.namespace":       "default",
				"request.auth.principal": "testing@secure.istio.io/testing@secure.istio.io",
				"request.auth.audiences": "bookinfo.com",
				"request.auth.presenter": "",
				"request.auth.claims": map[string]any{
					"iss":    []any{"testing@secure.istio.io"},
					"sub":    []any{"testing@secure.istio.io"},
					"groups": []any{"group1", "group2"},
					"exp":    []any{4685989700.0},
					"nested": map[string]any{"a": true, "b": nil, "c": 1.5e-7, "d": 1e21},
				},
			}),
		}},
	}}
}

// parityRequests are the hand-written cases of the parity tests, by name.
func parityRequests() map[string]*authv3.CheckRequest {
	with := func(f func(r *authv3.CheckRequest)) *authv3.CheckRequest {
		r := realisticRequest()
		f(r)
		return r
	}
	http := func(r *authv3.CheckRequest) *authv3.AttributeContext_HttpRequest { return r.Attributes.Request.Http }
	setBody := func(ct, cl, body string) func(r *authv3.CheckRequest) {
		return func(r *authv3.CheckRequest) {
			h := http(r)
			h.Method, h.Body = "POST", body
			h.Headers["content-type"] = ct
			if cl != "" {
				h.Headers["content-length"] = cl
			}
		}
	}
	typed, err := anypb.New(wrapperspb.String("typed"))
	if err != nil {
		panic(err)
	}
	typedStruct, err := anypb.New(mustStruct(map[string]any{"k": "v"}))
	if err != nil {
		panic(err)
	}
	return map[string]*authv3.CheckRequest{
		"realistic":        realisticRequest(),
		"empty":            {},
		"empty attributes": {Attributes: &authv3.AttributeContext{}},
		"empty request":    {Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{}}},
		"empty http": {Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
			Http: &authv3.AttributeContext_HttpRequest{}}}},
		"zero timestamp": with(func(r *authv3.CheckRequest) { r.Attributes.Request.Time = &timestamppb.Timestamp{} }),
		"timestamp seconds only": with(func(r *authv3.CheckRequest) {
			r.Attributes.Request.Time = timestamppb.New(time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC))
		}),
		"timestamp nanos": with(func(r *authv3.CheckRequest) { r.Attributes.Request.Time.Nanos = 1 }),
		"timestamp before 1970": with(func(r *authv3.CheckRequest) {
			r.Attributes.Request.Time = &timestamppb.Timestamp{Seconds: -86400 * 365, Nanos: 5000}
		}),
		"timestamp out of range": with(func(r *authv3.CheckRequest) {
			r.Attributes.Request.Time = &timestamppb.Timestamp{Seconds: 1 << 40}
		}),
		"large size":     with(func(r *authv3.CheckRequest) { http(r).Size = 1 << 53 }),
		"positive size":  with(func(r *authv3.CheckRequest) { http(r).Size = 1234 }),
		"no extensions":  with(func(r *authv3.CheckRequest) { r.Attributes.ContextExtensions = nil }),
		"no metadata":    with(func(r *authv3.CheckRequest) { r.Attributes.MetadataContext = nil }),
		"route metadata": with(func(r *authv3.CheckRequest) { r.Attributes.RouteMetadataContext = r.Attributes.MetadataContext }),
		"empty metadata": with(func(r *authv3.CheckRequest) { r.Attributes.MetadataContext = &corev3.Metadata{} }),
		"nil struct in metadata": with(func(r *authv3.CheckRequest) {
			r.Attributes.MetadataContext.FilterMetadata["empty"] = &structpb.Struct{}
		}),
		"typed metadata": with(func(r *authv3.CheckRequest) {
			r.Attributes.MetadataContext.TypedFilterMetadata = map[string]*anypb.Any{"w": typed, "s": typedStruct}
		}),
		"unresolvable typed metadata": with(func(r *authv3.CheckRequest) {
			r.Attributes.MetadataContext.TypedFilterMetadata = map[string]*anypb.Any{
				"x": {TypeUrl: "type.googleapis.com/no.such.Type", Value: []byte{1, 2}}}
		}),
		"empty any": with(func(r *authv3.CheckRequest) {
			r.Attributes.MetadataContext.TypedFilterMetadata = map[string]*anypb.Any{"x": {}}
		}),
		"metadata NaN": with(func(r *authv3.CheckRequest) {
			r.Attributes.MetadataContext.FilterMetadata["n"] = &structpb.Struct{Fields: map[string]*structpb.Value{
				"nan": structpb.NewNumberValue(nanValue()),
			}}
		}),
		"metadata unset value": with(func(r *authv3.CheckRequest) {
			r.Attributes.MetadataContext.FilterMetadata["n"] = &structpb.Struct{Fields: map[string]*structpb.Value{"u": {}}}
		}),
		"tls session": with(func(r *authv3.CheckRequest) {
			r.Attributes.TlsSession = &authv3.AttributeContext_TLSSession{Sni: "reviews.default.svc.cluster.local"}
		}),
		"empty tls session": with(func(r *authv3.CheckRequest) { r.Attributes.TlsSession = &authv3.AttributeContext_TLSSession{} }),
		"peer details": with(func(r *authv3.CheckRequest) {
			r.Attributes.Source.Service = "sleep.default.svc.cluster.local"
			r.Attributes.Source.Labels = map[string]string{"app": "sleep", "version": "v1"}
			r.Attributes.Source.Certificate = "-----BEGIN%20CERTIFICATE-----%0AMIIB...%0A-----END%20CERTIFICATE-----%0A"
		}),
		"udp named port": with(func(r *authv3.CheckRequest) {
			r.Attributes.Source.Address = &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
				Protocol: corev3.SocketAddress_UDP, Address: "::1", PortSpecifier: &corev3.SocketAddress_NamedPort{NamedPort: "dns"},
				ResolverName: "custom", Ipv4Compat: true, NetworkNamespaceFilepath: "/var/run/netns/a"}}}
		}),
		"unknown protocol enum": with(func(r *authv3.CheckRequest) {
			r.Attributes.Source.Address.GetSocketAddress().Protocol = 7
		}),
		"port zero": with(func(r *authv3.CheckRequest) { r.Attributes.Source.Address = socket("10.0.0.1", 0) }),
		"pipe address": with(func(r *authv3.CheckRequest) {
			r.Attributes.Source.Address = &corev3.Address{Address: &corev3.Address_Pipe{Pipe: &corev3.Pipe{Path: "/tmp/sock", Mode: 0o644}}}
		}),
		"internal address": with(func(r *authv3.CheckRequest) {
			r.Attributes.Destination.Address = &corev3.Address{Address: &corev3.Address_EnvoyInternalAddress{EnvoyInternalAddress: &corev3.EnvoyInternalAddress{
				AddressNameSpecifier: &corev3.EnvoyInternalAddress_ServerListenerName{ServerListenerName: "inbound"}, EndpointId: "e1"}}}
		}),
		"empty address": with(func(r *authv3.CheckRequest) { r.Attributes.Source.Address = &corev3.Address{} }),
		"header map": with(func(r *authv3.CheckRequest) {
			h := http(r)
			h.HeaderMap = &corev3.HeaderMap{Headers: []*corev3.HeaderValue{
				{Key: ":path", RawValue: []byte("/api/v1/reviews/0")},
				{Key: "x-raw", RawValue: []byte{0xff, 0x00, 'a'}},
				{Key: "x-str", Value: "s"},
				{Key: "empty"},
			}}
			h.Headers = nil
		}),
		"raw body json": with(func(r *authv3.CheckRequest) {
			h := http(r)
			h.Headers["content-type"] = "application/json; charset=utf-8"
			h.RawBody = []byte(`{"raw":[1,2,{"x":null}]}`)
		}),
		"raw body and body": with(func(r *authv3.CheckRequest) {
			h := http(r)
			h.Headers["content-type"] = "application/json"
			h.Body = `{"from":"body"}`
			h.RawBody = []byte(`{"from":"raw"}`)
		}),
		"json body":            with(setBody("application/json", "36", `{"user":"alice","roles":["a","b"],"n":12345678901234567890}`)),
		"json body no length":  with(setBody("application/json", "", `[1, 2.5, "x", true, null, {"a": {}}]`)),
		"json body truncated":  with(setBody("application/json", "1000", `{"user":`)),
		"json body length -1":  with(setBody("application/json", "-1", `{"a":1}`)),
		"json body bad length": with(setBody("application/json", "ten", `{"a":1}`)),
		"json body invalid":    with(setBody("application/json", "", `{"a":`)),
		"json body trailing":   with(setBody("application/json", "", `{"a":1} {"b":2}`)),
		"json body empty":      with(setBody("application/json", "", ``)),
		"partial body": with(func(r *authv3.CheckRequest) {
			setBody("application/json", "", `{"a`)(r)
			http(r).Headers["x-envoy-auth-partial-body"] = "true"
		}),
		"partial body false": with(func(r *authv3.CheckRequest) {
			setBody("application/json", "", `{}`)(r)
			http(r).Headers["x-envoy-auth-partial-body"] = "false"
		}),
		"grpc body":              with(setBody("application/grpc", "", "\x00\x00\x00\x00\x02\x08\x01")),
		"text body":              with(setBody("text/plain", "", "hello")),
		"form body":              with(setBody("application/x-www-form-urlencoded", "", "a=1&a=2&b=%20x&c")),
		"form body invalid utf8": with(setBody("application/x-www-form-urlencoded", "", "k%ff=v%fe&k%fe=w")),
		"form body bad escape":   with(setBody("application/x-www-form-urlencoded", "", "a=%zz")),
		"form body truncated":    with(setBody("application/x-www-form-urlencoded", "100", "a=1")),
		"multipart body": with(setBody(`multipart/form-data; boundary="b0undary"`, "",
			"--b0undary\r\nContent-Disposition: form-data; name=\"field\"\r\n\r\nvalue1\r\n"+
				"--b0undary\r\nContent-Disposition: form-data; name=\"field\"\r\n\r\nvalue2\r\n"+
				"--b0undary\r\nContent-Disposition: form-data; name=\"doc\"\r\nContent-Type: application/json\r\n\r\n{\"k\":[1,\"two\"]}\r\n"+
				"--b0undary\r\nContent-Disposition: form-data\r\n\r\nunnamed\r\n"+
				"--b0undary--\r\n")),
		"multipart no boundary": with(setBody("multipart/form-data", "", "--x\r\n")),
		"multipart bad type":    with(setBody("multipart/form-data; =", "", "--x\r\n")),
		"multipart broken":      with(setBody("multipart/form-data; boundary=x", "", "garbage")),
		"query repeated":        with(func(r *authv3.CheckRequest) { http(r).Path = "/p?a=1&a=2&b=&c&d=%20%2F+x" }),
		"query semicolon":       with(func(r *authv3.CheckRequest) { http(r).Path = "/p?a=1;b=2" }),
		"query bad escape":      with(func(r *authv3.CheckRequest) { http(r).Path = "/p?a=%zz" }),
		"path bad escape":       with(func(r *authv3.CheckRequest) { http(r).Path = "/p%zz/q" }),
		"path escapes":          with(func(r *authv3.CheckRequest) { http(r).Path = "/a%2Fb/%E2%9C%93/c%20d/" }),
		"path only slashes":     with(func(r *authv3.CheckRequest) { http(r).Path = "///" }),
		"path relative":         with(func(r *authv3.CheckRequest) { http(r).Path = "a/b" }),
		"path with fragment":    with(func(r *authv3.CheckRequest) { http(r).Path = "/a#frag?x=1" }),
		"path query only":       with(func(r *authv3.CheckRequest) { http(r).Path = "?x=1" }),
		"no path":               with(func(r *authv3.CheckRequest) { http(r).Path = "" }),
		"no source principal":   with(func(r *authv3.CheckRequest) { r.Attributes.Source.Principal = "" }),
		"all http fields": with(func(r *authv3.CheckRequest) {
			h := http(r)
			h.Query, h.Fragment, h.Body = "rating=5", "frag", "body text"
		}),
		"nil source":      with(func(r *authv3.CheckRequest) { r.Attributes.Source = nil }),
		"deep headers":    with(func(r *authv3.CheckRequest) { addHeaders(http(r), 60) }),
		"unicode":         with(func(r *authv3.CheckRequest) { http(r).Headers["x-name"] = "Zoë ✓ 日本" }),
		"proto roundtrip": roundTrip(realisticRequest()),
	}
}

func addHeaders(h *authv3.AttributeContext_HttpRequest, n int) {
	for i := range n {
		h.Headers["x-extra-"+string(rune('a'+i%26))+string(rune('a'+i/26))] = "v"
	}
}

// roundTrip is req as it arrives over gRPC.
func roundTrip(req *authv3.CheckRequest) *authv3.CheckRequest {
	bs, err := proto.Marshal(req)
	if err != nil {
		panic(err)
	}
	out := &authv3.CheckRequest{}
	if err := proto.Unmarshal(bs, out); err != nil {
		panic(err)
	}
	return out
}
