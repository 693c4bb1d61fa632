// Package server is the Istio-compatible CA API,
// istio.v1.auth.IstioCertificateService/CreateCertificate over TLS, so a
// stock istio-agent (or `garrison agent`) can get workload certificates
// from Garrison; beside it an HTTPS endpoint serving the SPIFFE trust
// bundle, the CRL and the root PEM bundle, and the operator's admin API on
// a Unix socket.
//
// The caller's identity comes from a bearer token (gRPC metadata
// "authorization: Bearer <token>", checked by a TokenAuthenticator) or
// from an mTLS client certificate that is a valid, unrevoked X.509-SVID of
// this CA (renewal); never from the CSR. The server's own TLS certificate
// is issued by the CA itself, renewed at half its life and on every
// rotation, and served through a callback, so rotations need no restart.
package server

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	pb "istio.io/api/security/v1alpha1"

	"github.com/garrison-mesh/garrison/ca/authority"
	"github.com/garrison-mesh/garrison/internal/promreg"
)

// Authority is what the server needs of the CA core.
type Authority interface {
	SignCSR(ctx context.Context, pemCSR []byte, id spiffeid.ID, ttl time.Duration, caller string) (*authority.Issued, error)
	Sign(ctx context.Context, req authority.SignRequest) (*authority.Issued, error)
	VerifyCaller(chain []*x509.Certificate) (spiffeid.ID, *x509.Certificate, error)
	IsRevoked(serial *big.Int) bool
	TrustDomain() spiffeid.TrustDomain
	MaxTTL() time.Duration
	RootsPEM() []byte
	SPIFFEBundle() *spiffebundle.Bundle
	CRL() ([]byte, time.Time)
	Sequence() uint64
	BundleSequence() uint64
	CRLNumber() *big.Int
	Subscribe(ctx context.Context) <-chan struct{}
	SigningChain() []*x509.Certificate
}

var _ Authority = (*authority.Authority)(nil)

// TokenAuthenticator maps a bearer token to a Kubernetes service account.
// The token file (ca/tokenfile) implements it; Kubernetes TokenReview will,
// behind a cache, in-cluster.
type TokenAuthenticator interface {
	Authenticate(ctx context.Context, token string) (namespace, serviceAccount string, err error)
}

// Config holds the server's dependencies.
type Config struct {
	Authority Authority
	// Tokens authenticates bearer tokens; nil accepts only mTLS renewal.
	Tokens TokenAuthenticator
	// Namespace is Garrison's own namespace: the server's certificate is
	// spiffe://<td>/ns/<Namespace>/sa/garrison.
	Namespace string
	// DNSNames and IPAddresses are the server certificate's other SANs,
	// which clients verify the server name against.
	DNSNames    []string
	IPAddresses []net.IP
	// ServerCertTTL is the server certificate's lifetime (24h when zero).
	ServerCertTTL time.Duration
	Clock         func() time.Time
	Logger        *slog.Logger
	Metrics       prometheus.Registerer
}

// Server is the CA API and the bundle endpoint.
type Server struct {
	pb.UnimplementedIstioCertificateServiceServer
	cfg      Config
	log      *slog.Logger
	id       spiffeid.ID
	cert     atomic.Pointer[tls.Certificate]
	certLeaf atomic.Pointer[x509.Certificate]
	grpc     *grpc.Server
	health   *health.Server

	issued  *prometheus.CounterVec
	latency prometheus.Histogram

	// mtls caches verified client certificates by the SHA-256 of the leaf
	// for as long as the CA state (bundle, CRL) does not change.
	mtlsMu  sync.Mutex
	mtls    map[[32]byte]mtlsEntry
	mtlsSeq uint64
}

type mtlsEntry struct {
	id       spiffeid.ID
	serial   *big.Int
	notAfter time.Time
}

// mtlsCacheMax bounds the cache; it is emptied when full.
const mtlsCacheMax = 50_000

