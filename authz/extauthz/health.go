package extauthz

import (
	"context"
	"sync"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// healthServices are the names the health service answers for: the whole
// server ("") and the Authorization service, which is what a client that
// health-checks per service asks about.
var healthServices = []string{"", authv3.Authorization_ServiceDesc.ServiceName}

// healthServer is grpc's health server with its status tied to the
// Decider's readiness. Check re-reads Ready before answering, so a probe
// always sees the current state; Watch streams learn of changes from those
// re-reads and from the poller Listen runs.
type healthServer struct {
	*health.Server
	ready func() bool

	mu       sync.Mutex
	serving  bool
	known    bool // serving holds a value already pushed to Server
	shutdown bool
}

func newHealthServer(ready func() bool) *healthServer {
	h := &healthServer{Server: health.NewServer(), ready: ready}
	h.sync()
	return h
}

func (h *healthServer) register(reg grpc.ServiceRegistrar) {
	healthpb.RegisterHealthServer(reg, h)
}

// Check answers from the Decider's readiness now, not from the last poll.
func (h *healthServer) Check(ctx context.Context, in *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	h.sync()
	return h.Server.Check(ctx, in)
}

// sync pushes the Decider's readiness into the status map when it changed.
func (h *healthServer) sync() {
	ready := h.ready()
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.shutdown || (h.known && ready == h.serving) {
		return
	}
	st := healthpb.HealthCheckResponse_NOT_SERVING
	if ready {
		st = healthpb.HealthCheckResponse_SERVING
	}
	for _, svc := range healthServices {
		h.Server.SetServingStatus(svc, st)
	}
	h.serving, h.known = ready, true
}

// poll re-reads readiness every interval until ctx ends, for Watch streams.
func (h *healthServer) poll(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			h.sync()
		}
	}
}

// drain turns every status NOT_SERVING for good, so that clients move away
// before the server stops.
func (h *healthServer) drain() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.shutdown = true
	h.Server.Shutdown()
}
