package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/open-policy-agent/opa/v1/ast"
	opametrics "github.com/open-policy-agent/opa/v1/metrics"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	"github.com/open-policy-agent/opa/v1/topdown"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/garrison-mesh/garrison/authn/peer"
	"github.com/garrison-mesh/garrison/authz/compile"
	"github.com/garrison-mesh/garrison/policies"
)

// DecisionQuery is what Decide evaluates (CONTRACT.md section 5).
const DecisionQuery = "data.garrison.authz.decision"

// ExplainRules are the partial sets of CONTRACT.md section 4 that Explain
// reports, in this order.
var ExplainRules = []string{
	"custom_matches", "deny_matches", "allow_policies", "allow_matches",
	"audit_matches", "dry_run_matches",
	"rbac_enforced_for", "rbac_allow_matches", "rbac_permissive_matches",
	"v1beta1_present",
}

// explainQuery evaluates the decision, every rule of ExplainRules and the
// Envoy response in one evaluation. Each is gathered by a comprehension, so
// a rule the compiler generated no clause for (undefined) reads as empty
// instead of making the whole query undefined.
var explainQuery = func() string {
	var b strings.Builder
	b.WriteString("decision := [x | x := data.garrison.authz.decision]; ")
	b.WriteString("envoy_response := [x | x := data.garrison.authz.envoy_response]")
	for _, r := range ExplainRules {
		fmt.Fprintf(&b, "; %s := [x | x := data.garrison.authz.%s]", r, r)
	}
	return b.String()
}()

// Errors of Decide. Each means no decision was made; callers deny.
var (
	// ErrNotReady: no policy set has been loaded yet.
	ErrNotReady = errors.New("engine: no policy set loaded")
	// ErrUndefined: the policy set does not define a decision for the
	// request, which a correct library never does.
	ErrUndefined = errors.New("engine: decision undefined")
)

// SnapshotSource is what the engine needs of policies.Store: a channel that
// delivers the current snapshot and then every newer one (a slow reader
// may skip versions) and is closed when ctx is done.
type SnapshotSource interface {
	Subscribe(ctx context.Context) <-chan *policies.Snapshot
}

// Config holds the engine's dependencies. Store is required; every other
// field has a default.
type Config struct {
	Store SnapshotSource
	// Compile turns a snapshot into Rego. Default: compile.Compile with
	// default options.
	Compile func(*policies.Snapshot) (*compile.Result, error)
	// Logger receives one line per policy set built or rejected. Default:
	// discard.
	Logger *slog.Logger
	// Metrics is where the engine's collectors are registered. Nil records
	// no metrics.
	Metrics prometheus.Registerer
	// Now is the clock for compile durations and for time.now_ns() in
	// policies. Default: time.Now.
	Now func() time.Time
	// Encoding of the input. Default: EncodingPlugin, what the pinned
	// opa-envoy-plugin builds.
	Encoding Encoding
	// TrustDomain, when set, is the only trust domain whose destination
	// principals context extensions are derived for. Default: any.
	TrustDomain string
	// DecisionCacheSize is how many decisions each policy set remembers by
	// the input it evaluated (decisioncache.go). 0: DefaultDecisionCacheSize;
	// negative: no cache. A policy set whose rules read the clock or call a
	// nondeterministic builtin never caches.
	DecisionCacheSize int
	// AfterSwap, when set, is called on the engine's goroutine each time a
	// new policy set has gone live. Building one at 10,000 policies leaves
	// hundreds of megabytes of garbage; garrison serve collects it there,
	// off the request path, and sizes the collector to the new live heap.
	AfterSwap func()
	// Revocations, when set, refuses requests whose peer certificate
	// (source.certificate, sent with Envoy's include_peer_certificate) the
	// CA has revoked.
	Revocations RevocationChecker
	// Authenticator verifies end-user tokens (RequestAuthentication, legacy
	// origins) before authorization, with the snapshot of the live policy
	// set. Nil: no origin authentication; the istio_authn metadata Envoy
	// sends, if any, is what policies see.
	Authenticator OriginAuthenticator
}

// DefaultDecisionCacheSize bounds the decision cache: about 16k entries of
// a few hundred bytes of key each, a few megabytes.
const DefaultDecisionCacheSize = 16384

