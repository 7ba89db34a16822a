package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/sbcwatch/sbcwatch/internal/authctx"
	"github.com/sbcwatch/sbcwatch/internal/forwarded"
	"github.com/sbcwatch/sbcwatch/metrics"
	"github.com/sbcwatch/sbcwatch/store"
)

// AuditRunRequest is the body of POST /api/v1/audits/run.
type AuditRunRequest struct {
	// SBC names the configured SBC to audit; empty means all.
	SBC string `json:"sbc"`
	// Target (host:port) overrides the configured targets when set.
	Target string `json:"target"`
}

// Options are the server's dependencies besides the store. Zero values
// take the defaults.
type Options struct {
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Version, Revision and BuildDate label sbcwatch_build_info when
	// Metrics is nil.
	Version, Revision, BuildDate string
	// Metrics is the registry /metrics serves; the server adds its HTTP
	// histograms and a store collector. Nil makes one of its own.
	Metrics *metrics.Registry
	// RunAudit runs an audit now for POST /api/v1/audits/run and returns
	// what to answer (for example the stored audit). Nil answers 501.
	RunAudit func(ctx context.Context, req AuditRunRequest) (any, error)
	// RequestTimeout bounds each /api/v1 request (default 30s).
	RequestTimeout time.Duration
	// MaxBodyBytes bounds request bodies (default 1 MiB).
	MaxBodyBytes int64
	// Now is the clock (default time.Now), for tests.
	Now func() time.Time
	// TrustedProxies may say X-Forwarded-Proto: https for a request
	// (cookies are then marked Secure); from anyone else it is ignored.
	TrustedProxies forwarded.Trusted
}

// Server holds the handlers' dependencies.
type Server struct {
	st      *store.Store
	opts    Options
	log     *slog.Logger
	metrics *metrics.Registry
}

// NewServer returns the HTTP handler of the whole API.
func NewServer(st *store.Store, opts Options) http.Handler {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.RequestTimeout <= 0 {
		opts.RequestTimeout = 30 * time.Second
	}
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = 1 << 20
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Version == "" {
		opts.Version = "dev"
	}
	s := &Server{st: st, opts: opts, log: opts.Logger.With("component", "api")}
	s.metrics = newMetrics(st, opts, s.log)
	return s.routes()
}

// NewHTTPServer wraps h in an http.Server with read, write and idle
// timeouts.
func NewHTTPServer(addr string, h http.Handler) *http.Server {
	return &http.Server{
		Addr:              addr,
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
	}
}

// ListenAndServe serves h on addr until ctx ends, then shuts down
// gracefully (in-flight requests get up to 10 s). ready, when not nil,
// receives the bound address once listening. WithTLS makes it HTTPS.
func ListenAndServe(ctx context.Context, addr string, h http.Handler, log *slog.Logger, ready func(net.Addr), opts ...ServeOption) error {
	var cfg serveConfig
	for _, o := range opts {
		o(&cfg)
	}
	if log == nil {
		log = slog.Default()
	}
	srv := NewHTTPServer(addr, h)
	srv.BaseContext = func(net.Listener) context.Context { return context.WithoutCancel(ctx) }
	// SIGHUP reloads the TLS certificate; without TLS it is logged and
	// otherwise ignored (so `systemctl reload` never stops the daemon).
	var cr *certReloader
	if cfg.certFile != "" || cfg.keyFile != "" {
		var err error
		if cr, err = newCertReloader(cfg.certFile, cfg.keyFile); err != nil {
			return err
		}
		srv.TLSConfig = cr.tlsConfig()
	}
	sig, stop := cfg.reloadSignal()
	defer stop()
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go watchReload(wctx, sig, cr, log)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("api: listen: %w", err)
	}
	if ready != nil {
		ready(ln.Addr())
	}
	errc := make(chan error, 1)
	// Read before Serve runs: net/http sets srv.TLSConfig up for HTTP/2
	// in Serve's goroutine.
	withTLS := srv.TLSConfig != nil
	// jsonErrorListener sits under TLS: it rewrites net/http's own
	// plain-text errors on plain HTTP (under TLS it sees ciphertext and
	// passes it on).
	go func() {
		if withTLS {
			errc <- srv.ServeTLS(jsonErrorListener{ln}, "", "")
			return
		}
		errc <- srv.Serve(jsonErrorListener{ln})
	}()
	log.Info("api listening", "addr", ln.Addr().String(), "tls", withTLS)
	select {
	case err := <-errc:
		return fmt.Errorf("api: serve: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		_ = srv.Close()
		return fmt.Errorf("api: shutdown: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("api: serve: %w", err)
	}
	return nil
}

type ctxKey int

const tokenKey ctxKey = 1

// authenticate requires a live bearer token; read tokens may only GET
// (and HEAD), admin tokens may also POST. The token itself is never
// logged.
func (s *Server) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// An in-process read by the pages for a signed-in session.
		if t, ok := authctx.From(r.Context()); ok && r.Header.Get("Authorization") == "" {
			if r.Method != http.MethodGet && r.Method != http.MethodHead {
				s.writeError(w, r, &Error{Status: http.StatusForbidden, Code: "forbidden", Message: "pages only read"})
				return
			}
			next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), tokenKey, t)))
			return
		}
		h := r.Header.Get("Authorization")
		scheme, tok, ok := strings.Cut(h, " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(tok) == "" {
			w.Header().Set("WWW-Authenticate", `Bearer realm="sbcwatch"`)
			s.writeError(w, r, &Error{Status: http.StatusUnauthorized, Code: "unauthorized",
				Message: "a bearer token is required (sbcwatch token create)"})
			return
		}
		t, err := store.LookupToken(r.Context(), s.st.Pool(), tok)
		if errors.Is(err, store.ErrNotFound) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="sbcwatch", error="invalid_token"`)
			s.writeError(w, r, &Error{Status: http.StatusUnauthorized, Code: "unauthorized",
				Message: "the token is unknown or revoked"})
			return
		}
		if err != nil && r.Context().Err() != nil {
			s.writeError(w, r, r.Context().Err()) // the client left, or the request timed out
			return
		}
		if err != nil {
			s.writeError(w, r, &Error{Status: http.StatusServiceUnavailable, Code: "unavailable",
				Message: "cannot check the token: database unavailable", Err: err})
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead && t.Scope != store.ScopeAdmin {
			s.writeError(w, r, &Error{Status: http.StatusForbidden, Code: "forbidden",
				Message: fmt.Sprintf("token %q has scope %s; %s needs admin", t.Name, t.Scope, r.Method)})
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), tokenKey, t)))
	})
}

func tokenFrom(ctx context.Context) store.Token {
	t, _ := ctx.Value(tokenKey).(store.Token)
	return t
}

// limitBody bounds request bodies.
func (s *Server) limitBody(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Body != nil {
			r.Body = http.MaxBytesReader(w, r.Body, s.opts.MaxBodyBytes)
		}
		next.ServeHTTP(w, r)
	})
}

// recoverJSON turns a panic into the JSON 500 (chi's Recoverer stays
// outermost as a last resort).
func (s *Server) recoverJSON(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.writeError(w, r, fmt.Errorf("panic: %v", v))
			}
		}()
		next.ServeHTTP(w, r)
	})
}
