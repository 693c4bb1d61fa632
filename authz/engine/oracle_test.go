package engine

import (
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/url"
	"strconv"
	"strings"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/util"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// The references the input builder is held to. Both build the input the
// slow way opa-envoy-plugin does, as Go maps converted by
// ast.InterfaceToValue:
//
//   - protojsonReference: json(protojson.Marshal(req)) plus the five keys,
//     CONTRACT.md section 1's wording and the plugin's encoding before
//     v1.x's protomap;
//   - pluginReference: v1.15.2-envoy's envoyauth.RequestToInput, i.e. the
//     proto walked by reflection with JSON names and each scalar handed to
//     ast.InterfaceToValue as its Go value, plus the five keys and
//     source_principal.
//
// The five keys follow v1.15.2-envoy's envoyauth/request.go. The module in
// peerparity/ checks the same requests against that file itself.

func reference(req *authv3.CheckRequest, enc Encoding) (ast.Value, error) {
	if enc == EncodingProtoJSON {
		return protojsonReference(req)
	}
	return pluginReference(req)
}

func protojsonReference(req *authv3.CheckRequest) (ast.Value, error) {
	bs, err := protojson.Marshal(req)
	if err != nil {
		return nil, err
	}
	var input map[string]any
	if err := util.UnmarshalJSON(bs, &input); err != nil {
		return nil, err
	}
	if err := addPluginKeys(input, req); err != nil {
		return nil, err
	}
	return ast.InterfaceToValue(input)
}

func pluginReference(req *authv3.CheckRequest) (ast.Value, error) {
	input := protomapReference(req.ProtoReflect())
	if err := addPluginKeys(input, req); err != nil {
		return nil, err
	}
	if p := req.GetAttributes().GetSource().GetPrincipal(); p != "" {
		input["source_principal"] = p
	}
	return ast.InterfaceToValue(input)
}

// protomapReference is the plugin's protomap: JSON names, Struct through
// AsMap, every other value as protoreflect.Value.Interface() gives it.
func protomapReference(m protoreflect.Message) map[string]any {
	if s, ok := m.Interface().(interface{ AsMap() map[string]any }); ok {
		return s.AsMap()
	}
	out := map[string]any{}
	resolve := func(k protoreflect.Kind, v protoreflect.Value) any {
		if k == protoreflect.MessageKind {
			return protomapReference(v.Message())
		}
		return v.Interface()
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsMap():
			mm := map[string]any{}
			v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
				mm[k.String()] = resolve(fd.MapValue().Kind(), mv)
				return true
			})
			out[fd.JSONName()] = mm
		case fd.IsList():
			l := make([]any, v.List().Len())
			for i := range l {
				l[i] = resolve(fd.Kind(), v.List().Get(i))
			}
			out[fd.JSONName()] = l
		default:
			out[fd.JSONName()] = resolve(fd.Kind(), v)
		}
		return true
	})
	return out
}

// addPluginKeys adds version, parsed_path, parsed_query, parsed_body and
// truncated_body the way v1.15.2-envoy computes them.
func addPluginKeys(input map[string]any, req *authv3.CheckRequest) error {
	h := req.GetAttributes().GetRequest().GetHttp()
	input["version"] = map[string]any{"ext_authz": "v3", "encoding": "protojson"}

	rawPath, rawQuery, _ := strings.Cut(h.GetPath(), "?")
	// The plugin's url.PathUnescape fails on an invalid escape; Garrison
	// decodes the valid ones and keeps the rest (CONTRACT.md E1).
	decoded := unescapePathLeniently(rawPath)
	input["parsed_path"] = strings.Split(strings.TrimLeft(decoded, "/"), "/")
	query, err := url.ParseQuery(rawQuery)
	if err != nil {
		return err
	}
	pq := map[string]any{}
	for k, vs := range query {
		pq[k] = vs
	}
	input["parsed_query"] = pq

	body, truncated, err := referenceBody(h.GetHeaders(), h.GetBody(), h.GetRawBody())
	if err != nil {
		return err
	}
	input["parsed_body"] = body
	input["truncated_body"] = truncated
	return nil
}

