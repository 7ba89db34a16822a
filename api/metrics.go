package api

import (
	"log/slog"
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"

	"github.com/sbcwatch/sbcwatch/metrics"
	"github.com/sbcwatch/sbcwatch/store"
)

// instrument records every request after routing in the registry's
// duration histogram, keyed by the chi route pattern (so /calls/{call_id}
// is one series; the pages of package web set theirs too) and the status
// code.
func (s *Server) instrument(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		if id := middleware.GetReqID(r.Context()); id != "" {
			w.Header().Set("X-Request-Id", id)
		}
		ww := middleware.NewWrapResponseWriter(w, r.ProtoMajor)
		next.ServeHTTP(ww, r)
		route := "unmatched"
		if rc := chi.RouteContext(r.Context()); rc != nil && rc.RoutePattern() != "" {
			route = rc.RoutePattern()
		}
		status := ww.Status()
		if status == 0 {
			status = http.StatusOK
		}
		took := time.Since(start)
		s.metrics.ObserveHTTP(route, r.Method, status, took)
		// Access log: never headers (they carry the token) nor the query.
		s.log.Debug("request", "method", r.Method, "route", route, "status", status,
			"ms", took.Milliseconds(), "request_id", middleware.GetReqID(r.Context()))
	})
}

// newMetrics returns opts.Metrics, or a registry of its own, with the
// store collector registered (when there is a store).
func newMetrics(st *store.Store, opts Options, log *slog.Logger) *metrics.Registry {
	reg := opts.Metrics
	if reg == nil {
		reg = metrics.New(opts.Version, opts.Revision, opts.BuildDate)
	}
	if st == nil {
		return reg
	}
	c := metrics.NewStoreCollector(st.Pool(), metrics.StoreOptions{Logger: opts.Logger})
	if err := reg.Register(c); err != nil {
		log.Warn("the store collector is left out of /metrics", "err", err)
	}
	return reg
}
