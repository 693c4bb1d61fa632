package jwt

import (
	"bytes"
	"fmt"
	"maps"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// behaviourCase is one case of testdata/behaviour.yaml: a configuration,
// tokens signed for it, and requests with the result each must get.
type behaviourCase struct {
	Name   string               `yaml:"name"`
	Config string               `yaml:"config"`
	Tokens map[string]caseToken `yaml:"tokens"`
	Reqs   []caseRequest        `yaml:"requests"`
}

// caseToken is signed with a test key (helpers_test.go). exp defaults to
// an hour after the case's time; noExp leaves it out.
type caseToken struct {
	Key    string         `yaml:"key"`
	Claims map[string]any `yaml:"claims"`
	Header map[string]any `yaml:"header"`
	Exp    *int64         `yaml:"exp"` // relative to now
	NoExp  bool           `yaml:"noExp"`
}

type caseRequest struct {
	Name    string `yaml:"name"`
	Request struct {
		Namespace string            `yaml:"namespace"`
		Labels    map[string]string `yaml:"labels"`
		Port      uint32            `yaml:"port"`
		Method    string            `yaml:"method"`
		Scheme    string            `yaml:"scheme"`
		Host      string            `yaml:"host"`
		Path      string            `yaml:"path"`
		Headers   map[string]string `yaml:"headers"`
	} `yaml:"request"`
	Peer string   `yaml:"peer"`
	Want caseWant `yaml:"want"`
}

type caseWant struct {
	Outcome         string         `yaml:"outcome"`
	Status          int            `yaml:"status"`
	Reason          string         `yaml:"reason"`
	WWWAuthenticate *string        `yaml:"wwwAuthenticate"`
	Principal       *string        `yaml:"principal"`
	PrincipalFrom   string         `yaml:"principalFrom"`
	Rule            string         `yaml:"rule"`
	Claims          map[string]any `yaml:"claims"`
	Remove          []string       `yaml:"remove"`
	Set             []Header       `yaml:"set"`
	Headers         *bool          `yaml:"headers"` // false: no header change at all
	Metadata        map[string]any `yaml:"metadata"`
	NoMetadata      []string       `yaml:"noMetadata"`
}

// TestBehaviour runs testdata/behaviour.yaml. In configurations, ${JWKS_A}
// is a jwksUri serving the keys rsa, es256 and eddsa, ${JWKS_B} one
// serving rsa-other, ${JWKS_DOWN} one answering 503, and ${JWKS_INLINE_A}
// the JSON of JWKS_A; in requests, {{name}} is the token name and
// {{name.payload}} its payload segment.
func TestBehaviour(t *testing.T) {
	data, err := os.ReadFile("testdata/behaviour.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var cases []behaviourCase
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&cases); err != nil {
		t.Fatal(err)
	}
	if len(cases) < 30 {
		t.Fatalf("only %d behaviour cases", len(cases))
	}
	jwksA := jwksOf(t, "rsa", "es256", "eddsa")
	srvA := newJWKSServer(t, jwksA, false)
	srvB := newJWKSServer(t, jwksOf(t, "rsa-other"), false)
	srvDown := newJWKSServer(t, jwksA, false)
	srvDown.code.Store(503)
	vars := strings.NewReplacer("${JWKS_A}", srvA.URL+"/a", "${JWKS_B}", srvB.URL+"/b", "${JWKS_DOWN}", srvDown.URL+"/down",
		"${JWKS_INLINE_A}", jwksA)

	names := map[string]bool{}
	for _, c := range cases {
		if names[c.Name] {
			t.Fatalf("duplicate case %q", c.Name)
		}
		names[c.Name] = true
		t.Run(c.Name, func(t *testing.T) {
			t.Parallel()
			if len(c.Reqs) == 0 {
				t.Fatal("case has no requests")
			}
			now := testNow
			clk := newClock(now)
			a := newTestAuthenticator(t, Config{Clock: clk.Now})
			a.Update(snapshotOf(t, vars.Replace(c.Config)))
			toks := map[string]string{}
			for name, tk := range c.Tokens {
				claims := maps.Clone(tk.Claims)
				if claims == nil {
					claims = map[string]any{}
				}
				if _, ok := claims["exp"]; !ok && !tk.NoExp {
					exp := int64(3600)
					if tk.Exp != nil {
						exp = *tk.Exp
					}
					claims["exp"] = now.Unix() + exp
				}
				raw := sign(t, tk.Key, claims, tk.Header)
				toks["{{"+name+"}}"] = raw
				toks["{{"+name+".payload}}"] = strings.Split(raw, ".")[1]
			}
			subst := func(s string) string {
				for k, v := range toks {
					s = strings.ReplaceAll(s, k, v)
				}
				return s
			}
			for _, r := range c.Reqs {
				req := request("/")
				if r.Request.Namespace != "" {
					req.Namespace = r.Request.Namespace
				}
				if r.Request.Labels != nil {
					req.Labels = r.Request.Labels
				}
				req.Port = r.Request.Port
				if r.Request.Method != "" {
					req.Method = r.Request.Method
				}
				if r.Request.Scheme != "" {
					req.Scheme = r.Request.Scheme
				}
				if r.Request.Host != "" {
					req.Host = r.Request.Host
				}
				if r.Request.Path != "" {
					req.Path = subst(r.Request.Path)
				}
				for k, v := range r.Request.Headers {
					req.Headers[strings.ToLower(k)] = subst(v)
				}
				res := authenticate(t, a, req)
				for _, d := range r.Want.diff(res, r.Peer, subst) {
					t.Errorf("%s: %s", r.Name, d)
				}
			}
		})
	}
}

func (w caseWant) diff(res *Result, peer string, subst func(string) string) []string {
	var out []string
	bad := func(format string, args ...any) { out = append(out, fmt.Sprintf(format, args...)) }
	if res.Outcome.String() != w.Outcome {
		bad("outcome %v (%d %q), want %s", res.Outcome, res.Status, res.Reason, w.Outcome)
		return out
	}
	if res.Status != w.Status || res.Reason != w.Reason {
		bad("status %d %q, want %d %q", res.Status, res.Reason, w.Status, w.Reason)
	}
	if w.WWWAuthenticate != nil && res.WWWAuthenticate != *w.WWWAuthenticate {
		bad("WWW-Authenticate %q, want %q", res.WWWAuthenticate, *w.WWWAuthenticate)
	}
	if w.Outcome == "rejected" {
		return out
	}
	if w.Principal != nil {
		got := ""
		if res.Identity != nil {
			got = res.Identity.Principal
		}
		if got != *w.Principal {
			bad("principal %q, want %q", got, *w.Principal)
		}
	}
	if w.PrincipalFrom != "" {
		if got := [...]string{"none", "origin", "peer"}[res.Principal]; got != w.PrincipalFrom {
			bad("principal from %s, want %s", got, w.PrincipalFrom)
		}
	}
	if w.Rule != "" && (res.Identity == nil || res.Identity.Rule.String() != w.Rule) {
		bad("rule %v, want %s", res.Identity, w.Rule)
	}
	if w.Claims != nil {
		if res.Identity == nil {
			bad("no identity, want claims")
		} else {
			for k, v := range w.Claims {
				if got := res.Identity.Claims[k]; !reflect.DeepEqual(got, yamlValue(v)) {
					bad("claim %s = %#v, want %#v", k, got, yamlValue(v))
				}
			}
		}
	}
	if w.Headers != nil && !*w.Headers && (len(res.Headers.Remove) > 0 || len(res.Headers.Set) > 0) {
		bad("header changes %+v, want none", res.Headers)
	}
	if w.Remove != nil && !slices.Equal(res.Headers.Remove, w.Remove) {
		bad("removed headers %q, want %q", res.Headers.Remove, w.Remove)
	}
	if w.Set != nil {
		want := slices.Clone(w.Set)
		for i := range want {
			want[i].Value = subst(want[i].Value)
		}
		if !slices.Equal(res.Headers.Set, want) {
			bad("set headers %q, want %q", res.Headers.Set, want)
		}
	}
	md := res.Metadata(peer)
	for k, v := range w.Metadata {
		got, ok := md[k]
		switch {
		case !ok:
			bad("metadata has no %s: %v", k, md)
		case k == "request.auth.claims":
			gm, _ := got.(map[string]any)
			for ck, cv := range v.(map[string]any) {
				if !reflect.DeepEqual(gm[ck], yamlValue(cv)) {
					bad("metadata claim %s = %#v, want %#v", ck, gm[ck], yamlValue(cv))
				}
			}
		case !reflect.DeepEqual(got, yamlValue(v)):
			bad("metadata %s = %#v, want %#v", k, got, yamlValue(v))
		}
	}
	for _, k := range w.NoMetadata {
		if v, ok := md[k]; ok {
			bad("metadata %s = %#v, want none", k, v)
		}
	}
	return out
}

// yamlValue turns YAML-decoded values into what JSON decoding gives.
func yamlValue(v any) any {
	switch t := v.(type) {
	case int:
		return float64(t)
	case []any:
		out := make([]any, len(t))
		for i, e := range t {
			out[i] = yamlValue(e)
		}
		return out
	case map[string]any:
		out := make(map[string]any, len(t))
		for k, e := range t {
			out[k] = yamlValue(e)
		}
		return out
	}
	return v
}
