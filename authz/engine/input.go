package engine

import (
	"encoding/base64"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"net/url"
	"slices"
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/util"
)

// Encoding selects the shape of the proto-derived part of the input. The
// two differ only in how some scalar and well-known types are written; every
// field Garrison's compiled policies read (strings, string maps, Struct
// metadata) is the same in both.
type Encoding int

const (
	// EncodingPlugin is what opa-envoy-plugin v1.15.2-envoy, the pinned
	// peer, builds: it walks the proto by reflection with JSON field names
	// (envoyauth/protomap.go) and adds a sixth top-level key,
	// source_principal. So 64-bit integers are numbers, enums are their
	// numbers, timestamps are {"seconds", "nanos"} objects, bytes are
	// base64 and Any is {"typeUrl", "value"}. The default.
	EncodingPlugin Encoding = iota
	// EncodingProtoJSON is CONTRACT.md section 1 to the letter:
	// protojson.Marshal(CheckRequest) unmarshalled (64-bit integers as
	// strings, enums by name, timestamps in RFC 3339, Any expanded) plus
	// the five keys, as opa-envoy-plugin releases before protomap built it.
	EncodingProtoJSON
)

func (e Encoding) String() string {
	switch e {
	case EncodingPlugin:
		return "plugin"
	case EncodingProtoJSON:
		return "protojson"
	}
	return "Encoding(" + strconv.Itoa(int(e)) + ")"
}

// InputOptions tune an InputBuilder.
type InputOptions struct {
	// Encoding is the shape of the proto part; see Encoding.
	Encoding Encoding
	// Headers, when not nil, are the lower-cased request headers kept in
	// input.attributes.request.http.headers (and headerMap); the others are
	// left out. compile.Result.Headers is such a list: the headers some
	// policy reads. Nil keeps every header. The body is still parsed by the
	// full headers (content-type, content-length), as the plugin does.
	Headers []string
	// Fields, when not nil, are the paths of the input kept (InputPaths of
	// the policy set): everything else is left out, as unread headers are.
	// Nil keeps every field. A request the plugin could not build an input
	// for fails just the same: what a left-out field's conversion would
	// reject (a path or query with an invalid escape, a body that does not
	// parse, a protojson-only error) is still checked.
	Fields [][]string
}

// InputBuilder turns CheckRequests into the OPA input value. It builds the
// ast.Value field by field from the proto: going through JSON and
// ast.InterfaceToValue costs more than the policy evaluation itself
// (FIELD-NOTES.md). It is immutable and safe for concurrent use.
type InputBuilder struct {
	enc      Encoding
	keep     map[string]struct{} // nil: every header
	keepList []string
	fields   *fieldSet // nil: every field
}

// NewInputBuilder returns a builder for opts.
func NewInputBuilder(opts InputOptions) *InputBuilder {
	b := &InputBuilder{enc: opts.Encoding, fields: newFieldSet(opts.Fields)}
	if opts.Headers != nil {
		b.keep = make(map[string]struct{}, len(opts.Headers))
		for _, h := range opts.Headers {
			h = strings.ToLower(h)
			if _, dup := b.keep[h]; !dup {
				b.keep[h] = struct{}{}
				b.keepList = append(b.keepList, h)
			}
		}
	}
	return b
}

// Build returns the input opa-envoy-plugin would evaluate req with (in the
// builder's Encoding), less the headers the builder leaves out. An error is
// what the plugin answers with 400: a query or path with an invalid escape,
// a body its content type cannot parse, a bad content-length; and, in
// EncodingProtoJSON, whatever protojson.Marshal refuses.
func (b *InputBuilder) Build(req *authv3.CheckRequest) (ast.Value, error) {
	return b.build(req, nil)
}

// overrides are the engine's changes to a request, applied while building
// instead of to a copy of the proto: the caller's request stays untouched
// and nothing is cloned on the hot path. The result equals Build of the
// request with these changes made, which is what Envoy would send once its
// own normalize_path and Garrison's context extensions are in place.
type overrides struct {
	// path, when setPath, replaces http.path and the :path header.
	path    string
	setPath bool
	// ext are context extensions to set, replacing any with the same key.
	ext []extEntry
}

