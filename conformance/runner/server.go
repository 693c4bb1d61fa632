package runner

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/garrison-mesh/garrison/authz/cases"
)

// DefaultReadyTimeout is how long a server may take to become ready.
const DefaultReadyTimeout = 60 * time.Second

// pollEvery is the interval between readiness probes.
const pollEvery = 20 * time.Millisecond

// GarrisonServer runs `garrison serve` per topic, on loopback ports the
// kernel picks, learns its ext_authz and monitoring addresses from its JSON
// log line "garrison serving", waits for /readyz, and checks that every
// configuration file was accepted.
type GarrisonServer struct {
	// Binary is the garrison executable.
	Binary string
	// Args are added to serve's arguments.
	Args []string
	// Log, when set, receives the server's log.
	Log io.Writer
	// ReadyTimeout bounds the wait for readiness; 0 is DefaultReadyTimeout.
	ReadyTimeout time.Duration
}

// Name implements Implementation.
func (g GarrisonServer) Name() string { return "garrison serve (" + g.Binary + ")" }

// Start implements Implementation.
func (g GarrisonServer) Start(ctx context.Context, t *Topic) (Session, error) {
	work, err := os.MkdirTemp("", "garrison-conformance-")
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
	config := filepath.Join(work, "config")
	if err := os.Mkdir(config, 0o755); err != nil {
		return nil, err
	}
	if err := t.Stage(config); err != nil {
		return nil, err
	}
	args := append([]string{"serve", "--config", config, "--data-dir", filepath.Join(work, "data"),
		"--authz-addr", "127.0.0.1:0", "--ca-addr", "", "--monitoring-addr", "127.0.0.1:0", "--log-format", "json"}, g.Args...)
	deadline := time.Now().Add(cmpDuration(g.ReadyTimeout, DefaultReadyTimeout))
	line, err := p.startAwaiting(ctx, exec.Command(g.Binary, args...), g.Log, "garrison serving", time.Until(deadline))
	if err != nil {
		return nil, err
	}
	authzAddr, _ := line["authz"].(string)
	monitoring, _ := line["monitoring"].(string)
	if authzAddr == "" || monitoring == "" {
		return nil, p.failure(fmt.Sprintf("\"garrison serving\" names no authz or monitoring address: %v", line))
	}
	base := "http://" + monitoring
	if err := p.poll(ctx, deadline, "/readyz", func() (bool, error) {
		code, _, err := httpGet(ctx, base+"/readyz")
		return err == nil && code == http.StatusOK, nil
	}); err != nil {
		return nil, err
	}
	// Readiness says a snapshot is live, not that every file is in it: a
	// file garrison rejected would silently leave its policies out.
	_, body, err := httpGet(ctx, base+"/debug/status")
	if err != nil {
		return nil, p.failure("GET /debug/status: " + err.Error())
	}
	var st struct {
		Source struct {
			InvalidFiles []json.RawMessage `json:"invalidFiles"`
		} `json:"source"`
	}
	if err := json.Unmarshal(body, &st); err != nil {
		return nil, p.failure("GET /debug/status: " + err.Error())
	}
	if len(st.Source.InvalidFiles) > 0 {
		return nil, p.failure(fmt.Sprintf("garrison serve rejected configuration files of topic %s: %s", t.Name, body))
	}
	client, err := Dial(authzAddr)
	if err != nil {
		return nil, p.failure(err.Error())
	}
	ok = true
	return &serverSession{Client: client, p: p}, nil
}

// Command runs any ext_authz implementation per topic from a command
// template. In Args, {config} is replaced by a directory holding only the
// topic's configuration files, {addr} by a free loopback address
// (127.0.0.1:port) the server must serve gRPC ext_authz on, and {tmp} by a
// scratch directory. The server is ready when the standard gRPC health
// service answers SERVING or, for a server without it, when a Check
// succeeds.
type Command struct {
	Args []string
	// Env is added to the process's environment.
	Env []string
	// Log, when set, receives the server's output.
	Log io.Writer
	// ReadyTimeout bounds the wait for readiness; 0 is DefaultReadyTimeout.
	ReadyTimeout time.Duration
}

// ParseCommand splits a command template on white space (no quoting).
func ParseCommand(template string) (Command, error) {
	args := strings.Fields(template)
	if len(args) == 0 {
		return Command{}, errors.New("empty command template")
	}
	joined := strings.Join(args, " ")
	if !strings.Contains(joined, "{config}") || !strings.Contains(joined, "{addr}") {
		return Command{}, fmt.Errorf("command template %q must use {config} and {addr}", template)
	}
	return Command{Args: args}, nil
}

// Name implements Implementation.
func (c Command) Name() string { return strings.Join(c.Args, " ") }

