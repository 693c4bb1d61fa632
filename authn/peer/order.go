package peer

import (
	"cmp"

	"github.com/garrison-mesh/garrison/policies"
)

// compareAge orders resources oldest first: the oldest resource of a scope
// decides, in Istio (ComposePeerAuthentication keeps the config whose
// CreationTimestamp is strictly Before the others, over a list that
// sortConfigByCreationTime in pilot/pkg/model has ordered by
// creationTimestamp, then name, then namespace).
//
// Garrison adds its file order between the two: resources read from files
// usually carry no creationTimestamp, and `kubectl apply -f DIR` would have
// created them file by file in path order and document by document within
// a file, which is what users of a config directory expect to decide. So
// equal timestamps are broken by Source.File, then Source.Seq (document
// order), and only then by name and namespace as in Istio. Resources from a
// source without files (equal File and Seq) keep Istio's order exactly.
func compareAge(a, b *policies.Resource) int {
	return cmp.Or(
		a.CreationTimestamp.Compare(b.CreationTimestamp),
		cmp.Compare(a.Source.File, b.Source.File),
		cmp.Compare(a.Source.Seq, b.Source.Seq),
		cmp.Compare(a.Name, b.Name),
		cmp.Compare(a.Namespace, b.Namespace),
	)
}

// selects reports whether labels carry every key/value of sel, as Istio's
// labels.Instance.SubsetOf does.
func selects(sel, labels map[string]string) bool {
	if len(sel) > len(labels) {
		return false
	}
	for k, v := range sel {
		if got, ok := labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}