// Engine decides CheckRequests against the live compiled policy set. It is
// safe for concurrent use.
type Engine struct {
	store       SnapshotSource
	compile     func(*policies.Snapshot) (*compile.Result, error)
	log         *slog.Logger
	now         func() time.Time
	metrics     *metrics
	enc         Encoding
	trustDomain string
	cacheSize   int
	authn       OriginAuthenticator
	revocations RevocationChecker
	peerSerials *peerSerials
	afterSwap   func()

	live    atomic.Pointer[policySet]
	running atomic.Bool
}

// policySet is everything one snapshot's decisions need. It is built
// completely before it is published and never changed after, so a reader
// that loaded it sees one version throughout.
type policySet struct {
	version uint64
	decide  rego.PreparedEvalQuery
	explain rego.PreparedEvalQuery
	// input builds what Decide evaluates: only the fields the policy set
	// reads (InputPaths). explainInput builds the whole input, which
	// Explain evaluates and shows; both decide the same.
	input        *InputBuilder
	explainInput *InputBuilder
	index        *workloadIndex // nil: no snapshot, nothing is derived
	// cache remembers this set's decisions; nil when off or when the set
	// is not cacheable.
	cache *decisionCache
	// peer is the snapshot's peer authentication, nil when no port of the
	// mesh is STRICT: a plaintext request to a STRICT port is denied.
	peer *peer.Modes
}

// New checks cfg and returns an engine with no policy set: Decide fails
// until Run has loaded the first snapshot.
func New(cfg Config) (*Engine, error) {
	if cfg.Store == nil {
		return nil, errors.New("engine: Config.Store is required")
	}
	e, err := newEngine(cfg)
	if err != nil {
		return nil, err
	}
	e.store = cfg.Store
	return e, nil
}

func newEngine(cfg Config) (*Engine, error) {
	if cfg.Compile == nil {
		cfg.Compile = func(s *policies.Snapshot) (*compile.Result, error) {
			return compile.Compile(s, compile.Options{})
		}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Encoding != EncodingPlugin && cfg.Encoding != EncodingProtoJSON {
		return nil, fmt.Errorf("engine: unknown %v", cfg.Encoding)
	}
	if cfg.DecisionCacheSize == 0 {
		cfg.DecisionCacheSize = DefaultDecisionCacheSize
	}
	e := &Engine{
		cacheSize:   cfg.DecisionCacheSize,
		authn:       cfg.Authenticator,
		revocations: cfg.Revocations,
		afterSwap:   cfg.AfterSwap,
		peerSerials: newPeerSerials(),
		compile:     cfg.Compile,
		log:         cfg.Logger.With("component", "authz-engine"),
		now:         cfg.Now,
		enc:         cfg.Encoding,
		trustDomain: cfg.TrustDomain,
	}
	if cfg.Metrics != nil {
		m, err := newMetrics(cfg.Metrics)
		if err != nil {
			return nil, fmt.Errorf("engine: %w", err)
		}
		e.metrics = m
	}
	return e, nil
}

// NewStatic returns a ready engine deciding with res, for tools that
// compiled a snapshot themselves (garrison policy test|explain). snap, when
// not nil, is what context extensions are derived from. Such an engine has
// no store: Run fails, Load replaces the set.
func NewStatic(res *compile.Result, snap *policies.Snapshot) (*Engine, error) {
	return NewStaticConfig(Config{}, res, snap)
}

// NewStaticConfig is NewStatic with the optional parts of cfg (Store and
// Compile are not used).
func NewStaticConfig(cfg Config, res *compile.Result, snap *policies.Snapshot) (*Engine, error) {
	e, err := newEngine(cfg)
	if err != nil {
		return nil, err
	}
	if err := e.Load(context.Background(), res, snap); err != nil {
		return nil, err
	}
	return e, nil
}

// Load prepares res (compiled from snap, which may be nil) and makes it the
// live policy set. On error the live set is unchanged.
func (e *Engine) Load(ctx context.Context, res *compile.Result, snap *policies.Snapshot) error {
	ps, err := e.prepare(ctx, res, snap)
	if err != nil {
		return err
	}
	e.publish(ps, snap)
	return nil
}

// publish makes ps live, and snap the authenticator's configuration just
// before, so that a request is authenticated and authorized by one
// configuration (save for the requests already between the two steps).
func (e *Engine) publish(ps *policySet, snap *policies.Snapshot) {
	if e.authn != nil && snap != nil {
		e.authn.Update(snap)
	}
	e.live.Store(ps)
}

// Run loads every snapshot the store publishes until ctx is done, then
// returns nil. A snapshot that does not compile or prepare leaves the
// previous policy set live.
func (e *Engine) Run(ctx context.Context) error {
	if e.store == nil {
		return errors.New("engine: no Store to run from (built by NewStatic)")
	}
	if !e.running.CompareAndSwap(false, true) {
		return errors.New("engine: already running")
	}
	defer e.running.Store(false)
	snaps := e.store.Subscribe(ctx)
	for {
		select {
		case <-ctx.Done():
			return nil
		case snap, ok := <-snaps:
			if !ok {
				if ctx.Err() != nil {
					return nil
				}
				return errors.New("engine: snapshot subscription closed")
			}
			if snap != nil {
				e.apply(ctx, snap)
			}
		}
	}
}

// apply compiles and prepares one snapshot and swaps it in.
func (e *Engine) apply(ctx context.Context, snap *policies.Snapshot) {
	start := e.now()
	res, ps, err := e.build(ctx, snap)
	took := e.now().Sub(start)
	if err != nil {
		if ctx.Err() != nil {
			return // shutting down: not a policy problem
		}
		e.metrics.compiled(false, snap.Version(), took)
		live := uint64(0)
		if cur := e.live.Load(); cur != nil {
			live = cur.version
		}
		e.log.Error("policy set rejected; the previous one stays live",
			"version", snap.Version(), "live_version", live, "took", took, "err", err)
		return
	}
	e.publish(ps, snap)
	e.metrics.compiled(true, ps.version, took)
	if e.afterSwap != nil {
		e.afterSwap()
	}
	e.log.Info("policy set live", "version", ps.version, "modules", len(res.Modules),
		"headers", headerCount(res.Headers), "warnings", len(res.Warnings), "took", took)
}

// build compiles and prepares snap, turning a panic into an error: a bug in
// the compiler (or a policy set that trips OPA) must cost one snapshot, not
// the authorization server.
func (e *Engine) build(ctx context.Context, snap *policies.Snapshot) (res *compile.Result, ps *policySet, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("compiler panicked: %v", p)
		}
	}()
	if res, err = e.compile(snap); err != nil {
		return nil, nil, err
	}
	if res == nil {
		return nil, nil, errors.New("compiler returned no result")
	}
	ps, err = e.prepare(ctx, res, snap)
	return res, ps, err
}

