package jwt

import (
	"errors"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Config holds an Authenticator's dependencies and settings. Zero values
// take the defaults documented on each field.
type Config struct {
	// Clock gives the time tokens are checked against (exp, nbf) and that
	// decides when key sets are due for refresh. Default time.Now.
	Clock func() time.Time
	// Logger receives fetch failures and configuration problems. Default:
	// discard.
	Logger *slog.Logger
	// HTTPClient fetches jwksUri and OpenID discovery documents; its
	// Timeout, if any, bounds each fetch besides the rule's timeout.
	// Default: a client with http.DefaultTransport's settings.
	HTTPClient *http.Client
	// Metrics registers the package's collectors; nil registers none.
	Metrics prometheus.Registerer
	// ClockSkew is the leeway on exp and nbf: Envoy's jwt_authn
	// clock_skew_seconds, which Istio leaves at its default of 60s.
	ClockSkew time.Duration
	// JWKSRefresh is how often a fetched key set is fetched again: Istio's
	// JwtPubKeyRefreshInterval, 20 minutes.
	JWKSRefresh time.Duration
	// JWKSTimeout bounds a fetch when the rule has no timeout field
	// (legacy origins, or RequestAuthentication without timeout): 5s, as
	// Istio.
	JWKSTimeout time.Duration
	// MaxKeyAge is how long the keys of the last successful fetch keep
	// verifying while refreshes fail; after it, tokens of the issuer are
	// rejected. Default 7 days, Istio's JwtPubKeyEvictionDuration.
	MaxKeyAge time.Duration
	// KidRefetchInterval is the least time between two fetches of a key
	// set caused by tokens whose kid it does not have (a rotation at the
	// issuer); such tokens can be sent by anyone, so they must not make
	// Garrison hammer the issuer. Default 30s.
	KidRefetchInterval time.Duration
	// MaxTokenSize is the largest token parsed; larger ones are rejected
	// before any decoding. Default 8 KiB.
	MaxTokenSize int
	// MaxJWKSSize bounds a fetched document. Default 1 MiB.
	MaxJWKSSize int64
}

// Defaults for the zero fields of Config.
const (
	DefaultClockSkew          = 60 * time.Second
	DefaultJWKSRefresh        = 20 * time.Minute
	DefaultJWKSTimeout        = 5 * time.Second
	DefaultMaxKeyAge          = 7 * 24 * time.Hour
	DefaultKidRefetchInterval = 30 * time.Second
	DefaultMaxTokenSize       = 8 << 10
	DefaultMaxJWKSSize        = 1 << 20
)

// ErrNoSnapshot is returned by Authenticate before the first Update: without
// configuration it cannot tell whether tokens are required, so the caller
// must fail closed.
var ErrNoSnapshot = errors.New("jwt: no configuration snapshot yet")

func (c Config) withDefaults() (Config, error) {
	if c.Clock == nil {
		c.Clock = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.ClockSkew, DefaultClockSkew)
	def(&c.JWKSRefresh, DefaultJWKSRefresh)
	def(&c.JWKSTimeout, DefaultJWKSTimeout)
	def(&c.MaxKeyAge, DefaultMaxKeyAge)
	def(&c.KidRefetchInterval, DefaultKidRefetchInterval)
	if c.MaxTokenSize == 0 {
		c.MaxTokenSize = DefaultMaxTokenSize
	}
	if c.MaxJWKSSize == 0 {
		c.MaxJWKSSize = DefaultMaxJWKSSize
	}
	switch {
	case c.ClockSkew < 0 || c.JWKSRefresh < 0 || c.JWKSTimeout < 0 || c.MaxKeyAge < 0 || c.KidRefetchInterval < 0:
		return c, errors.New("jwt: durations must not be negative")
	case c.MaxTokenSize < 0 || c.MaxJWKSSize < 0:
		return c, errors.New("jwt: sizes must not be negative")
	case c.ClockSkew%time.Second != 0:
		// Envoy counts skew in whole seconds.
		return c, errors.New("jwt: ClockSkew must be whole seconds")
	}
	return c, nil
}