// Start implements Implementation.
func (c Command) Start(ctx context.Context, t *Topic) (Session, error) {
	if len(c.Args) == 0 {
		return nil, errors.New("runner: Command without Args")
	}
	work, err := os.MkdirTemp("", "authz-conformance-")
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
	config := filepath.Join(work, "config")
	tmp := filepath.Join(work, "tmp")
	for _, d := range []string{config, tmp} {
		if err := os.Mkdir(d, 0o755); err != nil {
			return nil, err
		}
	}
	if err := t.Stage(config); err != nil {
		return nil, err
	}
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	args := substitute(c.Args, []string{"{config}", config, "{addr}", addr, "{tmp}", tmp})
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = append(os.Environ(), c.Env...)
	if err := p.start(cmd, c.Log, nil); err != nil {
		return nil, err
	}
	client, err := Dial(addr)
	if err != nil {
		return nil, p.failure(err.Error())
	}
	health := healthpb.NewHealthClient(client.conn)
	probe := &cases.Request{Path: "/"}
	deadline := time.Now().Add(cmpDuration(c.ReadyTimeout, DefaultReadyTimeout))
	if err := p.poll(ctx, deadline, "gRPC health or a successful Check on "+addr, func() (bool, error) {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		resp, err := health.Check(pctx, &healthpb.HealthCheckRequest{})
		if err == nil {
			return resp.GetStatus() == healthpb.HealthCheckResponse_SERVING, nil
		}
		if status.Code(err) != codes.Unimplemented {
			return false, nil
		}
		_, err = client.Decide(pctx, probe)
		return err == nil, nil
	}); err != nil {
		client.Close()
		return nil, err
	}
	ok = true
	return &serverSession{Client: client, p: p}, nil
}

type serverSession struct {
	*Client
	p *process
}

func (s *serverSession) Close() error {
	err := s.Client.Close()
	if perr := s.p.stop(); perr != nil && err == nil {
		err = perr
	}
	return err
}

// process is a server started for one topic.
type process struct {
	work   string
	cmd    *exec.Cmd
	exited chan struct{}
	err    error // of Wait, once exited is closed

	mu   sync.Mutex
	tail []string // the last lines of its output
}

const tailLines = 40

// start runs cmd, copying its output to log and, line by line, to watch.
func (p *process) start(cmd *exec.Cmd, log io.Writer, watch func([]byte)) error {
	pr, pw, err := os.Pipe()
	if err != nil {
		return err
	}
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		pr.Close()
		pw.Close()
		return err
	}
	pw.Close()
	p.cmd = cmd
	p.exited = make(chan struct{})
	read := make(chan struct{})
	go func() {
		defer close(read)
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64*1024), 1024*1024)
		for sc.Scan() {
			line := sc.Bytes()
			if log != nil {
				fmt.Fprintf(log, "%s\n", line)
			}
			if watch != nil {
				watch(line)
			}
			p.mu.Lock()
			p.tail = append(p.tail, string(line))
			if len(p.tail) > tailLines {
				p.tail = p.tail[len(p.tail)-tailLines:]
			}
			p.mu.Unlock()
		}
		_, _ = io.Copy(io.Discard, pr)
		pr.Close()
	}()
	go func() {
		p.err = cmd.Wait()
		<-read
		close(p.exited)
	}()
	return nil
}

// startAwaiting starts cmd and waits, until timeout, for the JSON log line
// whose msg is msg (garrison serve's "garrison serving", "certificate
// authority serving"), which names the addresses it listens on.
func (p *process) startAwaiting(ctx context.Context, cmd *exec.Cmd, log io.Writer, msg string, timeout time.Duration) (map[string]any, error) {
	found := make(chan map[string]any, 1)
	if err := p.start(cmd, log, func(line []byte) {
		var m map[string]any
		if json.Unmarshal(line, &m) == nil && m["msg"] == msg {
			select {
			case found <- m:
			default:
			}
		}
	}); err != nil {
		return nil, err
	}
	select {
	case line := <-found:
		return line, nil
	case <-p.exited:
		return nil, p.failure(fmt.Sprintf("%s exited before it logged %q", cmd.Args[0], msg))
	case <-time.After(timeout):
		return nil, p.failure(fmt.Sprintf("%s did not log %q within %s", cmd.Args[0], msg, timeout))
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// poll calls probe until it reports ready, the process exits, the deadline
// passes or ctx is done.
func (p *process) poll(ctx context.Context, deadline time.Time, what string, probe func() (bool, error)) error {
	tick := time.NewTicker(pollEvery)
	defer tick.Stop()
	for {
		ready, err := probe()
		if err != nil {
			return p.failure(err.Error())
		}
		if ready {
			return nil
		}
		select {
		case <-p.exited:
			return p.failure("the server exited while waiting for " + what)
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
		if time.Now().After(deadline) {
			return p.failure("timed out waiting for " + what)
		}
	}
}

// failure is an error carrying the end of the server's output.
func (p *process) failure(msg string) error {
	p.mu.Lock()
	tail := strings.Join(p.tail, "\n")
	p.mu.Unlock()
	if tail == "" {
		return errors.New(msg)
	}
	return fmt.Errorf("%s; its last output:\n%s", msg, tail)
}

// stop ends the process (SIGTERM, then SIGKILL after 10s) and removes its
// scratch directory.
func (p *process) stop() error {
	var err error
	if p.cmd != nil && p.cmd.Process != nil {
		select {
		case <-p.exited:
		default:
			_ = p.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-p.exited:
			case <-time.After(10 * time.Second):
				_ = p.cmd.Process.Kill()
				<-p.exited
				err = errors.New("the server did not stop within 10s of SIGTERM")
			}
		}
	}
	if p.work != "" {
		if rerr := os.RemoveAll(p.work); rerr != nil && err == nil {
			err = rerr
		}
	}
	return err
}

// freeAddr returns a loopback address with a port that was free a moment
// ago, for implementations that cannot be told to pick one themselves.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	addr := ln.Addr().String()
	return addr, ln.Close()
}

func httpGet(ctx context.Context, url string) (int, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, body, err
}

func cmpDuration(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}
