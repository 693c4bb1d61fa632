package extauthz

import (
	"fmt"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/garrison-mesh/garrison/authz/engine"
	"github.com/garrison-mesh/garrison/internal/promreg"
)

// metrics are the server's Prometheus metrics. A nil *metrics records
// nothing, so Check need not ask whether metrics were configured.
//
// Label cardinality is bounded by configuration, never by traffic: policy
// is the "ns/name" of a policy that exists (or ""), would and result are
// small fixed sets, provider names come from the mesh config. Nothing from
// the request (path, principal, host) becomes a label.
type metrics struct {
	decisions   *prometheus.CounterVec
	duration    prometheus.Histogram
	dryRun      *prometheus.CounterVec
	custom      *prometheus.CounterVec
	logFailures prometheus.Counter
	logDropped  prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "garrison_authz_decisions_total",
			Help: "ext_authz Checks by result (allow, deny, error = policy evaluation failed and the request was denied) and deciding policy (ns/name, empty when none decided).",
		}, []string{"result", "policy"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "garrison_authz_check_duration_seconds",
			Help: "Time to decide one ext_authz Check, from receiving the request to building the response.",
			// 10µs to ~10ms in factors of two: a decision takes tens of µs
			// (FIELD-NOTES), a slow one a few ms.
			Buckets: prometheus.ExponentialBuckets(10e-6, 2, 11),
		}),
		dryRun: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "garrison_authz_dry_run_total",
			Help: "Matches of rules of dry-run (istio.io/dry-run) policies, by policy and what it would have done (allow, deny).",
		}, []string{"policy", "would"}),
		custom: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "garrison_authz_custom_unavailable_total",
			Help: "Checks a CUSTOM policy delegated to an extension provider that is not configured; each was denied.",
		}, []string{"provider"}),
		logFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "garrison_authz_decision_log_write_failures_total",
			Help: "Failed writes to the decision log (each may carry several lines).",
		}),
		logDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "garrison_authz_decision_log_dropped_total",
			Help: "Decision-log lines dropped because the writer fell too far behind.",
		}),
	}
	// The series a dashboard or alert needs exist before the first Check.
	for _, r := range []string{"allow", "deny", "error"} {
		m.decisions.WithLabelValues(r, "")
	}

	if err := promreg.RegisterAll(reg, m.decisions, m.duration, m.dryRun, m.custom, m.logFailures, m.logDropped); err != nil {
		return nil, fmt.Errorf("extauthz: %w", err)
	}
	return m, nil
}

func (m *metrics) observe(out outcome, dec *engine.Decision, took time.Duration) {
	if m == nil {
		return
	}
	policy := ""
	if dec != nil {
		policy = dec.Policy
		if policy == "" && dec.Custom != nil {
			policy = dec.Custom.Policy
		}
		for _, e := range dec.DryRun {
			p, _ := e["policy"].(string)
			m.dryRun.WithLabelValues(p, dryRunWould(e)).Inc()
		}
	}
	m.decisions.WithLabelValues(out.String(), policy).Inc()
	m.duration.Observe(took.Seconds())
}

// dryRunWould is what a matching dry-run rule would have done: the
// engine's "would" if it says, else derived from the policy's action
// (CONTRACT.md: dry_run elements carry "action"). The result is one of a
// fixed set so that it stays a safe label value.
func dryRunWould(e map[string]any) string {
	s, _ := e["would"].(string)
	if s == "" {
		s, _ = e["action"].(string)
	}
	switch strings.ToUpper(s) {
	case "ALLOW":
		return "allow"
	case "DENY":
		return "deny"
	case "AUDIT":
		return "audit"
	case "CUSTOM":
		return "custom"
	default:
		return "unknown"
	}
}

func (m *metrics) customUnavailable(provider string) {
	if m == nil {
		return
	}
	m.custom.WithLabelValues(provider).Inc()
}

func (m *metrics) logWriteFailed() {
	if m == nil {
		return
	}
	m.logFailures.Inc()
}

func (m *metrics) logLineDropped() {
	if m == nil {
		return
	}
	m.logDropped.Inc()
}
