package runner

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/garrison-mesh/garrison/authz/cases"
)

// DecisionHeader is the response header in which Garrison names the reason,
// policy and rule of a denial: "reason=<r>; policy=<ns/name>; kind=<K>;
// rule=<n>" (a CUSTOM denial has "provider=<name>" and no rule). Other
// implementations need not send it; without it only allowed and the status
// are checked.
const DecisionHeader = "x-garrison-decision"

// Client asks an ext_authz server (envoy.service.auth.v3.Authorization)
// for decisions, as Envoy's ext_authz HTTP filter does.
type Client struct {
	conn   *grpc.ClientConn
	client authv3.AuthorizationClient
}

// Dial connects to an ext_authz server at addr (host:port) in plain text.
// It does not wait for the server; the first Decide does.
func Dial(addr string) (*Client, error) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		// A server started for a topic is dialled before it listens: retry
		// the connection quickly rather than after gRPC's default 1s.
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 20 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second},
			MinConnectTimeout: time.Second,
		}))
	if err != nil {
		return nil, err
	}
	return &Client{conn: conn, client: authv3.NewAuthorizationClient(conn)}, nil
}

// Decide sends the request's CheckRequest and reads the answer.
func (c *Client) Decide(ctx context.Context, req *cases.Request) (cases.Decision, error) {
	cr, err := req.CheckRequest()
	if err != nil {
		return cases.Decision{}, err
	}
	resp, err := c.client.Check(ctx, cr)
	if err != nil {
		return cases.Decision{}, fmt.Errorf("Check: %w", err)
	}
	return FromCheckResponse(resp)
}

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

// FromCheckResponse reads a CheckResponse as Envoy acts on it: status OK
// allows; any other status denies with the denied_response's HTTP status
// (403 when it states none, as Envoy does). An error_response, or a
// response that is neither, is an error: Envoy counts it as a failure of
// the authorization server, which it may be configured to let through.
func FromCheckResponse(resp *authv3.CheckResponse) (cases.Decision, error) {
	if codes.Code(resp.GetStatus().GetCode()) == codes.OK {
		if resp.GetErrorResponse() != nil {
			return cases.Decision{}, fmt.Errorf("status OK with an error_response: %v", resp)
		}
		return cases.Decision{Allowed: true, Status: 200}, nil
	}
	if resp.GetErrorResponse() != nil {
		return cases.Decision{}, fmt.Errorf("error_response (status %v): an ext_authz failure, not a decision", resp.GetStatus())
	}
	d := cases.Decision{Status: 403}
	denied := resp.GetDeniedResponse()
	if code := int(denied.GetStatus().GetCode()); code != 0 {
		d.Status = code
	}
	for _, h := range denied.GetHeaders() {
		if strings.EqualFold(h.GetHeader().GetKey(), DecisionHeader) {
			if err := parseDecisionHeader(h.GetHeader().GetValue(), &d); err != nil {
				return cases.Decision{}, err
			}
		}
	}
	return d, nil
}

// parseDecisionHeader reads "reason=r; policy=ns/name; kind=K; rule=n".
func parseDecisionHeader(v string, d *cases.Decision) error {
	for field := range strings.SplitSeq(v, ";") {
		field = strings.TrimSpace(field)
		if field == "" {
			continue
		}
		key, val, ok := strings.Cut(field, "=")
		if !ok {
			return fmt.Errorf("%s: malformed field %q in %q", DecisionHeader, field, v)
		}
		switch key {
		case "reason":
			d.Reason = val
		case "policy":
			d.Policy = val
		case "rule":
			n, err := strconv.Atoi(val)
			if err != nil {
				return fmt.Errorf("%s: rule %q: %w", DecisionHeader, val, err)
			}
			d.Rule = &n
		}
		// kind, provider and any later field: not checked by cases.
	}
	return nil
}
