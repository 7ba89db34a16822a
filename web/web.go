package web

import (
	"bytes"
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/go-chi/chi/v5"

	"github.com/sbcwatch/sbcwatch/internal/authctx"
	"github.com/sbcwatch/sbcwatch/internal/forwarded"
	"github.com/sbcwatch/sbcwatch/report"
	"github.com/sbcwatch/sbcwatch/store"
)

// CookieName is the cookie that carries a browser's session id (never the
// API token: the session lives in the store, ends after sessionTTL, at
// sign-out, or when its token is revoked).
const CookieName = "sbcwatch_session"

// sessionTTL is how long a session lasts from sign-in.
const sessionTTL = 12 * time.Hour

//go:embed templates/*.html
var templateFS embed.FS

var tmpl = template.Must(template.New("").Funcs(template.FuncMap{
	"ts":      func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05.000") },
	"has":     func(list []string, s string) bool { return slices.Contains(list, s) },
	"tsec":    func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05") },
	"callURL": CallPath,
	"add":     func(a, b int) int { return a + b },
	"sub":     func(a, b int) int { return a - b },
	"span":    report.Span,
	"ms": func(ms float64) string {
		if ms >= 1000 {
			return report.Span(ms / 1000)
		}
		return fmt.Sprintf("%.1f ms", ms)
	},
}).ParseFS(templateFS, "templates/*.html"))

// Options are the pages' dependencies.
type Options struct {
	// API is the REST API handler (api.NewServer's router); the pages
	// read /api/v1 through it, in process.
	API http.Handler
	// Store checks tokens at login and on every page.
	Store *store.Store
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Timeout bounds each page request (default 30 s).
	Timeout time.Duration
	// LadderSteps bounds the rows the call page's ladder draws (default
	// DefaultLadderSteps); the rest are counted on the page.
	LadderSteps int
}

// Pages serves the HTML pages.
type Pages struct {
	opts Options
	log  *slog.Logger
	mux  *http.ServeMux
}

// New returns the pages' handler. It does not touch the store until a
// request arrives.
func New(opts Options) *Pages {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 30 * time.Second
	}
	if opts.LadderSteps <= 0 {
		opts.LadderSteps = DefaultLadderSteps
	}
	p := &Pages{opts: opts, log: opts.Logger.With("component", "web")}
	m := http.NewServeMux()
	handle := func(pattern string, h http.HandlerFunc) { m.HandleFunc(pattern, routed(h)) }
	handle("GET /{$}", p.authed(p.handleIndex))
	handle("GET /calls", p.authed(p.handleCalls))
	handle("GET /calls.csv", p.authed(p.handleCallsCSV))
	handle("GET /certificates", p.authed(p.handleCertificates))
	handle("GET /audits", p.authed(p.handleAudits))
	handle("GET /sbcs", p.authed(p.handleSBCs))
	handle("GET /tls", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/certificates", http.StatusMovedPermanently)
	})
	handle("GET /calls/{call_id}", p.authed(p.handleCall))
	for _, f := range evidenceFormats {
		handle("GET /calls/{call_id}/evidence."+f.ext, p.authed(p.handleEvidence(f)))
	}
	handle("GET /login", p.handleLoginForm)
	handle("POST /login", p.handleLogin)
	handle("POST /logout", p.handleLogout)
	// Not routed: counted as "unmatched", like the API's own 404s, so
	// that a scan of made-up paths does not make one series per path.
	m.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		p.renderError(w, http.StatusNotFound, "No such page: "+r.URL.Path)
	})
	p.mux = m
	return p
}

// routed records the matched ServeMux pattern's path (e.g.
// "/calls/{call_id}", never the request's path) in chi's routing context
// when the request came through a chi router: the API hands the pages
// over from its not-found handler, where chi knows no pattern, and its
// metrics label requests with chi's RoutePattern. Appending is what a
// chi sub-router does too, so a mount under "/*" also comes out right.
func routed(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if rc := chi.RouteContext(r.Context()); rc != nil {
			path := r.Pattern
			if _, p, ok := strings.Cut(path, " "); ok {
				path = p
			}
			path = strings.TrimSuffix(path, "{$}")
			if path != "" {
				rc.RoutePatterns = append(rc.RoutePatterns, path)
			}
		}
		h(w, r)
	}
}

// Owns reports whether path belongs to the pages (the API hands those
// over from its not-found handler, so its route table stays /api/v1).
func Owns(path string) bool {
	switch path {
	case "/", "/login", "/logout", "/calls", "/calls.csv", "/certificates", "/tls", "/audits", "/sbcs":
		return true
	}
	return strings.HasPrefix(path, "/calls/")
}