func headerCount(h []string) any {
	if h == nil {
		return "all"
	}
	return len(h)
}

// prepare parses and compiles res's modules once and prepares both queries
// from that compiler: PrepareForEval of a real policy set takes
// milliseconds, which is why it never happens on the request path.
func (e *Engine) prepare(ctx context.Context, res *compile.Result, snap *policies.Snapshot) (*policySet, error) {
	if res == nil {
		return nil, errors.New("engine: no compile result")
	}
	// One module per policy in one package costs OPA's compiler modules x
	// rules (CONTRACT.md C1b): the generated modules are parsed one by one
	// but given to the compiler as one, the rules of Result.Merged().
	modules, err := parseModules(res)
	if err != nil {
		return nil, err
	}
	compiler := ast.NewCompiler().WithEnablePrintStatements(false)
	if compiler.Compile(modules); compiler.Failed() {
		return nil, fmt.Errorf("engine: %w", compiler.Errors)
	}
	data := res.Data
	if data == nil {
		data = map[string]any{}
	}
	// The store hands out AST values, so a policy reading data costs no
	// conversion per evaluation.
	store := inmem.NewFromObjectWithOpts(data, inmem.OptRoundTripOnWrite(true), inmem.OptReturnASTValuesOnRead(true))

	prep := func(query string) (rego.PreparedEvalQuery, error) {
		return rego.New(
			rego.Query(query),
			rego.Compiler(compiler),
			rego.Store(store),
			rego.GenerateJSON(keepTerm),
		).PrepareForEval(ctx)
	}
	decide, err := prep(DecisionQuery)
	if err != nil {
		return nil, fmt.Errorf("engine: preparing %s: %w", DecisionQuery, err)
	}
	explain, err := prep(explainQuery)
	if err != nil {
		return nil, fmt.Errorf("engine: preparing the explain query: %w", err)
	}
	ps := &policySet{
		version:      res.SnapshotVersion,
		decide:       decide,
		explain:      explain,
		input:        NewInputBuilder(InputOptions{Encoding: e.enc, Headers: res.Headers, Fields: InputPaths(compiler)}),
		explainInput: NewInputBuilder(InputOptions{Encoding: e.enc, Headers: res.Headers}),
	}
	if cacheable(compiler) {
		ps.cache = newDecisionCache(e.cacheSize)
	} else if e.cacheSize > 0 {
		e.log.Info("decision cache off for this policy set: a rule reads the clock or calls a nondeterministic builtin",
			"version", res.SnapshotVersion)
	}
	if snap != nil {
		ps.version = snap.Version()
		ps.index = newWorkloadIndex(snap, e.trustDomain)
		if m := peer.New(snap); m.AnyStrict() {
			ps.peer = m
		}
	}
	return ps, nil
}

