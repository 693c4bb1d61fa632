package runner

import (
	"github.com/garrison-mesh/garrison/ca/authority"
	"github.com/garrison-mesh/garrison/ca/pemcert"

	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"gopkg.in/yaml.v3"
	pb "istio.io/api/security/v1alpha1"

	"github.com/garrison-mesh/garrison/conformance/casuite"
)

// CAImplementation starts an implementation of Istio's CA API for the CA
// suite (conformance/ca, package casuite).
type CAImplementation interface {
	Name() string
	StartCA(ctx context.Context) (CATarget, error)
}

// CATarget is a started implementation: what the suite asks, and a way to
// stop it.
type CATarget interface {
	casuite.Target
	Close() error
}

// GarrisonCA runs `garrison serve` with its CA: `garrison ca init`, a
// `garrison ca token create` for each of casuite.TokenCallers (the expired
// one with --expires 1s, waited out), then serve on an empty configuration
// directory with every listener on a loopback port the kernel picks. The
// CA's addresses and roots file come from its JSON log line "certificate
// authority serving"; it is ready when gRPC health on the CA port says
// SERVING. Revocation is `garrison ca revoke --serial`.
type GarrisonCA struct {
	// Binary is the garrison executable.
	Binary string
	// Log, when set, receives the server's log.
	Log io.Writer
	// ReadyTimeout bounds the wait for readiness; 0 is DefaultReadyTimeout.
	ReadyTimeout time.Duration
}

// Name implements CAImplementation.
func (g GarrisonCA) Name() string { return "garrison serve (" + g.Binary + ")" }

// StartCA implements CAImplementation.
func (g GarrisonCA) StartCA(ctx context.Context) (CATarget, error) {
	// A short directory: the admin socket's path must fit in 108 bytes.
	work, err := os.MkdirTemp("", "gca")
	if err != nil {
		return nil, err
	}
	p := &process{work: work}
	ok := false
	defer func() {
		if !ok {
			p.stop()
		}
	}()
	data, config, tokenFile := filepath.Join(work, "data"), filepath.Join(work, "config"), filepath.Join(work, "tokens.yaml")
	if err := os.Mkdir(config, 0o755); err != nil {
		return nil, err
	}
	cli := func(args ...string) (string, error) {
		out, err := exec.CommandContext(ctx, g.Binary, args...).Output()
		if err != nil {
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				err = fmt.Errorf("%w: %s", err, ee.Stderr)
			}
			return "", fmt.Errorf("garrison %s: %w", strings.Join(args, " "), err)
		}
		return strings.TrimSpace(string(out)), nil
	}
	t := &garrisonCATarget{caTarget: &caTarget{p: p, tokens: map[string]string{}}, cli: cli, data: data}
	// The expired token first: serve's start-up is most of its second.
	var expiredBy time.Time
	for _, name := range append([]string{"expired"}, slices.DeleteFunc(slices.Sorted(maps.Keys(casuite.TokenCallers)), func(n string) bool { return n == "expired" })...) {
		sa := casuite.TokenCallers[name]
		args := []string{"ca", "token", "create", "--token-file", tokenFile, "--namespace", sa.Namespace, "--service-account", sa.Name}
		if name == "expired" {
			args = append(args, "--expires", "1s")
			// token create truncates its clock to the second.
			expiredBy = time.Now().Add(2 * time.Second)
		}
		if t.tokens[name], err = cli(args...); err != nil {
			return nil, err
		}
	}
	if _, err := cli("ca", "init", "--data-dir", data, "--trust-domain", casuite.TrustDomain); err != nil {
		return nil, err
	}
	cmd := exec.Command(g.Binary, "serve", "--config", config, "--data-dir", data, "--trust-domain", casuite.TrustDomain,
		"--authz-addr", "127.0.0.1:0", "--monitoring-addr", "127.0.0.1:0",
		"--ca-addr", "127.0.0.1:0", "--ca-bundle-addr", "127.0.0.1:0", "--ca-token-file", tokenFile, "--log-format", "json")
	deadline := time.Now().Add(cmpDuration(g.ReadyTimeout, DefaultReadyTimeout))
	line, err := p.startAwaiting(ctx, cmd, g.Log, "certificate authority serving", time.Until(deadline))
	if err != nil {
		return nil, err
	}
	t.addr, _ = line["ca"].(string)
	rootsFile, _ := line["roots"].(string)
	if t.addr == "" || rootsFile == "" {
		return nil, p.failure(fmt.Sprintf("\"certificate authority serving\" names no ca address or roots file: %v", line))
	}
	if t.roots, err = readRoots(rootsFile); err != nil {
		return nil, p.failure(err.Error())
	}
	if err := waitCA(ctx, p, t.addr, deadline); err != nil {
		return nil, err
	}
	time.Sleep(time.Until(expiredBy))
	ok = true
	return t, nil
}

