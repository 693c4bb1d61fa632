// Package promreg registers a component's Prometheus collectors all or
// none: a constructor that fails halfway must leave the registry as it
// found it, so that a retry (or another component) is not refused for a
// name left behind. Every plane registers its metrics this way.
package promreg

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// RegisterAll registers every collector in cs with reg, or, when one is
// refused, unregisters those already registered and returns the error.
func RegisterAll(reg prometheus.Registerer, cs ...prometheus.Collector) error {
	for i, c := range cs {
		if err := reg.Register(c); err != nil {
			for _, done := range cs[:i] {
				reg.Unregister(done)
			}
			return fmt.Errorf("registering metrics: %w", err)
		}
	}
	return nil
}
