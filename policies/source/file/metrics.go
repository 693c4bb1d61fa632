package file

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/garrison-mesh/garrison/internal/promreg"
	"github.com/garrison-mesh/garrison/policies"
)

// metrics are the source's Prometheus metrics. A nil *metrics records
// nothing, so the source need not check whether metrics were asked for.
type metrics struct {
	reloads     *prometheus.CounterVec
	invalidFile prometheus.Gauge
	resources   *prometheus.GaugeVec
	version     prometheus.Gauge
	lastSuccess prometheus.Gauge
	duration    prometheus.Histogram

	kinds map[string]bool // label values of resources currently exported
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "garrison_config_reloads_total",
			Help: "Configuration rebuilds by result: success when every change was applied, rejected when at least one file was kept out.",
		}, []string{"result"}),
		invalidFile: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "garrison_config_invalid_files",
			Help: "Configuration files whose current content is rejected.",
		}),
		resources: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "garrison_config_resources",
			Help: "Resources in the last published snapshot, by kind.",
		}, []string{"kind"}),
		version: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "garrison_config_snapshot_version",
			Help: "Version of the last snapshot published from the configuration directory.",
		}),
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "garrison_config_last_reload_success_timestamp_seconds",
			Help: "Unix time of the last rebuild that applied every change.",
		}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "garrison_config_reload_duration_seconds",
			Help:    "Time to read, validate and publish changed configuration.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 4, 9),
		}),
		kinds: map[string]bool{},
	}
	// Both results exist from the start, so rate() and alerts on rejected
	// work before the first rejection.
	m.reloads.WithLabelValues("success")
	m.reloads.WithLabelValues("rejected")

	if err := promreg.RegisterAll(reg, m.reloads, m.invalidFile, m.resources, m.version, m.lastSuccess, m.duration); err != nil {
		return nil, err
	}
	return m, nil
}

func (m *metrics) reloaded(ok bool, took time.Duration) {
	if m == nil {
		return
	}
	result := "rejected"
	if ok {
		result = "success"
	}
	m.reloads.WithLabelValues(result).Inc()
	m.duration.Observe(took.Seconds())
}

func (m *metrics) succeeded(at time.Time) {
	if m == nil {
		return
	}
	m.lastSuccess.Set(float64(at.UnixNano()) / 1e9)
}

func (m *metrics) invalid(n int) {
	if m == nil {
		return
	}
	m.invalidFile.Set(float64(n))
}

func (m *metrics) published(snap *policies.Snapshot) {
	if m == nil {
		return
	}
	m.version.Set(float64(snap.Version()))
	counts := map[string]int{}
	for gk, n := range snap.CountByKind() {
		counts[gk.String()] = n
	}
	// A kind that is gone is deleted rather than left at its last value.
	for kind := range m.kinds {
		if _, ok := counts[kind]; !ok {
			m.resources.DeleteLabelValues(kind)
			delete(m.kinds, kind)
		}
	}
	for kind, n := range counts {
		m.resources.WithLabelValues(kind).Set(float64(n))
		m.kinds[kind] = true
	}
}