// caTarget is a CA the runner started: its process, address, trust
// bundle and the tokens of the suite's callers.
type caTarget struct {
	p      *process
	addr   string
	roots  []*x509.Certificate
	tokens map[string]string
}

func (t *caTarget) Addr() string               { return t.addr }
func (t *caTarget) Roots() []*x509.Certificate { return t.roots }
func (t *caTarget) Close() error               { return t.p.stop() }

func (t *caTarget) Token(name string) (string, error) {
	if tok, ok := t.tokens[name]; ok {
		return tok, nil
	}
	return "", fmt.Errorf("no token %q: %w", name, errors.ErrUnsupported)
}

// garrisonCATarget is garrison serve's CA, revoked through garrison ca.
type garrisonCATarget struct {
	*caTarget
	cli  func(args ...string) (string, error)
	data string
}

// Revoke implements casuite.Revoker with `garrison ca revoke` over the
// admin socket.
func (t *garrisonCATarget) Revoke(_ context.Context, leaf *x509.Certificate) error {
	out, err := t.cli("ca", "revoke", "--data-dir", t.data, "--serial", authority.FormatSerial(leaf.SerialNumber), "--reason", "keyCompromise")
	if err != nil {
		return err
	}
	if !strings.Contains(out, "revoked 1") {
		return fmt.Errorf("garrison ca revoke: %s", out)
	}
	return nil
}

// CACommand runs any implementation of the CA API from a command template
// (see conformance/README.md, "The CA suite"). In Args:
//
//	{addr}    a free loopback host:port to serve the CA API on, over TLS
//	{roots}   a path the implementation writes its trust bundle to (PEM)
//	{tokens}  a path the implementation writes its bearer tokens to: YAML,
//	          casuite.TokenCallers name -> token
//	{tmp}     a scratch directory
//
// Revoke, when set, is the command that revokes a certificate the
// implementation issued, with {serial} (lower-case hex), {spiffe_id} and
// the same {addr}, {roots}, {tmp}; exit status 0 means revoked.
type CACommand struct {
	Args   []string
	Revoke []string
	// Env is added to the processes' environment.
	Env []string
	// Log, when set, receives the server's output.
	Log io.Writer
	// ReadyTimeout bounds the wait for readiness; 0 is DefaultReadyTimeout.
	ReadyTimeout time.Duration
}

// ParseCACommand splits the templates on white space (no quoting); revoke
// may be empty.
func ParseCACommand(template, revoke string) (CACommand, error) {
	args := strings.Fields(template)
	for _, p := range []string{"{addr}", "{roots}", "{tokens}"} {
		if !strings.Contains(template, p) {
			return CACommand{}, fmt.Errorf("CA command template %q must use {addr}, {roots} and {tokens}", template)
		}
	}
	c := CACommand{Args: args, Revoke: strings.Fields(revoke)}
	if len(c.Revoke) > 0 && !strings.Contains(revoke, "{serial}") && !strings.Contains(revoke, "{spiffe_id}") {
		return CACommand{}, fmt.Errorf("revoke template %q must use {serial} or {spiffe_id}", revoke)
	}
	return c, nil
}

// Name implements CAImplementation.
func (c CACommand) Name() string { return strings.Join(c.Args, " ") }

