package engine

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/util"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// This file converts any proto message into an OPA value by reflection, in
// either encoding. input.go uses it for the parts of a CheckRequest that are
// rarely populated (pipe and internal addresses, typed metadata, raw header
// maps); the hot fields have hand-written code there that must agree with
// this. The parity tests hold both to the two references.

// messageTerm converts m field by field. Fields are visited as
// protoreflect.Message.Range visits them, which is exactly the set both
// references emit: protojson leaves out the same unpopulated fields, and
// opa-envoy-plugin's protomap ranges over the message itself.
func messageTerm(m protoreflect.Message, enc Encoding) (*ast.Term, error) {
	if wkt, ok := wellKnown(m, enc); ok {
		return wkt()
	}
	var kvs [][2]*ast.Term
	var err error
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		var t *ast.Term
		switch {
		case fd.IsMap():
			t, err = mapTerm(fd, v.Map(), enc)
		case fd.IsList():
			t, err = listTerm(fd, v.List(), enc)
		default:
			t, err = singularTerm(fd, v, enc)
		}
		if err != nil {
			return false
		}
		kvs = append(kvs, [2]*ast.Term{ast.StringTerm(fd.JSONName()), t})
		return true
	})
	if err != nil {
		return nil, err
	}
	return ast.ObjectTerm(kvs...), nil
}

func mapTerm(fd protoreflect.FieldDescriptor, m protoreflect.Map, enc Encoding) (*ast.Term, error) {
	kvs := make([][2]*ast.Term, 0, m.Len())
	vfd := fd.MapValue()
	var err error
	m.Range(func(k protoreflect.MapKey, v protoreflect.Value) bool {
		var t *ast.Term
		if t, err = singularTerm(vfd, v, enc); err != nil {
			return false
		}
		// Both references key maps by the key's decimal or literal form.
		kvs = append(kvs, [2]*ast.Term{ast.StringTerm(k.String()), t})
		return true
	})
	if err != nil {
		return nil, err
	}
	return ast.ObjectTerm(kvs...), nil
}

func listTerm(fd protoreflect.FieldDescriptor, l protoreflect.List, enc Encoding) (*ast.Term, error) {
	elems := make([]*ast.Term, l.Len())
	for i := range elems {
		t, err := singularTerm(fd, l.Get(i), enc)
		if err != nil {
			return nil, err
		}
		elems[i] = t
	}
	return ast.ArrayTerm(elems...), nil
}

// singularTerm converts one value of a field (or of a list or map element).
func singularTerm(fd protoreflect.FieldDescriptor, v protoreflect.Value, enc Encoding) (*ast.Term, error) {
	switch fd.Kind() {
	case protoreflect.MessageKind, protoreflect.GroupKind:
		return messageTerm(v.Message(), enc)
	case protoreflect.BoolKind:
		return ast.BooleanTerm(v.Bool()), nil
	case protoreflect.StringKind:
		return ast.StringTerm(v.String()), nil
	case protoreflect.BytesKind:
		// protojson writes standard base64; the plugin hands []byte to
		// ast.InterfaceToValue, whose JSON round trip does the same.
		return ast.StringTerm(base64.StdEncoding.EncodeToString(v.Bytes())), nil
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		return intTerm(v.Int()), nil
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return uintTerm(v.Uint()), nil
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		if enc == EncodingProtoJSON {
			return ast.StringTerm(strconv.FormatInt(v.Int(), 10)), nil
		}
		return intTerm(v.Int()), nil
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		if enc == EncodingProtoJSON {
			return ast.StringTerm(strconv.FormatUint(v.Uint(), 10)), nil
		}
		return uintTerm(v.Uint()), nil
	case protoreflect.FloatKind:
		if enc == EncodingProtoJSON {
			return protojsonFloat(v.Float(), 32), nil
		}
		// util.RoundTrip formats a float32 with 'f' and 32 bits.
		return ast.NumberTerm(json.Number(strconv.FormatFloat(v.Float(), 'f', -1, 32))), nil
	case protoreflect.DoubleKind:
		if enc == EncodingProtoJSON {
			return protojsonFloat(v.Float(), 64), nil
		}
		return ast.NewTerm(goFloat(v.Float())), nil
	case protoreflect.EnumKind:
		n := v.Enum()
		if enc == EncodingProtoJSON {
			if fd.Enum().FullName() == "google.protobuf.NullValue" {
				return ast.NullTerm(), nil
			}
			if d := fd.Enum().Values().ByNumber(n); d != nil {
				return ast.StringTerm(string(d.Name())), nil
			}
		}
		return intTerm(int64(n)), nil
	}
	return nil, fmt.Errorf("engine: unsupported proto kind %v in %s", fd.Kind(), fd.FullName())
}

