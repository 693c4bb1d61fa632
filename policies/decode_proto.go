package policies

// The YAML-to-proto decoder is hand-written on purpose. protojson (and
// sigs.k8s.io/yaml in front of it) loses every position: its errors say
// "unknown field" with a byte offset into re-encoded JSON, never the file's
// line nor the field's path. Walking the yaml.v3 node tree against the
// message descriptor keeps both, so every error names file, line and field,
// and it accepts exactly what Istio's CRDs accept: camelCase or proto names,
// enum names, Go-style durations ("5m"), 64-bit integers as strings.

import (
	"encoding/base64"
	"math"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"
	"gopkg.in/yaml.v3"
)

// decodeProto fills m from the mapping node n. Problems go to c, located at p.
func decodeProto(c *check, n *yaml.Node, m protoreflect.Message, p FieldPath) {
	n = deref(n)
	if isNull(n) {
		return
	}
	if decodeWellKnown(c, n, m, p) {
		return
	}
	if n.Kind != yaml.MappingNode {
		c.errorf(p, "must be an object, got %s", describe(n))
		return
	}
	desc := m.Descriptor()
	fields := desc.Fields()
	setOneofs := map[protoreflect.FullName]string{}
	eachPair(n, func(key, val *yaml.Node) {
		name := key.Value
		fp := p.Field(name)
		fd := fields.ByJSONName(name)
		if fd == nil {
			fd = fields.ByTextName(name)
		}
		if fd == nil {
			c.errorf(fp, "unknown field %q in %s", name, desc.Name())
			return
		}
		if isNull(deref(val)) {
			return
		}
		if od := fd.ContainingOneof(); od != nil && !od.IsSynthetic() {
			if prev, ok := setOneofs[od.FullName()]; ok {
				c.errorf(fp, "only one of %s and %s may be set", prev, name)
				return
			}
			setOneofs[od.FullName()] = name
		}
		switch {
		case fd.IsList():
			decodeList(c, val, m.Mutable(fd).List(), fd, fp)
		case fd.IsMap():
			decodeMap(c, val, m.Mutable(fd).Map(), fd, fp)
		case fd.Kind() == protoreflect.MessageKind || fd.Kind() == protoreflect.GroupKind:
			decodeProto(c, val, m.Mutable(fd).Message(), fp)
		default:
			if v, ok := decodeScalar(c, val, fd, fp); ok {
				m.Set(fd, v)
			}
		}
	})
}

func decodeList(c *check, n *yaml.Node, l protoreflect.List, fd protoreflect.FieldDescriptor, p FieldPath) {
	n = deref(n)
	if n.Kind != yaml.SequenceNode {
		c.errorf(p, "must be a list, got %s", describe(n))
		return
	}
	if len(n.Content) == 0 {
		c.markEmpty(p)
	}
	for i, item := range n.Content {
		ip := p.Index(i)
		if fd.Kind() == protoreflect.MessageKind {
			// A null item ("- " alone) is not an empty object: an empty
			// rule would allow everything. Istio's schema rejects it too.
			if isNull(deref(item)) {
				c.errorf(ip, "must be an object, got null")
				continue
			}
			e := l.NewElement()
			decodeProto(c, item, e.Message(), ip)
			l.Append(e)
			continue
		}
		if isNull(deref(item)) {
			c.errorf(ip, "must not be null")
			continue
		}
		if v, ok := decodeScalar(c, item, fd, ip); ok {
			l.Append(v)
		}
	}
}

