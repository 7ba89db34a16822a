package web_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/sbcwatch/sbcwatch/store"
	"github.com/sbcwatch/sbcwatch/web"
)

// postForm posts form to path with extra headers (name, value pairs).
func (e *env) postForm(path string, form url.Values, hdr ...string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodPost, path, strings.NewReader(form.Encode()))
	req.Host = "sbcwatch.example.com"
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	w := httptest.NewRecorder()
	e.h.ServeHTTP(w, req)
	return w
}

// TestNoOpenRedirect: after sign-in, only a path on this origin is
// followed; anything a browser could read as another host goes to "/".
func TestNoOpenRedirect(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for _, next := range []string{
		"/\t/evil.example", "/\n/evil.example", "/\r/evil.example", "/ /evil.example", "/\\evil.example",
		"/\\/evil.example", "/x\\..\\..\\/evil.example", "//evil.example", "///evil.example", "https://evil.example/",
		"javascript:alert(1)", "evil.example", "/\x00/evil.example", "/\u00a0/evil.example", "/\u2028/evil",
		"", "?next=//evil",
	} {
		w := e.postForm("/login", url.Values{"token": {e.tok}, "next": {next}})
		if w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/" {
			t.Errorf("next=%q: %d Location %q", next, w.Code, w.Header().Get("Location"))
		}
	}
	for _, next := range []string{"/", "/calls/a%2Fb@x?sbc=sbc1", "/calls/x%09y"} {
		if w := e.postForm("/login", url.Values{"token": {e.tok}, "next": {next}}); w.Header().Get("Location") != next {
			t.Errorf("next=%q: Location %q", next, w.Header().Get("Location"))
		}
	}
	// The form carries the same rule.
	if res := e.get(t, "/login?next="+url.QueryEscape("/\t/evil.example")); strings.Contains(res.body, "evil.example") {
		t.Errorf("the form keeps a bad next:\n%s", res.body)
	}
}

// TestSessions: the cookie holds a session id, not the token; the session
// ends at sign-out, at expiry and when its token is revoked; sign-out and
// sign-in from another site or a sibling subdomain are refused.
func TestSessions(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	signIn := func() string {
		t.Helper()
		w := e.postForm("/login", url.Values{"token": {e.tok}, "next": {"/"}}, "Origin", "null", "Sec-Fetch-Site", "same-origin")
		sc := w.Header().Get("Set-Cookie")
		if w.Code != http.StatusSeeOther || !strings.HasPrefix(sc, web.CookieName+"=") {
			t.Fatalf("sign-in: %d %q", w.Code, sc)
		}
		if strings.Contains(sc, e.tok) || strings.Contains(sc, strings.TrimPrefix(e.tok, "sbcw_")) {
			t.Fatalf("the cookie holds the token: %q", sc)
		}
		return strings.SplitN(sc, ";", 2)[0]
	}
	live := func(cookie string) bool {
		t.Helper()
		res := e.get(t, "/", "Cookie", cookie)
		switch res.status {
		case http.StatusOK:
			return true
		case http.StatusSeeOther:
			return false
		}
		t.Fatalf("index: %d %s", res.status, res.body)
		return false
	}
	c1 := signIn()
	if !live(c1) {
		t.Fatal("a fresh session does not work")
	}
	// Another site cannot sign the browser out, nor in.
	for _, h := range [][]string{
		{"Sec-Fetch-Site", "cross-site"},
		{"Sec-Fetch-Site", "same-site", "Origin", "null"},
		{"Origin", "https://evil.example"},
		{"Origin", "https://other.example.com", "Sec-Fetch-Site", "same-site"},
	} {
		w := e.postForm("/logout", nil, append([]string{"Cookie", c1}, h...)...)
		if w.Code != http.StatusForbidden || w.Header().Get("Set-Cookie") != "" {
			t.Errorf("logout with %q: %d %q", h, w.Code, w.Header().Get("Set-Cookie"))
		}
		w = e.postForm("/login", url.Values{"token": {e.tok}}, h...)
		if w.Code != http.StatusForbidden || w.Header().Get("Set-Cookie") != "" {
			t.Errorf("login with %q: %d %q", h, w.Code, w.Header().Get("Set-Cookie"))
		}
	}
	if !live(c1) {
		t.Fatal("a refused sign-out ended the session")
	}
	// Sign-out ends the session in the store: the old cookie is worthless.
	w := e.postForm("/logout", nil, "Cookie", c1, "Sec-Fetch-Site", "same-origin")
	if w.Code != http.StatusSeeOther || !strings.Contains(w.Header().Get("Set-Cookie"), "Max-Age=0") {
		t.Fatalf("logout: %d %q", w.Code, w.Header().Get("Set-Cookie"))
	}
	if live(c1) {
		t.Fatal("the session survives sign-out")
	}
	// Expiry.
	c2 := signIn()
	if _, err := e.st.Pool().Exec(ctx, `update web_sessions set expires_at = now() - interval '1 second' where revoked_at is null`); err != nil {
		t.Fatal(err)
	}
	if live(c2) {
		t.Fatal("an expired session still works")
	}
	// Revoking the token ends its sessions.
	c3 := signIn()
	if err := store.RevokeToken(ctx, e.st.Pool(), "pages"); err != nil {
		t.Fatal(err)
	}
	if live(c3) {
		t.Fatal("a session outlives its revoked token")
	}
	// The token itself is no cookie value.
	if live(web.CookieName + "=" + e.tok) {
		t.Fatal("the raw token works as a session cookie")
	}
}
