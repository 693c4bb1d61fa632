// Package engine evaluates compiled policy sets with embedded OPA. See
// ../CONTRACT.md.
//
// Off the request path, Run takes every configuration snapshot the store
// publishes, compiles it (authz/compile), parses the Rego (one module per
// resource, on every core) and compiles it once (the generated rules as one
// module, those of compile.Result.Merged), prepares the decision query and
// the explain query from that one compiler, works out which input fields
// the rules can read (InputPaths), indexes the snapshot's workloads by
// identity, and swaps the whole policy
// set in with one atomic store. A snapshot that fails to compile or prepare
// is logged and counted and the previous set stays live. NewStatic does the
// same once, for a compile.Result at hand (the CLI).
//
// On the request path, Decide loads the live set once (so the input
// filter, the workload index and the queries all come from one version),
// normalizes the path as Envoy's normalize_path does (a path it rejects is a
// 400 decision), derives the destination's context extensions from its
// identity when Garrison's xDS did not send them, builds the OPA input
// ast.Value straight from the proto (InputBuilder: the value equals what
// opa-envoy-plugin builds, without its JSON round trip, less the fields no
// rule reads), and evaluates data.garrison.authz.decision with
// EvalParsedInput and the options of Engine.eval (no OPA metrics, no
// cancellation goroutine, a pooled rule-value cache). It records nothing
// on the way. It fails closed: no policy set, an evaluation error, an undefined
// or malformed decision are errors, which callers answer with a denial.
package engine
