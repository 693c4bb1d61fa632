package policies

// decodeStruct fills Go structs (legacy Istio kinds, Kubernetes objects)
// from YAML nodes with the same path-and-line bookkeeping as decodeProto.
// yaml.v3's own Node.Decode cannot reject unknown fields, and knows neither
// JSON tags nor Istio's acceptance of proto (snake_case) field names.

import (
	"reflect"
	"strconv"
	"strings"
	"sync"
	"time"

	"gopkg.in/yaml.v3"
)

// enumeration is implemented by string types with a closed set of values.
type enumeration interface {
	Allowed() []string
}

// scalarSetter is implemented by types decoded from a scalar of several YAML
// types, such as Kubernetes' IntOrString. tag is the YAML tag (!!int, !!str).
type scalarSetter interface {
	SetScalar(value, tag string) error
}

type structDecoder struct {
	c *check
	// strict rejects unknown fields and wrongly typed scalars, as Istio's
	// CRD schemas do. Kubernetes objects are decoded leniently: Garrison
	// reads only a few of their fields and must not reject the rest.
	strict bool
}

var (
	timeType         = reflect.TypeFor[time.Time]()
	enumerationType  = reflect.TypeFor[enumeration]()
	scalarSetterType = reflect.TypeFor[scalarSetter]()
)

func (d structDecoder) decode(n *yaml.Node, v reflect.Value, p FieldPath) {
	n = deref(n)
	if reflect.PointerTo(v.Type()).Implements(scalarSetterType) {
		if n.Kind != yaml.ScalarNode {
			d.c.errorf(p, "must be a string or an integer, got %s", describe(n))
			return
		}
		if err := v.Addr().Interface().(scalarSetter).SetScalar(n.Value, n.Tag); err != nil {
			d.c.errorf(p, "%v", err)
		}
		return
	}
	switch v.Kind() {
	case reflect.Pointer:
		if isNull(n) {
			return
		}
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		d.decode(n, v.Elem(), p)
		return
	case reflect.Struct:
		if v.Type() == timeType {
			d.decodeTime(n, v, p)
			return
		}
		d.decodeFields(n, v, p)
		return
	case reflect.Slice:
		if isNull(n) {
			return
		}
		if n.Kind != yaml.SequenceNode {
			d.c.errorf(p, "must be a list, got %s", describe(n))
			return
		}
		if len(n.Content) == 0 {
			d.c.markEmpty(p)
		}
		s := reflect.MakeSlice(v.Type(), 0, len(n.Content))
		for i, item := range n.Content {
			// As for protos: a null item ("- " alone) is neither an
			// empty object nor a zero value a validator could trust.
			if isNull(deref(item)) {
				d.c.errorf(p.Index(i), "must not be null")
				continue
			}
			e := reflect.New(v.Type().Elem()).Elem()
			d.decode(item, e, p.Index(i))
			s = reflect.Append(s, e)
		}
		v.Set(s)
		return
	case reflect.Map:
		if isNull(n) {
			return
		}
		if n.Kind != yaml.MappingNode {
			d.c.errorf(p, "must be an object, got %s", describe(n))
			return
		}
		if v.IsNil() {
			v.Set(reflect.MakeMap(v.Type()))
		}
		eachPair(n, func(k, val *yaml.Node) {
			e := reflect.New(v.Type().Elem()).Elem()
			d.decode(val, e, p.Key(k.Value))
			v.SetMapIndex(reflect.ValueOf(k.Value).Convert(v.Type().Key()), e)
		})
		return
	}
	if isNull(n) {
		return
	}
	if n.Kind != yaml.ScalarNode {
		d.c.errorf(p, "must be a %s, got %s", v.Kind(), describe(n))
		return
	}
	d.decodeScalar(n, v, p)
}

