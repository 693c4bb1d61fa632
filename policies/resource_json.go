package policies

import (
	"encoding/json"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// MarshalJSON renders the resource as the object a user would write: Istio
// specs in their protojson form, Kubernetes objects with their fields at the
// top level, and the file and line it came from.
func (r *Resource) MarshalJSON() ([]byte, error) {
	out := map[string]any{
		"apiVersion": r.APIVersion,
		"kind":       r.Kind.Kind,
		"metadata":   r.Meta,
		"source":     r.Source,
	}
	var spec []byte
	var err error
	if m, ok := r.Spec.(proto.Message); ok {
		spec, err = protojson.MarshalOptions{}.Marshal(m)
	} else {
		spec, err = json.Marshal(r.Spec)
	}
	if err != nil {
		return nil, err
	}
	if info, ok := kindsByGroupKind[r.Kind]; ok && info.wholeObject {
		var fields map[string]json.RawMessage
		if err := json.Unmarshal(spec, &fields); err != nil {
			return nil, err
		}
		for k, v := range fields {
			out[k] = v
		}
	} else {
		out["spec"] = json.RawMessage(spec)
	}
	return json.Marshal(out)
}
