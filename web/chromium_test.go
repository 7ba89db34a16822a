package web_test

import (
	"bytes"
	"context"
	"html/template"
	"image/png"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sbcwatch/sbcwatch/web"
)

// chromium finds the browser: SBCWATCH_CHROMIUM, else chromium on PATH.
// Under CI=true a missing browser fails the test; otherwise it skips,
// saying so.
func chromium(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("SBCWATCH_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("chromium is not installed (Debian package chromium; scripts/deps.sh installs it)")
	}
	t.Skip("SKIP: chromium is not installed (apt-get install chromium); the page is not checked in a browser")
	return ""
}

// signIn is a test-only page that posts the token to the real POST
// /login form as soon as it loads, so the browser goes through the
// sign-in, gets the cookie and follows the redirect to next.
var signIn = template.Must(template.New("").Parse(`<!DOCTYPE html><html><body onload="document.forms[0].submit()">
<form method="post" action="/login"><input type="hidden" name="token" value="{{.Token}}"><input type="hidden" name="next" value="{{.Next}}"></form>
</body></html>`))

// browse runs headless chromium on url with extra flags and returns its
// standard output.
func browse(t *testing.T, bin string, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-dev-shm-usage", "--hide-scrollbars", "--user-data-dir=" + t.TempDir(), "--virtual-time-budget=10000"}
	cmd := exec.CommandContext(ctx, bin, append(base, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium %v: %v\n%s", args, err, stderr.String())
	}
	return stdout.Bytes()
}

func TestCallPageInChromium(t *testing.T) {
	t.Parallel()
	bin := chromium(t)
	e := newEnv(t)
	const id = "browser-1@192.0.2.10"
	fieldCase(t, e, id)
	saveLab(t, e)
	page := web.CallPath(id, "")

	mux := http.NewServeMux()
	mux.HandleFunc("GET /test-signin", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_ = signIn.Execute(w, map[string]string{"Token": e.tok, "Next": r.URL.Query().Get("next")})
	})
	mux.Handle("/", e.h)
	srv := httptest.NewServer(mux) // 127.0.0.1, random port
	t.Cleanup(srv.Close)

	// Without the cookie the browser lands on the sign-in form.
	dom := string(browse(t, bin, "--dump-dom", srv.URL+page))
	if !strings.Contains(dom, `name="token"`) || strings.Contains(dom, "<svg") {
		t.Fatalf("without a token the browser did not get the sign-in form:\n%s", dom)
	}

	signin := srv.URL + "/test-signin?next=" + url.QueryEscape(page)
	dom = string(browse(t, bin, "--dump-dom", signin))
	if !strings.Contains(dom, `<svg`) {
		t.Fatalf("the browser did not reach the call page after signing in:\n%s", dom)
	}
	msgs, tls := ladderGroups(t, dom)
	if len(msgs) != 6 || len(tls) != 4 {
		t.Fatalf("rendered DOM has %d message arrows and %d TLS attempts, want 6 and 4", len(msgs), len(tls))
	}
	for _, g := range tls {
		if !strings.Contains(g.body, "tls-arrow") || !strings.Contains(g.body, "TLS: served CN=ACL_1234567") {
			t.Errorf("TLS attempt rendered as %s", g.body)
		}
	}
	if !strings.Contains(dom, "refer_delivery_failed") {
		t.Error("rendered DOM lacks the verdict")
	}

	// A next that Chromium would read as another host (it drops the tab:
	// "//evil.example") lands on this site's index instead.
	dom = string(browse(t, bin, "--dump-dom", srv.URL+"/test-signin?next="+url.QueryEscape("/\t/evil.example")))
	if !strings.Contains(dom, "<h1>Latest calls with findings</h1>") {
		t.Fatalf("sign-in with next=/<tab>/evil.example did not end on the index:\n%s", dom)
	}

	shot := filepath.Join(t.TempDir(), "call.png")
	if keep := os.Getenv("SBCWATCH_SCREENSHOT"); keep != "" {
		shot = keep
	}
	browse(t, bin, "--screenshot="+shot, "--window-size=1400,1000", signin)
	fi, err := os.Stat(shot)
	if err != nil {
		t.Fatalf("no screenshot: %v", err)
	}
	if fi.Size() < 10<<10 {
		t.Fatalf("screenshot is only %d bytes", fi.Size())
	}
	f, err := os.Open(shot)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("screenshot is not a PNG: %v", err)
	}
	if b := img.Bounds(); b.Dx() != 1400 || b.Dy() != 1000 {
		t.Errorf("screenshot is %v, want 1400x1000", b)
	}
	t.Logf("screenshot %s (%d bytes)", shot, fi.Size())
	if keep := os.Getenv("SBCWATCH_SCREENSHOT"); keep != "" {
		// The whole page too, to look at.
		full := strings.TrimSuffix(keep, ".png") + "-full.png"
		browse(t, bin, "--screenshot="+full, "--window-size=1400,2600", signin)
		t.Logf("full page %s", full)
		lab := strings.TrimSuffix(keep, ".png") + "-lab.png"
		browse(t, bin, "--screenshot="+lab, "--window-size=1400,3000", srv.URL+"/test-signin?next="+url.QueryEscape(web.CallPath(labCallID, "lab-sbc")))
		t.Logf("lab call %s", lab)
		index := strings.TrimSuffix(keep, ".png") + "-index.png"
		browse(t, bin, "--screenshot="+index, "--window-size=1400,700", srv.URL+"/test-signin?next=/")
		t.Logf("index %s", index)
	}
}