func (d structDecoder) decodeFields(n *yaml.Node, v reflect.Value, p FieldPath) {
	if isNull(n) {
		return
	}
	if n.Kind != yaml.MappingNode {
		d.c.errorf(p, "must be an object, got %s", describe(n))
		return
	}
	fields := fieldsOf(v.Type())
	eachPair(n, func(k, val *yaml.Node) {
		idx, ok := fields[k.Value]
		if !ok && d.strict {
			idx, ok = fields[snakeToCamel(k.Value)]
		}
		if !ok {
			if d.strict {
				d.c.errorf(p.Field(k.Value), "unknown field %q in %s", k.Value, v.Type().Name())
			}
			return
		}
		field := v.Field(idx)
		if isNull(val) && field.Kind() == reflect.Pointer && v.Type().Field(idx).Tag.Get("null") == "empty" {
			// Fields tagged null:"empty" treat "key:" with no value as
			// present and empty, as Istio did for "- mtls:".
			field.Set(reflect.New(field.Type().Elem()))
			return
		}
		if isNull(val) && field.Kind() == reflect.Slice {
			return
		}
		d.decode(val, field, p.Field(k.Value))
	})
}

func (d structDecoder) decodeTime(n *yaml.Node, v reflect.Value, p FieldPath) {
	if isNull(n) {
		return
	}
	t, err := time.Parse(time.RFC3339Nano, n.Value)
	if n.Kind != yaml.ScalarNode || err != nil {
		d.c.errorf(p, "must be an RFC 3339 timestamp, got %s", describe(n))
		return
	}
	v.Set(reflect.ValueOf(t))
}

func (d structDecoder) decodeScalar(n *yaml.Node, v reflect.Value, p FieldPath) {
	s := n.Value
	switch v.Kind() {
	case reflect.String:
		if n.Tag != "!!str" && d.strict {
			d.c.errorf(p, "must be a string, got %s (quote it: %q)", describe(n), s)
			return
		}
		if e, ok := v.Interface().(enumeration); ok || v.Type().Implements(enumerationType) {
			if e == nil {
				e = reflect.Zero(v.Type()).Interface().(enumeration)
			}
			allowed := e.Allowed()
			if !contains(allowed, s) {
				quoted := make([]string, len(allowed))
				for i, a := range allowed {
					quoted[i] = strconv.Quote(a)
				}
				d.c.errorf(p, "Unsupported value: %q: supported values: %s", s, strings.Join(quoted, ", "))
				return
			}
		}
		v.SetString(s)
	case reflect.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil || (d.strict && n.Tag != "!!bool") {
			d.c.errorf(p, "must be true or false, got %s", describe(n))
			return
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		i, err := strconv.ParseInt(s, 0, v.Type().Bits())
		if err != nil || (d.strict && n.Tag != "!!int") {
			d.c.errorf(p, "must be an integer that fits in %d bits, got %s", v.Type().Bits(), describe(n))
			return
		}
		v.SetInt(i)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		u, err := strconv.ParseUint(s, 0, v.Type().Bits())
		if err != nil || (d.strict && n.Tag != "!!int") {
			d.c.errorf(p, "must be a non-negative integer that fits in %d bits, got %s", v.Type().Bits(), describe(n))
			return
		}
		v.SetUint(u)
	case reflect.Float32, reflect.Float64:
		f, err := strconv.ParseFloat(s, v.Type().Bits())
		if err != nil {
			d.c.errorf(p, "must be a number, got %s", describe(n))
			return
		}
		v.SetFloat(f)
	default:
		d.c.errorf(p, "cannot decode into %s", v.Type())
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// fieldIndexes caches fieldsOf per struct type.
var fieldIndexes sync.Map // reflect.Type -> map[string]int

// fieldsOf maps JSON field names to struct field indexes.
func fieldsOf(t reflect.Type) map[string]int {
	if m, ok := fieldIndexes.Load(t); ok {
		return m.(map[string]int)
	}
	m := computeFields(t)
	fieldIndexes.Store(t, m)
	return m
}

func computeFields(t reflect.Type) map[string]int {
	out := make(map[string]int, t.NumField())
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name := f.Name
		if tag, ok := f.Tag.Lookup("json"); ok {
			name, _, _ = strings.Cut(tag, ",")
			if name == "-" {
				continue
			}
			if name == "" {
				name = f.Name
			}
		}
		out[name] = i
	}
	return out
}

// snakeToCamel turns a proto field name (jwks_uri) into its JSON name
// (jwksUri): Istio's legacy kinds were accepted in either form.
func snakeToCamel(s string) string {
	if !strings.Contains(s, "_") {
		return s
	}
	var b strings.Builder
	up := false
	for _, r := range s {
		if r == '_' {
			up = true
			continue
		}
		if up {
			b.WriteString(strings.ToUpper(string(r)))
			up = false
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}