func referenceBody(headers map[string]string, body string, rawBody []byte) (any, bool, error) {
	if headers["x-envoy-auth-partial-body"] == "true" {
		return nil, true, nil
	}
	ct, ok := headers["content-type"]
	if !ok {
		return nil, false, nil
	}
	truncated := func(payload string) (bool, error) {
		cl, ok := headers["content-length"]
		if !ok {
			return false, nil
		}
		n, err := strconv.ParseInt(cl, 10, 64)
		if err != nil {
			return false, err
		}
		return n != -1 && n > int64(len(payload)), nil
	}
	payload := body
	if payload == "" {
		payload = string(rawBody)
	}
	switch {
	case strings.Contains(ct, "application/json"):
		if payload == "" {
			return nil, false, nil
		}
		if tr, err := truncated(payload); err != nil || tr {
			return nil, tr, err
		}
		var data any
		if err := util.UnmarshalJSON([]byte(payload), &data); err != nil {
			return nil, false, err
		}
		return data, false, nil
	case strings.Contains(ct, "application/grpc"):
		return nil, false, nil
	case strings.Contains(ct, "application/x-www-form-urlencoded"):
		if payload == "" {
			return nil, false, nil
		}
		if tr, err := truncated(payload); err != nil || tr {
			return nil, tr, err
		}
		form, err := url.ParseQuery(payload)
		if err != nil {
			return nil, false, err
		}
		return map[string][]string(form), false, nil
	case strings.Contains(ct, "multipart/form-data"):
		if payload == "" {
			return nil, false, nil
		}
		if tr, err := truncated(payload); err != nil || tr {
			return nil, tr, err
		}
		_, params, err := mime.ParseMediaType(ct)
		if err != nil {
			return nil, false, err
		}
		boundary, ok := params["boundary"]
		if !ok {
			return nil, false, nil
		}
		values := map[string][]any{}
		mr := multipart.NewReader(strings.NewReader(payload), boundary)
		for {
			p, err := mr.NextPart()
			if err == io.EOF {
				return values, false, nil
			}
			if err != nil {
				return nil, false, err
			}
			if p.FormName() == "" {
				continue
			}
			v, err := io.ReadAll(p)
			if err != nil {
				return nil, false, err
			}
			if strings.Contains(p.Header.Get("Content-Type"), "application/json") {
				var j any
				if err := util.UnmarshalJSON(v, &j); err != nil {
					return nil, false, err
				}
				values[p.FormName()] = append(values[p.FormName()], j)
			} else {
				values[p.FormName()] = append(values[p.FormName()], string(v))
			}
		}
	}
	return nil, false, nil
}

// assertParity fails t unless b builds what the reference builds for req,
// errors included.
func assertParity(t testing.TB, b *InputBuilder, req *authv3.CheckRequest) {
	t.Helper()
	want, wantErr := reference(req, b.enc)
	got, gotErr := b.Build(req)
	if (wantErr != nil) != (gotErr != nil) {
		t.Fatalf("%v: reference error %v, builder error %v", b.enc, wantErr, gotErr)
	}
	if wantErr != nil {
		return
	}
	if d := valueDiff("input", want, got); d != "" {
		t.Fatalf("%v: input differs from the reference: %s", b.enc, d)
	}
}

// valueDiff names the first place where two values differ, or returns "".
func valueDiff(path string, want, got ast.Value) string {
	if want.Compare(got) == 0 {
		return ""
	}
	wo, ok1 := want.(ast.Object)
	go_, ok2 := got.(ast.Object)
	if ok1 && ok2 {
		for _, k := range wo.Keys() {
			g := go_.Get(k)
			if g == nil {
				return fmt.Sprintf("%s[%v] missing, want %v", path, k, wo.Get(k))
			}
			if d := valueDiff(fmt.Sprintf("%s[%v]", path, k), wo.Get(k).Value, g.Value); d != "" {
				return d
			}
		}
		for _, k := range go_.Keys() {
			if wo.Get(k) == nil {
				return fmt.Sprintf("%s[%v] = %v not expected", path, k, go_.Get(k))
			}
		}
	}
	wa, ok1 := want.(*ast.Array)
	ga, ok2 := got.(*ast.Array)
	if ok1 && ok2 && wa.Len() == ga.Len() {
		for i := range wa.Len() {
			if d := valueDiff(fmt.Sprintf("%s[%d]", path, i), wa.Elem(i).Value, ga.Elem(i).Value); d != "" {
				return d
			}
		}
	}
	return fmt.Sprintf("%s: want %v (%s), got %v (%s)", path, want, ast.ValueName(want), got, ast.ValueName(got))
}