// New issues the server's first certificate and builds the gRPC server.
func New(ctx context.Context, cfg Config) (*Server, error) {
	if cfg.Authority == nil {
		return nil, errors.New("server: Authority is required")
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.ServerCertTTL == 0 {
		cfg.ServerCertTTL = authority.DefaultTTL
	}
	if cfg.Namespace == "" {
		cfg.Namespace = "istio-system"
	}
	id, err := spiffeid.FromSegments(cfg.Authority.TrustDomain(), "ns", cfg.Namespace, "sa", "garrison")
	if err != nil {
		return nil, fmt.Errorf("server: identity: %w", err)
	}
	s := &Server{cfg: cfg, log: cfg.Logger, id: id, mtls: map[[32]byte]mtlsEntry{}}
	s.issued = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "garrison_ca_certificates_issued_total",
		Help: "CreateCertificate requests by result: issued, unauthenticated, permission_denied, invalid_argument, error.",
	}, []string{"result"})
	s.latency = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "garrison_ca_sign_duration_seconds",
		Help:    "Time to answer a CreateCertificate request (authentication, CSR checks, journal, signing).",
		Buckets: prometheus.ExponentialBuckets(100e-6, 2, 14),
	})
	if cfg.Metrics != nil {
		if err := promreg.RegisterAll(cfg.Metrics, s.issued, s.latency); err != nil {
			return nil, fmt.Errorf("ca server: %w", err)
		}
	}
	if err := s.renew(ctx); err != nil {
		return nil, err
	}
	s.health = health.NewServer()
	s.grpc = grpc.NewServer(
		grpc.Creds(credentials.NewTLS(s.TLSConfig())),
		grpc.MaxRecvMsgSize(64<<10),
	)
	pb.RegisterIstioCertificateServiceServer(s.grpc, s)
	healthpb.RegisterHealthServer(s.grpc, s.health)
	return s, nil
}

// ID is the server certificate's SPIFFE ID.
func (s *Server) ID() spiffeid.ID { return s.id }

// TLSConfig serves the live server certificate and asks for (without
// requiring or verifying) a client certificate: CreateCertificate
// verifies it against the live trust bundle itself, since Go's own
// verification would pin the roots at configuration time and a token
// caller presents none.
func (s *Server) TLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		ClientAuth: tls.RequestClientCert,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return s.cert.Load(), nil
		},
	}
}

// renew issues a new server certificate with a new key.
func (s *Server) renew(ctx context.Context) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	ips := s.cfg.IPAddresses
	iss, err := s.cfg.Authority.Sign(ctx, authority.SignRequest{
		PublicKey: key.Public(), ID: s.id, TTL: min(s.cfg.ServerCertTTL, s.cfg.Authority.MaxTTL()), Caller: "garrison",
		DNSNames: s.cfg.DNSNames, IPAddresses: ips,
	})
	if err != nil {
		return fmt.Errorf("server: issuing the CA server's certificate: %w", err)
	}
	leaf, err := iss.Certificate()
	if err != nil {
		return err
	}
	tc := &tls.Certificate{Certificate: [][]byte{iss.DER}, PrivateKey: crypto.Signer(key), Leaf: leaf}
	for _, c := range iss.Chain {
		tc.Certificate = append(tc.Certificate, c.Raw)
	}
	s.cert.Store(tc)
	s.certLeaf.Store(leaf)
	s.log.Info("CA server certificate issued", "spiffe_id", s.id.String(), "serial", authority.FormatSerial(iss.Serial), "not_after", leaf.NotAfter)
	return nil
}

// ServerCertificate is the live server certificate.
func (s *Server) ServerCertificate() *x509.Certificate { return s.certLeaf.Load() }

