package api

import (
	"net/http"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"

	"github.com/sbcwatch/sbcwatch/web"
)

// routes is the whole route table. openapi.json lists the same paths and
// methods; TestOpenAPIMatchesRoutes keeps the two equal.
func (s *Server) routes() *chi.Mux {
	r := chi.NewRouter()
	r.Use(middleware.Recoverer, middleware.RequestID, s.opts.TrustedProxies.Middleware, s.instrument, s.recoverJSON, s.checkInput)
	// The HTML pages (package web: /, /login, /calls/{call_id}) read this
	// router in process; mounted here rather than routed so this table
	// and openapi.json stay /api/v1.
	pages := web.New(web.Options{API: r, Store: s.st, Logger: s.log, Timeout: s.opts.RequestTimeout})
	r.NotFound(func(w http.ResponseWriter, r *http.Request) {
		if web.OwnsRequest(r) {
			pages.ServeHTTP(w, r)
			return
		}
		s.writeError(w, r, notFound("no route %s %s", r.Method, r.URL.Path))
	})
	r.MethodNotAllowed(func(w http.ResponseWriter, r *http.Request) {
		s.writeError(w, r, &Error{Status: http.StatusMethodNotAllowed, Code: "method_not_allowed",
			Message: r.Method + " is not allowed on " + r.URL.Path})
	})

	// Public.
	r.Get("/healthz", s.handleHealthz)
	r.Get("/readyz", s.handleReadyz)
	r.Method(http.MethodGet, "/metrics", s.metrics.Handler(s.log))
	r.Get("/api/v1/openapi.json", s.handleOpenAPI)

	// Bearer token: read can GET, admin can also POST.
	r.Route("/api/v1", func(r chi.Router) {
		r.Use(middleware.Timeout(s.opts.RequestTimeout), s.limitBody)
		// Group, not Use: the token check then runs after routing, so
		// metrics see the route pattern of refused requests too.
		r.Group(func(r chi.Router) {
			r.Use(s.authenticate)

			r.Get("/calls", s.handleListCalls)
			r.Get("/calls/{call_id}", s.handleGetCall)
			r.Get("/calls/{call_id}/evidence", s.handleEvidence)

			r.Get("/findings", s.handleListFindings)
			r.Post("/findings/{id}/ack", s.handleAckFinding)
			r.Get("/problems", s.handleListProblems)
			r.Post("/problems/{id}/ack", s.handleAckProblem)

			r.Get("/tls", s.handleListTLS)
			r.Get("/certificates", s.handleListCertificates)
			r.Get("/counters", s.handleListCounters)

			r.Get("/audits", s.handleListAudits)
			r.Post("/audits/run", s.handleRunAudit)
			r.Get("/audits/{id}", s.handleGetAudit)

			r.Get("/sbcs", s.handleListSBCs)
		})
	})
	return r
}
