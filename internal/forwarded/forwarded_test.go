package forwarded

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestSecureOnlyFromTrustedProxies(t *testing.T) {
	t.Parallel()
	tr, err := Parse("127.0.0.1, 10.0.0.0/8", "::1")
	if err != nil {
		t.Fatal(err)
	}
	h := tr.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if Secure(r) {
			w.Header().Set("X-Secure", "yes")
		}
	}))
	for _, c := range []struct {
		remote, proto string
		want          bool
	}{
		{"127.0.0.1:5000", "https", true},
		{"10.2.3.4:5000", "HTTPS", true},
		{"[::1]:5000", "https", true},
		{"[::ffff:10.1.1.1]:5000", "https", true},
		{"10.2.3.4:5000", "http", false},
		{"10.2.3.4:5000", "", false},
		{"10.2.3.4:5000", "https, http", false}, // the nearest proxy said http
		{"192.0.2.1:5000", "https", false},      // not a trusted proxy
		{"garbage", "https", false},
	} {
		req := httptest.NewRequest("GET", "/", nil)
		req.RemoteAddr = c.remote
		if c.proto != "" {
			req.Header.Set("X-Forwarded-Proto", c.proto)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if got := w.Header().Get("X-Secure") == "yes"; got != c.want {
			t.Errorf("%s %q: secure %v, want %v", c.remote, c.proto, got, c.want)
		}
	}
	// Nobody trusted: the header is ignored.
	var none Trusted
	req := httptest.NewRequest("GET", "/", nil)
	req.RemoteAddr = "127.0.0.1:1"
	req.Header.Set("X-Forwarded-Proto", "https")
	var seen bool
	none.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { seen = Secure(r) })).ServeHTTP(httptest.NewRecorder(), req)
	if seen {
		t.Error("an empty trust list believed X-Forwarded-Proto")
	}
	// Direct TLS is secure whatever the headers.
	req = httptest.NewRequest("GET", "https://x/", nil)
	if !Secure(req) {
		t.Error("a TLS request is not secure")
	}
	if _, err := Parse("not-an-ip"); err == nil {
		t.Error("a bad address parsed")
	}
}