// StartCA implements CAImplementation. The implementation is ready when
// {roots} holds a certificate, {tokens} exists and the CA port answers:
// gRPC health SERVING or, without a health service, any CreateCertificate
// answer but Unavailable.
func (c CACommand) StartCA(ctx context.Context) (CATarget, error) {
	work, err := os.MkdirTemp("", "gca")
	if err != nil {
		return nil, err
	}
	p := &process{work: work}
	ok := false
	defer func() {
		if !ok {
			p.stop()
		}
	}()
	tmp := filepath.Join(work, "tmp")
	if err := os.Mkdir(tmp, 0o755); err != nil {
		return nil, err
	}
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	rootsFile, tokensFile := filepath.Join(work, "roots.pem"), filepath.Join(work, "tokens.yaml")
	vars := []string{"{addr}", addr, "{roots}", rootsFile, "{tokens}", tokensFile, "{tmp}", tmp}
	cmd := exec.Command(c.Args[0], substitute(c.Args[1:], vars)...)
	cmd.Env = append(os.Environ(), c.Env...)
	if err := p.start(cmd, c.Log, nil); err != nil {
		return nil, err
	}
	t := &caTarget{p: p, addr: addr}
	deadline := time.Now().Add(cmpDuration(c.ReadyTimeout, DefaultReadyTimeout))
	if err := p.poll(ctx, deadline, rootsFile+" and "+tokensFile, func() (bool, error) {
		roots, err := readRoots(rootsFile)
		if err != nil {
			return false, nil
		}
		raw, err := os.ReadFile(tokensFile)
		if err != nil {
			return false, nil
		}
		tokens := map[string]string{}
		if err := yaml.Unmarshal(raw, &tokens); err != nil {
			return false, fmt.Errorf("%s: %w", tokensFile, err)
		}
		for name := range tokens {
			if _, known := casuite.TokenCallers[name]; !known {
				return false, fmt.Errorf("%s: %q is no caller of the suite", tokensFile, name)
			}
		}
		t.roots, t.tokens = roots, tokens
		return true, nil
	}); err != nil {
		return nil, err
	}
	if err := waitCA(ctx, p, addr, deadline); err != nil {
		return nil, err
	}
	ok = true
	if len(c.Revoke) == 0 {
		return t, nil
	}
	return &revokingCommandCATarget{caTarget: t, revoke: c.Revoke, env: cmd.Env, vars: vars}, nil
}

// revokingCommandCATarget is a command target with a revocation hook: a
// type of its own so that casuite sees a Revoker only when there is one.
type revokingCommandCATarget struct {
	*caTarget
	revoke []string
	env    []string
	vars   []string
}

func (t *revokingCommandCATarget) Revoke(ctx context.Context, leaf *x509.Certificate) error {
	id := ""
	if len(leaf.URIs) > 0 {
		id = leaf.URIs[0].String()
	}
	args := substitute(t.revoke, append([]string{"{serial}", authority.FormatSerial(leaf.SerialNumber), "{spiffe_id}", id}, t.vars...))
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Env = t.env
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return nil
}

func substitute(args, vars []string) []string {
	r := strings.NewReplacer(vars...)
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = r.Replace(a)
	}
	return out
}

func readRoots(path string) ([]*x509.Certificate, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	roots, err := pemcert.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return roots, nil
}

// waitCA waits until the CA port answers: gRPC health SERVING or, for a
// server without health, any CreateCertificate answer but Unavailable.
// The server's certificate is not verified here; every case verifies it.
func waitCA(ctx context.Context, p *process, addr string, deadline time.Time) error {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{
		MinVersion: tls.VersionTLS12, InsecureSkipVerify: true, //nolint:gosec // readiness only
	})))
	if err != nil {
		return p.failure(err.Error())
	}
	defer conn.Close()
	health := healthpb.NewHealthClient(conn)
	ca := pb.NewIstioCertificateServiceClient(conn)
	return p.poll(ctx, deadline, "the CA API on "+addr, func() (bool, error) {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		resp, err := health.Check(pctx, &healthpb.HealthCheckRequest{})
		if err == nil {
			return resp.GetStatus() == healthpb.HealthCheckResponse_SERVING, nil
		}
		if status.Code(err) != codes.Unimplemented {
			return false, nil
		}
		_, err = ca.CreateCertificate(pctx, &pb.IstioCertificateRequest{})
		return status.Code(err) != codes.Unavailable && status.Code(err) != codes.DeadlineExceeded, nil
	})
}
