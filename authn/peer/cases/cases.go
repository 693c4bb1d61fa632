// Package cases is the YAML format of peer mTLS behaviour cases: a set of
// resources, and for workloads and ports the mode expected and the
// resource that must decide it. Garrison's own tests run them against
// authn/peer; a conformance runner can feed the same files to any
// implementation and compare its answers (see ../testdata/README.md).
//
//	# precedence.yaml
//	- name: workload policy beats namespace policy
//	  resources: |
//	    apiVersion: security.istio.io/v1
//	    kind: PeerAuthentication
//	    ...
//	  queries:
//	  - {namespace: foo, labels: {app: a}, port: 8080, mode: STRICT, scope: workload, by: PeerAuthentication foo/a}
package cases

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/garrison-mesh/garrison/authn/peer"
	"github.com/garrison-mesh/garrison/policies"
)

// Case is one mesh configuration and the answers expected of it.
type Case struct {
	Name string `yaml:"name"`
	// Source says where a case derived from someone else's data comes
	// from (an Istio file or function), for whoever checks it.
	Source string `yaml:"source,omitempty"`
	// RootNamespace is the mesh's root namespace; istio-system if empty.
	RootNamespace string `yaml:"rootNamespace,omitempty"`
	// Resources is a multi-document YAML file of the mesh's resources,
	// read as resources.yaml.
	Resources string `yaml:"resources"`
	// Files are further resource files by name, read in name order: file
	// order breaks ties between equally old resources.
	Files map[string]string `yaml:"files,omitempty"`
	// IstioFiles are further resource files, relative to
	// shared/conformance/istio, read after Resources.
	IstioFiles []string `yaml:"istioFiles,omitempty"`
	Queries    []Query  `yaml:"queries"`
	// Line is where the case starts in its file.
	Line int `yaml:"-"`
}

// Query is one workload port and the answer expected for it.
type Query struct {
	// Namespace and Labels describe the workload, or Workload names one of
	// the snapshot's workloads as namespace/name (ForWorkload).
	Namespace string            `yaml:"namespace,omitempty"`
	Labels    map[string]string `yaml:"labels,omitempty"`
	Workload  string            `yaml:"workload,omitempty"`
	// Port is the workload (target) port; 0 asks for the default.
	Port uint32 `yaml:"port,omitempty"`

	// Mode is STRICT, PERMISSIVE or DISABLE.
	Mode string `yaml:"mode"`
	// By is the deciding resource, "Kind namespace/name" ("MeshPolicy
	// default"); empty means none decided (Istio's default). Always checked.
	By string `yaml:"by,omitempty"`
	// Scope, when set, is checked: default, mesh, namespace, service,
	// workload or port.
	Scope string `yaml:"scope,omitempty"`
	// Ports, when set, are exactly the workload's port exceptions
	// (Modes.Workload) with their modes.
	Ports map[uint32]string `yaml:"ports,omitempty"`

	Line int `yaml:"-"`
}

// Decode reads a YAML list of cases, rejecting unknown fields.
func Decode(data []byte) ([]Case, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var out []Case
	if err := dec.Decode(&out); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	// Lines, for failure messages, from the node tree.
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err == nil && len(doc.Content) == 1 {
		for i, n := range doc.Content[0].Content {
			if i >= len(out) {
				break
			}
			out[i].Line = n.Line
			if q := mappingValue(n, "queries"); q != nil {
				for j, qn := range q.Content {
					if j < len(out[i].Queries) {
						out[i].Queries[j].Line = qn.Line
					}
				}
			}
		}
	}
	seen := map[string]bool{}
	for _, c := range out {
		switch {
		case c.Name == "":
			return nil, fmt.Errorf("line %d: a case needs a name", c.Line)
		case seen[c.Name]:
			return nil, fmt.Errorf("line %d: duplicate case name %q", c.Line, c.Name)
		case len(c.Queries) == 0:
			return nil, fmt.Errorf("line %d: case %q has no queries", c.Line, c.Name)
		}
		seen[c.Name] = true
		for _, q := range c.Queries {
			if _, ok := peer.ParseMode(q.Mode); !ok {
				return nil, fmt.Errorf("line %d: mode %q: want STRICT, PERMISSIVE or DISABLE", q.Line, q.Mode)
			}
			if _, ok := peer.ParseScope(q.Scope); q.Scope != "" && !ok {
				return nil, fmt.Errorf("line %d: unknown scope %q", q.Line, q.Scope)
			}
			if (q.Workload == "") == (q.Namespace == "") {
				return nil, fmt.Errorf("line %d: a query names a workload, or a namespace (and labels)", q.Line)
			}
		}
	}
	return out, nil
}

