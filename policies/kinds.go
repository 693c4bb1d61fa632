package policies

import (
	"slices"

	"google.golang.org/protobuf/proto"
	networking "istio.io/api/networking/v1alpha3"
	security "istio.io/api/security/v1beta1"

	"github.com/garrison-mesh/garrison/policies/kubeobj"
	"github.com/garrison-mesh/garrison/policies/legacy"
)

// API groups Garrison reads.
const (
	GroupNetworking     = "networking.istio.io"
	GroupSecurity       = "security.istio.io"
	GroupRBAC           = "rbac.istio.io"
	GroupAuthentication = "authentication.istio.io"
	GroupCore           = ""
	GroupApps           = "apps"
	GroupExtensions     = "extensions"
)

// The kinds Garrison serves.
var (
	KindVirtualService        = GroupKind{GroupNetworking, "VirtualService"}
	KindDestinationRule       = GroupKind{GroupNetworking, "DestinationRule"}
	KindGateway               = GroupKind{GroupNetworking, "Gateway"}
	KindServiceEntry          = GroupKind{GroupNetworking, "ServiceEntry"}
	KindWorkloadEntry         = GroupKind{GroupNetworking, "WorkloadEntry"}
	KindSidecar               = GroupKind{GroupNetworking, "Sidecar"}
	KindAuthorizationPolicy   = GroupKind{GroupSecurity, "AuthorizationPolicy"}
	KindPeerAuthentication    = GroupKind{GroupSecurity, "PeerAuthentication"}
	KindRequestAuthentication = GroupKind{GroupSecurity, "RequestAuthentication"}
	KindServiceRole           = GroupKind{GroupRBAC, "ServiceRole"}
	KindServiceRoleBinding    = GroupKind{GroupRBAC, "ServiceRoleBinding"}
	KindRbacConfig            = GroupKind{GroupRBAC, "RbacConfig"}
	KindClusterRbacConfig     = GroupKind{GroupRBAC, "ClusterRbacConfig"}
	KindPolicy                = GroupKind{GroupAuthentication, "Policy"}
	KindMeshPolicy            = GroupKind{GroupAuthentication, "MeshPolicy"}
	KindNamespace             = GroupKind{GroupCore, "Namespace"}
	KindServiceAccount        = GroupKind{GroupCore, "ServiceAccount"}
	KindService               = GroupKind{GroupCore, "Service"}
	KindPod                   = GroupKind{GroupCore, "Pod"}
	KindDeployment            = GroupKind{GroupApps, "Deployment"}
	KindStatefulSet           = GroupKind{GroupApps, "StatefulSet"}
	KindDaemonSet             = GroupKind{GroupApps, "DaemonSet"}
	KindReplicaSet            = GroupKind{GroupApps, "ReplicaSet"}
)

// kindInfo describes how one kind is read and checked.
type kindInfo struct {
	GroupKind
	versions      []string
	clusterScoped bool
	// newSpec returns an empty spec: a proto.Message, or a pointer to a
	// struct of package legacy or kubeobj.
	newSpec func() any
	// wholeObject decodes the document's top level (minus apiVersion, kind
	// and metadata) into the spec, as Kubernetes objects carry status and
	// other fields beside spec. Such kinds are decoded leniently.
	wholeObject bool
	validate    func(c *check, r *Resource)
}

var istioNetworkingVersions = []string{"v1", "v1beta1", "v1alpha3"}
var istioSecurityVersions = []string{"v1", "v1beta1"}