func decodeMap(c *check, n *yaml.Node, mp protoreflect.Map, fd protoreflect.FieldDescriptor, p FieldPath) {
	n = deref(n)
	if n.Kind != yaml.MappingNode {
		c.errorf(p, "must be an object, got %s", describe(n))
		return
	}
	kd, vd := fd.MapKey(), fd.MapValue()
	eachPair(n, func(key, val *yaml.Node) {
		kp := p.Key(key.Value)
		k, ok := decodeMapKey(c, key, kd, kp)
		if !ok {
			return
		}
		if vd.Kind() == protoreflect.MessageKind {
			v := mp.NewValue()
			decodeProto(c, val, v.Message(), kp)
			mp.Set(k, v)
			return
		}
		if isNull(deref(val)) {
			c.errorf(kp, "must not be null")
			return
		}
		if v, ok := decodeScalar(c, val, vd, kp); ok {
			mp.Set(k, v)
		}
	})
}

func decodeMapKey(c *check, key *yaml.Node, kd protoreflect.FieldDescriptor, p FieldPath) (protoreflect.MapKey, bool) {
	s := key.Value
	switch kd.Kind() {
	case protoreflect.StringKind:
		return protoreflect.ValueOfString(s).MapKey(), true
	case protoreflect.BoolKind:
		b, err := strconv.ParseBool(s)
		if err != nil {
			c.errorf(p, "map key %q must be true or false", s)
			return protoreflect.MapKey{}, false
		}
		return protoreflect.ValueOfBool(b).MapKey(), true
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind,
		protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		bits := 64
		if is32(kd.Kind()) {
			bits = 32
		}
		v, err := strconv.ParseInt(s, 10, bits)
		if err != nil {
			c.errorf(p, "map key %q must be an integer", s)
			return protoreflect.MapKey{}, false
		}
		if bits == 32 {
			return protoreflect.ValueOfInt32(int32(v)).MapKey(), true
		}
		return protoreflect.ValueOfInt64(v).MapKey(), true
	default:
		bits := 64
		if is32(kd.Kind()) {
			bits = 32
		}
		v, err := strconv.ParseUint(s, 10, bits)
		if err != nil {
			c.errorf(p, "map key %q must be a non-negative integer that fits in %d bits", s, bits)
			return protoreflect.MapKey{}, false
		}
		if bits == 32 {
			return protoreflect.ValueOfUint32(uint32(v)).MapKey(), true
		}
		return protoreflect.ValueOfUint64(v).MapKey(), true
	}
}

func is32(k protoreflect.Kind) bool {
	switch k {
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind,
		protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return true
	}
	return false
}