type extEntry struct {
	key   string
	term  [2]*ast.Term // key and value terms, built once per snapshot
	value string
}

// Object keys, built once: terms are never modified after construction, so
// every input can share them (OPA shares its interned terms the same way).
var (
	keyAttributes           = ast.StringTerm("attributes")
	keySource               = ast.StringTerm("source")
	keyDestination          = ast.StringTerm("destination")
	keyRequest              = ast.StringTerm("request")
	keyContextExtensions    = ast.StringTerm("contextExtensions")
	keyMetadataContext      = ast.StringTerm("metadataContext")
	keyRouteMetadataContext = ast.StringTerm("routeMetadataContext")
	keyTLSSession           = ast.StringTerm("tlsSession")
	keyAddress              = ast.StringTerm("address")
	keyService              = ast.StringTerm("service")
	keyLabels               = ast.StringTerm("labels")
	keyPrincipal            = ast.StringTerm("principal")
	keyCertificate          = ast.StringTerm("certificate")
	keySocketAddress        = ast.StringTerm("socketAddress")
	keyProtocol             = ast.StringTerm("protocol")
	keyPortValue            = ast.StringTerm("portValue")
	keyNamedPort            = ast.StringTerm("namedPort")
	keyResolverName         = ast.StringTerm("resolverName")
	keyIPv4Compat           = ast.StringTerm("ipv4Compat")
	keyNetworkNamespace     = ast.StringTerm("networkNamespaceFilepath")
	keyTime                 = ast.StringTerm("time")
	keyHTTP                 = ast.StringTerm("http")
	keyID                   = ast.StringTerm("id")
	keyMethod               = ast.StringTerm("method")
	keyHeaders              = ast.StringTerm("headers")
	keyHeaderMap            = ast.StringTerm("headerMap")
	keyPath                 = ast.StringTerm("path")
	keyHost                 = ast.StringTerm("host")
	keyScheme               = ast.StringTerm("scheme")
	keyQuery                = ast.StringTerm("query")
	keyFragment             = ast.StringTerm("fragment")
	keySize                 = ast.StringTerm("size")
	keyBody                 = ast.StringTerm("body")
	keyRawBody              = ast.StringTerm("rawBody")
	keyFilterMetadata       = ast.StringTerm("filterMetadata")
	keyTypedFilterMetadata  = ast.StringTerm("typedFilterMetadata")
	keySNI                  = ast.StringTerm("sni")
	keySeconds              = ast.StringTerm("seconds")
	keyNanos                = ast.StringTerm("nanos")

	keyVersion         = ast.StringTerm("version")
	keyParsedPath      = ast.StringTerm("parsed_path")
	keyParsedQuery     = ast.StringTerm("parsed_query")
	keyParsedBody      = ast.StringTerm("parsed_body")
	keyTruncatedBody   = ast.StringTerm("truncated_body")
	keySourcePrincipal = ast.StringTerm("source_principal")

	// versionTerm is input.version; the plugin says "protojson" in both
	// of its encodings.
	versionTerm = ast.ObjectTerm(
		[2]*ast.Term{ast.StringTerm("ext_authz"), ast.StringTerm("v3")},
		[2]*ast.Term{ast.StringTerm("encoding"), ast.StringTerm("protojson")},
	)
)

// fdTypedFilterMetadata is the one map field the fast path hands to
// reflection (its values are Any).
var fdTypedFilterMetadata = (&corev3.Metadata{}).ProtoReflect().Descriptor().Fields().ByName("typed_filter_metadata")

