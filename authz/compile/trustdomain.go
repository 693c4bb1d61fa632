package compile

import (
	"slices"
	"strings"
)

// trustDomainBundle is the mesh's trust domain and its aliases, first the
// trust domain itself. It rewrites the principals of policies as Istio's
// pilot/pkg/security/trustdomain.Bundle does, so that a policy written for
// one trust domain keeps working while a mesh migrates to another: a
// principal naming the trust domain, an alias, or "cluster.local" (which
// stands for the local trust domain) is expanded to every one of them.
type trustDomainBundle struct {
	trustDomains []string
}

// tdClusterLocal is the trust domain that, written in a policy, always means
// the local one.
const tdClusterLocal = "cluster.local"

func newTrustDomainBundle(trustDomain string, aliases []string) trustDomainBundle {
	return trustDomainBundle{trustDomains: slices.Concat([]string{trustDomain}, aliases)}
}

// replaceTrustDomainAliases returns principals with each one that names a
// trust domain of the bundle expanded to all of them.
func (b trustDomainBundle) replaceTrustDomainAliases(principals []string) []string {
	out := make([]string, 0, len(principals))
	for _, p := range principals {
		parts := strings.Split(p, "/")
		// "<td>/ns/<ns>/sa/<sa>" only; "*" as trust domain matches any.
		if len(parts) != 5 || parts[0] == "*" {
			out = append(out, p)
			continue
		}
		td := parts[0]
		if !tdListMatch(td, b.trustDomains) && td != tdClusterLocal {
			out = append(out, p)
			continue
		}
		var expanded []string
		for _, alias := range b.trustDomains {
			np := p
			// "*local" matching an alias keeps the principal as written.
			if !tdSuffixMatch(alias, td) {
				np = alias + "/" + strings.Join(parts[1:], "/")
			}
			if !slices.Contains(expanded, np) {
				expanded = append(expanded, np)
			}
		}
		out = append(out, expanded...)
	}
	return out
}

// tdListMatch reports whether a matches an entry of list, either side being
// a pattern (exact, "*", "prefix*", "*suffix").
func tdListMatch(a string, list []string) bool {
	for _, s := range list {
		if a == s || s == "*" || tdPrefixMatch(a, s) || tdPrefixMatch(s, a) || tdSuffixMatch(a, s) || tdSuffixMatch(s, a) {
			return true
		}
	}
	return false
}

func tdPrefixMatch(a, pattern string) bool {
	rest, ok := strings.CutSuffix(pattern, "*")
	return ok && strings.HasPrefix(a, rest)
}

func tdSuffixMatch(a, pattern string) bool {
	rest, ok := strings.CutPrefix(pattern, "*")
	return ok && strings.HasSuffix(a, rest)
}
