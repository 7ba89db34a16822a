package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/sbcwatch/sbcwatch/store"
)

// query reads the query string, refusing parameters the route does not
// know (a typo must not silently widen a search).
type query struct {
	v   url.Values
	err error
}

func parseQuery(r *http.Request, allowed ...string) *query {
	q := &query{v: r.URL.Query()}
	for k := range q.v {
		ok := false
		for _, a := range allowed {
			if k == a {
				ok = true
				break
			}
		}
		if !ok {
			q.err = badRequest("unknown query parameter %q (known: %s)", k, strings.Join(allowed, ", "))
			return q
		}
	}
	return q
}

func (q *query) str(name string) string { return strings.TrimSpace(q.v.Get(name)) }

func (q *query) time(name string) time.Time {
	s := q.str(name)
	if s == "" || q.err != nil {
		return time.Time{}
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		q.err = badRequest("%s: %q is not an RFC 3339 time (e.g. 2026-03-02T09:55:00Z)", name, s)
	}
	return t
}

func (q *query) boolPtr(name string) *bool {
	s := q.str(name)
	if s == "" || q.err != nil {
		return nil
	}
	b, err := strconv.ParseBool(s)
	if err != nil {
		q.err = badRequest("%s: %q is not true or false", name, s)
		return nil
	}
	return &b
}

