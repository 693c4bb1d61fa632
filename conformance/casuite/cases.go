package casuite

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"google.golang.org/grpc/codes"
	"gopkg.in/yaml.v3"
)

// Case is one CreateCertificate call and what must come of it.
type Case struct {
	Name string `yaml:"name"`
	// Origin says where the expectation comes from: OriginIstio,
	// OriginSPIFFE or OriginGarrison.
	Origin string `yaml:"origin"`
	// Caller is the credential the call carries (see the Caller* kinds).
	Caller string  `yaml:"caller"`
	CSR    CSRSpec `yaml:"csr"`
	// TTL is the request's validity_duration in seconds.
	TTL int64 `yaml:"ttl"`
	// Metadata is the request's metadata struct.
	Metadata map[string]string `yaml:"metadata"`
	Expect   Expect            `yaml:"expect"`

	// File and Line locate the case.
	File string `yaml:"-"`
	Line int    `yaml:"-"`
}

// Origins of an expectation.
const (
	// OriginIstio: what istiod does.
	OriginIstio = "istio"
	// OriginSPIFFE: what the X.509-SVID specification requires.
	OriginSPIFFE = "spiffe"
	// OriginGarrison: Garrison's own policy, stricter than Istio; a stock
	// istiod is expected to fail these.
	OriginGarrison = "garrison"
)

// Expect is the outcome a case wants.
type Expect struct {
	// Code is "OK" (a certificate is issued) or the name of a gRPC code
	// (PermissionDenied, Unauthenticated, InvalidArgument, ...).
	Code string `yaml:"code"`
	// SPIFFEID is the identity an issued certificate must carry.
	SPIFFEID string `yaml:"spiffeID"`
	// Message is a substring of Garrison's error message; other
	// implementations word theirs differently, so it is checked only when
	// Runner.Messages is set.
	Message string `yaml:"message"`

	code codes.Code
}

// CSRSpec describes the CSR a case sends; the zero value is a CSR with a
// fresh P-256 key and nothing else.
type CSRSpec struct {
	Key          string   `yaml:"key"`
	URIs         []string `yaml:"uris"`
	DNS          []string `yaml:"dns"`
	CN           string   `yaml:"cn"`
	CA           bool     `yaml:"ca"`
	KeyCertSign  bool     `yaml:"keyCertSign"`
	BadSignature bool     `yaml:"badSignature"`
	// Raw, when set, is sent as the CSR as it is.
	Raw *string `yaml:"raw"`
}

// Caller kinds: the part of Case.Caller before the colon.
const (
	CallerToken  = "token"  // token:<name>: Target.Token(name)
	CallerBearer = "bearer" // bearer:<raw>: "Bearer <raw>"
	CallerAuth   = "auth"   // auth:<raw>: this authorization value
	CallerMTLS   = "mtls"   // mtls:<fixture>: a client certificate
	CallerNone   = "none"
)

// Token callers the cases may name, and the identity each must
// authenticate as in the trust domain TrustDomain. "expired" is a token
// that has expired by the time the cases run.
var TokenCallers = map[string]ServiceAccount{
	"a":       {"default", "a"},
	"b":       {"default", "b"},
	"c":       {"default", "c"},
	"expired": {"default", "old"},
}

// ServiceAccount is a Kubernetes service account.
type ServiceAccount struct{ Namespace, Name string }

// Client certificate fixtures of mtls: callers.
const (
	// MTLSValid is an SVID of MTLSIdentity the implementation issued.
	MTLSValid = "valid"
	// MTLSRevoked is the same, revoked through the implementation's hook.
	MTLSRevoked = "revoked"
	// MTLSExpired is an SVID of MTLSIdentity the implementation issued,
	// past its NotAfter.
	MTLSExpired = "expired"
	// MTLSForeign is an SVID of MTLSIdentity from another CA of the same
	// trust domain.
	MTLSForeign = "foreign"
)

// MTLSToken is the token caller whose certificates are the mtls: callers.
const MTLSToken = "c"

// TrustDomain is the trust domain implementations are run with.
const TrustDomain = "cluster.local"

// Suite is the cases of a suite directory.
type Suite struct {
	Dir   string
	Cases []Case
}