// RunRenewal renews the server certificate at half its life, when the
// signing CA changed (a rotation: the certificate should chain to what
// clients will trust longest) and when it was revoked, until ctx ends.
func (s *Server) RunRenewal(ctx context.Context) error {
	changed := s.cfg.Authority.Subscribe(ctx)
	t := time.NewTimer(time.Minute)
	defer t.Stop()
	for {
		leaf := s.certLeaf.Load()
		half := leaf.NotBefore.Add(leaf.NotAfter.Sub(leaf.NotBefore) / 2)
		wait := half.Sub(s.cfg.Clock())
		// Check at least every minute: the injected clock may jump.
		t.Reset(max(min(wait, time.Minute), 0))
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
		case <-t.C:
		}
		signer := s.cfg.Authority.SigningChain()[0]
		if s.cfg.Clock().Before(half) && !s.cfg.Authority.IsRevoked(leaf.SerialNumber) && leaf.CheckSignatureFrom(signer) == nil {
			continue
		}
		if err := s.renew(ctx); err != nil {
			s.log.Error("renewing the CA server's certificate", "err", err)
			// Past half life the timer fires at once: do not spin.
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(5 * time.Second):
			}
		}
	}
}

// GRPCServer is the gRPC server, with the CA service and gRPC health.
func (s *Server) GRPCServer() *grpc.Server { return s.grpc }

// Serve serves the CA API on ln until ctx ends.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	s.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	errc := make(chan error, 1)
	go func() { errc <- s.grpc.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	s.health.Shutdown()
	stopped := make(chan struct{})
	go func() { s.grpc.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		s.grpc.Stop()
	}
	return nil
}

// CreateCertificate implements the Istio CA API.
func (s *Server) CreateCertificate(ctx context.Context, req *pb.IstioCertificateRequest) (*pb.IstioCertificateResponse, error) {
	start := time.Now()
	resp, err := s.createCertificate(ctx, req)
	s.latency.Observe(time.Since(start).Seconds())
	result := "issued"
	if err != nil {
		switch status.Code(err) {
		case codes.Unauthenticated:
			result = "unauthenticated"
		case codes.PermissionDenied:
			result = "permission_denied"
		case codes.InvalidArgument:
			result = "invalid_argument"
		default:
			result = "error"
		}
		s.log.Info("certificate refused", "code", status.Code(err).String(), "err", status.Convert(err).Message())
	}
	s.issued.WithLabelValues(result).Inc()
	return resp, err
}

func (s *Server) createCertificate(ctx context.Context, req *pb.IstioCertificateRequest) (*pb.IstioCertificateResponse, error) {
	id, caller, err := s.authenticate(ctx)
	if err != nil {
		return nil, err
	}
	// istiod lets node agents it trusts (CA_TRUSTED_NODE_ACCOUNTS) ask
	// for another identity through this metadata field and refuses
	// everyone else. Garrison trusts no node agent: ignoring the field
	// would hand an agent its own identity where it asked for a
	// workload's, so refuse as istiod does without an authorizer.
	if imp := req.GetMetadata().GetFields()[impersonatedIdentityKey].GetStringValue(); imp != "" {
		return nil, status.Errorf(codes.Unauthenticated, "request impersonation (%s %q) is not supported: no node agent is trusted to ask for another identity", impersonatedIdentityKey, imp)
	}
	secs := req.GetValidityDuration()
	if secs < 0 {
		return nil, status.Errorf(codes.InvalidArgument, "validity_duration %d is negative", secs)
	}
	// Compare in seconds first: a huge value would overflow a Duration.
	if maxTTL := s.cfg.Authority.MaxTTL(); secs > int64(maxTTL/time.Second) {
		return nil, status.Errorf(codes.InvalidArgument, "requested TTL %ds exceeds the maximum %s", secs, maxTTL)
	}
	iss, err := s.cfg.Authority.SignCSR(ctx, []byte(req.GetCsr()), id, time.Duration(secs)*time.Second, caller)
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.IstioCertificateResponse{CertChain: iss.ChainPEM}, nil
}

// impersonatedIdentityKey is the request metadata field in which an Istio
// node agent (ztunnel) asks for a workload's certificate.
const impersonatedIdentityKey = "ImpersonatedIdentity"

