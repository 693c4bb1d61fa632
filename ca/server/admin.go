package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/garrison-mesh/garrison/ca/authority"
)

// AdminAuthority is what the admin API needs of the CA core.
type AdminAuthority interface {
	Status(ctx context.Context) (authority.Status, error)
	List(ctx context.Context, f authority.Filter) ([]authority.Record, error)
	Rotate(ctx context.Context, reason authority.MintReason, opts authority.RotateOptions) error
	Revoke(ctx context.Context, serial *big.Int, reason string) error
	RevokeIdentity(ctx context.Context, id spiffeid.ID, reason string) (int, error)
	SignCSR(ctx context.Context, pemCSR []byte, id spiffeid.ID, ttl time.Duration, caller string) (*authority.Issued, error)
	TrustDomain() spiffeid.TrustDomain
	RootsPEM() []byte
}

var _ AdminAuthority = (*authority.Authority)(nil)

// The admin API: JSON over HTTP on a Unix socket whose file mode (0600,
// in a 0700 directory) is the authentication, as SPIRE's admin socket.
//
//	GET  /v1/status                                  authority.Status
//	GET  /v1/certificates?spiffe_id=&valid=&limit=   []CertificateJSON
//	POST /v1/issue   IssueRequest                    IssueResponse
//	POST /v1/rotate  RotateRequest                   authority.Status
//	POST /v1/revoke  RevokeRequest                   RevokeResponse
//
// Errors are {"error": "..."} with 400 (bad request), 404 (unknown
// serial), 409 (the upstream cannot rotate) or 500.

// IssueRequest asks for an operator-issued certificate.
type IssueRequest struct {
	SPIFFEID string `json:"spiffeId"`
	CSR      string `json:"csr"`
	TTL      string `json:"ttl,omitempty"` // Go duration; empty = default
}

// IssueResponse carries the chain, leaf first, root last.
type IssueResponse struct {
	Serial    string    `json:"serial"`
	NotAfter  time.Time `json:"notAfter"`
	CertChain []string  `json:"certChain"`
	RootsPEM  string    `json:"rootsPem"`
}

// RotateRequest names what to rotate: "intermediate" or "root". For a
// root, ActivateAfter (a Go duration) is how long the new root is only
// published before it signs: empty takes the server's default, "0s" means
// at once.
type RotateRequest struct {
	Target        string `json:"target"`
	ActivateAfter string `json:"activateAfter,omitempty"`
}

// RevokeRequest revokes by serial (hex) or by SPIFFE ID.
type RevokeRequest struct {
	Serial   string `json:"serial,omitempty"`
	SPIFFEID string `json:"spiffeId,omitempty"`
	Reason   string `json:"reason,omitempty"`
}

// RevokeResponse says how many certificates were revoked.
type RevokeResponse struct {
	Revoked int `json:"revoked"`
}

// CertificateJSON is one journal record as the admin API lists it.
type CertificateJSON struct {
	Serial    string    `json:"serial"`
	SPIFFEID  string    `json:"spiffeId"`
	NotBefore time.Time `json:"notBefore"`
	NotAfter  time.Time `json:"notAfter"`
	IssuedAt  time.Time `json:"issuedAt"`
	Caller    string    `json:"caller"`
	SignerID  int64     `json:"signerId"`
	RootID    int64     `json:"rootId"`
	Revoked   *struct {
		Reason string    `json:"reason"`
		At     time.Time `json:"at"`
	} `json:"revoked,omitempty"`
}

