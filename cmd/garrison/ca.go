package main

import (
	"github.com/garrison-mesh/garrison/internal/atomicfile"

	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/garrison-mesh/garrison/ca/authority"
	"github.com/garrison-mesh/garrison/ca/server"
	"github.com/garrison-mesh/garrison/ca/store"
	"github.com/garrison-mesh/garrison/ca/tokenfile"
	"github.com/garrison-mesh/garrison/ca/upstream/disk"
	"github.com/garrison-mesh/garrison/ca/upstream/selfsigned"
)

// caFlags configure the certificate authority of `garrison serve` and
// `garrison ca init`.
type caFlags struct {
	addr           string
	bundleAddr     string
	tokenFile      string
	dnsNames       []string
	defaultTTL     time.Duration
	maxTTL         time.Duration
	upstream       string
	cacertsDir     string
	adminSocket    string
	passphraseFile string
}

// addCAStateFlags are the flags that say where the CA's state and keys
// come from (serve and ca init).
func addCAStateFlags(fl *pflag.FlagSet, f *caFlags) {
	fl.DurationVar(&f.defaultTTL, "ca-default-ttl", authority.DefaultTTL, "workload certificate lifetime when a request asks for none")
	fl.DurationVar(&f.maxTTL, "ca-max-ttl", authority.DefaultMaxTTL, "longest lifetime a request may ask for (longer requests are refused)")
	fl.StringVar(&f.upstream, "ca-upstream", "selfsigned", "where the signing CA comes from: selfsigned (generated root and intermediate) or disk (Istio cacerts files)")
	fl.StringVar(&f.cacertsDir, "ca-cacerts-dir", "", "with --ca-upstream disk: directory of ca-cert.pem, ca-key.pem, cert-chain.pem, root-cert.pem")
	fl.StringVar(&f.passphraseFile, "ca-key-passphrase-file", "", "encrypt CA private keys at rest with the passphrase in this file")
}

func addCAServeFlags(fl *pflag.FlagSet, f *caFlags) {
	addCAStateFlags(fl, f)
	fl.StringVar(&f.addr, "ca-addr", ":15012", "address of the CA API (istio.v1.auth.IstioCertificateService over TLS); empty disables the CA")
	fl.StringVar(&f.bundleAddr, "ca-bundle-addr", ":15013", "address of the HTTPS trust bundle and CRL endpoint (/bundle, /crl, /root-cert.pem)")
	fl.StringVar(&f.tokenFile, "ca-token-file", "", "YAML of bearer token hashes -> namespace/serviceAccount (garrison ca token create); empty: mTLS renewal only")
	fl.StringSliceVar(&f.dnsNames, "ca-dns-names", []string{"localhost"}, "DNS names in the CA server's certificate")
	fl.StringVar(&f.adminSocket, "ca-admin-socket", "", "Unix socket of the CA admin API (default <data-dir>/ca/admin.sock)")
}

func caDir(dataDir string) string { return filepath.Join(dataDir, "ca") }

// openAuthority opens the CA state under dataDir and the authority on it.
func openAuthority(ctx context.Context, f *caFlags, dataDir, trustDomain string, reg prometheus.Registerer, log *slog.Logger) (*authority.Authority, *store.Store, error) {
	var pass []byte
	if f.passphraseFile != "" {
		var err error
		if pass, err = os.ReadFile(f.passphraseFile); err != nil {
			return nil, nil, fmt.Errorf("--ca-key-passphrase-file: %w", err)
		}
		if len(bytes.TrimSpace(pass)) == 0 {
			return nil, nil, errors.New("--ca-key-passphrase-file is empty")
		}
	}
	var up authority.Upstream
	switch f.upstream {
	case "selfsigned":
		s, err := selfsigned.New(selfsigned.Config{TrustDomain: trustDomain})
		if err != nil {
			return nil, nil, err
		}
		up = s
	case "disk":
		d, err := disk.New(disk.Config{Dir: f.cacertsDir})
		if err != nil {
			return nil, nil, fmt.Errorf("--ca-cacerts-dir: %w", err)
		}
		up = d
	default:
		return nil, nil, fmt.Errorf("--ca-upstream must be selfsigned or disk, got %q", f.upstream)
	}
	st, err := store.Open(ctx, store.Config{Dir: caDir(dataDir), Passphrase: pass, Logger: log})
	if err != nil {
		return nil, nil, err
	}
	ca, err := authority.New(ctx, authority.Config{
		TrustDomain: trustDomain, Upstream: up, Store: st, Logger: log, Metrics: reg,
		DefaultTTL: f.defaultTTL, MaxTTL: f.maxTTL,
	})
	if err != nil {
		_ = st.Close()
		return nil, nil, err
	}
	if err := writeRoots(dataDir, ca.RootsPEM()); err != nil {
		_ = st.Close()
		return nil, nil, err
	}
	return ca, st, nil
}

