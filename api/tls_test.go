package api

import (
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sbcwatch/sbcwatch/internal/forwarded"
	"github.com/sbcwatch/sbcwatch/tlsaudit/certcheck/certtest"
)

// The API serves HTTPS from cert and key files, picks a renewed
// certificate up on the reload signal without dropping the listener, and
// keeps the old one when the new files are broken.
func TestServeTLSReloads(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca := certtest.New(t, certtest.Spec{CN: "Test Root", CA: true}, nil)
	one := certtest.New(t, certtest.Spec{CN: "one.example", DNS: []string{"one.example"}}, ca)
	two := certtest.New(t, certtest.Spec{CN: "two.example", DNS: []string{"two.example"}}, ca)
	c1, k1 := one.WritePEM(t, dir, "one")
	c2, k2 := two.WritePEM(t, dir, "two")
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	cp := func(from, to string) {
		t.Helper()
		b, err := os.ReadFile(from)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(to, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cp(c1, certFile)
	cp(k1, keyFile)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sig := make(chan os.Signal, 1)
	addrc := make(chan string, 1)
	done := make(chan error, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil {
			t.Error("a request without TLS")
		}
		io.WriteString(w, "ok")
	})
	go func() {
		done <- ListenAndServe(ctx, "127.0.0.1:0", h, nil, func(a net.Addr) { addrc <- a.String() },
			WithTLS(certFile, keyFile), func(c *serveConfig) { c.reload = sig })
	}()
	addr := <-addrc
	served := func() string {
		t.Helper()
		conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: ca.Pool(), ServerName: "one.example", InsecureSkipVerify: true})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].Subject.CommonName
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool(), ServerName: "one.example"}}}
	res, err := client.Get("https://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if got := served(); got != "one.example" {
		t.Fatalf("served %s", got)
	}

	cp(c2, certFile)
	cp(k2, keyFile)
	if got := served(); got != "one.example" {
		t.Fatalf("changed before the reload signal: %s", got)
	}
	sig <- os.Interrupt
	waitTLS(t, func() bool { return served() == "two.example" })

	// Broken files: the reload fails, the last good certificate stays.
	if err := os.WriteFile(certFile, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	sig <- os.Interrupt
	time.Sleep(200 * time.Millisecond)
	if got := served(); got != "two.example" {
		t.Fatalf("after a failed reload: %s", got)
	}

	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	// Unreadable files at start: a one-line error, nothing served.
	err = ListenAndServe(context.Background(), "127.0.0.1:0", h, nil, nil, WithTLS(filepath.Join(dir, "missing.crt"), keyFile))
	if err == nil {
		t.Fatal("started without a certificate")
	}
}

func waitTLS(t *testing.T, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !ok(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
	}
}

// Behind a reverse proxy that terminates TLS, the sign-in cookie is
// marked Secure when a trusted proxy says X-Forwarded-Proto: https, and
// only then.
func TestSecureCookieBehindTrustedProxy(t *testing.T) {
	t.Parallel()
	trusted, err := forwarded.Parse("10.0.0.0/8")
	if err != nil {
		t.Fatal(err)
	}
	b := setup(t, Options{TrustedProxies: trusted})
	for _, c := range []struct {
		remote, proto string
		secure        bool
	}{
		{"10.1.2.3:40000", "https", true},
		{"10.1.2.3:40000", "http", false},
		{"10.1.2.3:40000", "", false},
		{"192.0.2.9:40000", "https", false},
	} {
		req := httptest.NewRequest("POST", "/login", strings.NewReader(url.Values{"token": {b.read}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.RemoteAddr = c.remote
		if c.proto != "" {
			req.Header.Set("X-Forwarded-Proto", c.proto)
		}
		w := httptest.NewRecorder()
		b.h.ServeHTTP(w, req)
		cs := w.Result().Cookies()
		if w.Code != http.StatusSeeOther || len(cs) != 1 {
			t.Fatalf("%s %q: login answered %d with %d cookies", c.remote, c.proto, w.Code, len(cs))
		}
		if cs[0].Secure != c.secure {
			t.Errorf("%s %q: Secure=%v, want %v", c.remote, c.proto, cs[0].Secure, c.secure)
		}
	}
}

// Without TLS the reload signal is logged and ignored: the server keeps
// answering.
func TestReloadWithoutTLS(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var logs syncLog
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	sig := make(chan os.Signal, 1)
	addrc := make(chan string, 1)
	done := make(chan error, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	go func() {
		done <- ListenAndServe(ctx, "127.0.0.1:0", h, log, func(a net.Addr) { addrc <- a.String() },
			func(c *serveConfig) { c.reload = sig })
	}()
	addr := <-addrc
	sig <- os.Interrupt
	waitTLS(t, func() bool { return strings.Contains(logs.String(), "no TLS certificate to reload") })
	res, err := http.Get("http://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

type syncLog struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *syncLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *syncLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