// limit parses limit: absent means the default, else 1..1000.
func (q *query) limit() int {
	s := q.str("limit")
	if s == "" || q.err != nil {
		return 0
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > store.MaxLimit {
		q.err = badRequest("limit must be an integer between 1 and %d", store.MaxLimit)
		return 0
	}
	return n
}

// pathParam returns a URL parameter unescaped. chi matches on the escaped
// path when the request has one (a Call-ID with "/" or "%"), so the value
// is unescaped exactly when RawPath was used.
func pathParam(r *http.Request, name string) (string, error) {
	v := chi.URLParam(r, name)
	if r.URL.RawPath == "" {
		return v, nil
	}
	u, err := url.PathUnescape(v)
	if err != nil {
		return "", badRequest("%s is not validly escaped", name)
	}
	return u, nil
}

func (s *Server) handleHealthz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (s *Server) handleReadyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := s.st.Ping(ctx); err != nil {
		s.writeError(w, r, &Error{Status: http.StatusServiceUnavailable, Code: "unavailable",
			Message: "the database does not answer", Err: err})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

func (s *Server) handleListCalls(w http.ResponseWriter, r *http.Request) {
	q := parseQuery(r, "number", "from", "to", "call_id", "sbc", "has_findings", "rule", "limit", "cursor")
	cq := store.CallQuery{Number: q.str("number"), From: q.time("from"), To: q.time("to"), CallID: q.str("call_id"),
		SBC: q.str("sbc"), HasFindings: q.boolPtr("has_findings"), Rule: q.str("rule"), Limit: q.limit(),
		Cursor: q.str("cursor")}
	if q.err != nil {
		s.writeError(w, r, q.err)
		return
	}
	page, err := store.ListCalls(r.Context(), s.st.Pool(), cq)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, page)
}

// LadderStep is one arrow of a call's ladder diagram.
type LadderStep struct {
	Time  time.Time `json:"time"`
	From  string    `json:"from"`
	To    string    `json:"to"`
	Label string    `json:"label"`
}

// CallDetail is the answer of GET /api/v1/calls/{call_id}.
type CallDetail struct {
	Call     store.Call      `json:"call"`
	Messages []store.Message `json:"messages"`
	Ladder   []LadderStep    `json:"ladder"`
	TLS      []store.TLSConn `json:"tls"`
	Findings []store.Finding `json:"findings"`
}

func ladder(ms []store.Message) []LadderStep {
	out := make([]LadderStep, 0, len(ms))
	for _, m := range ms {
		out = append(out, LadderStep{Time: m.Time, From: m.Src, To: m.Dst, Label: m.Label()})
	}
	return out
}

// callDetail loads everything about one call.
func (s *Server) callDetail(ctx context.Context, r *http.Request) (*CallDetail, error) {
	id, err := pathParam(r, "call_id")
	if err != nil {
		return nil, err
	}
	q := parseQuery(r, "sbc", "format")
	if q.err != nil {
		return nil, q.err
	}
	db := s.st.Pool()
	c, err := store.GetCall(ctx, db, id, q.str("sbc"))
	if errors.Is(err, store.ErrNotFound) {
		return nil, notFound("no call with Call-ID %q", id)
	}
	if err != nil {
		return nil, err
	}
	d := &CallDetail{Call: c}
	if d.Messages, err = store.CallMessages(ctx, db, c.SBC, c.CallID); err != nil {
		return nil, err
	}
	d.Ladder = ladder(d.Messages)
	if d.Findings, err = store.CallFindings(ctx, db, c.SBC, c.CallID); err != nil {
		return nil, err
	}
	sortFindings(d.Findings)
	if d.TLS, err = store.CallTLS(ctx, db, c.SBC, c.Start, callEnd(c), citedConnections(d.Findings)); err != nil {
		return nil, err
	}
	return d, nil
}

// callEnd is the latest of a call's start, end and last message.
func callEnd(c store.Call) time.Time {
	end := c.Start
	for _, t := range []*time.Time{c.End, c.Last} {
		if t != nil && t.After(end) {
			end = *t
		}
	}
	return end
}

// citedConnections collects the TLS connection ids the findings name,
// directly or in evidence.connections[].connection.
func citedConnections(fs []store.Finding) []string {
	seen := map[string]bool{}
	var out []string
	add := func(s string) {
		if s != "" && !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	for _, f := range fs {
		add(f.Connection)
		var ev struct {
			Connections []struct {
				Connection string `json:"connection"`
			} `json:"connections"`
		}
		if json.Unmarshal(f.Evidence, &ev) == nil {
			for _, c := range ev.Connections {
				add(c.Connection)
			}
		}
	}
	return out
}

func (s *Server) handleGetCall(w http.ResponseWriter, r *http.Request) {
	d, err := s.callDetail(r.Context(), r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, d)
}

func (s *Server) handleListFindings(w http.ResponseWriter, r *http.Request) {
	q := parseQuery(r, "rule", "severity", "sbc", "call_id", "from", "to", "acknowledged", "state", "retracted", "limit", "cursor")
	fq := store.FindingQuery{Rule: q.str("rule"), Severity: q.str("severity"), SBC: q.str("sbc"),
		CallID: q.str("call_id"), From: q.time("from"), To: q.time("to"), Acknowledged: q.boolPtr("acknowledged"),
		State: q.str("state"), Limit: q.limit(), Cursor: q.str("cursor")}
	if p := q.boolPtr("retracted"); p != nil {
		fq.Retracted = *p
	}
	if q.err == nil {
		switch fq.Severity {
		case "", "critical", "warning", "info":
		default:
			q.err = badRequest("severity must be critical, warning or info")
		}
	}
	if q.err != nil {
		s.writeError(w, r, q.err)
		return
	}
	page, err := store.ListFindings(r.Context(), s.st.Pool(), fq)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, page)
}

// AckRequest is the optional body of POST /api/v1/findings/{id}/ack.
type AckRequest struct {
	// By names who acknowledged; defaults to the token's name.
	By string `json:"by"`
}

func (s *Server) handleAckFinding(w http.ResponseWriter, r *http.Request) {
	id, err := pathParam(r, "id")
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	by, err := readAck(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	f, err := store.AckFinding(r.Context(), s.st.Pool(), id, by)
	if errors.Is(err, store.ErrNotFound) {
		s.writeError(w, r, notFound("no finding with id %q", id))
		return
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, f)
}

func (s *Server) handleListTLS(w http.ResponseWriter, r *http.Request) {
	q := parseQuery(r, "sbc", "from", "to", "outcome", "from_microsoft", "failed", "sni", "fingerprint", "peer", "limit", "cursor")
	tq := store.TLSQuery{SBC: q.str("sbc"), From: q.time("from"), To: q.time("to"), Outcome: q.str("outcome"),
		FromMicrosoft: q.boolPtr("from_microsoft"), Failed: q.boolPtr("failed"), SNI: q.str("sni"),
		Fingerprint: q.str("fingerprint"), Peer: q.str("peer"), Limit: q.limit(), Cursor: q.str("cursor")}
	if q.err != nil {
		s.writeError(w, r, q.err)
		return
	}
	page, err := store.ListTLS(r.Context(), s.st.Pool(), tq)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, page)
}

func (s *Server) handleListCertificates(w http.ResponseWriter, r *http.Request) {
	q := parseQuery(r, "expires_before", "subject", "limit", "cursor")
	cq := store.CertQuery{ExpiresBefore: q.time("expires_before"), Subject: q.str("subject"), Limit: q.limit(),
		Cursor: q.str("cursor")}
	if q.err != nil {
		s.writeError(w, r, q.err)
		return
	}
	page, err := store.ListCertificates(r.Context(), s.st.Pool(), cq)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, page)
}