// writeRoots writes <data-dir>/ca/root-cert.pem (every trusted root), the
// bootstrap trust a platform hands workloads, replacing it atomically.
func writeRoots(dataDir string, roots []byte) error {
	path := filepath.Join(caDir(dataDir), "root-cert.pem")
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, roots) {
		return nil
	}
	return atomicfile.Write(path, roots, 0o644)
}

// startCA opens the authority and returns the parts that serve it; the
// returned close releases the state after the parts stopped. The authority
// is returned too: ext_authz asks it whether a peer certificate is revoked.
func startCA(ctx context.Context, f *caFlags, dataDir, trustDomain, namespace string, reg prometheus.Registerer, log *slog.Logger) ([]func(context.Context) error, func(), *authority.Authority, error) {
	ca, st, err := openAuthority(ctx, f, dataDir, trustDomain, reg, log)
	if err != nil {
		return nil, nil, nil, err
	}
	closeAll := []func(){func() { _ = st.Close() }}
	cleanup := func() {
		for i := len(closeAll) - 1; i >= 0; i-- {
			closeAll[i]()
		}
	}
	fail := func(err error) ([]func(context.Context) error, func(), *authority.Authority, error) {
		cleanup()
		return nil, nil, nil, err
	}
	var tokens server.TokenAuthenticator
	var tokenRun func(context.Context) error
	if f.tokenFile != "" {
		ta, err := tokenfile.New(tokenfile.Config{Path: f.tokenFile, Logger: log})
		if err != nil {
			return fail(fmt.Errorf("--ca-token-file: %w", err))
		}
		tokens, tokenRun = ta, ta.Run
	}
	srv, err := server.New(ctx, server.Config{
		Authority: ca, Tokens: tokens, Namespace: namespace, DNSNames: f.dnsNames,
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, Logger: log, Metrics: reg,
	})
	if err != nil {
		return fail(err)
	}
	caLn, err := net.Listen("tcp", f.addr)
	if err != nil {
		return fail(fmt.Errorf("--ca-addr: %w", err))
	}
	closeAll = append(closeAll, func() { _ = caLn.Close() })
	bundleLn, err := net.Listen("tcp", f.bundleAddr)
	if err != nil {
		return fail(fmt.Errorf("--ca-bundle-addr: %w", err))
	}
	closeAll = append(closeAll, func() { _ = bundleLn.Close() })
	sock := f.adminSocket
	if sock == "" {
		sock = filepath.Join(caDir(dataDir), "admin.sock")
	}
	adminLn, err := server.ListenAdmin(sock)
	if err != nil {
		return fail(fmt.Errorf("--ca-admin-socket: %w", err))
	}
	closeAll = append(closeAll, func() { _ = adminLn.Close(); _ = os.Remove(sock) })
	log.Info("certificate authority serving", "ca", caLn.Addr().String(), "bundle", bundleLn.Addr().String(), "admin_socket", sock,
		"spiffe_id", srv.ID().String(), "roots", filepath.Join(caDir(dataDir), "root-cert.pem"))
	parts := []func(context.Context) error{
		ca.Run,
		srv.RunRenewal,
		func(ctx context.Context) error { return srv.Serve(ctx, caLn) },
		func(ctx context.Context) error { return srv.ServeBundle(ctx, bundleLn) },
		func(ctx context.Context) error { return server.ServeAdmin(ctx, adminLn, ca, log) },
		func(ctx context.Context) error {
			// Keep root-cert.pem current through root rotations.
			changed := ca.Subscribe(ctx)
			for {
				select {
				case <-ctx.Done():
					return nil
				case <-changed:
					if err := writeRoots(dataDir, ca.RootsPEM()); err != nil {
						log.Error("writing root-cert.pem", "err", err)
					}
				}
			}
		},
	}
	if tokenRun != nil {
		parts = append(parts, tokenRun)
	}
	return parts, cleanup, ca, nil
}