// decodeScalar decodes a non-message value of field fd.
func decodeScalar(c *check, n *yaml.Node, fd protoreflect.FieldDescriptor, p FieldPath) (protoreflect.Value, bool) {
	n = deref(n)
	if n.Kind != yaml.ScalarNode {
		c.errorf(p, "must be a %s, got %s", scalarNoun(fd.Kind()), describe(n))
		return protoreflect.Value{}, false
	}
	s := n.Value
	switch fd.Kind() {
	case protoreflect.StringKind:
		if n.Tag != "!!str" {
			c.errorf(p, "must be a string, got %s (quote it: %q)", describe(n), s)
			return protoreflect.Value{}, false
		}
		return protoreflect.ValueOfString(s), true
	case protoreflect.BoolKind:
		if n.Tag != "!!bool" {
			c.errorf(p, "must be true or false, got %s", describe(n))
			return protoreflect.Value{}, false
		}
		b, _ := strconv.ParseBool(strings.ToLower(s))
		return protoreflect.ValueOfBool(b), true
	case protoreflect.EnumKind:
		vals := fd.Enum().Values()
		if n.Tag == "!!int" {
			i, err := strconv.ParseInt(s, 0, 32)
			if err == nil && vals.ByNumber(protoreflect.EnumNumber(i)) != nil {
				return protoreflect.ValueOfEnum(protoreflect.EnumNumber(i)), true
			}
		} else if v := vals.ByName(protoreflect.Name(s)); v != nil {
			return protoreflect.ValueOfEnum(v.Number()), true
		}
		names := make([]string, vals.Len())
		for i := range names {
			names[i] = strconv.Quote(string(vals.Get(i).Name()))
		}
		c.errorf(p, "Unsupported value: %q: supported values: %s", s, strings.Join(names, ", "))
		return protoreflect.Value{}, false
	case protoreflect.BytesKind:
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			c.errorf(p, "must be base64: %v", err)
			return protoreflect.Value{}, false
		}
		return protoreflect.ValueOfBytes(b), true
	case protoreflect.FloatKind, protoreflect.DoubleKind:
		if n.Tag != "!!float" && n.Tag != "!!int" {
			c.errorf(p, "must be a number, got %s", describe(n))
			return protoreflect.Value{}, false
		}
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			c.errorf(p, "must be a number: %q", s)
			return protoreflect.Value{}, false
		}
		if fd.Kind() == protoreflect.FloatKind {
			if math.Abs(f) > math.MaxFloat32 {
				c.errorf(p, "%s is out of range for a 32-bit float", s)
				return protoreflect.Value{}, false
			}
			return protoreflect.ValueOfFloat32(float32(f)), true
		}
		return protoreflect.ValueOfFloat64(f), true
	}
	// Integers. 64-bit integers may be strings, as in protojson; 32-bit
	// ones must be numbers, as Istio's CRD schemas require.
	bits := 64
	if is32(fd.Kind()) {
		bits = 32
	}
	if n.Tag != "!!int" && (bits == 32 || n.Tag != "!!str") {
		c.errorf(p, "must be an integer, got %s", describe(n))
		return protoreflect.Value{}, false
	}
	switch fd.Kind() {
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind, protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		u, err := strconv.ParseUint(s, 0, bits)
		if err != nil {
			c.errorf(p, "must be a non-negative integer that fits in %d bits, got %s", bits, s)
			return protoreflect.Value{}, false
		}
		if bits == 32 {
			return protoreflect.ValueOfUint32(uint32(u)), true
		}
		return protoreflect.ValueOfUint64(u), true
	default:
		i, err := strconv.ParseInt(s, 0, bits)
		if err != nil {
			c.errorf(p, "must be an integer that fits in %d bits, got %s", bits, s)
			return protoreflect.Value{}, false
		}
		if bits == 32 {
			return protoreflect.ValueOfInt32(int32(i)), true
		}
		return protoreflect.ValueOfInt64(i), true
	}
}

func scalarNoun(k protoreflect.Kind) string {
	switch k {
	case protoreflect.StringKind, protoreflect.EnumKind, protoreflect.BytesKind:
		return "string"
	case protoreflect.BoolKind:
		return "boolean"
	case protoreflect.FloatKind, protoreflect.DoubleKind:
		return "number"
	}
	return "integer"
}

