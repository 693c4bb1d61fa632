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

	regolib "github.com/garrison-mesh/garrison/policies/rego"
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

// TestInputFields: with Fields, the input is the full input with only the
// paths read (objects keep the keys on a path, other values stay whole),
// and a request fails exactly when the full input fails.
func TestInputFields(t *testing.T) {
	library := libraryInputPaths(t)
	for name, fields := range map[string][][]string{
		"library":   library,
		"nothing":   {},
		"method":    {{"attributes", "request", "http", "method"}},
		"one-hdr":   {{"attributes", "request", "http", "headers", "x-request-id"}, {"attributes", "request", "http", "headers", "absent"}},
		"parsed":    {{"parsed_path"}, {"parsed_query", "q"}, {"parsed_body", "a"}},
		"peers":     {{"attributes", "source", "address"}, {"attributes", "destination", "principal"}, {"attributes", "source", "labels", "app"}},
		"metadata":  {{"attributes", "metadataContext", "filterMetadata", "istio_authn", "source.principal"}, {"attributes", "routeMetadataContext"}},
		"time-tls":  {{"attributes", "request", "time", "seconds"}, {"attributes", "tlsSession", "sni"}, {"version"}},
		"ext":       {{"attributes", "contextExtensions", "garrison.io/namespace"}},
		"headermap": {{"attributes", "request", "http", "headerMap"}},
	} {
		for rname, req := range parityRequests() {
			for _, enc := range encodings {
				full, fullErr := NewInputBuilder(InputOptions{Encoding: enc}).Build(req)
				got, gotErr := NewInputBuilder(InputOptions{Encoding: enc, Fields: fields}).Build(req)
				if (gotErr != nil) != (fullErr != nil) {
					t.Errorf("%s/%s/%v: error %v, full input's %v", name, rname, enc, gotErr, fullErr)
					continue
				}
				if gotErr != nil {
					continue
				}
				fj, err := ast.JSON(full)
				if err != nil {
					t.Fatal(err)
				}
				want, err := ast.InterfaceToValue(restrictJSON(fj, fields, nil))
				if err != nil {
					t.Fatal(err)
				}
				if d := valueDiff("input", want, got); d != "" {
					t.Errorf("%s/%s/%v: %s", name, rname, enc, d)
				}
			}
		}
	}
}

// restrictJSON keeps of x the paths under prefix: an object keeps the keys
// some path continues with, anything else stays whole.
func restrictJSON(x any, paths [][]string, prefix []string) any {
	m, ok := x.(map[string]any)
	if !ok {
		return x
	}
	out := map[string]any{}
	for k, v := range m {
		p := append(slices.Clone(prefix), k)
		whole, under := false, false
		for _, q := range paths {
			switch {
			case len(q) <= len(p) && slices.Equal(q, p[:len(q)]):
				whole = true
			case len(q) > len(p) && slices.Equal(q[:len(p)], p):
				under = true
			}
		}
		switch {
		case whole:
			out[k] = v
		case under:
			out[k] = restrictJSON(v, paths, p)
		}
	}
	return out
}

// libraryInputPaths are the input paths of the library and a policy using
// every attribute.
func libraryInputPaths(t *testing.T) [][]string {
	t.Helper()
	c := ast.NewCompiler()
	mods := map[string]*ast.Module{}
	for name, src := range regolib.Modules() {
		mods[name] = ast.MustParseModuleWithOpts(src, ast.ParserOptions{RegoVersion: ast.RegoV1})
	}
	if c.Compile(mods); c.Failed() {
		t.Fatal(c.Errors)
	}
	paths := InputPaths(c)
	if paths == nil {
		t.Fatal("the library reads the whole input")
	}
	has := func(p ...string) bool {
		return slices.ContainsFunc(paths, func(q []string) bool { return slices.Equal(p, q) })
	}
	for _, p := range [][]string{
		{"attributes", "contextExtensions"},
		{"attributes", "request", "http", "headers"},
		{"attributes", "request", "http", "path"},
		{"attributes", "source", "principal"},
		{"attributes", "metadataContext", "filterMetadata"},
	} {
		if !has(p...) {
			t.Errorf("the library's input paths %v lack %v", paths, p)
		}
	}
	for _, p := range [][]string{{"parsed_path"}, {"attributes", "request", "http"}, {"attributes", "request", "time"}} {
		if has(p...) {
			t.Errorf("the library reads %v", p)
		}
	}
	return paths
}

func TestInputPathsWholeInput(t *testing.T) {
	c := ast.NewCompiler()
	mod := ast.MustParseModuleWithOpts("package x\n\nall := input\n\nk contains v if some v in input.attributes[_]\n",
		ast.ParserOptions{RegoVersion: ast.RegoV1})
	if c.Compile(map[string]*ast.Module{"x.rego": mod}); c.Failed() {
		t.Fatal(c.Errors)
	}
	if p := InputPaths(c); p != nil {
		t.Errorf("a rule reads all of input, paths %v", p)
	}
	mod = ast.MustParseModuleWithOpts("package x\n\nk contains v if some v in input.attributes[_]\n\nm := input.a.b.c\n",
		ast.ParserOptions{RegoVersion: ast.RegoV1})
	c = ast.NewCompiler()
	if c.Compile(map[string]*ast.Module{"x.rego": mod}); c.Failed() {
		t.Fatal(c.Errors)
	}
	want := [][]string{{"a", "b", "c"}, {"attributes"}}
	if p := InputPaths(c); !slices.EqualFunc(p, want, slices.Equal) {
		t.Errorf("paths %v, want %v", p, want)
	}
}
