package promreg

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestAllOrNone(t *testing.T) {
	reg := prometheus.NewRegistry()
	a := prometheus.NewCounter(prometheus.CounterOpts{Name: "a_total", Help: "a"})
	b := prometheus.NewCounter(prometheus.CounterOpts{Name: "b_total", Help: "b"})
	clash := prometheus.NewCounter(prometheus.CounterOpts{Name: "b_total", Help: "b"})
	if err := RegisterAll(reg, b); err != nil {
		t.Fatal(err)
	}
	if err := RegisterAll(reg, a, clash); err == nil {
		t.Fatal("a clash was accepted")
	}
	// a was rolled back: registering it again succeeds.
	if err := RegisterAll(reg, a); err != nil {
		t.Fatalf("the failed call left a registered: %v", err)
	}
}
