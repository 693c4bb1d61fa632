package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"

	"github.com/garrison-mesh/garrison/ca/agent"
	"github.com/garrison-mesh/garrison/ca/sds"
)

type agentFlags struct {
	caAddr     string
	caRootCert string
	bundleURL  string
	caServerID string
	tokenFile  string
	sdsSocket  string
	sdsMode    string
	certDir    string
	ttl        time.Duration
	spiffeID   string
	rotateAt   float64
	jitter     float64
	healthAddr string
}

func newAgentCommand(logs *logFlags) *cobra.Command {
	f := &agentFlags{}
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run the node agent: the workload's key and certificate, served to Envoy over SDS",
		Long: "The agent generates the workload's private key in memory, gets it a certificate from Garrison's CA\n" +
			"(istio.v1.auth.IstioCertificateService over TLS; the token file for the first one, the certificate\n" +
			"itself afterwards), serves it to Envoy over SDS on a Unix socket (\"default\", \"ROOTCA\" with the trust\n" +
			"bundle and CRLs, and SPIRE's \"ALL\"), optionally writes it for proxyless gRPC (--cert-dir, gRPC's\n" +
			"file_watcher layout), and renews it at --rotate-at of its lifetime. A CA that is down is retried with\n" +
			"backoff while the current certificate keeps being served. --health-addr serves /healthz (200 while a\n" +
			"valid certificate is held) and /metrics.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := logs.logger(cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			return runAgent(cmd.Context(), f, log)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.caAddr, "ca-addr", "", "the CA's gRPC address, host:port (Istio's CA port is 15012) (required)")
	fl.StringVar(&f.caRootCert, "ca-root-cert", "", "PEM file of the trusted roots the platform gives the workload; authenticates the CA (required)")
	fl.StringVar(&f.bundleURL, "ca-bundle-url", "", "base URL of the CA's /bundle and /crl (default https://<ca-addr host>:"+agent.DefaultBundlePort+")")
	fl.StringVar(&f.caServerID, "ca-spiffe-id", "", "SPIFFE ID the CA must present (default: any spiffe://<trust domain>/ns/<namespace>/sa/garrison)")
	fl.StringVar(&f.tokenFile, "token-file", "", "bearer token for the first certificate, re-read on every use (required)")
	fl.StringVar(&f.sdsSocket, "sds-socket", sds.DefaultSocketPath, "Unix socket to serve SDS on")
	fl.StringVar(&f.sdsMode, "sds-socket-mode", "0600", "permissions of the SDS socket, octal")
	fl.StringVar(&f.certDir, "cert-dir", "", "also write cert-chain.pem, key.pem and root-cert.pem here, for proxyless gRPC")
	fl.DurationVar(&f.ttl, "ttl", agent.DefaultTTL, "certificate lifetime to ask for")
	fl.StringVar(&f.spiffeID, "spiffe-id", "", "expected SPIFFE ID: put in the CSR and required of the certificate (default: whatever the CA issues)")
	fl.Float64Var(&f.rotateAt, "rotate-at", agent.DefaultRotateAt, "fraction of the lifetime after which the certificate is renewed")
	fl.Float64Var(&f.jitter, "jitter", agent.DefaultJitter, "random ± fraction of the lifetime added to --rotate-at (0: none)")
	fl.StringVar(&f.healthAddr, "health-addr", "127.0.0.1:15021", "address serving /healthz and /metrics (empty: none)")
	for _, name := range []string{"ca-addr", "ca-root-cert", "token-file"} {
		_ = cmd.MarkFlagRequired(name)
	}
	return cmd
}

func runAgent(ctx context.Context, f *agentFlags, log *slog.Logger) error {
	mode, err := strconv.ParseUint(f.sdsMode, 8, 32)
	if err != nil || mode == 0 || mode > 0o777 {
		return fmt.Errorf("--sds-socket-mode %q: want octal permissions such as 0600", f.sdsMode)
	}
	jitter := f.jitter
	if jitter == 0 {
		jitter = -1 // the flag's 0 means none; the agent's 0 means its default
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		buildInfo(),
	)
	srv, err := sds.New(sds.Config{Logger: log.With("component", "sds"), Metrics: reg})
	if err != nil {
		return err
	}
	ag, err := agent.New(agent.Config{
		CAAddr:       f.caAddr,
		RootCertFile: f.caRootCert,
		BundleURL:    f.bundleURL,
		CAServerID:   f.caServerID,
		TokenFile:    f.tokenFile,
		SPIFFEID:     f.spiffeID,
		TTL:          f.ttl,
		RotateAt:     f.rotateAt,
		Jitter:       jitter,
		CertDir:      f.certDir,
		SDS:          srv,
		Logger:       log.With("component", "agent"),
		Metrics:      reg,
	})
	if err != nil {
		return err
	}
	ep, err := srv.Listen(f.sdsSocket, fs.FileMode(mode))
	if err != nil {
		return fmt.Errorf("--sds-socket: %w", err)
	}
	parts := []func(context.Context) error{ag.Run, ep.Serve}
	healthAddr := ""
	if f.healthAddr != "" {
		ln, err := net.Listen("tcp", f.healthAddr)
		if err != nil {
			return fmt.Errorf("--health-addr: %w", err)
		}
		healthAddr = ln.Addr().String()
		parts = append(parts, func(ctx context.Context) error { return serveHealth(ctx, ln, ag, reg) })
	}
	log.Info("garrison agent serving", "version", version, "ca", f.caAddr, "sds", ep.Path(), "health", healthAddr, "cert_dir", f.certDir)

	return runParts(ctx, parts, log, "garrison agent")
}

// serveHealth serves /healthz, 200 while the agent holds a certificate
// that has not expired (503 before the first one and after expiry, so a
// readiness probe keeps traffic away from a workload peers would refuse),
// with the agent's status as JSON; and /metrics.
func serveHealth(ctx context.Context, ln net.Listener, ag *agent.Agent, reg *prometheus.Registry) error {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		st := ag.Status()
		w.Header().Set("Content-Type", "application/json")
		if !st.Ready {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		_ = json.NewEncoder(w).Encode(st)
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("health: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