// kinds is the registry of every kind Garrison reads.
var kinds = []*kindInfo{
	{GroupKind: KindVirtualService, versions: istioNetworkingVersions, newSpec: newProto[networking.VirtualService], validate: validateVirtualService},
	{GroupKind: KindDestinationRule, versions: istioNetworkingVersions, newSpec: newProto[networking.DestinationRule], validate: validateDestinationRule},
	{GroupKind: KindGateway, versions: istioNetworkingVersions, newSpec: newProto[networking.Gateway], validate: validateGateway},
	{GroupKind: KindServiceEntry, versions: istioNetworkingVersions, newSpec: newProto[networking.ServiceEntry], validate: validateServiceEntry},
	{GroupKind: KindWorkloadEntry, versions: istioNetworkingVersions, newSpec: newProto[networking.WorkloadEntry], validate: validateWorkloadEntry},
	{GroupKind: KindSidecar, versions: istioNetworkingVersions, newSpec: newProto[networking.Sidecar], validate: validateSidecar},
	{GroupKind: KindAuthorizationPolicy, versions: istioSecurityVersions, newSpec: newProto[security.AuthorizationPolicy], validate: validateAuthorizationPolicy},
	{GroupKind: KindPeerAuthentication, versions: istioSecurityVersions, newSpec: newProto[security.PeerAuthentication], validate: validatePeerAuthentication},
	{GroupKind: KindRequestAuthentication, versions: istioSecurityVersions, newSpec: newProto[security.RequestAuthentication], validate: validateRequestAuthentication},
	{GroupKind: KindServiceRole, versions: []string{"v1alpha1"}, newSpec: newStruct[legacy.ServiceRole], validate: validateServiceRole},
	{GroupKind: KindServiceRoleBinding, versions: []string{"v1alpha1"}, newSpec: newStruct[legacy.ServiceRoleBinding], validate: validateServiceRoleBinding},
	{GroupKind: KindRbacConfig, versions: []string{"v1alpha1"}, newSpec: newStruct[legacy.RbacConfig], validate: validateRbacConfig},
	{GroupKind: KindClusterRbacConfig, versions: []string{"v1alpha1"}, clusterScoped: true, newSpec: newStruct[legacy.RbacConfig], validate: validateClusterRbacConfig},
	{GroupKind: KindPolicy, versions: []string{"v1alpha1"}, newSpec: newStruct[legacy.AuthenticationPolicy], validate: validateAuthenticationPolicy},
	{GroupKind: KindMeshPolicy, versions: []string{"v1alpha1"}, clusterScoped: true, newSpec: newStruct[legacy.AuthenticationPolicy], validate: validateMeshPolicy},
	{GroupKind: KindNamespace, versions: []string{"v1"}, clusterScoped: true, wholeObject: true, newSpec: newStruct[kubeobj.Namespace], validate: validateNamespace},
	{GroupKind: KindServiceAccount, versions: []string{"v1"}, wholeObject: true, newSpec: newStruct[kubeobj.ServiceAccount], validate: validateNothing},
	{GroupKind: KindService, versions: []string{"v1"}, wholeObject: true, newSpec: newStruct[kubeobj.Service], validate: validateService},
	{GroupKind: KindPod, versions: []string{"v1"}, wholeObject: true, newSpec: newStruct[kubeobj.Pod], validate: validatePod},
	{GroupKind: KindDeployment, versions: []string{"v1", "v1beta2", "v1beta1"}, wholeObject: true, newSpec: newStruct[kubeobj.Workload], validate: validateWorkloadController},
	{GroupKind: KindStatefulSet, versions: []string{"v1", "v1beta2", "v1beta1"}, wholeObject: true, newSpec: newStruct[kubeobj.Workload], validate: validateWorkloadController},
	{GroupKind: KindDaemonSet, versions: []string{"v1", "v1beta2"}, wholeObject: true, newSpec: newStruct[kubeobj.Workload], validate: validateWorkloadController},
	{GroupKind: KindReplicaSet, versions: []string{"v1", "v1beta2"}, wholeObject: true, newSpec: newStruct[kubeobj.Workload], validate: validateWorkloadController},
}

// extensionsAliases are pre-apps/v1 groups that old manifests (the Istio
// 1.0 bookinfo among them) still use for Deployment and friends.
var extensionsAliases = map[string]string{GroupExtensions: GroupApps}

// ignoredIstioKinds are Istio kinds Garrison does not act on. A directory
// that holds them is still valid: they are reported as warnings and skipped,
// while an unknown kind in an Istio group (a typo) is an error.
var ignoredIstioKinds = map[GroupKind]bool{
	{GroupNetworking, "EnvoyFilter"}:      true,
	{GroupNetworking, "WorkloadGroup"}:    true,
	{GroupNetworking, "ProxyConfig"}:      true,
	{"telemetry.istio.io", "Telemetry"}:   true,
	{"extensions.istio.io", "WasmPlugin"}: true,
	{GroupRBAC, "AuthorizationPolicy"}:    true, // Istio 1.2's hidden "v2" RBAC, superseded by security.istio.io
}

// istioGroups are the groups in which an unknown kind is an error.
var istioGroups = map[string]bool{
	GroupNetworking: true, GroupSecurity: true, GroupRBAC: true, GroupAuthentication: true,
}

var kindsByGroupKind = func() map[GroupKind]*kindInfo {
	m := make(map[GroupKind]*kindInfo, len(kinds))
	for _, k := range kinds {
		m[k.GroupKind] = k
	}
	return m
}()

func (k *kindInfo) servesVersion(v string) bool { return slices.Contains(k.versions, v) }

// Kinds lists every kind Garrison reads, in a stable order.
func Kinds() []GroupKind {
	out := make([]GroupKind, len(kinds))
	for i, k := range kinds {
		out[i] = k.GroupKind
	}
	return out
}

// ClusterScoped reports whether resources of kind gk have no namespace.
func ClusterScoped(gk GroupKind) bool {
	k, ok := kindsByGroupKind[gk]
	return ok && k.clusterScoped
}

func newProto[T any, P interface {
	*T
	proto.Message
}]() any {
	return P(new(T))
}

func newStruct[T any]() any { return new(T) }