func newCACommand(logs *logFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ca",
		Short: "Operate Garrison's certificate authority",
		Long: "init works offline on --data-dir; status, issue, rotate, revoke and list talk to the running\n" +
			"garrison serve over its admin socket (<data-dir>/ca/admin.sock, mode 0600); token create edits\n" +
			"the token file, which a running server re-reads.",
	}
	var dataDir, socket string
	cmd.PersistentFlags().StringVar(&dataDir, "data-dir", ".data", "directory of Garrison's state")
	cmd.PersistentFlags().StringVar(&socket, "admin-socket", "", "the CA admin socket (default <data-dir>/ca/admin.sock)")
	client := func() *adminClient {
		s := socket
		if s == "" {
			s = filepath.Join(caDir(dataDir), "admin.sock")
		}
		return newAdminClient(s)
	}
	cmd.AddCommand(
		newCAInitCommand(logs, &dataDir),
		newCAStatusCommand(client),
		newCAIssueCommand(client),
		newCARotateCommand(client),
		newCARevokeCommand(client),
		newCAListCommand(client),
		newCATokenCommand(),
	)
	return cmd
}

func newCAInitCommand(logs *logFlags, dataDir *string) *cobra.Command {
	f := &caFlags{}
	var trustDomain string
	cmd := &cobra.Command{
		Use:   "init",
		Short: "Create the CA (root, signing CA, database) under --data-dir, offline",
		Long: "Init creates the CA state a later garrison serve uses: with --ca-upstream selfsigned a root\n" +
			"(EC P-256, 10 years) and an intermediate (1 year); with disk, the validated cacerts files.\n" +
			"Running it again changes nothing. It writes <data-dir>/ca/root-cert.pem.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := logs.logger(cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			ca, st, err := openAuthority(cmd.Context(), f, *dataDir, trustDomain, nil, log)
			if err != nil {
				return err
			}
			defer func() { _ = st.Close() }()
			s, err := ca.Status(cmd.Context())
			if err != nil {
				return err
			}
			return printCAStatus(cmd.OutOrStdout(), s, filepath.Join(caDir(*dataDir), "root-cert.pem"))
		},
	}
	addCAStateFlags(cmd.Flags(), f)
	cmd.Flags().StringVar(&trustDomain, "trust-domain", "cluster.local", "the mesh's SPIFFE trust domain")
	return cmd
}

func newCAStatusCommand(client func() *adminClient) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show roots with expiry, the signing CA, issued counts and revocations",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var s authority.Status
			raw, err := client().do(cmd.Context(), http.MethodGet, "/v1/status", nil, &s)
			if err != nil {
				return err
			}
			if output == "json" {
				_, err = cmd.OutOrStdout().Write(raw)
				return err
			}
			return printCAStatus(cmd.OutOrStdout(), s, "")
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	return cmd
}

func printCAStatus(w io.Writer, s authority.Status, rootsFile string) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "trust domain\t%s\n", s.TrustDomain)
	fmt.Fprintf(tw, "upstream\t%s\n", s.Upstream)
	if rootsFile != "" {
		fmt.Fprintf(tw, "trust bundle\t%s\n", rootsFile)
	}
	for _, r := range s.Roots {
		fmt.Fprintf(tw, "root (%s)\t%s, expires %s (in %s), sha256 %s\n", r.State, r.Subject, r.NotAfter.Format(time.RFC3339),
			r.NotAfter.Sub(s.Now).Round(time.Hour), r.Fingerprint[:16])
	}
	fmt.Fprintf(tw, "signing CA\t%s, expires %s (in %s)\n", s.Signing.Subject, s.Signing.NotAfter.Format(time.RFC3339), s.Signing.NotAfter.Sub(s.Now).Round(time.Hour))
	if p := s.Pending; p != nil && p.ActivateAt != nil {
		fmt.Fprintf(tw, "next signing CA\t%s, signs from %s (in %s)\n", p.Subject, p.ActivateAt.Format(time.RFC3339), p.ActivateAt.Sub(s.Now).Round(time.Second))
	}
	fmt.Fprintf(tw, "certificates\t%d issued, %d valid, %d revoked and unexpired\n", s.Counts.Issued, s.Counts.Valid, s.Counts.Revoked)
	fmt.Fprintf(tw, "CRL\tnumber %s, %d entries, next update %s\n", s.CRL.Number, s.CRL.Entries, s.CRL.NextUpdate.Format(time.RFC3339))
	fmt.Fprintf(tw, "TTL\tdefault %s, max %s\n", s.DefaultTTL, s.MaxTTL)
	return tw.Flush()
}