// keepTerm hands results back as AST terms: the engine reads the decision
// object directly instead of converting it to Go maps first.
func keepTerm(t *ast.Term, _ *rego.EvalContext) (any, error) { return t, nil }

// Ready reports whether a policy set is live.
func (e *Engine) Ready() bool { return e.live.Load() != nil }

// Version is the snapshot version of the live policy set, 0 before one.
func (e *Engine) Version() uint64 {
	if ps := e.live.Load(); ps != nil {
		return ps.version
	}
	return 0
}

// Decide evaluates one request. An error means no decision could be made;
// callers must deny. A rejected path or a request opa-envoy-plugin could
// not build an input for is a 400 decision, not an error.
func (e *Engine) Decide(ctx context.Context, req *authv3.CheckRequest) (*Decision, error) {
	// OPA notices a cancelled context only while it evaluates, not before.
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	ps := e.live.Load()
	if ps == nil {
		return nil, ErrNotReady
	}
	growStack()
	in, early := ps.resolve(req)
	if early != nil {
		return early, nil
	}
	if d := ps.requireMTLS(req, &in); d != nil {
		return d, nil
	}
	if d := e.requireUnrevoked(ps, req, &in); d != nil {
		return d, nil
	}
	req, authn, refused, err := e.authenticate(ctx, ps, req, &in)
	if err != nil {
		return nil, err
	}
	if refused != nil {
		return refused, nil
	}
	if early := ps.build(req, ps.input, &in); early != nil {
		early.Authn = authn
		return early, nil
	}
	var key *[]byte
	if ps.cache != nil {
		key = keyBuffers.Get().(*[]byte)
		defer keyBuffers.Put(key)
		*key = appendKey((*key)[:0], in.value)
		if cached, ok := ps.cache.get(*key); ok {
			e.metrics.cacheLookup(true)
			d := *cached
			in.annotate(&d, ps.version)
			d.Authn = authn
			return &d, nil
		}
		e.metrics.cacheLookup(false)
	}
	rs, err := e.eval(ctx, ps.decide, in.value)
	if err != nil {
		return nil, fmt.Errorf("engine: policy version %d: %w", ps.version, err)
	}
	if len(rs) == 0 || len(rs[0].Expressions) == 0 {
		return nil, fmt.Errorf("%w (policy version %d)", ErrUndefined, ps.version)
	}
	t, ok := rs[0].Expressions[0].Value.(*ast.Term)
	if !ok {
		return nil, fmt.Errorf("engine: policy version %d: unexpected result %T", ps.version, rs[0].Expressions[0].Value)
	}
	d, err := decisionFrom(t.Value)
	if err != nil {
		return nil, fmt.Errorf("engine: policy version %d: %w", ps.version, err)
	}
	if key != nil {
		cached := *d // before annotate: the request's own part stays out
		ps.cache.put(*key, &cached)
	}
	in.annotate(d, ps.version)
	d.Authn = authn
	return d, nil
}

// Evaluation options every decision shares: OPA's metrics and its
// per-evaluation cancellation goroutine are for servers that report them;
// a decision takes tens of microseconds and Decide reports its own.
var (
	evalNoMetrics = rego.EvalMetrics(opametrics.NoOp())
	// evalNotCancelled stands in for a context that cannot be cancelled.
	evalNotCancelled = rego.EvalExternalCancel(topdown.NewCancel())
)

// eval evaluates a prepared query for one input. OPA would start a
// goroutine per evaluation to watch ctx; context.AfterFunc cancels the
// evaluation at no cost until ctx is done. The rule value cache is a
// pooled flat one (evalcache.go).
func (e *Engine) eval(ctx context.Context, q rego.PreparedEvalQuery, input ast.Value) (rego.ResultSet, error) {
	cancel := evalNotCancelled
	if ctx.Done() != nil {
		c := topdown.NewCancel()
		stop := context.AfterFunc(ctx, c.Cancel)
		defer stop()
		cancel = rego.EvalExternalCancel(c)
	}
	vc := getVirtualCache()
	defer vc.release()
	return q.Eval(ctx, rego.EvalParsedInput(input), rego.EvalTime(e.now()), evalNoMetrics, cancel, rego.EvalVirtualCache(vc))
}

