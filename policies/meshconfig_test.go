package policies

import (
	"strings"
	"testing"
)

func TestParseMeshConfig(t *testing.T) {
	good := `# istiod's mesh.yaml
trustDomain: cluster.local
extensionProviders:
- name: ext-grpc
  envoyExtAuthzGrpc:
    service: ext-authz.foo.svc.cluster.local
    port: 9000
    timeout: 2s
    failOpen: true
- name: ext-http
  envoyExtAuthzHttp:
    service: foo/ext-authz-http.foo.svc.cluster.local
    port: 8000
    pathPrefix: /check
    includeRequestHeadersInCheck: ["x-ext-authz"]
    statusOnError: "503"
- name: tracer
  zipkin: {service: zipkin.istio-system.svc.cluster.local, port: 9411}
`
	mc, problems := ParseMeshConfig("mesh.yaml", []byte(good))
	if len(problems) != 0 || mc == nil {
		t.Fatalf("problems %v", problems)
	}
	if ps := mc.GetExtensionProviders(); len(ps) != 3 || ps[0].GetEnvoyExtAuthzGrpc().GetTimeout().AsDuration().Seconds() != 2 ||
		ps[1].GetEnvoyExtAuthzHttp().GetPathPrefix() != "/check" {
		t.Errorf("decoded %v", ps)
	}
	if mc, problems := ParseMeshConfig("empty.yaml", []byte("# nothing\n")); mc == nil || len(problems) != 0 {
		t.Errorf("empty file: %v %v", mc, problems)
	}

	for _, tc := range []struct {
		name, yaml, field, msg string
		line                   int
	}{
		{"unknown field", "extensionProviders:\n- name: a\n  envoyExtAuthzGrpc: {service: s, port: 1, failopen: true}\n",
			"extensionProviders[0].envoyExtAuthzGrpc.failopen", "unknown field", 3},
		{"duplicate name", "extensionProviders:\n- name: a\n  envoyExtAuthzGrpc: {service: s, port: 1}\n- name: a\n  envoyExtAuthzGrpc: {service: s, port: 1}\n",
			"extensionProviders[1].name", "duplicate", 4},
		{"no service", "extensionProviders:\n- name: a\n  envoyExtAuthzHttp: {port: 1}\n",
			"extensionProviders[0].envoyExtAuthzHttp.service", "required", 3},
		{"bad port", "extensionProviders:\n- name: a\n  envoyExtAuthzGrpc:\n    service: s\n    port: 70000\n",
			"extensionProviders[0].envoyExtAuthzGrpc.port", "1-65535", 5},
		{"bad status", "extensionProviders:\n- name: a\n  envoyExtAuthzGrpc:\n    service: s\n    port: 1\n    statusOnError: nope\n",
			"extensionProviders[0].envoyExtAuthzGrpc.statusOnError", "HTTP status", 6},
		{"relative path prefix", "extensionProviders:\n- name: a\n  envoyExtAuthzHttp:\n    service: s\n    port: 1\n    pathPrefix: check\n",
			"extensionProviders[0].envoyExtAuthzHttp.pathPrefix", "start with", 6},
		{"syntax", "extensionProviders: [\n", "", "invalid YAML", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mc, problems := ParseMeshConfig("mesh.yaml", []byte(tc.yaml))
			if mc != nil {
				t.Fatalf("accepted: %v", mc)
			}
			errs := problems.Errors()
			if len(errs) == 0 {
				t.Fatal("no error")
			}
			p := errs[0]
			if p.File != "mesh.yaml" || p.Field != tc.field || !strings.Contains(p.Message, tc.msg) || (tc.line != 0 && p.Line != tc.line) {
				t.Errorf("got %s (field %q line %d), want field %q line %d containing %q", p, p.Field, p.Line, tc.field, tc.line, tc.msg)
			}
		})
	}
}
