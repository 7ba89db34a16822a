package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/go-chi/chi/v5/middleware"

	"github.com/sbcwatch/sbcwatch/store"
)

// Error is an API error with its HTTP status and stable code.
type Error struct {
	Status  int
	Code    string
	Message string
	Err     error // cause, logged for 5xx, never sent
}

func (e *Error) Error() string {
	if e.Err != nil {
		return e.Message + ": " + e.Err.Error()
	}
	return e.Message
}

func (e *Error) Unwrap() error { return e.Err }

func badRequest(format string, args ...any) *Error {
	return &Error{Status: http.StatusBadRequest, Code: "bad_request", Message: fmt.Sprintf(format, args...)}
}

func notFound(format string, args ...any) *Error {
	return &Error{Status: http.StatusNotFound, Code: "not_found", Message: fmt.Sprintf(format, args...)}
}

// errorBody is the one JSON shape of every error.
type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code      string `json:"code"`
	Message   string `json:"message"`
	RequestID string `json:"request_id"`
}

// writeError renders err as the JSON error shape. Known errors map to
// their status; anything else is logged and becomes a 500 without detail.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	var e *Error
	var mbe *http.MaxBytesError
	if ctxErr := r.Context().Err(); ctxErr != nil && !errors.As(err, &e) {
		err = ctxErr // whatever the database said, the request timed out or its client left
	}
	switch {
	case errors.As(err, &e):
	case errors.As(err, &mbe):
		e = &Error{Status: http.StatusRequestEntityTooLarge, Code: "payload_too_large",
			Message: fmt.Sprintf("request body exceeds %d bytes", mbe.Limit)}
	case errors.Is(err, store.ErrNotFound):
		e = notFound("not found")
	case errors.Is(err, store.ErrBadLimit), errors.Is(err, store.ErrBadCursor), errors.Is(err, store.ErrBadQuery):
		e = &Error{Status: http.StatusBadRequest, Code: "bad_request", Message: err.Error()}
	case errors.Is(err, context.DeadlineExceeded):
		e = &Error{Status: http.StatusGatewayTimeout, Code: "timeout", Message: "the request took too long", Err: err}
	case errors.Is(err, context.Canceled):
		e = &Error{Status: 499, Code: "canceled", Message: "the request was canceled", Err: err}
	default:
		e = &Error{Status: http.StatusInternalServerError, Code: "internal", Message: "internal error", Err: err}
	}
	if e.Status >= 500 {
		s.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "status", e.Status,
			"request_id", middleware.GetReqID(r.Context()), "err", e.Err)
	}
	writeJSON(w, e.Status, errorBody{Error: errorDetail{Code: e.Code, Message: e.Message,
		RequestID: middleware.GetReqID(r.Context())}})
}

// writeJSON writes v with the status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		slog.Debug("api: write response", "err", err)
	}
}
