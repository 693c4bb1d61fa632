package engine

import (
	"context"
	"errors"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/open-policy-agent/opa/v1/rego"
	"google.golang.org/grpc"
)

// Engine decides CheckRequests against the live compiled policy set.
type Engine struct {
	query *rego.PreparedEvalQuery
}

// Decide evaluates one request. An error means no decision could be made;
// callers must deny.
func (e *Engine) Decide(ctx context.Context, req *authv3.CheckRequest) (*Decision, error) {
	return nil, errors.New("not implemented")
}

var _ grpc.ServiceRegistrar = (*grpc.Server)(nil)
