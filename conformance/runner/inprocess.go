package runner

import (
	"github.com/garrison-mesh/garrison/authn/jwt"

	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/garrison-mesh/garrison/authz/cases"
	"github.com/garrison-mesh/garrison/authz/compile"
	"github.com/garrison-mesh/garrison/authz/engine"
	"github.com/garrison-mesh/garrison/policies"
)

// Implementation is what the suite drives: given a topic, it serves the
// topic's configuration and decides the topic's requests.
type Implementation interface {
	// Name says which implementation this is, for reports.
	Name() string
	// Start makes the topic's configuration live. The session is closed by
	// the caller.
	Start(ctx context.Context, t *Topic) (Session, error)
}

// Session decides requests with one topic's configuration.
type Session interface {
	Decide(ctx context.Context, req *cases.Request) (cases.Decision, error)
	Close() error
}

// InProcess decides with Garrison's packages in this process: the
// configuration is parsed and validated (policies.Parse), indexed
// (policies.NewSnapshot), compiled to Rego (compile.Compile) and evaluated
// by the engine (engine.NewStatic, Decide), with the options garrison serve
// uses by default.
type InProcess struct {
	// Options are the compile options; the zero value is garrison serve's
	// default (trust domain cluster.local), with deny details on.
	Options compile.Options
	// Snapshot are the snapshot options; the zero value is garrison
	// serve's default (root namespace istio-system).
	Snapshot policies.SnapshotOptions
}

// Name implements Implementation.
func (InProcess) Name() string { return "garrison (in-process)" }

// Start implements Implementation. Any error in the configuration (a file
// that does not validate, a resource defined twice) fails the topic: the
// cases would be about a configuration nobody serves.
func (p InProcess) Start(_ context.Context, t *Topic) (Session, error) {
	var all []*policies.Resource
	var errs []error
	for _, rel := range t.Files {
		data, err := os.ReadFile(filepath.Join(t.ConfigDir, rel))
		if err != nil {
			return nil, err
		}
		rs, problems := policies.Parse(filepath.ToSlash(rel), data)
		if err := problems.Err(); err != nil {
			errs = append(errs, err)
			continue
		}
		all = append(all, rs...)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("topic %s: configuration does not validate:\n%w", t.Name, err)
	}
	snap, problems := policies.NewSnapshot(1, all, p.Snapshot)
	if err := problems.Err(); err != nil {
		return nil, fmt.Errorf("topic %s: snapshot: %w", t.Name, err)
	}
	opts := p.Options
	opts.DenyBodyDetails = true
	res, err := compile.Compile(snap, opts)
	if err != nil {
		return nil, fmt.Errorf("topic %s: compile: %w", t.Name, err)
	}
	authn, err := jwt.New(jwt.Config{})
	if err != nil {
		return nil, err
	}
	eng, err := engine.NewStaticConfig(engine.Config{Authenticator: authn}, res, snap)
	if err != nil {
		_ = authn.Close()
		return nil, fmt.Errorf("topic %s: engine: %w", t.Name, err)
	}
	return &inProcessSession{eng: eng, authn: authn, warnings: res.Warnings}, nil
}

type inProcessSession struct {
	eng      *engine.Engine
	authn    *jwt.Authenticator
	warnings []string
}

func (s *inProcessSession) Decide(ctx context.Context, req *cases.Request) (cases.Decision, error) {
	cr, err := req.CheckRequest()
	if err != nil {
		return cases.Decision{}, err
	}
	d, err := s.eng.Decide(ctx, cr)
	if err != nil {
		return cases.Decision{}, err
	}
	return FromEngine(d), nil
}

func (s *inProcessSession) Close() error { return s.authn.Close() }

// Warnings returns what the compiler reported it compiled differently from
// what was written, for a session InProcess started, or nil.
func Warnings(s Session) []string {
	if ip, ok := s.(*inProcessSession); ok {
		return ip.warnings
	}
	return nil
}

// FromEngine turns an engine decision into the terms cases check.
func FromEngine(d *engine.Decision) cases.Decision {
	out := cases.Decision{Allowed: d.Allowed, Status: d.Status, Policy: d.Policy, Reason: d.Reason}
	if d.Allowed && out.Status == 0 {
		out.Status = 200
	}
	if !d.Allowed && out.Status == 0 {
		out.Status = 403
	}
	if d.Policy != "" {
		rule := d.Rule
		out.Rule = &rule
	}
	if d.Custom != nil && out.Policy == "" {
		out.Policy = d.Custom.Policy
	}
	return out
}