func (b *InputBuilder) build(req *authv3.CheckRequest, ov *overrides) (ast.Value, error) {
	a := &arena{}
	f := b.fields
	var kvs [7][2]*ast.Term
	n := 0
	attrs := req.GetAttributes()
	if attrs != nil {
		t, err := b.attributes(a, attrs, ov, f)
		if err != nil {
			return nil, err
		}
		if f.has(keyAttributes) {
			kvs[n] = [2]*ast.Term{keyAttributes, t}
			n++
		}
	}

	httpReq := attrs.GetRequest().GetHttp()
	path := httpReq.GetPath()
	if ov != nil && ov.setPath && httpReq != nil {
		path = ov.path
	}
	if !f.has(keyParsedPath) && !f.has(keyParsedQuery) {
		// Not read: only the plugin's errors matter.
		if err := checkPathAndQuery(path); err != nil {
			return nil, err
		}
	} else {
		parsedPath, parsedQuery, err := parsePathAndQuery(a, path)
		if err != nil {
			return nil, err
		}
		n = keep(kvs[:], n, f, keyParsedPath, parsedPath)
		n = keep(kvs[:], n, f, keyParsedQuery, parsedQuery)
	}
	parsedBody, truncated, err := parseBody(httpReq.GetHeaders(), httpReq.GetBody(), httpReq.GetRawBody())
	if err != nil {
		return nil, err
	}
	n = keep(kvs[:], n, f, keyVersion, versionTerm)
	n = keep(kvs[:], n, f, keyParsedBody, parsedBody)
	n = keep(kvs[:], n, f, keyTruncatedBody, ast.InternedTerm(truncated))
	if b.enc == EncodingPlugin && f.has(keySourcePrincipal) {
		if p := attrs.GetSource().GetPrincipal(); p != "" {
			kvs[n] = [2]*ast.Term{keySourcePrincipal, a.str(p)}
			n++
		}
	}
	return ast.NewObject(kvs[:n]...), nil
}

// keep adds key: v (what f reads of it) at kvs[n] when f reads key, and
// returns the new length.
func keep(kvs [][2]*ast.Term, n int, f *fieldSet, key, v *ast.Term) int {
	c, ok := f.child(key)
	if !ok {
		return n
	}
	kvs[n] = [2]*ast.Term{key, restrictTerm(v, c)}
	return n + 1
}

func (b *InputBuilder) attributes(a *arena, ac *authv3.AttributeContext, ov *overrides, f *fieldSet) (*ast.Term, error) {
	f, _ = f.child(keyAttributes)
	var kvs [7][2]*ast.Term
	n := 0
	var err error
	if ac.Source != nil {
		if sf, ok := f.child(keySource); ok || mayFail(ac.Source.GetAddress()) {
			if kvs[n][1], err = b.peer(a, ac.Source, sf); err != nil {
				return nil, err
			}
			kvs[n][0] = keySource
			n = n + boolInt(ok)
		}
	}
	if ac.Destination != nil {
		if df, ok := f.child(keyDestination); ok || mayFail(ac.Destination.GetAddress()) {
			if kvs[n][1], err = b.peer(a, ac.Destination, df); err != nil {
				return nil, err
			}
			kvs[n][0] = keyDestination
			n = n + boolInt(ok)
		}
	}
	if ac.Request != nil {
		// The request also holds what may fail to convert (a protojson
		// time, a raw header map): it is built, and left out if unread.
		rf, ok := f.child(keyRequest)
		if kvs[n][1], err = b.request(a, ac.Request, ov, rf, !ok); err != nil {
			return nil, err
		}
		kvs[n][0] = keyRequest
		n = n + boolInt(ok)
	}
	var ext []extEntry
	if ov != nil {
		ext = ov.ext
	}
	if cf, ok := f.child(keyContextExtensions); ok && (len(ac.ContextExtensions) > 0 || len(ext) > 0) {
		kvs[n] = [2]*ast.Term{keyContextExtensions, restrictTerm(contextExtensions(a, ac.ContextExtensions, ext), cf)}
		n++
	}
	if ac.MetadataContext != nil {
		// Metadata may fail to convert: it is converted even when unread
		// (converting the plugin's way cannot fail).
		if mf, ok := f.child(keyMetadataContext); ok || b.enc == EncodingProtoJSON || len(ac.MetadataContext.TypedFilterMetadata) > 0 {
			if kvs[n][1], err = b.metadata(a, ac.MetadataContext, mf); err != nil {
				return nil, err
			}
			kvs[n][0] = keyMetadataContext
			n = n + boolInt(ok)
		}
	}
	if ac.RouteMetadataContext != nil {
		if mf, ok := f.child(keyRouteMetadataContext); ok || b.enc == EncodingProtoJSON || len(ac.RouteMetadataContext.TypedFilterMetadata) > 0 {
			if kvs[n][1], err = b.metadata(a, ac.RouteMetadataContext, mf); err != nil {
				return nil, err
			}
			kvs[n][0] = keyRouteMetadataContext
			n = n + boolInt(ok)
		}
	}
	if tf, ok := f.child(keyTLSSession); ac.TlsSession != nil && ok {
		var sni [1][2]*ast.Term
		m := 0
		if ac.TlsSession.Sni != "" && tf.has(keySNI) {
			sni[0] = [2]*ast.Term{keySNI, a.str(ac.TlsSession.Sni)}
			m++
		}
		kvs[n] = [2]*ast.Term{keyTLSSession, a.object(sni[:m]...)}
		n++
	}
	return a.object(kvs[:n]...), nil
}