func mappingValue(n *yaml.Node, key string) *yaml.Node {
	if n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

// Snapshot parses the case's resources with Garrison's own parser and
// builds the snapshot; istioDir is shared/conformance/istio, needed only by
// cases with IstioFiles. Any error the parser reports fails the case:
// cases must be valid configuration.
func (c *Case) Snapshot(istioDir string) (*policies.Snapshot, error) {
	rs, problems := policies.Parse("resources.yaml", []byte(c.Resources))
	names := slices.Sorted(maps.Keys(c.Files))
	for _, name := range names {
		more, p := policies.Parse(name, []byte(c.Files[name]))
		rs, problems = append(rs, more...), append(problems, p...)
	}
	for _, f := range c.IstioFiles {
		data, err := os.ReadFile(filepath.Join(istioDir, f))
		if err != nil {
			return nil, fmt.Errorf("reading Istio data (shared/conformance/istio beside the repository): %w", err)
		}
		more, p := policies.Parse(f, data)
		rs, problems = append(rs, more...), append(problems, p...)
	}
	snap, p := policies.NewSnapshot(1, rs, policies.SnapshotOptions{RootNamespace: c.RootNamespace})
	if errs := append(problems, p...).Errors(); len(errs) > 0 {
		return nil, fmt.Errorf("invalid resources: %v", errs)
	}
	return snap, nil
}

// Run asks m every query and returns one error per wrong answer. It also
// checks that For and Workload agree, since the xDS plane uses one and
// explain the other.
func (c *Case) Run(m *peer.Modes, snap *policies.Snapshot) []error {
	var errs []error
	for _, q := range c.Queries {
		fail := func(format string, args ...any) {
			errs = append(errs, fmt.Errorf("line %d: %s", q.Line, fmt.Sprintf(format, args...)))
		}
		ns, labels := q.Namespace, q.Labels
		var got peer.Effective
		if q.Workload != "" {
			w := findWorkload(snap, q.Workload)
			if w == nil {
				fail("no workload %s in the snapshot", q.Workload)
				continue
			}
			ns, labels = w.Namespace, w.Labels
			got = m.ForWorkload(w, q.Port)
		} else {
			got = m.For(ns, labels, q.Port)
		}
		if got.Mode.String() != q.Mode {
			fail("mode %s, want %s (%s)", got.Mode, q.Mode, got)
		}
		if got.Mode == peer.Strict && !m.AnyStrict() {
			fail("mode STRICT, but AnyStrict says no port can be")
		}
		if got.By() != q.By {
			fail("decided by %q, want %q (%s)", got.By(), q.By, got)
		}
		if q.Scope != "" && got.Scope.String() != q.Scope {
			fail("scope %s, want %s (%s)", got.Scope, q.Scope, got)
		}
		wm := m.Workload(ns, labels)
		if q.Workload == "" {
			if at := wm.At(q.Port); at.Mode != got.Mode || at.Resource != got.Resource || at.Scope != got.Scope {
				fail("Workload(...).At(%d) = %s, but For = %s", q.Port, at, got)
			}
		}
		if q.Ports != nil {
			gotPorts := map[uint32]string{}
			for p, e := range wm.Ports {
				gotPorts[p] = e.Mode.String()
			}
			if !mapsEqual(gotPorts, q.Ports) {
				fail("port exceptions %v, want %v", describePorts(gotPorts), describePorts(q.Ports))
			}
		}
	}
	return errs
}

func findWorkload(snap *policies.Snapshot, nsName string) *policies.Workload {
	ns, name, _ := strings.Cut(nsName, "/")
	for _, w := range snap.Workloads() {
		if w.Namespace == ns && w.Name == name {
			return w
		}
	}
	return nil
}

func mapsEqual(a, b map[uint32]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func describePorts(m map[uint32]string) string {
	keys := make([]uint32, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%d:%s", k, m[k])
	}
	return "{" + strings.Join(parts, " ") + "}"
}