func toStatus(err error) error {
	switch {
	case errors.Is(err, authority.ErrInvalidRequest):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, authority.ErrPermissionDenied):
		return status.Error(codes.PermissionDenied, err.Error())
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return status.FromContextError(err).Err()
	}
	return status.Error(codes.Internal, err.Error())
}

// authenticate establishes the caller's identity. A bearer token, when
// sent, decides (an explicit credential; an agent renewing with a token
// may still present an old certificate); otherwise the client certificate
// must be a valid, unrevoked SVID of this CA.
func (s *Server) authenticate(ctx context.Context) (spiffeid.ID, string, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	if auth := md.Get("authorization"); len(auth) > 0 {
		if len(auth) > 1 {
			return spiffeid.ID{}, "", status.Error(codes.Unauthenticated, "more than one authorization header")
		}
		token, ok := cutBearer(auth[0])
		if !ok {
			return spiffeid.ID{}, "", status.Error(codes.Unauthenticated, "authorization metadata is not \"Bearer <token>\"")
		}
		if s.cfg.Tokens == nil {
			return spiffeid.ID{}, "", status.Error(codes.Unauthenticated, "bearer tokens are not accepted by this CA (no token file)")
		}
		ns, sa, err := s.cfg.Tokens.Authenticate(ctx, token)
		if err != nil {
			return spiffeid.ID{}, "", status.Errorf(codes.Unauthenticated, "bearer token: %v", err)
		}
		id, err := spiffeid.FromSegments(s.cfg.Authority.TrustDomain(), "ns", ns, "sa", sa)
		if err != nil {
			return spiffeid.ID{}, "", status.Errorf(codes.Unauthenticated, "bearer token maps to an invalid identity: %v", err)
		}
		return id, "token:" + ns + "/" + sa, nil
	}
	p, ok := peer.FromContext(ctx)
	if !ok {
		return spiffeid.ID{}, "", status.Error(codes.Unauthenticated, "no credentials")
	}
	tlsInfo, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(tlsInfo.State.PeerCertificates) == 0 {
		return spiffeid.ID{}, "", status.Error(codes.Unauthenticated, "no credentials: send a bearer token or a client certificate issued by this CA")
	}
	id, err := s.verifyClientCert(tlsInfo.State.PeerCertificates)
	if err != nil {
		return spiffeid.ID{}, "", status.Errorf(codes.Unauthenticated, "client certificate: %v", err)
	}
	return id, "mtls:" + id.String(), nil
}

func cutBearer(v string) (string, bool) {
	if len(v) < 7 || !strings.EqualFold(v[:7], "bearer ") {
		return "", false
	}
	return strings.TrimSpace(v[7:]), true
}

// verifyClientCert verifies a chain once per CA state: a renewing agent
// on a long-lived connection costs a hash and a map lookup, not two
// signature verifications, until the bundle or the CRL changes.
func (s *Server) verifyClientCert(chain []*x509.Certificate) (spiffeid.ID, error) {
	key := sha256.Sum256(chain[0].Raw)
	seq := s.cfg.Authority.Sequence()
	now := s.cfg.Clock()
	s.mtlsMu.Lock()
	if s.mtlsSeq != seq || len(s.mtls) >= mtlsCacheMax {
		clear(s.mtls)
		s.mtlsSeq = seq
	}
	e, ok := s.mtls[key]
	s.mtlsMu.Unlock()
	if ok && now.Before(e.notAfter) && !s.cfg.Authority.IsRevoked(e.serial) {
		return e.id, nil
	}
	id, leaf, err := s.cfg.Authority.VerifyCaller(chain)
	if err != nil {
		return spiffeid.ID{}, err
	}
	s.mtlsMu.Lock()
	if s.mtlsSeq == seq {
		s.mtls[key] = mtlsEntry{id: id, serial: leaf.SerialNumber, notAfter: leaf.NotAfter}
	}
	s.mtlsMu.Unlock()
	return id, nil
}