func (b *InputBuilder) peer(a *arena, p *authv3.AttributeContext_Peer, f *fieldSet) (*ast.Term, error) {
	var kvs [5][2]*ast.Term
	n := 0
	if p.Address != nil {
		if af, ok := f.child(keyAddress); ok || mayFail(p.Address) {
			t, err := b.address(a, p.Address, af)
			if err != nil {
				return nil, err
			}
			kvs[n] = [2]*ast.Term{keyAddress, t}
			n = n + boolInt(ok)
		}
	}
	if p.Service != "" && f.has(keyService) {
		kvs[n] = [2]*ast.Term{keyService, a.str(p.Service)}
		n++
	}
	if lf, ok := f.child(keyLabels); ok && len(p.Labels) > 0 {
		kvs[n] = [2]*ast.Term{keyLabels, restrictTerm(stringMap(a, p.Labels), lf)}
		n++
	}
	if p.Principal != "" && f.has(keyPrincipal) {
		kvs[n] = [2]*ast.Term{keyPrincipal, a.str(p.Principal)}
		n++
	}
	if p.Certificate != "" && f.has(keyCertificate) {
		kvs[n] = [2]*ast.Term{keyCertificate, a.str(p.Certificate)}
		n++
	}
	return a.object(kvs[:n]...), nil
}