// preparedInput is a request made ready for evaluation.
type preparedInput struct {
	value    ast.Value
	workload string
	note     string
	// ext are the context extensions the request is decided with: the
	// request's own, or derived ones (derived not nil).
	ext     map[string]string
	derived []extEntry
	// ov is what the input takes from the engine rather than the request.
	ov overrides
	// destNS and destLabels memoize destination; nil labels: not read yet.
	destNS     string
	destLabels map[string]string
}

// ReasonMTLSRequired: the destination port is STRICT (PeerAuthentication)
// and the request came without a peer certificate. Envoy would refuse the
// connection; ext_authz refuses the request, for proxies whose listeners do
// not enforce the mode themselves.
const ReasonMTLSRequired = "mtls-required"

// requireMTLS denies a plaintext request to a STRICT port.
func (ps *policySet) requireMTLS(req *authv3.CheckRequest, in *preparedInput) *Decision {
	attrs := req.GetAttributes()
	if ps.peer == nil || attrs.GetSource().GetPrincipal() != "" {
		return nil
	}
	// An unknown destination still gets the mesh-wide mode, as mesh-wide
	// AuthorizationPolicies still apply to it.
	ns, labels := in.destination()
	port := attrs.GetDestination().GetAddress().GetSocketAddress().GetPortValue()
	eff := ps.peer.For(ns, labels, port)
	if eff.Mode != peer.Strict {
		return nil
	}
	d := &Decision{Status: 403, Reason: ReasonMTLSRequired, Kind: "PeerAuthentication"}
	if eff.Resource != nil {
		d.Kind = eff.Resource.Kind.Kind
		d.Policy = eff.Resource.Namespace + "/" + eff.Resource.Name
		if eff.Resource.Namespace == "" {
			d.Policy = eff.Resource.Name
		}
	}
	d.Notes = append(d.Notes, "plaintext request to a STRICT port: "+eff.String())
	in.annotate(d, ps.version)
	return d
}

// destination is the namespace and labels of the destination workload,
// from the context extensions the request is decided with; read once, as
// the mTLS check and authentication both need them.
func (in *preparedInput) destination() (string, map[string]string) {
	if in.destLabels != nil {
		return in.destNS, in.destLabels
	}
	in.destLabels = map[string]string{}
	add := func(k, v string) {
		if k == ExtNamespace {
			in.destNS = v
		} else if l, ok := strings.CutPrefix(k, ExtLabelPrefix); ok {
			in.destLabels[l] = v
		}
	}
	if in.derived != nil {
		for _, e := range in.derived {
			add(e.key, e.value)
		}
	} else {
		for k, v := range in.ext {
			add(k, v)
		}
	}
	return in.destNS, in.destLabels
}

func (in *preparedInput) annotate(d *Decision, version uint64) {
	d.PolicyVersion = version
	d.Workload = in.workload
	if in.note != "" {
		d.Notes = append(d.Notes, in.note)
	}
}

// resolve normalizes the path and derives the context extensions: what
// authentication and the input need to know of the request.
func (ps *policySet) resolve(req *authv3.CheckRequest) (preparedInput, *Decision) {
	var in preparedInput
	attrs := req.GetAttributes()
	if p := attrs.GetRequest().GetHttp().GetPath(); p != "" {
		np, err := NormalizePath(p)
		if err != nil {
			return in, ps.reject(ReasonInvalidPath, err)
		}
		if np != p {
			in.ov.path, in.ov.setPath = np, true
		}
	}
	ext := attrs.GetContextExtensions()
	in.ext = ext
	if ext[ExtNamespace] == "" && ps.index != nil && attrs != nil {
		d, note := ps.index.lookup(attrs.GetDestination().GetPrincipal())
		if d != nil {
			in.ov.ext = d.ext
			in.derived = d.ext
			in.workload = d.workload
		}
		in.note = note
	} else {
		in.workload = ext[ExtWorkload]
	}
	return in, nil
}

