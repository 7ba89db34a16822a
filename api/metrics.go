package api

import (
	"fmt"
	"io"
	"net/http"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
)

// metrics counts requests by route pattern, method and status, in the
// Prometheus text format (written by hand; no client library).
type metrics struct {
	mu       sync.Mutex
	requests map[reqKey]*reqStat
}

type reqKey struct {
	route, method string
	status        int
}

type reqStat struct {
	count   uint64
	seconds float64
}

func newMetrics() *metrics { return &metrics{requests: map[reqKey]*reqStat{}} }

// instrument records every request after routing, keyed by the chi route
// pattern (so /calls/{call_id} is one series).
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
		method := r.Method
		switch method {
		case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodOptions:
		default:
			method = "other" // any string a client sends must not make a series
		}
		k := reqKey{route: route, method: method, status: status}
		s.metrics.mu.Lock()
		st := s.metrics.requests[k]
		if st == nil {
			st = &reqStat{}
			s.metrics.requests[k] = st
		}
		st.count++
		st.seconds += time.Since(start).Seconds()
		s.metrics.mu.Unlock()
		// Access log: never headers (they carry the token) nor the query.
		s.log.Debug("request", "method", r.Method, "route", route, "status", status,
			"ms", time.Since(start).Milliseconds(), "request_id", middleware.GetReqID(r.Context()))
	})
}

func (s *Server) handleMetrics(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	s.writeMetrics(w)
	s.writeProblemMetrics(r.Context(), w)
}

func (s *Server) writeMetrics(w io.Writer) {
	s.metrics.mu.Lock()
	keys := make([]reqKey, 0, len(s.metrics.requests))
	for k := range s.metrics.requests {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b reqKey) int {
		if c := strings.Compare(a.route, b.route); c != 0 {
			return c
		}
		if c := strings.Compare(a.method, b.method); c != 0 {
			return c
		}
		return a.status - b.status
	})
	stats := make([]reqStat, len(keys))
	for i, k := range keys {
		stats[i] = *s.metrics.requests[k]
	}
	s.metrics.mu.Unlock()

	fmt.Fprintln(w, "# HELP sbcwatch_http_requests_total HTTP requests served, by route pattern, method and status.")
	fmt.Fprintln(w, "# TYPE sbcwatch_http_requests_total counter")
	for i, k := range keys {
		fmt.Fprintf(w, "sbcwatch_http_requests_total{route=%s,method=%s,status=\"%d\"} %d\n",
			quote(k.route), quote(k.method), k.status, stats[i].count)
	}
	fmt.Fprintln(w, "# HELP sbcwatch_http_request_duration_seconds_total Time spent serving HTTP requests.")
	fmt.Fprintln(w, "# TYPE sbcwatch_http_request_duration_seconds_total counter")
	for i, k := range keys {
		fmt.Fprintf(w, "sbcwatch_http_request_duration_seconds_total{route=%s,method=%s,status=\"%d\"} %s\n",
			quote(k.route), quote(k.method), k.status, strconv.FormatFloat(stats[i].seconds, 'g', -1, 64))
	}

	ps := s.st.Pool().Stat()
	gauge := func(name, help string, v int64) {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s gauge\n%s %d\n", name, help, name, name, v)
	}
	counter := func(name, help string, v int64) {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s counter\n%s %d\n", name, help, name, name, v)
	}
	gauge("sbcwatch_db_pool_max_conns", "Maximum connections of the database pool.", int64(ps.MaxConns()))
	gauge("sbcwatch_db_pool_total_conns", "Open connections of the database pool.", int64(ps.TotalConns()))
	gauge("sbcwatch_db_pool_acquired_conns", "Connections in use.", int64(ps.AcquiredConns()))
	gauge("sbcwatch_db_pool_idle_conns", "Idle connections.", int64(ps.IdleConns()))
	counter("sbcwatch_db_pool_acquire_total", "Connections acquired from the pool.", ps.AcquireCount())
	counter("sbcwatch_db_pool_empty_acquire_total", "Acquires that had to wait for a connection.", ps.EmptyAcquireCount())
	fmt.Fprintf(w, "# HELP sbcwatch_db_pool_acquire_wait_seconds_total Time spent waiting for a connection.\n"+
		"# TYPE sbcwatch_db_pool_acquire_wait_seconds_total counter\nsbcwatch_db_pool_acquire_wait_seconds_total %s\n",
		strconv.FormatFloat(ps.EmptyAcquireWaitTime().Seconds(), 'g', -1, 64))
	fmt.Fprintln(w, "# HELP sbcwatch_build_info Build information; the value is always 1.")
	fmt.Fprintln(w, "# TYPE sbcwatch_build_info gauge")
	fmt.Fprintf(w, "sbcwatch_build_info{version=%s,goversion=%s} 1\n", quote(s.opts.Version), quote(runtime.Version()))
}

// quote writes a Prometheus label value: backslash, double quote and
// newline escaped.
func quote(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)
	return `"` + r.Replace(s) + `"`
}
