package policies

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"strconv"

	"gopkg.in/yaml.v3"
	meshconfig "istio.io/api/mesh/v1alpha1"
)

// ParseMeshConfig reads Istio's MeshConfig as istiod reads its --meshConfig
// file (the "mesh" key of the istio ConfigMap): one YAML or JSON document,
// every field Istio knows accepted, unknown fields refused. Garrison acts on
// extensionProviders (the services CUSTOM AuthorizationPolicies delegate
// to); ParseMeshConfig validates those as Istio's webhook does, and each
// problem names the file, line and field.
func ParseMeshConfig(file string, data []byte) (*meshconfig.MeshConfig, Problems) {
	mc := &meshconfig.MeshConfig{}
	var doc yaml.Node
	err := yaml.NewDecoder(bytes.NewReader(data)).Decode(&doc)
	if errors.Is(err, io.EOF) {
		return mc, nil
	}
	if err != nil {
		return nil, Problems{syntaxProblem(file, err)}
	}
	if len(doc.Content) == 0 || isNull(deref(doc.Content[0])) {
		return mc, nil
	}
	root := doc.Content[0]
	c := &check{}
	decodeProto(c, root, mc.ProtoReflect(), "")
	if !c.failed() {
		validateExtensionProviders(c, mc)
	}
	var problems Problems
	for _, is := range c.issues {
		problems = append(problems, &Problem{File: file, Line: lineOf(root, is.path), Kind: "MeshConfig",
			Field: is.path.String(), Message: is.message, Severity: is.severity})
	}
	if len(problems.Errors()) > 0 {
		return nil, problems
	}
	return mc, problems
}

// validateExtensionProviders checks what Istio's ValidateMeshConfig checks
// of the ext_authz providers: unique names, a service and a valid port, a
// known status, and warns about what Garrison does not do.
func validateExtensionProviders(c *check, mc *meshconfig.MeshConfig) {
	seen := map[string]bool{}
	for i, p := range mc.GetExtensionProviders() {
		at := FieldPath("extensionProviders").Index(i)
		switch {
		case p.GetName() == "":
			c.errorf(at.Field("name"), "an extension provider needs a name")
		case seen[p.GetName()]:
			c.errorf(at.Field("name"), "duplicate extension provider name %q", p.GetName())
		}
		seen[p.GetName()] = true
		switch prov := p.GetProvider().(type) {
		case *meshconfig.MeshConfig_ExtensionProvider_EnvoyExtAuthzGrpc:
			g := prov.EnvoyExtAuthzGrpc
			at := at.Field("envoyExtAuthzGrpc")
			validateProviderService(c, at, g.GetService(), g.GetPort(), g.GetStatusOnError())
			if g.GetClearRouteCache() {
				c.warnf(at.Field("clearRouteCache"), "ignored: Garrison answers Envoy's ext_authz filter, which clears the route cache itself")
			}
		case *meshconfig.MeshConfig_ExtensionProvider_EnvoyExtAuthzHttp:
			h := prov.EnvoyExtAuthzHttp
			at := at.Field("envoyExtAuthzHttp")
			validateProviderService(c, at, h.GetService(), h.GetPort(), h.GetStatusOnError())
			if h.GetPathPrefix() != "" && h.GetPathPrefix()[0] != '/' {
				c.errorf(at.Field("pathPrefix"), "must start with \"/\", got %q", h.GetPathPrefix())
			}
			if h.GetClearRouteCache() {
				c.warnf(at.Field("clearRouteCache"), "ignored: Garrison answers Envoy's ext_authz filter, which clears the route cache itself")
			}
		}
	}
}

func validateProviderService(c *check, at FieldPath, service string, port uint32, statusOnError string) {
	if service == "" {
		c.errorf(at.Field("service"), "the provider's service is required")
	}
	if port == 0 || port > 65535 {
		c.errorf(at.Field("port"), "must be a port number 1-65535, got %d", port)
	}
	if statusOnError != "" {
		code, err := strconv.Atoi(statusOnError)
		if err != nil || http.StatusText(code) == "" || code < 200 {
			c.errorf(at.Field("statusOnError"), "must be an HTTP status code, got %q", statusOnError)
		}
	}
}