// OwnsRequest reports whether the pages answer r: their own paths
// (Owns), and any other path outside /api/ that a browser asks for
// (Accept: text/html), so that a mistyped address shows an HTML page
// rather than the API's JSON error.
func OwnsRequest(r *http.Request) bool {
	if Owns(r.URL.Path) {
		return true
	}
	p := r.URL.Path
	if strings.HasPrefix(p, "/api/") || p == "/healthz" || p == "/readyz" || p == "/metrics" {
		return false
	}
	return strings.Contains(r.Header.Get("Accept"), "text/html")
}

// CallPath is the page of a call: /calls/{call_id} with the Call-ID
// escaped as one path segment.
func CallPath(callID, sbc string) string { return withSBC("/calls/"+segment(callID), sbc) }

// withSBC adds ?sbc= to path when sbc is set.
func withSBC(path, sbc string) string {
	if sbc != "" {
		path += "?sbc=" + url.QueryEscape(sbc)
	}
	return path
}

// segment escapes s as one path segment ("/" as %2F, "+" as %2B).
func segment(s string) string { return strings.ReplaceAll(url.PathEscape(s), "+", "%2B") }

func (p *Pages) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Cache-Control", "no-store")
	ctx, cancel := context.WithTimeout(r.Context(), p.opts.Timeout)
	defer cancel()
	p.mux.ServeHTTP(w, r.WithContext(ctx))
}

// page is what every template gets.
type page struct {
	Title  string
	Authed bool
	Data   any
}

