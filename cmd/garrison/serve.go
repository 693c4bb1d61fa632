package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"
	meshconfig "istio.io/api/mesh/v1alpha1"

	"github.com/garrison-mesh/garrison/authn/jwt"
	"github.com/garrison-mesh/garrison/authz/compile"
	"github.com/garrison-mesh/garrison/authz/engine"
	"github.com/garrison-mesh/garrison/authz/extauthz"
	"github.com/garrison-mesh/garrison/authz/provider"
	"github.com/garrison-mesh/garrison/ca/authority"
	"github.com/garrison-mesh/garrison/cmd/internal/admin"
	"github.com/garrison-mesh/garrison/policies"
	"github.com/garrison-mesh/garrison/policies/source/file"
)

type serveFlags struct {
	configDir      string
	dataDir        string
	monitoringAddr string
	rootNamespace  string
	domainSuffix   string
	debounce       time.Duration
	trustDomain    string
	authzAddr      string
	authzSocket    string
	decisionLog    string
	denyDetails    bool
	decisionCache  int
	gcPercent      int
	meshConfig     string
	ca             caFlags
}

func newServeCommand(logs *logFlags) *cobra.Command {
	f := &serveFlags{}
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve the mesh configuration of a directory of YAML",
		Long: "Serve loads every .yaml, .yml and .json file under --config, keeps watching it, and serves the\n" +
			"monitoring port (/healthz, /readyz, /metrics, /debug/config, /debug/status). A change that\n" +
			"does not validate never replaces the last good configuration of its file, even across a\n" +
			"restart (the last good copies are kept under --data-dir); fixing the file recovers without\n" +
			"a restart.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := logs.logger(cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			return serve(cmd.Context(), f, log)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.configDir, "config", "", "directory of Istio and Kubernetes YAML to serve (required)")
	fl.StringVar(&f.dataDir, "data-dir", ".data", "directory for Garrison's state")
	fl.StringVar(&f.monitoringAddr, "monitoring-addr", ":15014", "address of the monitoring port")
	fl.StringVar(&f.rootNamespace, "root-namespace", policies.DefaultRootNamespace, "namespace whose policies apply mesh-wide")
	fl.StringVar(&f.domainSuffix, "domain-suffix", policies.DefaultDomainSuffix, "DNS suffix that completes short service names")
	fl.DurationVar(&f.debounce, "debounce", 100*time.Millisecond, "quiet time after a file change before the configuration is rebuilt")
	fl.StringVar(&f.trustDomain, "trust-domain", "cluster.local", "the mesh's SPIFFE trust domain")
	fl.StringVar(&f.authzAddr, "authz-addr", extauthz.DefaultTCPAddr, "address of the ext_authz gRPC server (envoy.service.auth.v3.Authorization)")
	fl.StringVar(&f.authzSocket, "authz-socket", "", "also serve ext_authz on this Unix socket, for an Envoy on the same machine")
	fl.StringVar(&f.decisionLog, "decision-log", "", "write one JSON line per authorization decision to this file (- for standard output); empty: off")
	fl.BoolVar(&f.denyDetails, "deny-details", true, "name the deciding policy and rule in deny responses")
	fl.IntVar(&f.decisionCache, "authz-decision-cache", engine.DefaultDecisionCacheSize,
		"decisions remembered per policy set, by what the policies read of a request (0: off); a new policy set starts empty")
	fl.StringVar(&f.meshConfig, "mesh-config", "",
		"Istio MeshConfig YAML (istiod's mesh.yaml); its extensionProviders are the services CUSTOM AuthorizationPolicies delegate to")
	fl.IntVar(&f.gcPercent, "gc-percent", 0,
		"the Go garbage collector's target heap growth (as GOGC); 0 sizes it to the live heap after each policy set (see gc.go); a GOGC environment variable wins when set")
	addCAServeFlags(fl, &f.ca)
	_ = cmd.MarkFlagRequired("config")
	return cmd
}