// decodeWellKnown handles the google.protobuf types whose JSON form is not
// an object of their fields. It reports whether m was one of them.
func decodeWellKnown(c *check, n *yaml.Node, m protoreflect.Message, p FieldPath) bool {
	switch m.Descriptor().FullName() {
	case "google.protobuf.Duration":
		if n.Kind != yaml.ScalarNode {
			c.errorf(p, "must be a duration such as \"10s\" or \"1m30s\", got %s", describe(n))
			return true
		}
		d, err := parseDuration(n.Value)
		if err != nil {
			c.errorf(p, "%v", err)
			return true
		}
		dp := durationpb.New(d)
		setFields(m, dp.ProtoReflect())
		return true
	case "google.protobuf.Timestamp":
		if n.Kind != yaml.ScalarNode {
			c.errorf(p, "must be an RFC 3339 timestamp, got %s", describe(n))
			return true
		}
		t, err := time.Parse(time.RFC3339Nano, n.Value)
		if err != nil {
			c.errorf(p, "must be an RFC 3339 timestamp: %v", err)
			return true
		}
		setFields(m, timestamppb.New(t).ProtoReflect())
		return true
	case "google.protobuf.BoolValue", "google.protobuf.StringValue", "google.protobuf.BytesValue",
		"google.protobuf.Int32Value", "google.protobuf.UInt32Value", "google.protobuf.Int64Value",
		"google.protobuf.UInt64Value", "google.protobuf.FloatValue", "google.protobuf.DoubleValue":
		fd := m.Descriptor().Fields().ByName("value")
		if v, ok := decodeScalar(c, n, fd, p); ok {
			m.Set(fd, v)
		}
		return true
	case "google.protobuf.Struct":
		if n.Kind != yaml.MappingNode {
			c.errorf(p, "must be an object, got %s", describe(n))
			return true
		}
		if s, ok := nodeToStructValue(c, n, p); ok {
			setFields(m, s.GetStructValue().ProtoReflect())
		}
		return true
	case "google.protobuf.Value":
		if v, ok := nodeToStructValue(c, n, p); ok {
			setFields(m, v.ProtoReflect())
		}
		return true
	case "google.protobuf.ListValue":
		if n.Kind != yaml.SequenceNode {
			c.errorf(p, "must be a list, got %s", describe(n))
			return true
		}
		if v, ok := nodeToStructValue(c, n, p); ok {
			setFields(m, v.GetListValue().ProtoReflect())
		}
		return true
	case "google.protobuf.Any":
		c.errorf(p, "google.protobuf.Any is not supported here")
		return true
	}
	return false
}

// parseDuration accepts Go durations ("1m30s", "500ms"), which Istio's
// documentation uses throughout, as well as protojson's "1.5s".
func parseDuration(s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, &durationError{value: s}
	}
	if d < 0 {
		return 0, &durationError{value: s, negative: true}
	}
	return d, nil
}

type durationError struct {
	value    string
	negative bool
}

func (e *durationError) Error() string {
	if e.negative {
		return "duration " + strconv.Quote(e.value) + " must not be negative"
	}
	return "invalid duration " + strconv.Quote(e.value) + ": use a number with a unit, such as \"10s\", \"1.5s\" or \"1m30s\""
}

func setFields(dst, src protoreflect.Message) {
	src.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		dst.Set(fd, v)
		return true
	})
}

// nodeToStructValue converts any YAML value to a structpb.Value.
func nodeToStructValue(c *check, n *yaml.Node, p FieldPath) (*structpb.Value, bool) {
	n = deref(n)
	switch n.Kind {
	case yaml.MappingNode:
		s := &structpb.Struct{Fields: map[string]*structpb.Value{}}
		ok := true
		eachPair(n, func(k, v *yaml.Node) {
			sv, good := nodeToStructValue(c, v, p.Key(k.Value))
			ok = ok && good
			s.Fields[k.Value] = sv
		})
		return structpb.NewStructValue(s), ok
	case yaml.SequenceNode:
		l := &structpb.ListValue{}
		ok := true
		for i, item := range n.Content {
			sv, good := nodeToStructValue(c, item, p.Index(i))
			ok = ok && good
			l.Values = append(l.Values, sv)
		}
		return structpb.NewListValue(l), ok
	case yaml.ScalarNode:
		switch n.Tag {
		case "!!null":
			return structpb.NewNullValue(), true
		case "!!bool":
			b, _ := strconv.ParseBool(strings.ToLower(n.Value))
			return structpb.NewBoolValue(b), true
		case "!!int", "!!float":
			f, err := strconv.ParseFloat(n.Value, 64)
			if err != nil {
				if i, ierr := strconv.ParseInt(n.Value, 0, 64); ierr == nil {
					return structpb.NewNumberValue(float64(i)), true
				}
				c.errorf(p, "invalid number %q", n.Value)
				return nil, false
			}
			return structpb.NewNumberValue(f), true
		default:
			return structpb.NewStringValue(n.Value), true
		}
	}
	c.errorf(p, "unsupported value %s", describe(n))
	return nil, false
}