// build makes the input value of req, resolved as in says.
func (ps *policySet) build(req *authv3.CheckRequest, builder *InputBuilder, in *preparedInput) *Decision {
	v, err := builder.build(req, &in.ov)
	if err != nil {
		return ps.reject(ReasonInvalidRequest, err)
	}
	in.value = v
	return nil
}

func (ps *policySet) reject(reason string, err error) *Decision {
	return &Decision{Status: 400, Reason: reason, PolicyVersion: ps.version, Notes: []string{err.Error()}}
}

// Explanation is Decide's answer with its grounds: every rule of
// ExplainRules that matched and the input evaluated.
type Explanation struct {
	// Decision is nil when the policy set defines none for the request.
	Decision *Decision `json:"decision"`
	// Matches holds, by rule name, the elements of each rule of
	// ExplainRules that has any (v1beta1_present's value when a rule
	// rather than a set).
	Matches map[string][]any `json:"matches,omitempty"`
	// EnvoyResponse is data.garrison.authz.envoy_response, what stock
	// opa-envoy-plugin would answer with the same bundle.
	EnvoyResponse any `json:"envoy_response,omitempty"`
	// Input is the input evaluated, as JSON.
	Input any `json:"input,omitempty"`
}

// Explain evaluates req like Decide and also reports which rules matched,
// in the same evaluation. It is for tools and debugging: it costs several
// times a decision. The errors are Decide's; with ErrUndefined the
// explanation is returned too, since it shows why.
func (e *Engine) Explain(ctx context.Context, req *authv3.CheckRequest) (*Explanation, error) {
	ps := e.live.Load()
	if ps == nil {
		return nil, ErrNotReady
	}
	in, early := ps.resolve(req)
	if early != nil {
		return &Explanation{Decision: early}, nil
	}
	if d := ps.requireMTLS(req, &in); d != nil {
		return &Explanation{Decision: d}, nil
	}
	if d := e.requireUnrevoked(ps, req, &in); d != nil {
		return &Explanation{Decision: d}, nil
	}
	req, authn, refused, err := e.authenticate(ctx, ps, req, &in)
	if err != nil {
		return nil, err
	}
	if refused != nil {
		return &Explanation{Decision: refused}, nil
	}
	if early := ps.build(req, ps.explainInput, &in); early != nil {
		early.Authn = authn
		return &Explanation{Decision: early}, nil
	}
	x := &Explanation{Matches: map[string][]any{}}
	if x.Input, _ = ast.JSON(in.value); x.Input == nil {
		x.Input = in.value.String()
	}
	rs, err := ps.explain.Eval(ctx, rego.EvalParsedInput(in.value), rego.EvalTime(e.now()))
	if err != nil {
		return nil, fmt.Errorf("engine: policy version %d: %w", ps.version, err)
	}
	if len(rs) == 0 {
		return nil, fmt.Errorf("engine: policy version %d: explain query undefined", ps.version)
	}
	b := rs[0].Bindings
	for _, r := range ExplainRules {
		for _, v := range collected(b[r]) {
			switch c := v.Value.(type) {
			case ast.Set:
				c.Foreach(func(t *ast.Term) { x.Matches[r] = append(x.Matches[r], mustJSON(t)) })
			default:
				x.Matches[r] = append(x.Matches[r], mustJSON(v))
			}
		}
	}
	if rsp := collected(b["envoy_response"]); len(rsp) > 0 {
		x.EnvoyResponse = mustJSON(rsp[0])
	}
	ds := collected(b["decision"])
	if len(ds) == 0 {
		return x, fmt.Errorf("%w (policy version %d)", ErrUndefined, ps.version)
	}
	d, err := decisionFrom(ds[0].Value)
	if err != nil {
		return x, fmt.Errorf("engine: policy version %d: %w", ps.version, err)
	}
	in.annotate(d, ps.version)
	d.Authn = authn
	x.Decision = d
	return x, nil
}

// collected unpacks the array a comprehension of the explain query built.
func collected(v any) []*ast.Term {
	t, ok := v.(*ast.Term)
	if !ok {
		return nil
	}
	a, ok := t.Value.(*ast.Array)
	if !ok {
		return nil
	}
	out := make([]*ast.Term, 0, a.Len())
	a.Foreach(func(t *ast.Term) { out = append(out, t) })
	return out
}

// mustJSON converts a result term for the explanation; results are ground
// JSON-like values, so this cannot fail in practice.
func mustJSON(t *ast.Term) any {
	x, err := ast.JSON(t.Value)
	if err != nil {
		return t.String()
	}
	return x
}