func serve(ctx context.Context, f *serveFlags, log *slog.Logger) error {
	_, gogcSet := os.LookupEnv("GOGC")
	gc := newGCTuner(gogcSet, f.gcPercent, log)
	if err := os.MkdirAll(f.dataDir, 0o700); err != nil {
		return fmt.Errorf("--data-dir: %w", err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		buildInfo(),
	)
	store := policies.NewStore(policies.StoreConfig{
		Options: policies.SnapshotOptions{RootNamespace: f.rootNamespace, DomainSuffix: f.domainSuffix},
		Logger:  log,
	})
	src, err := file.New(file.Config{
		Dir:      f.configDir,
		Store:    store,
		Logger:   log.With("component", "config"),
		Debounce: f.debounce,
		Metrics:  reg,
		StateDir: filepath.Join(f.dataDir, "config-last-good"),
	})
	if err != nil {
		return fmt.Errorf("--config: %w", err)
	}
	// The CA starts first: ext_authz refuses peers whose certificate it
	// revoked.
	var caParts []func(context.Context) error
	var revocations engine.RevocationChecker
	var caStatus func(context.Context) (*authority.Status, error)
	if f.ca.addr != "" {
		var closeCA func()
		var ca *authority.Authority
		caParts, closeCA, ca, err = startCA(ctx, &f.ca, f.dataDir, f.trustDomain, f.rootNamespace, reg, log.With("component", "ca"))
		if err != nil {
			return fmt.Errorf("certificate authority: %w", err)
		}
		defer closeCA()
		revocations = ca
		caStatus = func(ctx context.Context) (*authority.Status, error) {
			st, err := ca.Status(ctx)
			return &st, err
		}
	}
	authn, err := jwt.New(jwt.Config{
		Logger:  log.With("component", "authn"),
		Metrics: reg,
	})
	if err != nil {
		return err
	}
	defer authn.Close()
	eng, err := engine.New(engine.Config{
		Authenticator: authn,
		Store:         store,
		Compile: func(snap *policies.Snapshot) (*compile.Result, error) {
			return compile.Compile(snap, compile.Options{TrustDomain: f.trustDomain, DenyBodyDetails: f.denyDetails})
		},
		Logger:            log.With("component", "authz"),
		Metrics:           reg,
		TrustDomain:       f.trustDomain,
		DecisionCacheSize: cacheSize(f.decisionCache),
		AfterSwap:         gc.afterSwap,
		Revocations:       revocations,
	})
	if err != nil {
		return err
	}
	providers, err := loadProviders(f.meshConfig, reg, log)
	if err != nil {
		return fmt.Errorf("--mesh-config: %w", err)
	}
	defer providers.Close()
	decisionLog, closeLog, err := openDecisionLog(f.decisionLog)
	if err != nil {
		return fmt.Errorf("--decision-log: %w", err)
	}
	defer closeLog()
	authz, err := extauthz.New(extauthz.Config{
		Decider:         eng,
		Logger:          log.With("component", "ext_authz"),
		Metrics:         reg,
		DecisionLog:     decisionLog,
		DenyBodyDetails: f.denyDetails,
		Custom:          providers,
	})
	if err != nil {
		return err
	}
	authzEndpoint, err := authz.Listen(extauthz.ListenConfig{TCPAddr: f.authzAddr, UnixSocket: f.authzSocket})
	if err != nil {
		return fmt.Errorf("--authz-addr/--authz-socket: %w", err)
	}
	mon, err := admin.New(admin.Config{
		Addr:       f.monitoringAddr,
		Snapshots:  store,
		Status:     func() any { return src.Status() },
		Gatherer:   reg,
		Logger:     log.With("component", "monitoring"),
		Version:    version,
		Components: map[string]admin.Component{"authz": eng},
		JWKS:       authn.Status,
		CA:         caStatus,
	})
	if err != nil {
		return fmt.Errorf("--monitoring-addr: %w", err)
	}
	log.Info("garrison serving", "version", version, "config", f.configDir, "monitoring", mon.Addr(),
		"authz", authzEndpoint.TCPAddr().String(), "authz_socket", authzEndpoint.UnixSocket())

	parts := append([]func(context.Context) error{src.Run, eng.Run, authzEndpoint.Serve, mon.Serve}, caParts...)
	return runParts(ctx, parts, log, "garrison")
}

// runParts runs every part until ctx is done. The first part to fail
// stops the others; a signal (ctx) stops them all. name is what the final
// log line says stopped.
func runParts(ctx context.Context, parts []func(context.Context) error, log *slog.Logger, name string) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, len(parts))
	for _, run := range parts {
		go func() { errc <- run(ctx) }()
	}
	var first error
	for range parts {
		if err := <-errc; err != nil && first == nil {
			first = err
			cancel()
		}
	}
	if first != nil {
		log.Error(name+" stopped", "err", first)
		return first
	}
	log.Info(name + " stopped")
	return nil
}

// loadProviders reads the extension providers of the MeshConfig file at
// path; with no file there are none, and CUSTOM policies deny what they
// match.
func loadProviders(path string, reg prometheus.Registerer, log *slog.Logger) (*provider.Set, error) {
	var mc *meshconfig.MeshConfig
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		var problems policies.Problems
		mc, problems = policies.ParseMeshConfig(path, data)
		for _, w := range problems.Warnings() {
			log.Warn("mesh config", "problem", w.Error())
		}
		if errs := problems.Errors(); len(errs) > 0 {
			return nil, errs
		}
	}
	return provider.New(provider.Config{
		Providers: mc.GetExtensionProviders(),
		Logger:    log.With("component", "authz-provider"),
		Metrics:   reg,
	})
}

// cacheSize maps the flag's 0 (off) to the engine's negative size.
func cacheSize(flag int) int {
	if flag <= 0 {
		return -1
	}
	return flag
}

// openDecisionLog opens the decision log destination: "" is off, "-" is
// standard output, anything else a file appended to.
func openDecisionLog(path string) (io.Writer, func(), error) {
	switch path {
	case "":
		return nil, func() {}, nil
	case "-":
		return os.Stdout, func() {}, nil
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, nil, err
	}
	return f, func() { _ = f.Close() }, nil
}

func buildInfo() prometheus.Collector {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "garrison_build_info",
		Help: "Always 1; the labels say which Garrison is running.",
	}, []string{"version"})
	g.WithLabelValues(version).Set(1)
	return g
}
