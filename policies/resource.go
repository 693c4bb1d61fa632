package policies

import (
	"fmt"
	"strconv"
	"time"
)

// GroupKind names a kind of resource independently of its API version:
// every served version of a kind decodes to the same typed spec, as in Istio.
type GroupKind struct {
	Group string `json:"group"`
	Kind  string `json:"kind"`
}

func (gk GroupKind) String() string {
	if gk.Group == "" {
		return gk.Kind
	}
	return gk.Kind + "." + gk.Group
}

// Meta is the part of Kubernetes ObjectMeta the model uses.
type Meta struct {
	Name              string            `json:"name,omitempty"`
	Namespace         string            `json:"namespace,omitempty"`
	Labels            map[string]string `json:"labels,omitempty"`
	Annotations       map[string]string `json:"annotations,omitempty"`
	CreationTimestamp time.Time         `json:"creationTimestamp,omitzero"`
	Generation        int64             `json:"generation,omitempty"`
	ResourceVersion   string            `json:"resourceVersion,omitempty"`
	UID               string            `json:"uid,omitempty"`
	GenerateName      string            `json:"generateName,omitempty"`
}

// Source says where a resource was read from.
type Source struct {
	File string `json:"file"`
	Line int    `json:"line"`
	// Seq orders resources read from the same source: Istio breaks ties
	// between equally old resources by name, but within one file the
	// document order is what users expect to decide.
	Seq int `json:"-"`
}

func (s Source) String() string { return fmt.Sprintf("%s:%d", s.File, s.Line) }

// Resource is one validated configuration object. Spec holds the typed
// content: an istio.io/api proto message for modern Istio kinds, a struct of
// package legacy for retired Istio kinds, a struct of package kubeobj for
// Kubernetes objects. Resources in a Snapshot are shared and must not be
// modified.
type Resource struct {
	Kind       GroupKind `json:"-"`
	APIVersion string    `json:"apiVersion"`
	Meta       `json:"metadata"`
	Spec       any    `json:"spec,omitempty"`
	Source     Source `json:"-"`
}

// Key identifies a resource within a snapshot.
type Key struct {
	Kind      GroupKind
	Namespace string
	Name      string
}

func (k Key) String() string {
	if k.Namespace == "" {
		return k.Kind.Kind + " " + k.Name
	}
	return k.Kind.Kind + " " + k.Namespace + "/" + k.Name
}

// Key returns the resource's identity.
func (r *Resource) Key() Key { return Key{Kind: r.Kind, Namespace: r.Namespace, Name: r.Name} }

// SpecAs returns r's spec as T, and false when it is of another type.
func SpecAs[T any](r *Resource) (T, bool) {
	t, ok := r.Spec.(T)
	return t, ok
}

// DryRun reports Istio's istio.io/dry-run annotation.
// Istio reads the value with strconv.ParseBool, so "True" and "1" count.
func (r *Resource) DryRun() bool {
	dry, _ := strconv.ParseBool(r.Annotations[AnnotationDryRun])
	return dry
}

// AnnotationDryRun marks an AuthorizationPolicy as evaluated and logged but
// never enforced.
const AnnotationDryRun = "istio.io/dry-run"
