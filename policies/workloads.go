package policies

import (
	"cmp"
	"slices"
	"strconv"
	"strings"

	networking "istio.io/api/networking/v1alpha3"

	"github.com/garrison-mesh/garrison/policies/kubeobj"
)

// Workload is one thing that runs a proxy (or a proxyless gRPC client):
// a Pod, the pods of a Deployment-like controller, or a WorkloadEntry.
type Workload struct {
	// Kind and Name are those of the resource that declared it.
	Kind           GroupKind
	Namespace      string
	Name           string
	Labels         map[string]string
	ServiceAccount string
	// Addresses are known only for Pods with a status and WorkloadEntries.
	Addresses []string
	Source    *Resource
}

// SPIFFEID is the identity the CA issues to the workload.
func (w *Workload) SPIFFEID(trustDomain string) string {
	return "spiffe://" + trustDomain + "/ns/" + w.Namespace + "/sa/" + w.ServiceAccount
}

// Service is a named destination: a Kubernetes Service or a host of a
// ServiceEntry.
type Service struct {
	Hostname  string
	Namespace string
	Name      string
	Ports     []ServicePort
	// Selector picks the workloads behind the service; nil for a
	// ServiceEntry with static endpoints or none.
	Selector  map[string]string
	Addresses []string
	// External is true for ServiceEntry hosts with location MESH_EXTERNAL.
	External bool
	Source   *Resource
}

// ServicePort is one port of a Service.
type ServicePort struct {
	Name       string
	Number     uint32
	Protocol   string
	TargetPort string
}

// Workloads returns every workload, by namespace and name.
func (s *Snapshot) Workloads() []*Workload { return s.workloads }

// Services returns every service, by hostname.
func (s *Snapshot) Services() []*Service { return s.services }

// Service returns the service with a fully qualified hostname, or nil.
func (s *Snapshot) Service(hostname string) *Service { return s.svcByHost[hostname] }

// ServicesOf returns the services whose selector picks w.
func (s *Snapshot) ServicesOf(w *Workload) []*Service {
	var out []*Service
	for _, svc := range s.services {
		if svc.Namespace == w.Namespace && svc.Selector != nil && selectorMatches(svc.Selector, w.Labels) {
			out = append(out, svc)
		}
	}
	return out
}

// WorkloadsOf returns the workloads behind svc.
func (s *Snapshot) WorkloadsOf(svc *Service) []*Workload {
	if svc.Selector == nil {
		return nil
	}
	var out []*Workload
	for _, w := range s.workloads {
		if w.Namespace == svc.Namespace && selectorMatches(svc.Selector, w.Labels) {
			out = append(out, w)
		}
	}
	return out
}

func (s *Snapshot) buildWorkloads() {
	for _, r := range s.resources {
		switch spec := r.Spec.(type) {
		case *kubeobj.Pod:
			w := &Workload{Kind: r.Kind, Namespace: r.Namespace, Name: r.Name, Labels: r.Labels,
				ServiceAccount: spec.Spec.ServiceAccountOrDefault(), Source: r}
			for _, ip := range spec.Status.PodIPs {
				w.Addresses = append(w.Addresses, ip.IP)
			}
			if len(w.Addresses) == 0 && spec.Status.PodIP != "" {
				w.Addresses = []string{spec.Status.PodIP}
			}
			s.workloads = append(s.workloads, w)
		case *kubeobj.Workload:
			s.workloads = append(s.workloads, &Workload{Kind: r.Kind, Namespace: r.Namespace, Name: r.Name,
				Labels: spec.Spec.Template.Metadata.Labels, ServiceAccount: spec.Spec.Template.Spec.ServiceAccountOrDefault(), Source: r})
		case *networking.WorkloadEntry:
			w := &Workload{Kind: r.Kind, Namespace: r.Namespace, Name: r.Name, Labels: spec.GetLabels(),
				ServiceAccount: cmp.Or(spec.GetServiceAccount(), "default"), Source: r}
			if a := spec.GetAddress(); a != "" {
				w.Addresses = []string{a}
			}
			s.workloads = append(s.workloads, w)
		}
	}
	slices.SortFunc(s.workloads, func(a, b *Workload) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name), cmp.Compare(a.Kind.Kind, b.Kind.Kind))
	})
}

func (s *Snapshot) buildServices() {
	add := func(svc *Service) {
		if _, dup := s.svcByHost[svc.Hostname]; dup {
			return // the first declaration wins, as resources are ordered
		}
		s.svcByHost[svc.Hostname] = svc
		s.services = append(s.services, svc)
	}
	for _, r := range s.byKind[KindService] {
		spec := r.Spec.(*kubeobj.Service)
		svc := &Service{Hostname: s.FQDN(r.Name, r.Namespace), Namespace: r.Namespace, Name: r.Name,
			Selector: spec.Spec.Selector, Source: r}
		if ip := spec.Spec.ClusterIP; ip != "" && ip != "None" {
			svc.Addresses = []string{ip}
		}
		for _, p := range spec.Spec.Ports {
			svc.Ports = append(svc.Ports, ServicePort{Name: p.Name, Number: uint32(p.Port),
				Protocol: cmp.Or(p.AppProtocol, protocolFromPortName(p.Name), p.Protocol), TargetPort: p.TargetPort.String()})
		}
		add(svc)
	}
	for _, r := range s.byKind[KindServiceEntry] {
		spec := r.Spec.(*networking.ServiceEntry)
		var sel map[string]string
		if ws := spec.GetWorkloadSelector(); ws != nil {
			sel = ws.GetLabels()
		}
		for _, h := range spec.GetHosts() {
			svc := &Service{Hostname: h, Namespace: r.Namespace, Name: r.Name, Selector: sel,
				Addresses: spec.GetAddresses(), External: spec.GetLocation() == networking.ServiceEntry_MESH_EXTERNAL, Source: r}
			for _, p := range spec.GetPorts() {
				svc.Ports = append(svc.Ports, ServicePort{Name: p.GetName(), Number: p.GetNumber(),
					Protocol: p.GetProtocol(), TargetPort: strconv.FormatUint(uint64(cmp.Or(p.GetTargetPort(), p.GetNumber())), 10)})
			}
			add(svc)
		}
	}
	slices.SortFunc(s.services, func(a, b *Service) int { return cmp.Compare(a.Hostname, b.Hostname) })
}

// protocolFromPortName applies Istio's port naming convention: "http-web"
// and "grpc" declare the protocol by their prefix.
func protocolFromPortName(name string) string {
	prefix, _, _ := strings.Cut(name, "-")
	switch p := strings.ToUpper(prefix); p {
	case "HTTP", "HTTP2", "HTTPS", "GRPC", "GRPC-WEB", "TCP", "TLS", "MONGO", "REDIS", "MYSQL":
		return p
	}
	return ""
}