// AdminHandler is the admin API.
func AdminHandler(a AdminAuthority) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
		st, err := a.Status(r.Context())
		reply(w, st, err)
	})
	mux.HandleFunc("GET /v1/certificates", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		f := authority.Filter{SPIFFEID: q.Get("spiffe_id")}
		if q.Get("valid") == "true" {
			f.ValidAt = time.Now()
		}
		if l := q.Get("limit"); l != "" {
			n, err := strconv.Atoi(l)
			if err != nil || n < 0 {
				reply(w, nil, fmt.Errorf("%w: limit %q", authority.ErrInvalidRequest, l))
				return
			}
			f.Limit = n
		}
		recs, err := a.List(r.Context(), f)
		out := make([]CertificateJSON, 0, len(recs))
		for _, rec := range recs {
			c := CertificateJSON{Serial: authority.FormatSerial(rec.Serial), SPIFFEID: rec.SPIFFEID, NotBefore: rec.NotBefore,
				NotAfter: rec.NotAfter, IssuedAt: rec.IssuedAt, Caller: rec.Caller, SignerID: rec.SignerID, RootID: rec.RootID}
			if rec.Revoked != nil {
				c.Revoked = &struct {
					Reason string    `json:"reason"`
					At     time.Time `json:"at"`
				}{rec.Revoked.Reason, rec.Revoked.RevokedAt}
			}
			out = append(out, c)
		}
		reply(w, out, err)
	})
	mux.HandleFunc("POST /v1/issue", func(w http.ResponseWriter, r *http.Request) {
		var req IssueRequest
		if err := decode(r, &req); err != nil {
			reply(w, nil, err)
			return
		}
		id, err := spiffeid.FromString(req.SPIFFEID)
		if err != nil {
			reply(w, nil, fmt.Errorf("%w: spiffeId: %v", authority.ErrInvalidRequest, err))
			return
		}
		var ttl time.Duration
		if req.TTL != "" {
			if ttl, err = time.ParseDuration(req.TTL); err != nil {
				reply(w, nil, fmt.Errorf("%w: ttl: %v", authority.ErrInvalidRequest, err))
				return
			}
		}
		iss, err := a.SignCSR(r.Context(), []byte(req.CSR), id, ttl, "operator")
		if err != nil {
			reply(w, nil, err)
			return
		}
		reply(w, IssueResponse{Serial: authority.FormatSerial(iss.Serial), NotAfter: iss.NotAfter, CertChain: iss.ChainPEM, RootsPEM: string(a.RootsPEM())}, nil)
	})
	mux.HandleFunc("POST /v1/rotate", func(w http.ResponseWriter, r *http.Request) {
		var req RotateRequest
		if err := decode(r, &req); err != nil {
			reply(w, nil, err)
			return
		}
		var reason authority.MintReason
		switch req.Target {
		case "intermediate":
			reason = authority.MintIntermediate
		case "root":
			reason = authority.MintRoot
		default:
			reply(w, nil, fmt.Errorf("%w: target must be intermediate or root, got %q", authority.ErrInvalidRequest, req.Target))
			return
		}
		var opts authority.RotateOptions
		if req.ActivateAfter != "" {
			d, err := time.ParseDuration(req.ActivateAfter)
			if err != nil || d < 0 {
				reply(w, nil, fmt.Errorf("%w: activateAfter %q is not a duration >= 0", authority.ErrInvalidRequest, req.ActivateAfter))
				return
			}
			opts.ActivateAfter = d
			if d == 0 {
				opts.ActivateAfter = -1
			}
		}
		if err := a.Rotate(r.Context(), reason, opts); err != nil {
			reply(w, nil, err)
			return
		}
		st, err := a.Status(r.Context())
		reply(w, st, err)
	})
	mux.HandleFunc("POST /v1/revoke", func(w http.ResponseWriter, r *http.Request) {
		var req RevokeRequest
		if err := decode(r, &req); err != nil {
			reply(w, nil, err)
			return
		}
		switch {
		case (req.Serial == "") == (req.SPIFFEID == ""):
			reply(w, nil, fmt.Errorf("%w: give exactly one of serial and spiffeId", authority.ErrInvalidRequest))
		case req.Serial != "":
			serial, err := authority.ParseSerial(req.Serial)
			if err != nil {
				reply(w, nil, err)
				return
			}
			err = a.Revoke(r.Context(), serial, req.Reason)
			reply(w, RevokeResponse{Revoked: 1}, err)
		default:
			id, err := spiffeid.FromString(req.SPIFFEID)
			if err != nil {
				reply(w, nil, fmt.Errorf("%w: spiffeId: %v", authority.ErrInvalidRequest, err))
				return
			}
			n, err := a.RevokeIdentity(r.Context(), id, req.Reason)
			reply(w, RevokeResponse{Revoked: n}, err)
		}
	})
	return mux
}

func decode(r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: request body: %v", authority.ErrInvalidRequest, err)
	}
	return nil
}

func reply(w http.ResponseWriter, v any, err error) {
	w.Header().Set("Content-Type", "application/json")
	if err != nil {
		code := http.StatusInternalServerError
		switch {
		case errors.Is(err, authority.ErrInvalidRequest), errors.Is(err, authority.ErrPermissionDenied):
			code = http.StatusBadRequest
		case errors.Is(err, authority.ErrNotFound):
			code = http.StatusNotFound
		case errors.Is(err, authority.ErrUnsupported):
			code = http.StatusConflict
		}
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(map[string]string{"error": err.Error()})
		return
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// ListenAdmin listens on the Unix socket at path, mode 0600, replacing a
// stale socket left by a killed process.
func ListenAdmin(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("%s exists and is not a socket", path)
		}
		if c, err := net.Dial("unix", path); err == nil {
			_ = c.Close()
			return nil, fmt.Errorf("%s is in use by a running server", path)
		}
		_ = os.Remove(path)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(path, 0o600); err != nil {
		_ = ln.Close()
		return nil, err
	}
	return ln, nil
}

// ServeAdmin serves the admin API on ln until ctx ends.
func ServeAdmin(ctx context.Context, ln net.Listener, a AdminAuthority, log *slog.Logger) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return serveHTTP(ctx, ln, AdminHandler(a), log)
}
