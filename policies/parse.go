package policies

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"regexp"
	"strconv"
	"strings"

	"google.golang.org/protobuf/proto"
	"gopkg.in/yaml.v3"
)

// DefaultNamespace is the namespace of a namespaced resource written
// without one, as kubectl would apply it.
const DefaultNamespace = "default"

// Parse reads every document of a multi-document YAML or JSON file (and the
// items of a Kubernetes List) into validated resources. It returns the
// resources that are valid and every problem found, errors and warnings,
// each naming file, line, resource and field. A resource with an error is
// never returned. file is used only to name the source in results.
func Parse(file string, data []byte) ([]*Resource, Problems) {
	p := &parser{file: file}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var doc yaml.Node
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			p.problems = append(p.problems, syntaxProblem(file, err))
			break
		}
		// A document holding only comments, or the empty one after a
		// trailing "---", is skipped, as kubectl does.
		if len(doc.Content) == 0 || isNull(deref(doc.Content[0])) {
			continue
		}
		p.object(doc.Content[0])
	}
	return p.resources, p.problems
}

type parser struct {
	file      string
	resources []*Resource
	problems  Problems
	seq       int
}

var yamlLine = regexp.MustCompile(`^yaml: (?:line (\d+): )?`)

// syntaxProblem turns a yaml.v3 error into a located Problem.
func syntaxProblem(file string, err error) *Problem {
	msg := err.Error()
	line := 0
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = msg[len(m[0]):]
	}
	return &Problem{File: file, Line: line, Message: "invalid YAML: " + msg, Severity: SeverityError}
}

func (p *parser) problem(n *yaml.Node, kind, ns, name string, field FieldPath, sev Severity, format string, args ...any) {
	p.problems = append(p.problems, &Problem{File: p.file, Line: lineOf(n, field), Kind: kind, Namespace: ns,
		Name: name, Field: field.String(), Message: fmt.Sprintf(format, args...), Severity: sev})
}

// object reads one top-level object.
func (p *parser) object(root *yaml.Node) {
	root = deref(root)
	if root.Kind != yaml.MappingNode {
		p.problem(root, "", "", "", "", SeverityError, "a document must be an object with apiVersion and kind, got %s", describe(root))
		return
	}
	apiVersion := scalarString(lookup(root, "apiVersion"))
	kind := scalarString(lookup(root, "kind"))
	name := scalarString(lookup(lookup(root, "metadata"), "name"))
	ns := scalarString(lookup(lookup(root, "metadata"), "namespace"))
	switch {
	case apiVersion == "" && kind == "":
		p.problem(root, "", ns, name, "", SeverityError, "missing apiVersion and kind")
		return
	case apiVersion == "":
		p.problem(root, kind, ns, name, "apiVersion", SeverityError, "missing apiVersion")
		return
	case kind == "":
		p.problem(root, "", ns, name, "kind", SeverityError, "missing kind")
		return
	}
	group, version := splitAPIVersion(apiVersion)
	if kind == "List" && group == "" {
		p.list(root)
		return
	}
	gk := GroupKind{Group: group, Kind: kind}
	if alias, ok := extensionsAliases[group]; ok {
		gk.Group = alias
	}
	info, ok := kindsByGroupKind[gk]
	if !ok {
		switch {
		case ignoredIstioKinds[gk]:
			p.problem(root, kind, ns, name, "kind", SeverityWarning, "%s is not used by Garrison; skipped", gk)
		case istioGroups[group]:
			p.problem(root, kind, ns, name, "kind", SeverityError, "unknown kind %q in %s; Garrison reads %s", kind, group, strings.Join(kindNamesIn(group), ", "))
		default:
			p.problem(root, kind, ns, name, "kind", SeverityWarning, "%s (%s) is not used by Garrison; skipped", kind, apiVersion)
		}
		return
	}
	if !info.servesVersion(version) {
		p.problem(root, kind, ns, name, "apiVersion", SeverityError, "%s is not served for %s; use %s/%s",
			apiVersion, kind, groupPrefix(group), strings.Join(info.versions, " or "+groupPrefix(group)))
		return
	}
	p.seq++
	r := &Resource{Kind: info.GroupKind, APIVersion: apiVersion, Source: Source{File: p.file, Line: root.Line, Seq: p.seq}}
	c := &check{}
	p.decode(c, info, root, r)
	if !c.failed() {
		validateMeta(c, info, r)
		info.validate(c, r)
	}
	failed := false
	for _, is := range c.issues {
		failed = failed || is.severity == SeverityError
		p.problems = append(p.problems, &Problem{File: p.file, Line: lineOf(root, is.path), Kind: kind,
			Namespace: r.Namespace, Name: r.Name, Field: is.path.String(), Message: is.message, Severity: is.severity})
	}
	if !failed {
		p.resources = append(p.resources, r)
	}
}

func (p *parser) decode(c *check, info *kindInfo, root *yaml.Node, r *Resource) {
	structDecoder{c: c}.decode(lookup(root, "metadata"), reflect.ValueOf(&r.Meta).Elem(), "metadata")
	if !info.clusterScoped && r.Namespace == "" {
		r.Namespace = DefaultNamespace
	}
	if info.clusterScoped {
		// kubectl ignores the namespace of a cluster-scoped object; Istio's
		// own examples put ClusterRbacConfig in istio-system.
		r.Namespace = ""
	}
	spec := info.newSpec()
	r.Spec = spec
	if info.wholeObject {
		structDecoder{c: c}.decode(root, reflect.ValueOf(spec).Elem(), "")
		return
	}
	eachPair(root, func(k, v *yaml.Node) {
		switch k.Value {
		case "apiVersion", "kind", "metadata", "status":
		case "spec":
			if m, ok := spec.(proto.Message); ok {
				decodeProto(c, v, m.ProtoReflect(), "spec")
			} else {
				structDecoder{c: c, strict: true}.decode(v, reflect.ValueOf(spec).Elem(), "spec")
			}
		default:
			c.errorf(FieldPath(k.Value), "unknown field %q: a %s has apiVersion, kind, metadata and spec", k.Value, info.Kind)
		}
	})
}

// list reads the items of a v1 List, as kubectl get -o yaml writes them.
func (p *parser) list(root *yaml.Node) {
	items := deref(lookup(root, "items"))
	if isNull(items) {
		return
	}
	if items.Kind != yaml.SequenceNode {
		p.problem(root, "List", "", "", "items", SeverityError, "items must be a list, got %s", describe(items))
		return
	}
	for _, item := range items.Content {
		p.object(item)
	}
}

func splitAPIVersion(s string) (group, version string) {
	if i := strings.LastIndexByte(s, '/'); i >= 0 {
		return s[:i], s[i+1:]
	}
	return "", s
}

func groupPrefix(group string) string {
	if group == "" {
		return ""
	}
	return group + "/"
}

func kindNamesIn(group string) []string {
	var out []string
	for _, k := range kinds {
		if k.Group == group {
			out = append(out, k.Kind)
		}
	}
	return out
}

func scalarString(n *yaml.Node) string {
	n = deref(n)
	if n == nil || n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		return ""
	}
	return n.Value
}
