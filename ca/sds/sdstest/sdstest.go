// Package sdstest is an SDS client for tests that asks as Envoy does:
// a StreamSecrets stream over a Unix socket, DiscoveryRequests with the node,
// the Secret type URL and the resource names, each response acknowledged
// (version_info and response_nonce) or rejected (error_detail), and every
// response checked with the protos' own Validate().
package sdstest

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	secretv3 "github.com/envoyproxy/go-control-plane/envoy/service/secret/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
)

// SecretTypeURL is the type URL of envoy.extensions.transport_sockets.tls.v3.Secret.
const SecretTypeURL = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"

// Dial connects to an SDS server's Unix socket; the connection is closed
// when the test ends.
func Dial(t testing.TB, socket string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient("unix://"+socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// Node is the node an Envoy sidecar sends (Istio's sidecar ID format).
func Node(id string) *corev3.Node {
	return &corev3.Node{
		Id:            id,
		Cluster:       "productpage.default",
		UserAgentName: "envoy",
		UserAgentVersionType: &corev3.Node_UserAgentBuildVersion{UserAgentBuildVersion: &corev3.BuildVersion{
			Version: &typev3.SemanticVersion{MajorNumber: 1, MinorNumber: 36},
		}},
	}
}

// Stream is one StreamSecrets stream, with the client's view of the
// protocol: the last version it accepted, the last nonce it saw, and the
// names it subscribes to.
type Stream struct {
	t        testing.TB
	stream   secretv3.SecretDiscoveryService_StreamSecretsClient
	node     *corev3.Node
	names    []string
	accepted string
	nonce    string
	sentNode bool
	recv     chan recvResult
}

type recvResult struct {
	resp *discovery.DiscoveryResponse
	err  error
}

// NewStream opens a stream; it ends with the test.
func NewStream(t testing.TB, conn *grpc.ClientConn, node *corev3.Node) *Stream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	st, err := secretv3.NewSecretDiscoveryServiceClient(conn).StreamSecrets(ctx)
	if err != nil {
		t.Fatal(err)
	}
	s := &Stream{t: t, stream: st, node: node, recv: make(chan recvResult, 64)}
	go func() {
		for {
			resp, err := st.Recv()
			s.recv <- recvResult{resp, err}
			if err != nil {
				return
			}
		}
	}()
	return s
}

// Subscribe sends a request for names, as Envoy does when a listener or
// cluster starts using a secret: the current version and nonce, so that the
// server sees it as an ACK of what was received so far plus new names.
func (s *Stream) Subscribe(names ...string) {
	s.t.Helper()
	s.names = names
	s.send(nil)
}

// ACK accepts resp.
func (s *Stream) ACK(resp *discovery.DiscoveryResponse) {
	s.t.Helper()
	s.accepted = resp.GetVersionInfo()
	s.nonce = resp.GetNonce()
	s.send(nil)
}

// NACK rejects resp: version_info stays the last accepted version, the
// nonce is resp's and error_detail says why.
func (s *Stream) NACK(resp *discovery.DiscoveryResponse, why string) {
	s.t.Helper()
	s.nonce = resp.GetNonce()
	s.send(&rpcstatus.Status{Code: int32(codes.InvalidArgument), Message: why})
}

func (s *Stream) send(errDetail *rpcstatus.Status) {
	s.t.Helper()
	req := &discovery.DiscoveryRequest{
		VersionInfo:   s.accepted,
		ResourceNames: s.names,
		TypeUrl:       SecretTypeURL,
		ResponseNonce: s.nonce,
		ErrorDetail:   errDetail,
	}
	// Envoy sends the node on the first request of a stream only.
	if !s.sentNode {
		req.Node = s.node
		s.sentNode = true
	}
	if err := s.stream.Send(req); err != nil {
		s.t.Fatalf("sds send: %v", err)
	}
}

// Recv waits up to timeout for the next response and checks it.
func (s *Stream) Recv(timeout time.Duration) *discovery.DiscoveryResponse {
	s.t.Helper()
	select {
	case r := <-s.recv:
		if r.err != nil {
			s.t.Fatalf("sds recv: %v", r.err)
		}
		if err := CheckResponse(r.resp); err != nil {
			s.t.Fatal(err)
		}
		return r.resp
	case <-time.After(timeout):
		s.t.Fatalf("no SDS response within %v", timeout)
		return nil
	}
}

// NoResponse fails the test if a response arrives within d. Only an absence
// is checked this way; arrivals are always waited for with Recv.
func (s *Stream) NoResponse(d time.Duration) {
	s.t.Helper()
	select {
	case r := <-s.recv:
		s.t.Fatalf("unexpected SDS response (err %v): version %q, %d resources", r.err, r.resp.GetVersionInfo(), len(r.resp.GetResources()))
	case <-time.After(d):
	}
}

// CheckResponse validates a response and every secret in it with the
// protos' Validate(), as Envoy's own proto validation would.
func CheckResponse(resp *discovery.DiscoveryResponse) error {
	if err := resp.Validate(); err != nil {
		return fmt.Errorf("invalid DiscoveryResponse: %w", err)
	}
	if resp.GetTypeUrl() != SecretTypeURL {
		return fmt.Errorf("type_url %q, want %q", resp.GetTypeUrl(), SecretTypeURL)
	}
	if resp.GetNonce() == "" {
		return fmt.Errorf("response without nonce")
	}
	_, err := Secrets(resp)
	return err
}

// Secrets decodes and validates the secrets of a response, by name.
func Secrets(resp *discovery.DiscoveryResponse) (map[string]*tlsv3.Secret, error) {
	out := map[string]*tlsv3.Secret{}
	for _, a := range resp.GetResources() {
		if a.GetTypeUrl() != SecretTypeURL {
			return nil, fmt.Errorf("resource of type %q", a.GetTypeUrl())
		}
		s := &tlsv3.Secret{}
		if err := a.UnmarshalTo(s); err != nil {
			return nil, err
		}
		if err := s.Validate(); err != nil {
			return nil, fmt.Errorf("invalid secret %q: %w", s.GetName(), err)
		}
		if vc := s.GetValidationContext(); vc != nil && vc.GetCustomValidatorConfig() != nil {
			cfg := &tlsv3.SPIFFECertValidatorConfig{}
			if err := vc.GetCustomValidatorConfig().GetTypedConfig().UnmarshalTo(cfg); err != nil {
				return nil, fmt.Errorf("secret %q: %w", s.GetName(), err)
			}
			if err := cfg.Validate(); err != nil {
				return nil, fmt.Errorf("secret %q: invalid SPIFFE validator config: %w", s.GetName(), err)
			}
		}
		if _, dup := out[s.GetName()]; dup {
			return nil, fmt.Errorf("secret %q twice in one response", s.GetName())
		}
		out[s.GetName()] = s
	}
	return out, nil
}

// MustSecrets is Secrets for tests.
func MustSecrets(t testing.TB, resp *discovery.DiscoveryResponse) map[string]*tlsv3.Secret {
	t.Helper()
	m, err := Secrets(resp)
	if err != nil {
		t.Fatal(err)
	}
	return m
}
