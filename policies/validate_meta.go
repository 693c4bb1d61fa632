package policies

import (
	"regexp"
	"strings"

	"github.com/garrison-mesh/garrison/policies/kubeobj"
)

// Name and label rules are Kubernetes' (apimachinery's validation package),
// restated here because the model must not import k8s.io.
var (
	dns1123LabelRE     = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
	dns1123SubdomainRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)
	qualifiedNameRE    = regexp.MustCompile(`^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$`)
	labelValueRE       = regexp.MustCompile(`^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$`)
)

// IsDNS1123Label reports a valid DNS-1123 label (namespaces, port names).
func IsDNS1123Label(s string) bool { return len(s) <= 63 && dns1123LabelRE.MatchString(s) }

// IsDNS1123Subdomain reports a valid DNS-1123 subdomain (object names).
func IsDNS1123Subdomain(s string) bool { return len(s) <= 253 && dns1123SubdomainRE.MatchString(s) }

// validateMeta checks name, namespace, labels and annotations.
func validateMeta(c *check, info *kindInfo, r *Resource) {
	const md FieldPath = "metadata"
	switch {
	case r.GenerateName != "" && r.Name == "":
		c.errorf(md.Field("generateName"), "generateName is not supported: give the resource a name")
	case r.Name == "":
		c.errorf(md.Field("name"), "name is required")
	case !IsDNS1123Subdomain(r.Name):
		c.errorf(md.Field("name"), "name %q must be a lowercase RFC 1123 subdomain (a-z, 0-9, '-' and '.', at most 253 characters)", r.Name)
	}
	if !info.clusterScoped && !IsDNS1123Label(r.Namespace) {
		c.errorf(md.Field("namespace"), "namespace %q must be a lowercase RFC 1123 label (a-z, 0-9 and '-', at most 63 characters)", r.Namespace)
	}
	validateLabels(c, md.Field("labels"), r.Labels)
	for k := range r.Annotations {
		if err := qualifiedNameError(k); err != "" {
			c.errorf(md.Field("annotations").Key(k), "annotation key %s", err)
		}
	}
}

// validateLabels checks label keys and values as Kubernetes does.
func validateLabels(c *check, p FieldPath, labels map[string]string) {
	for k, v := range labels {
		if err := qualifiedNameError(k); err != "" {
			c.errorf(p.Key(k), "label key %s", err)
		}
		if len(v) > 63 || !labelValueRE.MatchString(v) {
			c.errorf(p.Key(k), "label value %q must be at most 63 characters of a-z, A-Z, 0-9, '-', '_' or '.', starting and ending with an alphanumeric character", v)
		}
	}
}

// qualifiedNameError explains why k is not a valid [prefix/]name key, or
// returns "".
func qualifiedNameError(k string) string {
	prefix, name, found := strings.Cut(k, "/")
	if !found {
		name, prefix = prefix, ""
	}
	if found && (prefix == "" || !IsDNS1123Subdomain(prefix)) {
		return "\"" + k + "\" must have a DNS subdomain prefix before '/'"
	}
	if name == "" || len(name) > 63 || !qualifiedNameRE.MatchString(name) {
		return "\"" + k + "\" must be a name of at most 63 characters of a-z, A-Z, 0-9, '-', '_' or '.', starting and ending with an alphanumeric character"
	}
	return ""
}

func validateNothing(*check, *Resource) {}

func validateNamespace(c *check, r *Resource) {
	if !IsDNS1123Label(r.Name) {
		c.errorf("metadata.name", "namespace name %q must be a lowercase RFC 1123 label", r.Name)
	}
}

func validateService(c *check, r *Resource) {
	svc := r.Spec.(*kubeobj.Service)
	validateLabels(c, "spec.selector", svc.Spec.Selector)
	if !IsDNS1123Label(r.Name) {
		c.errorf("metadata.name", "service name %q must be a lowercase RFC 1123 label", r.Name)
	}
	names := map[string]bool{}
	for i, port := range svc.Spec.Ports {
		pp := FieldPath("spec.ports").Index(i)
		if port.Port < 1 || port.Port > 65535 {
			c.errorf(pp.Field("port"), "port must be between 1 and 65535, got %d", port.Port)
		}
		if len(svc.Spec.Ports) > 1 && port.Name == "" {
			c.errorf(pp.Field("name"), "a name is required when a Service has more than one port")
		}
		if port.Name != "" {
			if names[port.Name] {
				c.errorf(pp.Field("name"), "duplicate port name %q", port.Name)
			}
			names[port.Name] = true
		}
		if !port.TargetPort.IsStr && (port.TargetPort.IntVal < 0 || port.TargetPort.IntVal > 65535) {
			c.errorf(pp.Field("targetPort"), "targetPort must be between 1 and 65535, got %d", port.TargetPort.IntVal)
		}
	}
}

func validatePod(c *check, r *Resource) {
	pod := r.Spec.(*kubeobj.Pod)
	validatePodSpec(c, "spec", &pod.Spec)
}

func validateWorkloadController(c *check, r *Resource) {
	w := r.Spec.(*kubeobj.Workload)
	const tmpl FieldPath = "spec.template"
	validateLabels(c, tmpl.Field("metadata").Field("labels"), w.Spec.Template.Metadata.Labels)
	if sel := w.Spec.Selector; sel != nil {
		for k, v := range sel.MatchLabels {
			if got, ok := w.Spec.Template.Metadata.Labels[k]; !ok || got != v {
				c.errorf(FieldPath("spec.selector.matchLabels").Key(k), "selector %s=%s does not match the template's labels", k, v)
			}
		}
	}
	validatePodSpec(c, tmpl.Field("spec"), &w.Spec.Template.Spec)
}

func validatePodSpec(c *check, p FieldPath, spec *kubeobj.PodSpec) {
	if sa := spec.ServiceAccountName; sa != "" && !IsDNS1123Subdomain(sa) {
		c.errorf(p.Field("serviceAccountName"), "service account name %q must be a lowercase RFC 1123 subdomain", sa)
	}
	for i, ctr := range spec.Containers {
		for j, port := range ctr.Ports {
			if port.ContainerPort < 1 || port.ContainerPort > 65535 {
				c.errorf(p.Field("containers").Index(i).Field("ports").Index(j).Field("containerPort"),
					"containerPort must be between 1 and 65535, got %d", port.ContainerPort)
			}
		}
	}
}
