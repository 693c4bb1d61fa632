// Package policies is Garrison's mesh configuration model.
//
// It parses the Istio and Kubernetes YAML (or JSON) that users already have
// into typed resources, validates every resource the way Istio's admission
// webhook and CRD schemas would, and assembles them into an immutable,
// versioned Snapshot with the indexes the planes need. A Store hands each new
// Snapshot to its subscribers.
//
// The model imports no plane and nothing from k8s.io: Kubernetes manifests are
// read into the small structs of package kubeobj, and the legacy Istio kinds,
// which no longer exist in istio.io/api, into the structs of package legacy.
package policies
