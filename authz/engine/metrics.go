package engine

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/garrison-mesh/garrison/internal/promreg"
)

// metrics are recorded when a policy set is built, never per decision: the
// request path carries no instrumentation. A nil *metrics records nothing.
type metrics struct {
	compiles *prometheus.CounterVec
	version  prometheus.Gauge
	seconds  prometheus.Histogram
	cache    *prometheus.CounterVec
	hits     prometheus.Counter
	misses   prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		compiles: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "garrison_authz_compile_total",
			Help: "Policy sets built from configuration snapshots, by result: success when the set went live, error when the previous set stayed live.",
		}, []string{"result"}),
		version: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "garrison_authz_policy_version",
			Help: "Snapshot version of the live policy set; 0 before the first.",
		}),
		seconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "garrison_authz_compile_seconds",
			Help:    "Time to compile a snapshot to Rego and prepare its queries, successful or not.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 9),
		}),
		cache: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "garrison_authz_decision_cache_total",
			Help: "Decisions looked up in the live policy set's decision cache, by result (hit: no evaluation).",
		}, []string{"result"}),
	}
	m.hits = m.cache.WithLabelValues("hit")
	m.misses = m.cache.WithLabelValues("miss")
	// Both results exist from the start, so alerts on error work before
	// the first failure.
	m.compiles.WithLabelValues("success")
	m.compiles.WithLabelValues("error")

	if err := promreg.RegisterAll(reg, m.compiles, m.version, m.seconds, m.cache); err != nil {
		return nil, err
	}
	return m, nil
}

func (m *metrics) compiled(ok bool, version uint64, took time.Duration) {
	if m == nil {
		return
	}
	m.seconds.Observe(took.Seconds())
	if !ok {
		m.compiles.WithLabelValues("error").Inc()
		return
	}
	m.compiles.WithLabelValues("success").Inc()
	m.version.Set(float64(version))
}

func (m *metrics) cacheLookup(hit bool) {
	if m == nil {
		return
	}
	if hit {
		m.hits.Inc()
		return
	}
	m.misses.Inc()
}