func newCAIssueCommand(client func() *adminClient) *cobra.Command {
	var id, outDir string
	var ttl time.Duration
	cmd := &cobra.Command{
		Use:   "issue",
		Short: "Issue a certificate for a SPIFFE ID (key made here, journaled as operator-issued)",
		Long: "Issue makes an EC P-256 key locally, has the running CA sign it for --spiffe-id, and writes\n" +
			"key.pem (0600), cert-chain.pem (leaf first, root last) and root-cert.pem into --out-dir.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			if err != nil {
				return err
			}
			der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
			if err != nil {
				return err
			}
			req := server.IssueRequest{SPIFFEID: id, CSR: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))}
			if ttl != 0 {
				req.TTL = ttl.String()
			}
			var resp server.IssueResponse
			if _, err := client().do(cmd.Context(), http.MethodPost, "/v1/issue", req, &resp); err != nil {
				return err
			}
			keyDER, err := x509.MarshalPKCS8PrivateKey(key)
			if err != nil {
				return err
			}
			if err := os.MkdirAll(outDir, 0o700); err != nil {
				return err
			}
			files := []struct {
				name string
				data []byte
				mode os.FileMode
			}{
				{"key.pem", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600},
				{"cert-chain.pem", []byte(strings.Join(resp.CertChain, "")), 0o644},
				{"root-cert.pem", []byte(resp.RootsPEM), 0o644},
			}
			for _, f := range files {
				if err := os.WriteFile(filepath.Join(outDir, f.name), f.data, f.mode); err != nil {
					return err
				}
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "issued %s serial %s, expires %s, in %s\n", id, resp.Serial, resp.NotAfter.Format(time.RFC3339), outDir)
			return err
		},
	}
	cmd.Flags().StringVar(&id, "spiffe-id", "", "the certificate's identity, spiffe://<trust-domain>/ns/<ns>/sa/<sa>")
	cmd.Flags().StringVar(&outDir, "out-dir", ".", "directory for key.pem, cert-chain.pem and root-cert.pem")
	cmd.Flags().DurationVar(&ttl, "ttl", 0, "lifetime (default: the CA's default)")
	_ = cmd.MarkFlagRequired("spiffe-id")
	return cmd
}

func newCARotateCommand(client func() *adminClient) *cobra.Command {
	var inter, root, now bool
	var activateAfter time.Duration
	cmd := &cobra.Command{
		Use:   "rotate",
		Short: "Rotate the signing CA (--intermediate) or the root (--root), without downtime",
		Long: "--intermediate makes a new signing CA under the same root. --root makes a new root and a\n" +
			"signing CA under it: the new root is published in the trust bundle at once and signs after\n" +
			"--activate-after (default: two bundle refresh hints, 10m), so every agent trusts it before the\n" +
			"first certificate under it appears; the old root stays in the bundle until every certificate\n" +
			"issued under it has expired. With --ca-upstream disk, replace the cacerts files first.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if inter == root {
				return errors.New("give exactly one of --intermediate and --root")
			}
			req := server.RotateRequest{Target: "intermediate"}
			if root {
				req.Target = "root"
				switch {
				case now:
					req.ActivateAfter = "0s"
				case activateAfter > 0:
					req.ActivateAfter = activateAfter.String()
				}
			}
			var s authority.Status
			if _, err := client().do(cmd.Context(), http.MethodPost, "/v1/rotate", req, &s); err != nil {
				return err
			}
			return printCAStatus(cmd.OutOrStdout(), s, "")
		},
	}
	cmd.Flags().BoolVar(&inter, "intermediate", false, "rotate the signing (intermediate) CA")
	cmd.Flags().BoolVar(&root, "root", false, "rotate the root")
	cmd.Flags().DurationVar(&activateAfter, "activate-after", 0, "with --root: how long the new root is only published before it signs (default: the server's, 10m)")
	cmd.Flags().BoolVar(&now, "now", false, "with --root: sign under the new root at once (agents that have not fetched the bundle yet will not trust new certificates)")
	return cmd
}