// wellKnown returns the conversion of a well-known type whose JSON form is
// not its fields. opa-envoy-plugin treats only google.protobuf.Struct
// specially (through AsMap); protojson treats all of them specially.
func wellKnown(m protoreflect.Message, enc Encoding) (func() (*ast.Term, error), bool) {
	name := m.Descriptor().FullName()
	if enc == EncodingPlugin {
		if name != "google.protobuf.Struct" {
			return nil, false
		}
		return func() (*ast.Term, error) { return structTermPlugin(&arena{}, asStruct(m)), nil }, true
	}
	if name.Parent() != "google.protobuf" {
		return nil, false
	}
	switch name {
	case "google.protobuf.Struct":
		return func() (*ast.Term, error) { return structTermProtoJSON(&arena{}, asStruct(m)) }, true
	case "google.protobuf.Timestamp":
		return func() (*ast.Term, error) {
			fds := m.Descriptor().Fields()
			return timestampTermProtoJSON(m.Get(fds.ByNumber(1)).Int(), m.Get(fds.ByNumber(2)).Int())
		}, true
	case "google.protobuf.Value", "google.protobuf.ListValue", "google.protobuf.Any",
		"google.protobuf.Duration", "google.protobuf.FieldMask", "google.protobuf.Empty",
		"google.protobuf.DoubleValue", "google.protobuf.FloatValue", "google.protobuf.Int64Value",
		"google.protobuf.UInt64Value", "google.protobuf.Int32Value", "google.protobuf.UInt32Value",
		"google.protobuf.BoolValue", "google.protobuf.StringValue", "google.protobuf.BytesValue":
		// None of these is on a path Envoy fills for every request (Any
		// only in typed_filter_metadata), so protojson itself renders
		// them: one rule set, no second implementation to get wrong.
		return func() (*ast.Term, error) { return viaProtoJSON(m) }, true
	}
	return nil, false
}

// asStruct returns m as the generated Struct type. Every message of a
// CheckRequest is generated code, so the wire copy is only a safety net.
func asStruct(m protoreflect.Message) *structpb.Struct {
	if s, ok := m.Interface().(*structpb.Struct); ok {
		return s
	}
	s := &structpb.Struct{}
	if bs, err := proto.Marshal(m.Interface()); err == nil {
		_ = proto.Unmarshal(bs, s)
	}
	return s
}

// viaProtoJSON renders m with protojson itself. Only rare well-known types
// take this path; see wellKnown.
func viaProtoJSON(m protoreflect.Message) (*ast.Term, error) {
	bs, err := protojson.Marshal(m.Interface())
	if err != nil {
		return nil, err
	}
	var x any
	if err := util.UnmarshalJSON(bs, &x); err != nil {
		return nil, err
	}
	v, err := ast.InterfaceToValue(x)
	if err != nil {
		return nil, err
	}
	return ast.NewTerm(v), nil
}

// structTermPlugin is Struct.AsMap followed by ast.InterfaceToValue, which
// is what opa-envoy-plugin does with metadata.
func structTermPlugin(a *arena, s *structpb.Struct) *ast.Term {
	f := s.GetFields()
	var stack [16][2]*ast.Term
	kvs := stack[:0]
	for k, v := range f {
		kvs = append(kvs, [2]*ast.Term{a.str(k), valueTermPlugin(a, v)})
	}
	return a.object(kvs...)
}

// valueTermPlugin mirrors structpb.Value.AsInterface: NaN and infinities
// become strings, an unset kind becomes null.
func valueTermPlugin(a *arena, v *structpb.Value) *ast.Term {
	switch k := v.GetKind().(type) {
	case *structpb.Value_NumberValue:
		switch f := k.NumberValue; {
		case math.IsNaN(f):
			return a.str("NaN")
		case math.IsInf(f, 1):
			return a.str("Infinity")
		case math.IsInf(f, -1):
			return a.str("-Infinity")
		default:
			return a.term(goFloat(f))
		}
	case *structpb.Value_StringValue:
		return a.str(k.StringValue)
	case *structpb.Value_BoolValue:
		return ast.InternedTerm(k.BoolValue)
	case *structpb.Value_StructValue:
		return structTermPlugin(a, k.StructValue)
	case *structpb.Value_ListValue:
		vals := k.ListValue.GetValues()
		elems := a.elems(len(vals))
		for i, e := range vals {
			elems[i] = valueTermPlugin(a, e)
		}
		return a.array(elems)
	}
	return ast.InternedNullTerm
}

// structTermProtoJSON renders a Struct as protojson does, errors included.
func structTermProtoJSON(a *arena, s *structpb.Struct) (*ast.Term, error) {
	f := s.GetFields()
	var stack [16][2]*ast.Term
	kvs := stack[:0]
	for k, v := range f {
		t, err := valueTermProtoJSON(a, v)
		if err != nil {
			return nil, err
		}
		kvs = append(kvs, [2]*ast.Term{a.str(k), t})
	}
	return a.object(kvs...), nil
}