func (p *Pages) render(w http.ResponseWriter, status int, name string, pg page) {
	var buf bytes.Buffer
	if err := tmpl.ExecuteTemplate(&buf, name, pg); err != nil {
		p.log.Error("render page", "template", name, "err", err)
		http.Error(w, "internal error rendering the page", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

func (p *Pages) renderError(w http.ResponseWriter, status int, msg string) {
	p.render(w, status, "error.html", page{Title: http.StatusText(status), Data: struct {
		Status int
		Text   string
	}{status, msg}})
}

// token returns the request's bearer token, or its session id from the
// cookie.
func token(r *http.Request) (tok string, viaHeader bool) {
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, t, ok := strings.Cut(h, " ")
		if ok && strings.EqualFold(scheme, "Bearer") {
			return strings.TrimSpace(t), true
		}
		return "", true
	}
	if c, err := r.Cookie(CookieName); err == nil {
		return strings.TrimSpace(c.Value), false
	}
	return "", false
}

// authed runs h with a live bearer token or session (any scope: pages
// only read). Without one, a browser is sent to /login; a wrong bearer
// header gets 401. For a session, h gets no token: the request's context
// carries the session's token (authctx) for the in-process API reads.
func (p *Pages) authed(h func(w http.ResponseWriter, r *http.Request, tok string)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		tok, viaHeader := token(r)
		if tok == "" && !viaHeader {
			p.toLogin(w, r)
			return
		}
		var t store.Token
		var err error
		if viaHeader {
			t, err = p.lookup(r.Context(), tok)
		} else {
			t, err = p.session(r.Context(), tok)
		}
		switch {
		case errors.Is(err, store.ErrNotFound):
			if viaHeader {
				w.Header().Set("WWW-Authenticate", `Bearer realm="sbcwatch", error="invalid_token"`)
				p.renderError(w, http.StatusUnauthorized, "The token is unknown or revoked.")
				return
			}
			clearCookie(w, r)
			p.toLogin(w, r)
			return
		case err != nil && r.Context().Err() != nil:
			p.renderError(w, http.StatusGatewayTimeout, "The request was canceled or took too long.")
			return
		case err != nil:
			p.log.Error("check token", "err", err)
			p.renderError(w, http.StatusServiceUnavailable, "Cannot check the token: the database does not answer.")
			return
		}
		if !viaHeader {
			r = r.WithContext(authctx.With(r.Context(), t))
			tok = ""
		}
		h(w, r, tok)
	}
}

// session returns the token behind a session id.
func (p *Pages) session(ctx context.Context, id string) (store.Token, error) {
	if p.opts.Store == nil {
		return store.Token{}, errors.New("web: no store")
	}
	t, err := store.LookupSession(ctx, p.opts.Store.Pool(), id)
	if err != nil {
		return t, fmt.Errorf("web: session: %w", err)
	}
	return t, nil
}

func (p *Pages) lookup(ctx context.Context, tok string) (store.Token, error) {
	if p.opts.Store == nil {
		return store.Token{}, errors.New("web: no store")
	}
	t, err := store.LookupToken(ctx, p.opts.Store.Pool(), tok)
	if err != nil {
		return t, fmt.Errorf("web: token: %w", err)
	}
	return t, nil
}

func (p *Pages) toLogin(w http.ResponseWriter, r *http.Request) {
	http.Redirect(w, r, "/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
}

// safeNext keeps a post-login target on this site: an absolute path
// with no scheme, host or user, and no byte a browser would drop or bend
// ("/\t/evil.example" is "//evil.example" to Chromium, which strips tabs
// and newlines and reads "\" as "/"). Anything else is "/".
func safeNext(s string) string {
	if !strings.HasPrefix(s, "/") || strings.HasPrefix(s, "//") || len(s) > 2048 || !utf8.ValidString(s) {
		return "/"
	}
	for _, c := range s {
		if c <= 0x20 || c == 0x7f || c == '\\' || !unicode.IsPrint(c) {
			return "/"
		}
	}
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || u.Opaque != "" ||
		!strings.HasPrefix(u.Path, "/") || strings.HasPrefix(u.Path, "//") {
		return "/"
	}
	return s
}

// crossSite reports a form posted from anywhere but this origin (login
// and logout CSRF, a sibling subdomain included): Sec-Fetch-Site other
// than same-origin or none, or an Origin naming another host. ("null" is
// what this site's own form sends under Referrer-Policy: no-referrer.)
func crossSite(r *http.Request) bool {
	if s := r.Header.Get("Sec-Fetch-Site"); s != "" && s != "same-origin" && s != "none" {
		return true
	}
	if o := r.Header.Get("Origin"); o != "" && o != "null" {
		u, err := url.Parse(o)
		return err != nil || u.Host != r.Host
	}
	return false
}

type loginData struct {
	Next  string
	Error string
}

func (p *Pages) handleLoginForm(w http.ResponseWriter, r *http.Request) {
	p.render(w, http.StatusOK, "login.html", page{Title: "Sign in", Data: loginData{Next: safeNext(r.URL.Query().Get("next"))}})
}

func (p *Pages) handleLogin(w http.ResponseWriter, r *http.Request) {
	if crossSite(r) {
		p.renderError(w, http.StatusForbidden, "Sign in from this site's own form.")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	if err := r.ParseForm(); err != nil {
		p.renderError(w, http.StatusBadRequest, "The sign-in form could not be read.")
		return
	}
	next := safeNext(r.PostForm.Get("next"))
	tok := strings.TrimSpace(r.PostForm.Get("token"))
	t, err := p.lookup(r.Context(), tok)
	switch {
	case errors.Is(err, store.ErrNotFound):
		p.log.Info("page sign-in refused: unknown or revoked token")
		p.render(w, http.StatusUnauthorized, "login.html", page{Title: "Sign in",
			Data: loginData{Next: next, Error: "That token is unknown or revoked."}})
		return
	case err != nil:
		p.log.Error("page sign-in", "err", err)
		p.renderError(w, http.StatusServiceUnavailable, "Cannot check the token: the database does not answer.")
		return
	}
	sid, err := store.CreateSession(r.Context(), p.opts.Store.Pool(), t.ID, sessionTTL)
	if err != nil {
		p.log.Error("page sign-in", "err", err)
		p.renderError(w, http.StatusServiceUnavailable, "Cannot start a session: the database does not answer.")
		return
	}
	p.log.Info("page sign-in", "token_name", t.Name, "scope", t.Scope)
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: sid, Path: "/", MaxAge: int(sessionTTL / time.Second),
		HttpOnly: true, Secure: forwarded.Secure(r), SameSite: http.SameSiteStrictMode})
	http.Redirect(w, r, next, http.StatusSeeOther)
}

// handleLogout ends the session in the store (the cookie alone is no
// longer worth anything) and clears the cookie. From another site it is
// refused: signing someone out is an attack too.
func (p *Pages) handleLogout(w http.ResponseWriter, r *http.Request) {
	if crossSite(r) {
		p.renderError(w, http.StatusForbidden, "Sign out from this site's own pages.")
		return
	}
	if c, err := r.Cookie(CookieName); err == nil && p.opts.Store != nil {
		if err := store.RevokeSession(r.Context(), p.opts.Store.Pool(), c.Value); err != nil {
			p.log.Error("page sign-out", "err", err)
			p.renderError(w, http.StatusServiceUnavailable, "Cannot end the session: the database does not answer.")
			return
		}
	}
	clearCookie(w, r)
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}

func clearCookie(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, Secure: forwarded.Secure(r), SameSite: http.SameSiteStrictMode})
}

