package api

import (
	"errors"
	"net/http"
	"strconv"

	"github.com/sbcwatch/sbcwatch/store"
)

// handleListProblems answers GET /api/v1/problems: one row per problem
// (rule and subject on an SBC) with its state, first and last sighting
// and count, most recently seen first.
func (s *Server) handleListProblems(w http.ResponseWriter, r *http.Request) {
	q := parseQuery(r, "state", "rule", "severity", "sbc", "acknowledged", "limit", "cursor")
	pq := store.ProblemQuery{State: q.str("state"), Rule: q.str("rule"), Severity: q.str("severity"),
		SBC: q.str("sbc"), Acknowledged: q.boolPtr("acknowledged"), Limit: q.limit(), Cursor: q.str("cursor")}
	if q.err == nil {
		switch pq.Severity {
		case "", "critical", "warning", "info":
		default:
			q.err = badRequest("severity must be critical, warning or info")
		}
	}
	if q.err != nil {
		s.writeError(w, r, q.err)
		return
	}
	page, err := store.ListProblems(r.Context(), s.st.Pool(), pq)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, page)
}

// handleAckProblem answers POST /api/v1/problems/{id}/ack (admin): the
// acknowledgement lasts while the problem stays open.
func (s *Server) handleAckProblem(w http.ResponseWriter, r *http.Request) {
	raw, err := pathParam(r, "id")
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	id, err := strconv.ParseInt(raw, 10, 64)
	if err != nil || id <= 0 {
		s.writeError(w, r, badRequest("problem id %q is not a positive integer", raw))
		return
	}
	by, err := readAck(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	p, err := store.AckProblem(r.Context(), s.st.Pool(), id, by)
	if errors.Is(err, store.ErrNotFound) {
		s.writeError(w, r, notFound("no problem with id %d", id))
		return
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, p)
}