func valueTermProtoJSON(a *arena, v *structpb.Value) (*ast.Term, error) {
	switch k := v.GetKind().(type) {
	case *structpb.Value_NullValue:
		return ast.InternedNullTerm, nil
	case *structpb.Value_NumberValue:
		if math.IsNaN(k.NumberValue) || math.IsInf(k.NumberValue, 0) {
			return nil, fmt.Errorf("google.protobuf.Value.number_value: invalid %v value", k.NumberValue)
		}
		return protojsonFloat(k.NumberValue, 64), nil
	case *structpb.Value_StringValue:
		return a.str(k.StringValue), nil
	case *structpb.Value_BoolValue:
		return ast.InternedTerm(k.BoolValue), nil
	case *structpb.Value_StructValue:
		return structTermProtoJSON(a, k.StructValue)
	case *structpb.Value_ListValue:
		vals := k.ListValue.GetValues()
		elems := a.elems(len(vals))
		for i, e := range vals {
			t, err := valueTermProtoJSON(a, e)
			if err != nil {
				return nil, err
			}
			elems[i] = t
		}
		return a.array(elems), nil
	}
	return nil, fmt.Errorf("google.protobuf.Value: none of the oneof fields is set")
}

// Range of a Timestamp that protojson accepts (0001-01-01 to 9999-12-31).
const (
	minTimestampSeconds = -62135596800
	maxTimestampSeconds = 253402300799
)

// timestampTermProtoJSON formats as protojson does: UTC, RFC 3339, with 0,
// 3, 6 or 9 fractional digits.
func timestampTermProtoJSON(secs, nanos int64) (*ast.Term, error) {
	if secs < minTimestampSeconds || secs > maxTimestampSeconds {
		return nil, fmt.Errorf("google.protobuf.Timestamp: seconds out of range %v", secs)
	}
	if nanos < 0 || nanos > 999999999 {
		return nil, fmt.Errorf("google.protobuf.Timestamp: nanos out of range %v", nanos)
	}
	x := time.Unix(secs, nanos).UTC().Format("2006-01-02T15:04:05.000000000")
	x = strings.TrimSuffix(x, "000")
	x = strings.TrimSuffix(x, "000")
	x = strings.TrimSuffix(x, ".000")
	return ast.StringTerm(x + "Z"), nil
}

// timestampTerm converts a request time in either encoding. For the plugin
// it is an ordinary message: {"seconds": n, "nanos": n}, zeros left out.
func timestampTerm(a *arena, ts *timestamppb.Timestamp, enc Encoding) (*ast.Term, error) {
	if enc == EncodingProtoJSON {
		return timestampTermProtoJSON(ts.GetSeconds(), int64(ts.GetNanos()))
	}
	var kvs [2][2]*ast.Term
	n := 0
	if s := ts.GetSeconds(); s != 0 {
		kvs[n] = [2]*ast.Term{keySeconds, a.int(s)}
		n++
	}
	if ns := ts.GetNanos(); ns != 0 {
		kvs[n] = [2]*ast.Term{keyNanos, a.int(int64(ns))}
		n++
	}
	return a.object(kvs[:n]...), nil
}

// protojsonFloat formats f as protojson does (encoding/json's rules, with
// NaN and infinities as strings).
func protojsonFloat(f float64, bits int) *ast.Term {
	switch {
	case math.IsNaN(f):
		return ast.StringTerm("NaN")
	case math.IsInf(f, 1):
		return ast.StringTerm("Infinity")
	case math.IsInf(f, -1):
		return ast.StringTerm("-Infinity")
	}
	format := byte('f')
	if abs := math.Abs(f); abs != 0 {
		if bits == 64 && (abs < 1e-6 || abs >= 1e21) || bits == 32 && (float32(abs) < 1e-6 || float32(abs) >= 1e21) {
			format = 'e'
		}
	}
	s := strconv.FormatFloat(f, format, -1, bits)
	if format == 'e' {
		// 1e-07 -> 1e-7, as encoding/json writes it.
		if n := len(s); n >= 4 && s[n-4] == 'e' && s[n-3] == '-' && s[n-2] == '0' {
			s = s[:n-2] + s[n-1:]
		}
	}
	return ast.NumberTerm(json.Number(s))
}

// goFloat is what ast.InterfaceToValue makes of a float64.
func goFloat(f float64) ast.Value {
	return ast.Number(strconv.FormatFloat(f, 'g', -1, 64))
}

// intTerm is what ast.InterfaceToValue makes of any signed integer: small
// ones come from OPA's interned terms.
func intTerm(i int64) *ast.Term { return ast.IntNumberTerm(int(i)) }

func uintTerm(u uint64) *ast.Term {
	if u <= math.MaxInt64 {
		return ast.IntNumberTerm(int(u))
	}
	return ast.NumberTerm(json.Number(strconv.FormatUint(u, 10)))
}