// Load reads every *.yaml directly in dir (not its subdirectories, where
// the known failures live) as a list of cases. Case names are unique
// across the suite.
func Load(dir string) (*Suite, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	s := &Suite{Dir: dir}
	seen := map[string]string{}
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".yaml") {
			continue
		}
		path := filepath.Join(dir, e.Name())
		cases, err := loadFile(path)
		if err != nil {
			return nil, err
		}
		for _, c := range cases {
			where := fmt.Sprintf("%s:%d", path, c.Line)
			if first, dup := seen[c.Name]; dup {
				return nil, fmt.Errorf("%s: case %q already defined at %s", where, c.Name, first)
			}
			seen[c.Name] = where
		}
		s.Cases = append(s.Cases, cases...)
	}
	if len(s.Cases) == 0 {
		return nil, fmt.Errorf("no cases in %s", dir)
	}
	return s, nil
}

func loadFile(path string) ([]Case, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var cases []Case
	if err := dec.Decode(&cases); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	// Decode again as nodes for the line of each case.
	var nodes []yaml.Node
	if err := yaml.Unmarshal(data, &nodes); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	for i := range cases {
		c := &cases[i]
		c.File, c.Line = path, nodes[i].Line
		if err := c.validate(); err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, c.Line, err)
		}
	}
	return cases, nil
}

func (c *Case) validate() error {
	if c.Name == "" {
		return errors.New("case without a name")
	}
	if !slices.Contains([]string{OriginIstio, OriginSPIFFE, OriginGarrison}, c.Origin) {
		return fmt.Errorf("case %q: origin %q is not istio, spiffe or garrison", c.Name, c.Origin)
	}
	kind, arg, _ := strings.Cut(c.Caller, ":")
	switch kind {
	case CallerToken:
		if _, ok := TokenCallers[arg]; !ok {
			return fmt.Errorf("case %q: unknown token caller %q", c.Name, arg)
		}
	case CallerMTLS:
		if !slices.Contains([]string{MTLSValid, MTLSRevoked, MTLSExpired, MTLSForeign}, arg) {
			return fmt.Errorf("case %q: unknown client certificate %q", c.Name, arg)
		}
	case CallerBearer, CallerAuth, CallerNone:
	default:
		return fmt.Errorf("case %q: unknown caller %q", c.Name, c.Caller)
	}
	if _, err := keyFor(c.CSR.Key); err != nil {
		return fmt.Errorf("case %q: %w", c.Name, err)
	}
	if c.Expect.Code == "OK" {
		if c.Expect.SPIFFEID == "" {
			return fmt.Errorf("case %q: expect OK without a spiffeID", c.Name)
		}
		return nil
	}
	if c.Expect.SPIFFEID != "" {
		return fmt.Errorf("case %q: spiffeID with code %s", c.Name, c.Expect.Code)
	}
	if err := c.Expect.code.UnmarshalJSON([]byte(`"` + screamingSnake(c.Expect.Code) + `"`)); err != nil || c.Expect.code == codes.OK {
		return fmt.Errorf("case %q: expect code %q is no gRPC code name", c.Name, c.Expect.Code)
	}
	return nil
}

// screamingSnake turns PermissionDenied into PERMISSION_DENIED, the
// spelling codes.Code reads.
func screamingSnake(s string) string {
	var b strings.Builder
	for i, r := range s {
		if i > 0 && r >= 'A' && r <= 'Z' {
			b.WriteByte('_')
		}
		b.WriteRune(r)
	}
	return strings.ToUpper(b.String())
}

// KnownFailures maps a case name to why an implementation fails it.
type KnownFailures map[string]string

// LoadKnownFailures reads a list of {case, reason}; a missing file is an
// empty list.
func LoadKnownFailures(path string) (KnownFailures, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return KnownFailures{}, nil
	}
	if err != nil {
		return nil, err
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var list []struct {
		Case   string `yaml:"case"`
		Reason string `yaml:"reason"`
	}
	if err := dec.Decode(&list); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	k := KnownFailures{}
	for _, e := range list {
		if e.Case == "" || strings.TrimSpace(e.Reason) == "" {
			return nil, fmt.Errorf("%s: an entry needs a case and a reason", path)
		}
		if _, dup := k[e.Case]; dup {
			return nil, fmt.Errorf("%s: %q listed twice", path, e.Case)
		}
		k[e.Case] = strings.TrimSpace(e.Reason)
	}
	return k, nil
}

// Stale returns the listed names that are no case of s.
func (k KnownFailures) Stale(s *Suite) []string {
	exists := map[string]bool{}
	for _, c := range s.Cases {
		exists[c.Name] = true
	}
	var out []string
	for name := range k {
		if !exists[name] {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}
