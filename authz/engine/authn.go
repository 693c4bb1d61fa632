package engine

import (
	"context"
	"fmt"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/garrison-mesh/garrison/authn/jwt"
	"github.com/garrison-mesh/garrison/policies"
)

// OriginAuthenticator verifies the end-user tokens of a request before it
// is authorized, as Istio's jwt_authn filter runs before its RBAC filter
// (authn/jwt). The engine feeds it every snapshot it makes live, so that a
// request is authenticated and authorized by one configuration.
type OriginAuthenticator interface {
	Update(snap *policies.Snapshot)
	Authenticate(ctx context.Context, req jwt.Request) (*jwt.Result, error)
}

var _ OriginAuthenticator = (*jwt.Authenticator)(nil)

// ReasonJWTRejected: origin authentication refused the request's token
// (401, or 403 for a wrong audience, as Envoy's jwt_authn answers).
const ReasonJWTRejected = "jwt-rejected"

// Authn is what origin authentication made of a request, for the decision
// log, explain, and the ext_authz response.
type Authn struct {
	// Outcome: no_token, verified or rejected (jwt.Outcome's names).
	Outcome string `json:"outcome"`
	// Principal is request.auth.principal (<iss>/<sub>) when verified.
	Principal string `json:"principal,omitempty"`
	// Rule names the rule that verified or rejected the token.
	Rule string `json:"rule,omitempty"`
	// Reason is Envoy's explanation of a rejection ("Jwt is expired").
	Reason string `json:"reason,omitempty"`
	// WWWAuthenticate goes with a rejection.
	WWWAuthenticate string `json:"-"`
	// SetHeaders and RemoveHeaders change the request on its way upstream
	// when it is allowed (outputPayloadToHeader, outputClaimToHeaders, the
	// token removed unless forwardOriginalToken).
	SetHeaders    []jwt.Header `json:"-"`
	RemoveHeaders []string     `json:"-"`
}

// authenticate runs origin authentication for req. It returns the request
// to authorize, carrying the verified identity as Istio's istio_authn
// filter metadata (req itself when there is nothing to add), what to record
// of it, and a decision when the token is refused.
func (e *Engine) authenticate(ctx context.Context, ps *policySet, req *authv3.CheckRequest, in *preparedInput) (*authv3.CheckRequest, *Authn, *Decision, error) {
	if e.authn == nil {
		return req, nil, nil, nil
	}
	attrs := req.GetAttributes()
	h := attrs.GetRequest().GetHttp()
	ns, labels := in.destination()
	path := h.GetPath()
	if in.ov.setPath {
		path = in.ov.path // Envoy normalizes the path before any filter
	}
	res, err := e.authn.Authenticate(ctx, jwt.Request{
		Namespace: ns,
		Labels:    labels,
		Port:      attrs.GetDestination().GetAddress().GetSocketAddress().GetPortValue(),
		Method:    h.GetMethod(),
		Scheme:    h.GetScheme(),
		Host:      h.GetHost(),
		Path:      path,
		Headers:   h.GetHeaders(),
	})
	if err != nil {
		return nil, nil, nil, fmt.Errorf("origin authentication: %w", err)
	}
	a := &Authn{Outcome: res.Outcome.String(), Reason: res.Reason, WWWAuthenticate: res.WWWAuthenticate,
		SetHeaders: res.Headers.Set, RemoveHeaders: res.Headers.Remove}
	if id := res.Identity; id != nil {
		a.Principal = id.Principal
		a.Rule = id.Rule.String()
	}
	switch res.Outcome {
	case jwt.Rejected:
		d := &Decision{Status: res.Status, Reason: ReasonJWTRejected, Authn: a}
		if d.Status == 0 {
			d.Status = 401
		}
		in.annotate(d, ps.version)
		return nil, a, d, nil
	case jwt.NoToken:
		if res.Principal != jwt.PrincipalPeer {
			return req, a, nil, nil
		}
	}
	md := res.Metadata(attrs.GetSource().GetPrincipal())
	if len(md) == 0 {
		return req, a, nil, nil
	}
	out, err := withAuthnMetadata(req, md)
	return out, a, nil, err
}

// withAuthnMetadata is req with md as its istio_authn filter metadata, in
// place of any Envoy sent (Garrison authenticated the request itself). req
// is not modified: the copy shares everything else.
func withAuthnMetadata(req *authv3.CheckRequest, md map[string]any) (*authv3.CheckRequest, error) {
	s, err := structpb.NewStruct(md)
	if err != nil {
		return nil, fmt.Errorf("origin authentication metadata: %w", err)
	}
	attrs := req.GetAttributes()
	fm := make(map[string]*structpb.Struct, len(attrs.GetMetadataContext().GetFilterMetadata())+1)
	for k, v := range attrs.GetMetadataContext().GetFilterMetadata() {
		fm[k] = v
	}
	fm["istio_authn"] = s
	mc := &corev3.Metadata{FilterMetadata: fm, TypedFilterMetadata: attrs.GetMetadataContext().GetTypedFilterMetadata()}
	out := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source:               attrs.GetSource(),
		Destination:          attrs.GetDestination(),
		Request:              attrs.GetRequest(),
		ContextExtensions:    attrs.GetContextExtensions(),
		MetadataContext:      mc,
		RouteMetadataContext: attrs.GetRouteMetadataContext(),
		TlsSession:           attrs.GetTlsSession(),
	}}
	return out, nil
}