// apiError is an error answer of the API.
type apiError struct {
	Status  int
	Code    string
	Message string
}

func (e *apiError) Error() string { return fmt.Sprintf("api %d %s: %s", e.Status, e.Code, e.Message) }

// bufWriter collects an in-process API answer.
type bufWriter struct {
	h      http.Header
	status int
	body   bytes.Buffer
}

func (b *bufWriter) Header() http.Header { return b.h }
func (b *bufWriter) Write(p []byte) (int, error) {
	if b.status == 0 {
		b.status = http.StatusOK
	}
	return b.body.Write(p)
}
func (b *bufWriter) WriteHeader(s int) {
	if b.status == 0 {
		b.status = s
	}
}

// apiRequest is an in-process GET of path from the API with the page's
// token tok.
func (p *Pages) apiRequest(ctx context.Context, tok, path, accept string) (*http.Request, error) {
	if p.opts.API == nil {
		return nil, errors.New("web: no API handler")
	}
	// A request of its own: without this, chi would take the page
	// request's routing context as a parent router's and route in it.
	ctx = context.WithValue(ctx, chi.RouteCtxKey, (*chi.Context)(nil))
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, path, nil)
	if err != nil {
		return nil, fmt.Errorf("web: api request: %w", err)
	}
	req.RemoteAddr = "127.0.0.1:0"
	if tok != "" { // else ctx carries the session's token (authctx)
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	req.Header.Set("Accept", accept)
	return req, nil
}

// apiGet reads path from the API with tok and decodes the JSON answer.
func (p *Pages) apiGet(ctx context.Context, tok, path string, v any) error {
	req, err := p.apiRequest(ctx, tok, path, "application/json")
	if err != nil {
		return err
	}
	bw := &bufWriter{h: http.Header{}}
	p.opts.API.ServeHTTP(bw, req)
	if bw.status == 0 {
		bw.status = http.StatusOK
	}
	if bw.status != http.StatusOK {
		var e struct {
			Error struct{ Code, Message string } `json:"error"`
		}
		_ = json.Unmarshal(bw.body.Bytes(), &e)
		return &apiError{Status: bw.status, Code: e.Error.Code, Message: e.Error.Message}
	}
	if err := json.Unmarshal(bw.body.Bytes(), v); err != nil {
		return fmt.Errorf("web: decode %s: %w", req.URL.Path, err)
	}
	return nil
}

func (p *Pages) apiFailed(w http.ResponseWriter, err error) {
	var ae *apiError
	if errors.As(err, &ae) && ae.Status < 500 {
		msg := ae.Message
		if msg == "" {
			msg = http.StatusText(ae.Status)
		}
		p.renderError(w, ae.Status, msg)
		return
	}
	p.log.Error("page", "err", err)
	status := http.StatusInternalServerError
	if ae != nil {
		status = ae.Status
	}
	p.renderError(w, status, "The page could not be built; the server log has the details.")
}

// indexData is the list of the latest calls with findings.
type indexData struct {
	Calls []store.Call
}

func (p *Pages) handleIndex(w http.ResponseWriter, r *http.Request, tok string) {
	var pg store.Page[store.Call]
	if err := p.apiGet(r.Context(), tok, "/api/v1/calls?has_findings=true&limit=100", &pg); err != nil {
		p.apiFailed(w, err)
		return
	}
	p.render(w, http.StatusOK, "index.html", page{Title: "Calls with findings", Authed: true, Data: indexData{Calls: pg.Items}})
}

func (p *Pages) handleCall(w http.ResponseWriter, r *http.Request, tok string) {
	id := r.PathValue("call_id")
	for k := range r.URL.Query() {
		if k != "sbc" {
			p.renderError(w, http.StatusBadRequest, fmt.Sprintf("Unknown query parameter %q (known: sbc).", k))
			return
		}
	}
	path := "/api/v1/calls/" + segment(id) + "/evidence"
	if sbc := r.URL.Query().Get("sbc"); sbc != "" {
		path += "?sbc=" + url.QueryEscape(sbc)
	}
	var ev evidence
	if err := p.apiGet(r.Context(), tok, path, &ev); err != nil {
		p.apiFailed(w, err)
		return
	}
	data := buildCallPage(&ev, p.opts.LadderSteps)
	data.Partners = p.partnerLegs(r.Context(), ev.Call)
	data.Leg = legRole(ev.Call)
	data.Root = pickRootCause(&ev, data.Partners)
	partnerVerdict(data.Verdict, data.Root)
	p.render(w, http.StatusOK, "call.html", page{Title: "Call " + ev.Call.CallID, Authed: true, Data: data})
}
