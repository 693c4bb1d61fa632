package server

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"time"
)

// BundleHandler serves what agents poll, over HTTPS:
//
//	GET /bundle         the SPIFFE trust bundle (JWKS with spiffe_refresh_hint
//	                    and spiffe_sequence) of every trusted root
//	GET /crl            the DER CRL (application/pkix-crl), signed by the
//	                    signing CA, with nextUpdate
//	GET /root-cert.pem  the trusted roots, concatenated PEM
//	GET /healthz        200
//
// Each answer carries an ETag (the bundle's sequence number, or the
// CRL's number), so pollers can send If-None-Match and get 304 while
// nothing changed: a re-signed CRL is new, an unchanged set of roots is
// not.
func (s *Server) BundleHandler() http.Handler {
	mux := http.NewServeMux()
	a := s.cfg.Authority
	bundleTag := func() string { return `"b` + strconv.FormatUint(a.BundleSequence(), 10) + `"` }
	crlTag := func() string { return `"c` + a.CRLNumber().String() + `"` }
	etag := func(w http.ResponseWriter, r *http.Request, tag string) bool {
		w.Header().Set("ETag", tag)
		w.Header().Set("Cache-Control", "no-cache")
		if r.Header.Get("If-None-Match") == tag {
			w.WriteHeader(http.StatusNotModified)
			return true
		}
		return false
	}
	mux.HandleFunc("GET /bundle", func(w http.ResponseWriter, r *http.Request) {
		if etag(w, r, bundleTag()) {
			return
		}
		body, err := a.SPIFFEBundle().Marshal()
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	})
	mux.HandleFunc("GET /crl", func(w http.ResponseWriter, r *http.Request) {
		der, next := a.CRL()
		if der == nil {
			http.Error(w, "the signing CA cannot sign a CRL (no cRLSign key usage)", http.StatusServiceUnavailable)
			return
		}
		if etag(w, r, crlTag()) {
			return
		}
		w.Header().Set("Content-Type", "application/pkix-crl")
		w.Header().Set("Expires", next.UTC().Format(http.TimeFormat))
		_, _ = w.Write(der)
	})
	mux.HandleFunc("GET /root-cert.pem", func(w http.ResponseWriter, r *http.Request) {
		if etag(w, r, bundleTag()) {
			return
		}
		w.Header().Set("Content-Type", "application/x-pem-file")
		_, _ = w.Write(a.RootsPEM())
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	return mux
}

// ServeBundle serves BundleHandler over HTTPS with the live server
// certificate on ln until ctx ends.
func (s *Server) ServeBundle(ctx context.Context, ln net.Listener) error {
	cfg := s.TLSConfig()
	cfg.ClientAuth = tls.NoClientCert
	return serveHTTP(ctx, tls.NewListener(ln, cfg), s.BundleHandler(), s.log)
}

func serveHTTP(ctx context.Context, ln net.Listener, h http.Handler, log *slog.Logger) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug)}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return err
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