// mayFail reports an address converted by reflection (pipes and internal
// addresses), whose conversion is checked even when unread.
func mayFail(addr *corev3.Address) bool {
	switch addr.GetAddress().(type) {
	case nil, *corev3.Address_SocketAddress:
		return false
	}
	return true
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func (b *InputBuilder) address(a *arena, addr *corev3.Address, f *fieldSet) (*ast.Term, error) {
	switch x := addr.Address.(type) {
	case nil:
		return ast.InternedEmptyObject, nil
	case *corev3.Address_SocketAddress:
		sf, ok := f.child(keySocketAddress)
		if !ok {
			return ast.InternedEmptyObject, nil
		}
		return a.object([2]*ast.Term{keySocketAddress, b.socketAddress(a, x.SocketAddress, sf)}), nil
	default:
		// Pipes and internal addresses: rare enough for reflection.
		t, err := messageTerm(addr.ProtoReflect(), b.enc)
		if err != nil {
			return nil, err
		}
		return restrictTerm(t, f), nil
	}
}

func (b *InputBuilder) socketAddress(a *arena, s *corev3.SocketAddress, f *fieldSet) *ast.Term {
	if s == nil {
		return ast.InternedEmptyObject
	}
	var kvs [6][2]*ast.Term
	n := 0
	if s.Protocol != 0 && f.has(keyProtocol) {
		t := intTerm(int64(s.Protocol))
		if b.enc == EncodingProtoJSON {
			if name, ok := corev3.SocketAddress_Protocol_name[int32(s.Protocol)]; ok {
				t = a.str(name)
			}
		}
		kvs[n] = [2]*ast.Term{keyProtocol, t}
		n++
	}
	if s.Address != "" && f.has(keyAddress) {
		kvs[n] = [2]*ast.Term{keyAddress, a.str(s.Address)}
		n++
	}
	// A oneof member is present once chosen, even at its zero value.
	switch ps := s.PortSpecifier.(type) {
	case *corev3.SocketAddress_PortValue:
		if f.has(keyPortValue) {
			kvs[n] = [2]*ast.Term{keyPortValue, a.uint(uint64(ps.PortValue))}
			n++
		}
	case *corev3.SocketAddress_NamedPort:
		if f.has(keyNamedPort) {
			kvs[n] = [2]*ast.Term{keyNamedPort, a.str(ps.NamedPort)}
			n++
		}
	}
	if s.ResolverName != "" && f.has(keyResolverName) {
		kvs[n] = [2]*ast.Term{keyResolverName, a.str(s.ResolverName)}
		n++
	}
	if s.Ipv4Compat && f.has(keyIPv4Compat) {
		kvs[n] = [2]*ast.Term{keyIPv4Compat, ast.InternedTerm(true)}
		n++
	}
	if s.NetworkNamespaceFilepath != "" && f.has(keyNetworkNamespace) {
		kvs[n] = [2]*ast.Term{keyNetworkNamespace, a.str(s.NetworkNamespaceFilepath)}
		n++
	}
	return a.object(kvs[:n]...)
}

// request converts the request, or when unread (checkOnly) only what may
// fail to convert.
func (b *InputBuilder) request(a *arena, r *authv3.AttributeContext_Request, ov *overrides, f *fieldSet, checkOnly bool) (*ast.Term, error) {
	var kvs [2][2]*ast.Term
	n := 0
	if r.Time != nil {
		// Only the protojson encoding can fail to convert a time.
		if ok := !checkOnly && f.has(keyTime); ok || b.enc == EncodingProtoJSON {
			t, err := timestampTerm(a, r.Time, b.enc)
			if err != nil {
				return nil, err
			}
			tf, _ := f.child(keyTime)
			kvs[n] = [2]*ast.Term{keyTime, restrictTerm(t, tf)}
			n = n + boolInt(ok)
		}
	}
	if r.Http != nil {
		hf, ok := f.child(keyHTTP)
		ok = ok && !checkOnly
		if ok || r.Http.HeaderMap != nil {
			t, err := b.http(a, r.Http, ov, hf, !ok)
			if err != nil {
				return nil, err
			}
			kvs[n] = [2]*ast.Term{keyHTTP, t}
			n = n + boolInt(ok)
		}
	}
	if checkOnly {
		return nil, nil
	}
	return a.object(kvs[:n]...), nil
}

// http converts the HTTP request, or when unread (checkOnly) only what may
// fail to convert.
func (b *InputBuilder) http(a *arena, h *authv3.AttributeContext_HttpRequest, ov *overrides, f *fieldSet, checkOnly bool) (*ast.Term, error) {
	if checkOnly {
		if h.HeaderMap != nil {
			if _, err := b.headerMap(h.HeaderMap, ov); err != nil {
				return nil, err
			}
		}
		return nil, nil
	}
	var kvs [13][2]*ast.Term
	n := 0
	str := func(k *ast.Term, v string) {
		if v != "" && f.has(k) {
			kvs[n] = [2]*ast.Term{k, a.str(v)}
			n++
		}
	}
	path := h.Path
	if ov != nil && ov.setPath {
		path = ov.path
	}
	str(keyID, h.Id)
	str(keyMethod, h.Method)
	if len(h.Headers) > 0 {
		if hf, ok := f.child(keyHeaders); ok {
			kvs[n] = [2]*ast.Term{keyHeaders, b.headers(a, h.Headers, ov, hf)}
			n++
		}
	}
	if h.HeaderMap != nil {
		t, err := b.headerMap(h.HeaderMap, ov)
		if err != nil {
			return nil, err
		}
		if hf, ok := f.child(keyHeaderMap); ok {
			kvs[n] = [2]*ast.Term{keyHeaderMap, restrictTerm(t, hf)}
			n++
		}
	}
	str(keyPath, path)
	str(keyHost, h.Host)
	str(keyScheme, h.Scheme)
	str(keyQuery, h.Query)
	str(keyFragment, h.Fragment)
	if h.Size != 0 && f.has(keySize) {
		var t *ast.Term
		if b.enc == EncodingProtoJSON {
			t = a.str(strconv.FormatInt(h.Size, 10))
		} else {
			t = a.int(h.Size)
		}
		kvs[n] = [2]*ast.Term{keySize, t}
		n++
	}
	str(keyProtocol, h.Protocol)
	str(keyBody, h.Body)
	if len(h.RawBody) > 0 && f.has(keyRawBody) {
		kvs[n] = [2]*ast.Term{keyRawBody, a.str(base64.StdEncoding.EncodeToString(h.RawBody))}
		n++
	}
	return a.object(kvs[:n]...), nil
}

// headers is the hot spot of the conversion: one object of typically 10-20
// entries, its pairs on the stack.
func (b *InputBuilder) headers(a *arena, h map[string]string, ov *overrides, f *fieldSet) *ast.Term {
	var stack [32][2]*ast.Term
	kvs := stack[:0]
	switch {
	case f != nil:
		// The policy set reads these headers only (constant keys).
		for k := range f.sub {
			if v, ok := h[k]; ok && (b.keep == nil || hasKey(b.keep, k)) {
				kvs = append(kvs, [2]*ast.Term{a.str(k), a.str(headerValue(k, v, ov))})
			}
		}
	case b.keep == nil:
		for k, v := range h {
			kvs = append(kvs, [2]*ast.Term{a.str(k), a.str(headerValue(k, v, ov))})
		}
	case len(b.keepList) < len(h):
		for _, k := range b.keepList {
			if v, ok := h[k]; ok {
				kvs = append(kvs, [2]*ast.Term{a.str(k), a.str(headerValue(k, v, ov))})
			}
		}
	default:
		for k, v := range h {
			if _, ok := b.keep[k]; ok {
				kvs = append(kvs, [2]*ast.Term{a.str(k), a.str(headerValue(k, v, ov))})
			}
		}
	}
	return a.object(kvs...)
}

func hasKey(m map[string]struct{}, k string) bool {
	_, ok := m[k]
	return ok
}

func headerValue(k, v string, ov *overrides) string {
	if ov != nil && ov.setPath && k == ":path" {
		return ov.path
	}
	return v
}

// headerMap is what Envoy sends instead of headers when encode_raw_headers
// is on. It is converted by reflection, with the same header filter and
// :path override as headers.
func (b *InputBuilder) headerMap(hm *corev3.HeaderMap, ov *overrides) (*ast.Term, error) {
	elems := make([]*ast.Term, 0, len(hm.Headers))
	for _, hv := range hm.Headers {
		if b.keep != nil {
			if _, ok := b.keep[hv.GetKey()]; !ok {
				continue
			}
		}
		if ov != nil && ov.setPath && hv.GetKey() == ":path" {
			hv = pathHeaderValue(hv, ov.path)
		}
		t, err := messageTerm(hv.ProtoReflect(), b.enc)
		if err != nil {
			return nil, err
		}
		elems = append(elems, t)
	}
	if len(elems) == 0 {
		return ast.ObjectTerm(), nil
	}
	return ast.ObjectTerm([2]*ast.Term{keyHeaders, ast.ArrayTerm(elems...)}), nil
}

// pathHeaderValue is hv with its value (or raw value, whichever Envoy
// filled) replaced by path.
func pathHeaderValue(hv *corev3.HeaderValue, path string) *corev3.HeaderValue {
	out := &corev3.HeaderValue{Key: hv.GetKey()}
	if len(hv.GetRawValue()) > 0 {
		out.RawValue = []byte(path)
	}
	if hv.GetValue() != "" || len(hv.GetRawValue()) == 0 {
		out.Value = path
	}
	return out
}

func (b *InputBuilder) metadata(a *arena, m *corev3.Metadata, f *fieldSet) (*ast.Term, error) {
	var kvs [2][2]*ast.Term
	n := 0
	// Unread parts are converted all the same where that may fail (the
	// protojson encoding of Struct, Any by reflection).
	if ok := f.has(keyFilterMetadata); len(m.FilterMetadata) > 0 && (ok || b.enc == EncodingProtoJSON) {
		var stack [8][2]*ast.Term
		fm := stack[:0]
		for k, s := range m.FilterMetadata {
			var t *ast.Term
			if b.enc == EncodingProtoJSON {
				var err error
				if t, err = structTermProtoJSON(a, s); err != nil {
					return nil, err
				}
			} else {
				t = structTermPlugin(a, s)
			}
			fm = append(fm, [2]*ast.Term{a.str(k), t})
		}
		ff, _ := f.child(keyFilterMetadata)
		kvs[n] = [2]*ast.Term{keyFilterMetadata, restrictTerm(a.object(fm...), ff)}
		n = n + boolInt(ok)
	}
	if len(m.TypedFilterMetadata) > 0 {
		t, err := mapTerm(fdTypedFilterMetadata, m.ProtoReflect().Get(fdTypedFilterMetadata).Map(), b.enc)
		if err != nil {
			return nil, err
		}
		if tf, ok := f.child(keyTypedFilterMetadata); ok {
			kvs[n] = [2]*ast.Term{keyTypedFilterMetadata, restrictTerm(t, tf)}
			n++
		}
	}
	return a.object(kvs[:n]...), nil
}

func stringMap(a *arena, m map[string]string) *ast.Term {
	var stack [16][2]*ast.Term
	kvs := stack[:0]
	for k, v := range m {
		kvs = append(kvs, [2]*ast.Term{a.str(k), a.str(v)})
	}
	return a.object(kvs...)
}

// contextExtensions merges the request's extensions with the engine's;
// the engine's win on a shared key.
func contextExtensions(a *arena, m map[string]string, ext []extEntry) *ast.Term {
	if len(ext) == 0 {
		return stringMap(a, m)
	}
	var stack [16][2]*ast.Term
	kvs := stack[:0]
	for k, v := range m {
		if !slices.ContainsFunc(ext, func(e extEntry) bool { return e.key == k }) {
			kvs = append(kvs, [2]*ast.Term{a.str(k), a.str(v)})
		}
	}
	for _, e := range ext {
		kvs = append(kvs, e.term)
	}
	return a.object(kvs...)
}

// parsePathAndQuery computes parsed_path and parsed_query as
// opa-envoy-plugin v1.15.2-envoy does: the path before "?" percent-decoded
// and split on "/" after its leading slashes; the query by url.ParseQuery,
// whose errors (a bad escape, a semicolon) fail the request there too.
//
// One difference: Envoy forwards a path with an invalid escape ("/a%zz")
// as written and Istio matches it, so Garrison decides such a request,
// where the plugin's url.PathUnescape fails it. Its parsed_path decodes
// the valid escapes and keeps the invalid ones as written.
func parsePathAndQuery(a *arena, path string) (*ast.Term, *ast.Term, error) {
	rawPath, rawQuery, _ := strings.Cut(path, "?")
	decoded := rawPath
	if strings.IndexByte(rawPath, '%') >= 0 {
		decoded = unescapePathLeniently(rawPath)
	}
	decoded = strings.TrimLeft(decoded, "/")
	elems := a.elems(strings.Count(decoded, "/") + 1)
	for i := range elems {
		seg := decoded
		if j := strings.IndexByte(decoded, '/'); j >= 0 {
			seg, decoded = decoded[:j], decoded[j+1:]
		}
		elems[i] = a.str(seg)
	}
	parsedPath := a.array(elems)

	if rawQuery == "" {
		return parsedPath, ast.InternedEmptyObject, nil
	}
	q, err := url.ParseQuery(rawQuery)
	if err != nil {
		return nil, nil, err
	}
	var stack [16][2]*ast.Term
	kvs := stack[:0]
	for k, vs := range q {
		vals := a.elems(len(vs))
		for i, v := range vs {
			vals[i] = a.str(v)
		}
		kvs = append(kvs, [2]*ast.Term{a.str(k), a.array(vals)})
	}
	return parsedPath, a.object(kvs...), nil
}

// unescapePathLeniently is url.PathUnescape that keeps an invalid escape as
// written instead of failing.
func unescapePathLeniently(p string) string {
	if s, err := url.PathUnescape(p); err == nil {
		return s
	}
	b := make([]byte, 0, len(p))
	for i := 0; i < len(p); i++ {
		if p[i] == '%' && i+2 < len(p) && isHex(p[i+1]) && isHex(p[i+2]) {
			b = append(b, unhex(p[i+1])<<4|unhex(p[i+2]))
			i += 2
			continue
		}
		b = append(b, p[i])
	}
	return string(b)
}

// checkPathAndQuery fails where parsePathAndQuery fails, without building
// anything: the query must parse.
func checkPathAndQuery(path string) error {
	_, rawQuery, _ := strings.Cut(path, "?")
	// url.ParseQuery fails only on a semicolon or a bad escape.
	if strings.ContainsAny(rawQuery, ";%") {
		if _, err := url.ParseQuery(rawQuery); err != nil {
			return err
		}
	}
	return nil
}

// errNoBoundary tells parseBody that a multipart body has no boundary,
// which the plugin treats as no body rather than as an error.
var errNoBoundary = errors.New("multipart body without boundary")

// parseBody computes parsed_body and truncated_body as opa-envoy-plugin
// v1.15.2-envoy does without a gRPC descriptor set (Garrison configures
// none): JSON, urlencoded and multipart bodies by content type; a body
// shorter than content-length, or one Envoy marked partial, is truncated
// and not parsed. The parsed body goes through ast.InterfaceToValue like
// the plugin's: it is JSON-shaped data already, and rare.
func parseBody(headers map[string]string, body string, rawBody []byte) (*ast.Term, bool, error) {
	if headers["x-envoy-auth-partial-body"] == "true" {
		return ast.InternedNullTerm, true, nil
	}
	ct, ok := headers["content-type"]
	if !ok {
		return ast.InternedNullTerm, false, nil
	}
	var data any
	switch {
	case strings.Contains(ct, "application/json"):
		if body == "" {
			if len(rawBody) == 0 {
				return ast.InternedNullTerm, false, nil
			}
			body = string(rawBody)
		}
		if truncated, err := bodyTruncated(headers, body); err != nil || truncated {
			return ast.InternedNullTerm, truncated, err
		}
		if err := util.UnmarshalJSON([]byte(body), &data); err != nil {
			return nil, false, err
		}
	case strings.Contains(ct, "application/grpc"):
		return ast.InternedNullTerm, false, nil
	case strings.Contains(ct, "application/x-www-form-urlencoded"):
		payload := body
		if payload == "" {
			if len(rawBody) == 0 {
				return ast.InternedNullTerm, false, nil
			}
			payload = string(rawBody)
		}
		if truncated, err := bodyTruncated(headers, payload); err != nil || truncated {
			return ast.InternedNullTerm, truncated, err
		}
		form, err := url.ParseQuery(payload)
		if err != nil {
			return nil, false, err
		}
		data = map[string][]string(form)
	case strings.Contains(ct, "multipart/form-data"):
		payload := body
		if payload == "" {
			if len(rawBody) == 0 {
				return ast.InternedNullTerm, false, nil
			}
			payload = string(rawBody)
		}
		if truncated, err := bodyTruncated(headers, payload); err != nil || truncated {
			return ast.InternedNullTerm, truncated, err
		}
		form, err := parseMultipart(ct, payload)
		if errors.Is(err, errNoBoundary) {
			return ast.InternedNullTerm, false, nil
		}
		if err != nil {
			return nil, false, err
		}
		data = form
	default:
		return ast.InternedNullTerm, false, nil
	}
	v, err := ast.InterfaceToValue(data)
	if err != nil {
		return nil, false, err
	}
	return ast.NewTerm(v), false, nil
}

// bodyTruncated compares content-length, when given, with what Envoy sent.
func bodyTruncated(headers map[string]string, body string) (bool, error) {
	cl, ok := headers["content-length"]
	if !ok {
		return false, nil
	}
	n, err := strconv.ParseInt(cl, 10, 64)
	if err != nil {
		return false, err
	}
	return n != -1 && n > int64(len(body)), nil
}

// parseMultipart collects the named parts of a multipart/form-data body:
// JSON parts parsed, others as strings.
func parseMultipart(contentType, payload string) (map[string][]any, error) {
	_, params, err := mime.ParseMediaType(contentType)
	if err != nil {
		return nil, err
	}
	boundary, ok := params["boundary"]
	if !ok {
		return nil, errNoBoundary
	}
	values := map[string][]any{}
	mr := multipart.NewReader(strings.NewReader(payload), boundary)
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			return values, nil
		}
		if err != nil {
			return nil, err
		}
		name := p.FormName()
		if name == "" {
			continue
		}
		value, err := io.ReadAll(p)
		if err != nil {
			return nil, err
		}
		if strings.Contains(p.Header.Get("Content-Type"), "application/json") {
			var v any
			if err := util.UnmarshalJSON(value, &v); err != nil {
				return nil, err
			}
			values[name] = append(values[name], v)
		} else {
			values[name] = append(values[name], string(value))
		}
	}
}
