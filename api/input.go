package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"unicode/utf8"
)

// badText tells why s cannot reach the database (PostgreSQL text holds
// neither NUL nor invalid UTF-8), or "".
func badText(s string) string {
	switch {
	case strings.IndexByte(s, 0) >= 0:
		return "a NUL byte"
	case !utf8.ValidString(s):
		return "invalid UTF-8"
	}
	return ""
}

// checkInput refuses, before any handler runs, a request whose path
// segments or query parameters (names and values, cursors included) hold
// a NUL byte or invalid UTF-8: 400 with the JSON error shape, never a 500
// from the database.
func (s *Server) checkInput(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if why := badText(r.URL.Path); why != "" {
			s.writeError(w, r, badRequest("the path holds %s", why))
			return
		}
		q, err := url.ParseQuery(r.URL.RawQuery)
		if err != nil {
			s.writeError(w, r, badRequest("the query string is not validly escaped"))
			return
		}
		for k, vs := range q {
			if why := badText(k); why != "" {
				s.writeError(w, r, badRequest("a query parameter name holds %s", why))
				return
			}
			for _, v := range vs {
				if why := badText(v); why != "" {
					s.writeError(w, r, badRequest("query parameter %q holds %s", k, why))
					return
				}
			}
		}
		next.ServeHTTP(w, r)
	})
}

// nulEscape finds a \u0000 escape in JSON text (an even number of
// backslashes before it means it is not an escape).
var nulEscape = regexp.MustCompile(`(^|[^\\])(\\\\)*\\u0000`)

// decodeOptionalJSON decodes a JSON body into v when there is one: it
// must be application/json, one JSON document, valid UTF-8 without NUL
// (escaped or not), with no unknown fields. An empty body leaves v alone.
func decodeOptionalJSON(r *http.Request, v any) error {
	if r.Body == nil {
		return nil
	}
	raw, err := io.ReadAll(r.Body)
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return err
	}
	if err != nil {
		return badRequest("reading the body: %v", err)
	}
	if len(bytes.TrimSpace(raw)) == 0 {
		return nil
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		return &Error{Status: http.StatusUnsupportedMediaType, Code: "unsupported_media_type",
			Message: "the body must be application/json"}
	}
	if !utf8.Valid(raw) || bytes.IndexByte(raw, 0) >= 0 || nulEscape.Match(raw) {
		return badRequest("the body holds a NUL byte or invalid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return badRequest("invalid JSON body: %v", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return badRequest("the body must be one JSON document")
	}
	return nil
}

// errorHeaders is what net/http writes before the text of an error it
// answers itself (a malformed request, a header over MaxHeaderBytes),
// before any handler runs.
const errorHeaders = "\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n"

// jsonErrorListener rewrites the plain-text 4xx answers of net/http
// itself into the JSON error shape.
type jsonErrorListener struct{ net.Listener }

func (l jsonErrorListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &jsonErrorConn{Conn: c}, nil
}

// jsonErrorConn rewrites net/http's own error answers: net/http writes
// one in a single piece, "HTTP/1.1 <status>" + errorHeaders + the same
// status text, which no handler's answer (always with a Date header) can
// look like.
type jsonErrorConn struct {
	net.Conn
}

func (c *jsonErrorConn) Write(p []byte) (int, error) {
	status, text, ok := serverError(p)
	if !ok {
		return c.Conn.Write(p)
	}
	code := "bad_request"
	if status == "431" {
		code = "header_too_large"
	}
	body, _ := json.Marshal(errorBody{Error: errorDetail{Code: code, Message: text}})
	out := fmt.Sprintf("HTTP/1.1 %s %s\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s",
		status, http.StatusText(atoi3(status)), len(body), body)
	if _, err := c.Conn.Write([]byte(out)); err != nil {
		return 0, err
	}
	return len(p), nil
}

// serverError parses one of net/http's own 4xx answers.
func serverError(p []byte) (status, text string, ok bool) {
	if len(p) > 1024 || !bytes.HasPrefix(p, []byte("HTTP/1.1 4")) {
		return "", "", false
	}
	line, body, found := strings.Cut(strings.TrimPrefix(string(p), "HTTP/1.1 "), errorHeaders)
	if !found || line != body || len(line) < 5 {
		return "", "", false
	}
	return line[:3], line[4:], true
}

func atoi3(s string) int {
	n := 0
	for _, c := range s {
		n = n*10 + int(c-'0')
	}
	return n
}

// maxAckBy bounds who acknowledged (a name, not a document).
const maxAckBy = 200

// readAck reads an acknowledgement's optional body (one JSON document,
// AckRequest) and returns who acknowledged: its "by", else the token's
// name, at most maxAckBy characters.
func readAck(r *http.Request) (string, error) {
	var req AckRequest
	if err := decodeOptionalJSON(r, &req); err != nil {
		return "", err
	}
	by := req.By
	if by == "" {
		by = tokenFrom(r.Context()).Name
	}
	if n := utf8.RuneCountInString(by); n > maxAckBy {
		return "", badRequest("by: %d characters; at most %d", n, maxAckBy)
	}
	return by, nil
}
