package engine

import (
	"maps"
	"math"
	"slices"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/open-policy-agent/opa/v1/ast"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

func nanValue() float64 { return math.NaN() }

var encodings = []Encoding{EncodingPlugin, EncodingProtoJSON}

func TestInputParity(t *testing.T) {
	for name, req := range parityRequests() {
		for _, enc := range encodings {
			t.Run(name+"/"+enc.String(), func(t *testing.T) {
				t.Parallel()
				assertParity(t, NewInputBuilder(InputOptions{Encoding: enc}), req)
			})
		}
	}
}

// TestInputParityErrorsAreThePlugins pins which hand-written cases the
// plugin refuses, so that a reference that errors on everything cannot make
// TestInputParity pass.
func TestInputParityErrorsAreThePlugins(t *testing.T) {
	wantErr := map[string][]Encoding{
		"timestamp out of range":      {EncodingProtoJSON},
		"unresolvable typed metadata": {EncodingProtoJSON},
		"metadata NaN":                {EncodingProtoJSON},
		"metadata unset value":        {EncodingProtoJSON},
		"json body bad length":        encodings,
		"json body invalid":           encodings,
		"json body trailing":          encodings,
		"form body bad escape":        encodings,
		"multipart bad type":          encodings,
		"multipart broken":            encodings,
		"query semicolon":             encodings,
		"query bad escape":            encodings,
		"path bad escape":             encodings,
	}
	for name, req := range parityRequests() {
		for _, enc := range encodings {
			_, err := NewInputBuilder(InputOptions{Encoding: enc}).Build(req)
			if want := slices.Contains(wantErr[name], enc); (err != nil) != want {
				t.Errorf("%s/%v: error %v, want error: %v", name, enc, err, want)
			}
		}
	}
}

// TestInputHeaderFilter: with a header list, the input is the reference
// input with only those headers in http.headers and http.headerMap; the
// rest (the parsed body included, which reads content-type and
// content-length) stays that of the full request.
func TestInputHeaderFilter(t *testing.T) {
	keep := []string{":path", "x-request-id", "Authorization", "absent", "x-raw"}
	for name, req := range parityRequests() {
		for _, enc := range encodings {
			t.Run(name+"/"+enc.String(), func(t *testing.T) {
				got, gotErr := NewInputBuilder(InputOptions{Encoding: enc, Headers: keep}).Build(req)
				want, wantErr := filteredReference(req, keep, enc)
				if (gotErr != nil) != (wantErr != nil) {
					t.Fatalf("builder error %v, reference error %v", gotErr, wantErr)
				}
				if gotErr != nil {
					return
				}
				if d := valueDiff("input", want, got); d != "" {
					t.Fatal(d)
				}
			})
		}
	}
}

// filteredReference is the reference input of req with the header objects
// taken from the reference input of req less the headers not in keep.
func filteredReference(req *authv3.CheckRequest, keep []string, enc Encoding) (ast.Value, error) {
	full, err := reference(req, enc)
	if err != nil {
		return nil, err
	}
	// Only the header objects are taken from the filtered request; without
	// its body and path, whose parsing reads the full headers, it cannot
	// fail where the full request does not.
	fr := filterHeaders(req, keep)
	if h := fr.GetAttributes().GetRequest().GetHttp(); h != nil {
		h.Body, h.RawBody, h.Path = "", nil, ""
	}
	filtered, err := reference(fr, enc)
	if err != nil {
		return nil, err
	}
	fullJSON, err := ast.JSON(full)
	if err != nil {
		return nil, err
	}
	filteredJSON, err := ast.JSON(filtered)
	if err != nil {
		return nil, err
	}
	dig := func(x any) map[string]any {
		for _, k := range []string{"attributes", "request", "http"} {
			m, ok := x.(map[string]any)
			if !ok {
				return nil
			}
			x = m[k]
		}
		m, _ := x.(map[string]any)
		return m
	}
	if h := dig(fullJSON); h != nil {
		fh := dig(filteredJSON)
		for _, k := range []string{"headers", "headerMap"} {
			if v, ok := fh[k]; ok {
				h[k] = v
			} else if _, ok := h[k]; ok {
				h[k] = map[string]any{}
			}
		}
	}
	return ast.InterfaceToValue(fullJSON)
}

// filterHeaders is req with only the headers in keep (names compared
// lower-cased, as compile reports them), in both header fields. A header
// object that had entries stays, empty, when none is kept: the builder
// keeps the key so that only header lookups can change.
func filterHeaders(req *authv3.CheckRequest, keep []string) *authv3.CheckRequest {
	req = proto.Clone(req).(*authv3.CheckRequest)
	h := req.GetAttributes().GetRequest().GetHttp()
	if h == nil {
		return req
	}
	kept := func(k string) bool {
		return slices.ContainsFunc(keep, func(s string) bool { return strings.ToLower(s) == k })
	}
	maps.DeleteFunc(h.Headers, func(k, _ string) bool { return !kept(k) })
	if hm := h.HeaderMap; hm != nil {
		hm.Headers = slices.DeleteFunc(hm.Headers, func(hv *corev3.HeaderValue) bool { return !kept(hv.GetKey()) })
	}
	return req
}

// TestInputHeaderFilterKeepsBodyParsing: the body is parsed by headers the
// filter leaves out, as the plugin parses it by the full set.
func TestInputHeaderFilterKeepsBodyParsing(t *testing.T) {
	req := parityRequests()["json body"]
	b := NewInputBuilder(InputOptions{Headers: []string{"x-request-id"}})
	v, err := b.Build(req)
	if err != nil {
		t.Fatal(err)
	}
	body, err := v.Find(ast.MustParseRef("x.parsed_body.user")[1:])
	if err != nil || body.Compare(ast.String("alice")) != 0 {
		t.Fatalf("parsed_body.user = %v, %v", body, err)
	}
	hs, err := v.Find(ast.MustParseRef("x.attributes.request.http.headers")[1:])
	if err != nil || hs.(ast.Object).Len() != 1 {
		t.Fatalf("headers = %v, %v", hs, err)
	}
}

// TestInputFastPathCoversSchema fails when go-control-plane adds a field to
// a message input.go converts by hand: the parity tests would only notice
// if a test request happened to set it.
func TestInputFastPathCoversSchema(t *testing.T) {
	handled := map[protoreflect.FullName][]string{
		"envoy.service.auth.v3.CheckRequest":                 {"attributes"},
		"envoy.service.auth.v3.AttributeContext":             {"source", "destination", "request", "contextExtensions", "metadataContext", "routeMetadataContext", "tlsSession"},
		"envoy.service.auth.v3.AttributeContext.Peer":        {"address", "service", "labels", "principal", "certificate"},
		"envoy.service.auth.v3.AttributeContext.Request":     {"time", "http"},
		"envoy.service.auth.v3.AttributeContext.HttpRequest": {"id", "method", "headers", "headerMap", "path", "host", "scheme", "query", "fragment", "size", "protocol", "body", "rawBody"},
		"envoy.service.auth.v3.AttributeContext.TLSSession":  {"sni"},
		"envoy.config.core.v3.Address":                       {"socketAddress", "pipe", "envoyInternalAddress"},
		"envoy.config.core.v3.SocketAddress":                 {"protocol", "address", "portValue", "namedPort", "resolverName", "ipv4Compat", "networkNamespaceFilepath"},
		"envoy.config.core.v3.Metadata":                      {"filterMetadata", "typedFilterMetadata"},
		"envoy.config.core.v3.HeaderMap":                     {"headers"},
		"google.protobuf.Timestamp":                          {"seconds", "nanos"},
	}
	for _, m := range []proto.Message{
		&authv3.CheckRequest{}, &authv3.AttributeContext{}, &authv3.AttributeContext_Peer{},
		&authv3.AttributeContext_Request{}, &authv3.AttributeContext_HttpRequest{},
		&authv3.AttributeContext_TLSSession{}, &corev3.Address{}, &corev3.SocketAddress{},
		&corev3.Metadata{}, &corev3.HeaderMap{},
	} {
		d := m.ProtoReflect().Descriptor()
		var got []string
		for i := range d.Fields().Len() {
			got = append(got, d.Fields().Get(i).JSONName())
		}
		want := handled[d.FullName()]
		slices.Sort(got)
		want = slices.Sorted(slices.Values(want))
		if !slices.Equal(got, want) {
			t.Errorf("%s has fields %v; input.go handles %v", d.FullName(), got, want)
		}
	}
}

// TestInputOverrides: what the engine changes (path, context extensions)
// is built as if the request carried the change.
func TestInputOverrides(t *testing.T) {
	ns := newExtEntry(ExtNamespace, "derived")
	app := newExtEntry(ExtLabelPrefix+"app", "reviews")
	for _, enc := range encodings {
		b := NewInputBuilder(InputOptions{Encoding: enc})
		for name, req := range map[string]*authv3.CheckRequest{
			"realistic":     realisticRequest(),
			"no extensions": parityRequests()["no extensions"],
			"header map":    parityRequests()["header map"],
		} {
			ov := &overrides{path: "/normalized/path?rating=5", setPath: true, ext: []extEntry{ns, app}}
			got, err := b.build(req, ov)
			if err != nil {
				t.Fatal(err)
			}
			want := proto.Clone(req).(*authv3.CheckRequest)
			h := want.Attributes.Request.Http
			h.Path = ov.path
			if _, ok := h.Headers[":path"]; ok {
				h.Headers[":path"] = ov.path
			}
			if h.HeaderMap != nil {
				for i, hv := range h.HeaderMap.Headers {
					if hv.Key == ":path" {
						h.HeaderMap.Headers[i] = pathHeaderValue(hv, ov.path)
					}
				}
			}
			if want.Attributes.ContextExtensions == nil {
				want.Attributes.ContextExtensions = map[string]string{}
			}
			maps.Copy(want.Attributes.ContextExtensions, map[string]string{ns.key: ns.value, app.key: app.value})
			wantV, err := reference(want, enc)
			if err != nil {
				t.Fatal(err)
			}
			if d := valueDiff("input", wantV, got); d != "" {
				t.Errorf("%s/%v: %s", name, enc, d)
			}
		}
	}
}

// TestInputDoesNotModifyRequest: the caller's proto stays as it was.
func TestInputDoesNotModifyRequest(t *testing.T) {
	req := parityRequests()["header map"]
	before := proto.Clone(req)
	ov := &overrides{path: "/x", setPath: true, ext: []extEntry{newExtEntry(ExtNamespace, "n")}}
	if _, err := NewInputBuilder(InputOptions{}).build(req, ov); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(before, req) {
		t.Fatal("build modified the request")
	}
}
