// Package kubeobj holds the few fields of Kubernetes objects that Garrison
// reads from the same manifests users kubectl apply: Namespace,
// ServiceAccount, Service, Pod and the pod-template workloads (Deployment,
// StatefulSet, DaemonSet, ReplicaSet). The model stays free of k8s.io; the
// Kubernetes config source converts from client-go types into these.
package kubeobj

import (
	"fmt"
	"strconv"
)

// Namespace carries nothing beyond its metadata (labels matter).
type Namespace struct{}

// ServiceAccount carries nothing beyond its metadata.
type ServiceAccount struct{}

// Service is a Kubernetes Service.
type Service struct {
	Spec ServiceSpec `json:"spec"`
}

// ServiceSpec is the part of a Service's spec the mesh uses.
type ServiceSpec struct {
	Type         string            `json:"type,omitempty"`
	Selector     map[string]string `json:"selector,omitempty"`
	Ports        []ServicePort     `json:"ports,omitempty"`
	ClusterIP    string            `json:"clusterIP,omitempty"`
	ClusterIPs   []string          `json:"clusterIPs,omitempty"`
	ExternalName string            `json:"externalName,omitempty"`
}

// ServicePort is one port of a Service.
type ServicePort struct {
	Name        string      `json:"name,omitempty"`
	Protocol    string      `json:"protocol,omitempty"`
	AppProtocol string      `json:"appProtocol,omitempty"`
	Port        int32       `json:"port,omitempty"`
	TargetPort  IntOrString `json:"targetPort,omitzero"`
}

// IntOrString is a port given by number or by name.
type IntOrString struct {
	IntVal int32
	StrVal string
	IsStr  bool
}

// SetScalar decodes a YAML scalar: an integer, or a string.
func (v *IntOrString) SetScalar(value, tag string) error {
	if tag == "!!int" {
		i, err := strconv.ParseInt(value, 10, 32)
		if err != nil {
			return fmt.Errorf("integer %s out of range", value)
		}
		*v = IntOrString{IntVal: int32(i)}
		return nil
	}
	*v = IntOrString{StrVal: value, IsStr: true}
	return nil
}

// MarshalJSON renders the value as its original scalar.
func (v IntOrString) MarshalJSON() ([]byte, error) {
	if v.IsStr {
		return []byte(strconv.Quote(v.StrVal)), nil
	}
	return []byte(strconv.Itoa(int(v.IntVal))), nil
}

// IsZero reports an unset value.
func (v IntOrString) IsZero() bool { return !v.IsStr && v.IntVal == 0 }

func (v IntOrString) String() string {
	if v.IsStr {
		return v.StrVal
	}
	return strconv.Itoa(int(v.IntVal))
}

// Pod is a Kubernetes Pod.
type Pod struct {
	Spec   PodSpec   `json:"spec"`
	Status PodStatus `json:"status,omitzero"`
}

// PodSpec is the part of a pod spec the mesh uses.
type PodSpec struct {
	ServiceAccountName string `json:"serviceAccountName,omitempty"`
	// ServiceAccount is the deprecated alias of ServiceAccountName.
	ServiceAccount string      `json:"serviceAccount,omitempty"`
	Containers     []Container `json:"containers,omitempty"`
	HostNetwork    bool        `json:"hostNetwork,omitempty"`
}

// ServiceAccountOrDefault returns the pod's service account, "default" when unset.
func (s *PodSpec) ServiceAccountOrDefault() string {
	switch {
	case s.ServiceAccountName != "":
		return s.ServiceAccountName
	case s.ServiceAccount != "":
		return s.ServiceAccount
	}
	return "default"
}

// Container is the part of a container the mesh uses: its ports.
type Container struct {
	Name  string          `json:"name,omitempty"`
	Image string          `json:"image,omitempty"`
	Ports []ContainerPort `json:"ports,omitempty"`
}

// ContainerPort is a port a container listens on.
type ContainerPort struct {
	Name          string `json:"name,omitempty"`
	ContainerPort int32  `json:"containerPort,omitempty"`
	Protocol      string `json:"protocol,omitempty"`
}

// PodStatus carries the pod's addresses.
type PodStatus struct {
	PodIP  string  `json:"podIP,omitempty"`
	PodIPs []PodIP `json:"podIPs,omitempty"`
}

// PodIP is one address of a pod.
type PodIP struct {
	IP string `json:"ip,omitempty"`
}

// Workload is any pod-template controller: Deployment, StatefulSet,
// DaemonSet, ReplicaSet.
type Workload struct {
	Spec WorkloadSpec `json:"spec"`
}

// WorkloadSpec is the part of a controller's spec the mesh uses.
type WorkloadSpec struct {
	Replicas *int32         `json:"replicas,omitempty"`
	Selector *LabelSelector `json:"selector,omitempty"`
	Template PodTemplate    `json:"template"`
}

// LabelSelector is Kubernetes' label selector (matchExpressions are read so
// they can be reported, but the mesh selects by labels only).
type LabelSelector struct {
	MatchLabels      map[string]string          `json:"matchLabels,omitempty"`
	MatchExpressions []LabelSelectorRequirement `json:"matchExpressions,omitempty"`
}

// LabelSelectorRequirement is one matchExpressions entry.
type LabelSelectorRequirement struct {
	Key      string   `json:"key"`
	Operator string   `json:"operator"`
	Values   []string `json:"values,omitempty"`
}

// PodTemplate is a controller's pod template.
type PodTemplate struct {
	Metadata TemplateMeta `json:"metadata,omitzero"`
	Spec     PodSpec      `json:"spec"`
}

// TemplateMeta is the metadata of a pod template.
type TemplateMeta struct {
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}