func newCARevokeCommand(client func() *adminClient) *cobra.Command {
	var req server.RevokeRequest
	cmd := &cobra.Command{
		Use:   "revoke",
		Short: "Revoke a certificate by --serial, or every unexpired certificate of --spiffe-id",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var resp server.RevokeResponse
			if _, err := client().do(cmd.Context(), http.MethodPost, "/v1/revoke", req, &resp); err != nil {
				return err
			}
			_, err := fmt.Fprintf(cmd.OutOrStdout(), "revoked %d certificate(s)\n", resp.Revoked)
			return err
		},
	}
	cmd.Flags().StringVar(&req.Serial, "serial", "", "serial number in hex (as garrison ca list shows it)")
	cmd.Flags().StringVar(&req.SPIFFEID, "spiffe-id", "", "revoke every unexpired certificate of this identity")
	cmd.Flags().StringVar(&req.Reason, "reason", "", "RFC 5280 reason: keyCompromise, superseded, cessationOfOperation, ... (default unspecified)")
	return cmd
}

func newCAListCommand(client func() *adminClient) *cobra.Command {
	var id, output string
	var valid bool
	var limit int
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List issued certificates from the journal, newest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			q := fmt.Sprintf("/v1/certificates?limit=%d&valid=%t&spiffe_id=%s", limit, valid, urlQueryEscape(id))
			var certs []server.CertificateJSON
			raw, err := client().do(cmd.Context(), http.MethodGet, q, nil, &certs)
			if err != nil {
				return err
			}
			if output == "json" {
				_, err = cmd.OutOrStdout().Write(raw)
				return err
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "SERIAL\tSPIFFE ID\tNOT AFTER\tCALLER\tREVOKED")
			for _, c := range certs {
				rev := "-"
				if c.Revoked != nil {
					rev = c.Revoked.Reason
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", c.Serial, c.SPIFFEID, c.NotAfter.Format(time.RFC3339), c.Caller, rev)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVar(&id, "spiffe-id", "", "only this identity")
	cmd.Flags().BoolVar(&valid, "valid", false, "only certificates valid now")
	cmd.Flags().IntVar(&limit, "limit", 100, "at most this many (0: all)")
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	return cmd
}

func newCATokenCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "token", Short: "Manage the CA's bearer token file"}
	var ns, sa, file string
	var expires time.Duration
	create := &cobra.Command{
		Use:   "create",
		Short: "Add a token for a namespace/service account to the token file and print it (once)",
		Long: "Create appends the SHA-256 of a new random token to --token-file (created with mode 0600)\n" +
			"and prints the token; only the hash is stored. A running garrison serve re-reads the file.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			now := time.Now().UTC().Truncate(time.Second)
			var exp time.Time
			if expires > 0 {
				exp = now.Add(expires)
			}
			tok, err := tokenfile.Create(file, ns, sa, exp, now)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintln(cmd.OutOrStdout(), tok)
			return err
		},
	}
	create.Flags().StringVar(&ns, "namespace", "", "the workload's namespace")
	create.Flags().StringVar(&sa, "service-account", "", "the workload's service account")
	create.Flags().StringVar(&file, "token-file", "", "the token file (garrison serve --ca-token-file)")
	create.Flags().DurationVar(&expires, "expires", 0, "the token stops working after this long (0: never)")
	for _, f := range []string{"namespace", "service-account", "token-file"} {
		_ = create.MarkFlagRequired(f)
	}
	cmd.AddCommand(create)
	return cmd
}

// adminClient speaks the CA admin API over its Unix socket.
type adminClient struct {
	socket string
	http   *http.Client
}

func newAdminClient(socket string) *adminClient {
	return &adminClient{socket: socket, http: &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		}},
	}}
}

// do sends body (JSON) and decodes the answer into out, returning the raw
// answer too.
func (c *adminClient) do(ctx context.Context, method, path string, body, out any) ([]byte, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://garrison-ca"+path, rd)
	if err != nil {
		return nil, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("CA admin socket %s (is garrison serve running with the CA on?): %w", c.socket, err)
	}
	defer func() { _ = resp.Body.Close() }()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(raw, &e) == nil && e.Error != "" {
			return nil, errors.New(e.Error)
		}
		return nil, fmt.Errorf("%s %s: %s", method, path, resp.Status)
	}
	return raw, json.Unmarshal(raw, out)
}

func urlQueryEscape(s string) string { return url.QueryEscape(s) }