func (s *Server) handleListCounters(w http.ResponseWriter, r *http.Request) {
	q := parseQuery(r, "sbc", "counter", "scope", "from", "to", "limit", "cursor")
	cq := store.CounterQuery{SBC: q.str("sbc"), Counter: q.str("counter"), Scope: q.str("scope"),
		From: q.time("from"), To: q.time("to"), Limit: q.limit(), Cursor: q.str("cursor")}
	if q.err != nil {
		s.writeError(w, r, q.err)
		return
	}
	page, err := store.ListCounterSamples(r.Context(), s.st.Pool(), cq)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, page)
}

func (s *Server) handleListAudits(w http.ResponseWriter, r *http.Request) {
	q := parseQuery(r, "sbc", "kind", "limit", "cursor")
	aq := store.AuditQuery{SBC: q.str("sbc"), Kind: q.str("kind"), Limit: q.limit(), Cursor: q.str("cursor")}
	if q.err != nil {
		s.writeError(w, r, q.err)
		return
	}
	page, err := store.ListAudits(r.Context(), s.st.Pool(), aq)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, page)
}

func (s *Server) handleGetAudit(w http.ResponseWriter, r *http.Request) {
	raw, err := pathParam(r, "id")
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	id, err := strconv.ParseInt(raw, 10, 64)
	if err != nil || id < 1 {
		s.writeError(w, r, badRequest("audit id must be a positive integer"))
		return
	}
	a, err := store.GetAudit(r.Context(), s.st.Pool(), id)
	if errors.Is(err, store.ErrNotFound) {
		s.writeError(w, r, notFound("no audit with id %d", id))
		return
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, a)
}

func (s *Server) handleRunAudit(w http.ResponseWriter, r *http.Request) {
	if s.opts.RunAudit == nil {
		s.writeError(w, r, &Error{Status: http.StatusNotImplemented, Code: "not_implemented",
			Message: "audits cannot be run from this server: it was started without audit configuration"})
		return
	}
	var req AuditRunRequest
	if err := decodeOptionalJSON(r, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	res, err := s.opts.RunAudit(r.Context(), req)
	if err != nil {
		var e *Error
		if !errors.As(err, &e) {
			err = &Error{Status: http.StatusBadGateway, Code: "audit_failed", Message: "the audit could not run: " + err.Error(), Err: err}
		}
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

func (s *Server) handleListSBCs(w http.ResponseWriter, r *http.Request) {
	q := parseQuery(r)
	if q.err != nil {
		s.writeError(w, r, q.err)
		return
	}
	sbcs, err := store.ListSBCs(r.Context(), s.st.Pool())
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if sbcs == nil {
		sbcs = []store.SBC{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"items": sbcs, "next_cursor": ""})
}
