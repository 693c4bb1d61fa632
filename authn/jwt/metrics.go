package jwt

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the package's collectors. They exist even when no registry
// is given, so that the code never checks for nil.
type metrics struct {
	fetches     *prometheus.CounterVec // uri, result
	up          *prometheus.GaugeVec   // uri
	keys        *prometheus.GaugeVec   // uri
	lastSuccess *prometheus.GaugeVec   // uri
	kidRefetch  *prometheus.CounterVec // uri, result
	requests    *prometheus.CounterVec // outcome
	// byOutcome are requests' children, resolved once: every request
	// counts one, and a label lookup per request is wasted work.
	byOutcome [Rejected + 1]prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		fetches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "garrison_authn_jwks_fetch_total",
			Help: "JWKS (and OpenID discovery) fetches by URI and result (success, error).",
		}, []string{"uri", "result"}),
		up: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "garrison_authn_jwks_up",
			Help: "1 when the key set of a jwksUri is usable, 0 when tokens of its rules are rejected for want of keys.",
		}, []string{"uri"}),
		keys: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "garrison_authn_jwks_keys",
			Help: "Usable keys in the last key set fetched from a jwksUri.",
		}, []string{"uri"}),
		lastSuccess: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "garrison_authn_jwks_last_success_timestamp_seconds",
			Help: "Unix time of the last successful fetch of a jwksUri.",
		}, []string{"uri"}),
		kidRefetch: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "garrison_authn_jwks_kid_refetch_total",
			Help: "Fetches caused by a token whose kid the key set lacks, by result (fetched, rate_limited).",
		}, []string{"uri", "result"}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "garrison_authn_jwt_requests_total",
			Help: "Requests authenticated, by outcome (no_token, verified, rejected).",
		}, []string{"outcome"}),
	}
	if reg != nil {
		if err := registerAll(reg, m); err != nil {
			return nil, err
		}
	}
	for o := range m.byOutcome {
		m.byOutcome[o] = m.requests.WithLabelValues(Outcome(o).String())
	}
	return m, nil
}

func registerAll(reg prometheus.Registerer, m *metrics) error {
	for _, err := range []error{
		register(reg, &m.fetches), register(reg, &m.up), register(reg, &m.keys),
		register(reg, &m.lastSuccess), register(reg, &m.kidRefetch), register(reg, &m.requests),
	} {
		if err != nil {
			return err
		}
	}
	return nil
}

// register adds c to reg; a second Authenticator on the same registry
// shares the first one's collector.
func register[T prometheus.Collector](reg prometheus.Registerer, c *T) error {
	err := reg.Register(*c)
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(T); ok {
			*c = existing
			return nil
		}
	}
	return err
}

// forget drops the series of a jwksUri no longer configured.
func (m *metrics) forget(uri string) {
	m.up.DeleteLabelValues(uri)
	m.keys.DeleteLabelValues(uri)
	m.lastSuccess.DeleteLabelValues(uri)
	m.fetches.DeletePartialMatch(prometheus.Labels{"uri": uri})
	m.kidRefetch.DeletePartialMatch(prometheus.Labels{"uri": uri})
}
