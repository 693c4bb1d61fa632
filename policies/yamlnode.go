package policies

import (
	"fmt"

	"gopkg.in/yaml.v3"
)

// deref follows YAML aliases (*anchor) to the node they name.
func deref(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n == nil || (n.Kind == yaml.ScalarNode && n.Tag == "!!null")
}

// eachPair calls fn for every key/value of a mapping node, expanding YAML
// merge keys (<<: *defaults) first so that explicit keys win, as in YAML.
func eachPair(n *yaml.Node, fn func(key, val *yaml.Node)) {
	n = deref(n)
	if !hasMergeKey(n) {
		for i := 0; i+1 < len(n.Content); i += 2 {
			fn(n.Content[i], n.Content[i+1])
		}
		return
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if k := n.Content[i]; !isMergeKey(k) {
			seen[k.Value] = true
		}
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if isMergeKey(k) {
			for _, src := range mergeSources(v) {
				eachPair(src, func(mk, mv *yaml.Node) {
					if !seen[mk.Value] {
						seen[mk.Value] = true
						fn(mk, mv)
					}
				})
			}
			continue
		}
		fn(k, v)
	}
}

func isMergeKey(k *yaml.Node) bool { return k.Tag == "!!merge" && k.Value == "<<" }

func hasMergeKey(n *yaml.Node) bool {
	for i := 0; i < len(n.Content); i += 2 {
		if isMergeKey(n.Content[i]) {
			return true
		}
	}
	return false
}

func mergeSources(v *yaml.Node) []*yaml.Node {
	v = deref(v)
	if v.Kind == yaml.SequenceNode {
		var out []*yaml.Node
		for _, item := range v.Content {
			if item = deref(item); item.Kind == yaml.MappingNode {
				out = append(out, item)
			}
		}
		return out
	}
	if v.Kind == yaml.MappingNode {
		return []*yaml.Node{v}
	}
	return nil
}

// lookup returns the value of key in mapping n, or nil.
func lookup(n *yaml.Node, key string) *yaml.Node {
	n = deref(n)
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	var found *yaml.Node
	eachPair(n, func(k, v *yaml.Node) {
		if found == nil && k.Value == key {
			found = v
		}
	})
	return found
}

// describe names a node's type for error messages.
func describe(n *yaml.Node) string {
	n = deref(n)
	switch n.Kind {
	case yaml.MappingNode:
		return "an object"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.Tag {
		case "!!null":
			return "null"
		case "!!bool":
			return "boolean " + n.Value
		case "!!int":
			return "integer " + n.Value
		case "!!float":
			return "number " + n.Value
		case "!!str":
			return fmt.Sprintf("string %q", truncate(n.Value, 40))
		}
		return n.Tag + " " + truncate(n.Value, 40)
	}
	return "an unexpected node"
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// lineOf resolves a FieldPath within doc to the line that best locates it:
// the line of the field itself, or of its deepest ancestor present in the
// document when the field is missing (a required field not written).
func lineOf(doc *yaml.Node, p FieldPath) int {
	n := deref(doc)
	line := n.Line
	for _, st := range p.steps() {
		var next *yaml.Node
		switch n.Kind {
		case yaml.MappingNode:
			eachPair(n, func(k, v *yaml.Node) {
				if next == nil && (k.Value == st.name || snakeToCamel(k.Value) == st.name) {
					// A missing or scalar value is best shown at its key.
					next = v
					if line = k.Line; line == 0 {
						line = v.Line
					}
				}
			})
		case yaml.SequenceNode:
			var i int
			if _, err := fmt.Sscan(st.name, &i); err == nil && i >= 0 && i < len(n.Content) {
				next = n.Content[i]
				line = next.Line
			}
		}
		if next == nil {
			return line
		}
		n = deref(next)
	}
	return line
}
