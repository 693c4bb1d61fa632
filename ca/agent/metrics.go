package agent

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/garrison-mesh/garrison/internal/promreg"
)

// Results of a certificate request, the label of garrison_agent_csr_total.
const (
	resultSuccess     = "success"
	resultUnavailable = "unavailable"      // the CA could not be reached or answered Unavailable, DeadlineExceeded, ...: retried with backoff
	resultRefused     = "refused"          // Unauthenticated, PermissionDenied, InvalidArgument: permanent for that credential
	resultInvalid     = "invalid_response" // the CA answered with a chain the agent cannot use
	resultError       = "error"            // a local failure: no token, key generation
)

type metrics struct {
	csr   *prometheus.CounterVec
	fetch *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer, a *Agent) (*metrics, error) {
	m := &metrics{
		csr: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "garrison_agent_csr_total",
			Help: "Certificate requests to the CA, by result (success, unavailable, refused, invalid_response, error).",
		}, []string{"result"}),
		fetch: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "garrison_agent_fetch_total",
			Help: "Fetches of the CA's trust bundle and CRL, by what and result (success, error).",
		}, []string{"what", "result"}),
	}
	for _, r := range []string{resultSuccess, resultUnavailable, resultRefused, resultInvalid, resultError} {
		m.csr.WithLabelValues(r)
	}
	for _, w := range []string{"bundle", "crl"} {
		m.fetch.WithLabelValues(w, "success")
		m.fetch.WithLabelValues(w, "error")
	}
	// As istio-agent's istio_agent_cert_expiry_seconds: the time left,
	// negative once expired; 0 while no certificate is held.
	expiry := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "garrison_agent_cert_expiry_seconds",
		Help: "Seconds until the workload certificate expires (negative once it has); 0 before the first certificate.",
	}, a.expirySeconds)
	if reg != nil {
		if err := promreg.RegisterAll(reg, m.csr, m.fetch, expiry); err != nil {
			return nil, fmt.Errorf("agent: %w", err)
		}
	}
	return m, nil
}
