package web_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// cdp drives headless chromium over the DevTools protocol on a pipe
// (--remote-debugging-pipe: commands on fd 3, answers and events on fd
// 4, each a JSON message ended by a NUL byte), so the tests need no
// WebSocket client and no module beyond the standard library.
type cdp struct {
	t       *testing.T
	cmd     *exec.Cmd
	w       io.WriteCloser
	mu      sync.Mutex
	nextID  int
	waiting map[int]chan cdpMsg
	session string
	done    chan struct{}
	stderr  bytes.Buffer
}

type cdpMsg struct {
	ID     int             `json:"id,omitempty"`
	Method string          `json:"method,omitempty"`
	Result json.RawMessage `json:"result,omitempty"`
	Error  *struct {
		Message string `json:"message"`
	} `json:"error,omitempty"`
	SessionID string `json:"sessionId,omitempty"`
}

// newCDP starts chromium and opens one page; the browser ends with the
// test.
func newCDP(t *testing.T, bin string) *cdp {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
		"--hide-scrollbars", "--user-data-dir="+t.TempDir(), "--remote-debugging-pipe", "about:blank")
	toBrowser, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	r, fromBrowser, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.ExtraFiles = []*os.File{toBrowser, fromBrowser} // fd 3 and fd 4
	c := &cdp{t: t, cmd: cmd, w: w, waiting: map[int]chan cdpMsg{}, done: make(chan struct{})}
	cmd.Stderr = &c.stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("chromium: %v", err)
	}
	toBrowser.Close()
	fromBrowser.Close()
	go c.read(r)
	t.Cleanup(func() {
		w.Close()
		cancel()
		_ = cmd.Wait()
		r.Close()
	})
	var target struct {
		TargetID string `json:"targetId"`
	}
	c.call("", "Target.createTarget", map[string]any{"url": "about:blank"}, &target)
	var att struct {
		SessionID string `json:"sessionId"`
	}
	c.call("", "Target.attachToTarget", map[string]any{"targetId": target.TargetID, "flatten": true}, &att)
	c.session = att.SessionID
	return c
}

func (c *cdp) read(r io.Reader) {
	defer close(c.done)
	br := bufio.NewReaderSize(r, 1<<20)
	for {
		b, err := br.ReadBytes(0)
		if err != nil {
			return
		}
		var m cdpMsg
		if json.Unmarshal(b[:len(b)-1], &m) != nil || m.ID == 0 {
			continue // an event
		}
		c.mu.Lock()
		ch := c.waiting[m.ID]
		delete(c.waiting, m.ID)
		c.mu.Unlock()
		if ch != nil {
			ch <- m
		}
	}
}

// call sends one command (to the page when session is the page's) and
// decodes its result into out.
func (c *cdp) call(session, method string, params any, out any) {
	c.t.Helper()
	c.mu.Lock()
	c.nextID++
	id := c.nextID
	ch := make(chan cdpMsg, 1)
	c.waiting[id] = ch
	c.mu.Unlock()
	msg := map[string]any{"id": id, "method": method, "params": params}
	if session != "" {
		msg["sessionId"] = session
	}
	b, _ := json.Marshal(msg)
	if _, err := c.w.Write(append(b, 0)); err != nil {
		c.t.Fatalf("cdp %s: %v", method, err)
	}
	select {
	case m := <-ch:
		if m.Error != nil {
			c.t.Fatalf("cdp %s: %s", method, m.Error.Message)
		}
		if out != nil {
			if err := json.Unmarshal(m.Result, out); err != nil {
				c.t.Fatalf("cdp %s: %v", method, err)
			}
		}
	case <-c.done:
		c.t.Fatalf("cdp %s: chromium went away: %s", method, c.stderr.String())
	case <-time.After(60 * time.Second):
		c.t.Fatalf("cdp %s: no answer in 60 s", method)
	}
}

// page sends a command to the page.
func (c *cdp) page(method string, params any, out any) {
	c.t.Helper()
	c.call(c.session, method, params, out)
}

// eval evaluates a JavaScript expression in the page (DevTools is not
// bound by the page's Content-Security-Policy) into out.
func (c *cdp) eval(expr string, out any) {
	c.t.Helper()
	var res struct {
		Result struct {
			Value json.RawMessage `json:"value"`
		} `json:"result"`
		ExceptionDetails *struct {
			Text string `json:"text"`
		} `json:"exceptionDetails"`
	}
	c.page("Runtime.evaluate", map[string]any{"expression": expr, "returnByValue": true}, &res)
	if res.ExceptionDetails != nil {
		c.t.Fatalf("eval %s: %s", expr, res.ExceptionDetails.Text)
	}
	if err := json.Unmarshal(res.Result.Value, out); err != nil {
		c.t.Fatalf("eval %s: %v (%s)", expr, err, res.Result.Value)
	}
}

// size sets the window (viewport) size in CSS pixels.
func (c *cdp) size(w, h int) {
	c.t.Helper()
	c.page("Emulation.setDeviceMetricsOverride", map[string]any{"width": w, "height": h, "deviceScaleFactor": 1, "mobile": false}, nil)
}

// open loads url and waits until the document is complete at that URL
// (after a redirect away, it fails).
func (c *cdp) open(url string) {
	c.t.Helper()
	c.page("Page.navigate", map[string]any{"url": url}, nil)
	c.wait(url)
}

// wait waits until the page at url is complete.
func (c *cdp) wait(url string) {
	c.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var st struct {
			Ready string `json:"ready"`
			URL   string `json:"url"`
		}
		c.eval(`({ready: document.readyState, url: location.href})`, &st)
		if st.Ready == "complete" && st.URL == url {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("%s did not load (at %s, %s)", url, st.URL, st.Ready)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// screenshot saves the whole page as PNG in dir and returns its path.
func (c *cdp) screenshot(dir, name string) string {
	c.t.Helper()
	var lm struct {
		Content struct {
			Width, Height float64
		} `json:"cssContentSize"`
	}
	c.page("Page.getLayoutMetrics", nil, &lm)
	var shot struct {
		Data string `json:"data"`
	}
	c.page("Page.captureScreenshot", map[string]any{"format": "png", "captureBeyondViewport": true,
		"clip": map[string]any{"x": 0, "y": 0, "width": lm.Content.Width, "height": min(lm.Content.Height, 6000), "scale": 1}}, &shot)
	b, err := base64.StdEncoding.DecodeString(shot.Data)
	if err != nil || len(b) < 1000 {
		c.t.Fatalf("screenshot %s: %d bytes, %v", name, len(b), err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		c.t.Fatal(err)
	}
	return p
}

// artifacts is where the browser tests keep their screenshots:
// $SBCWATCH_ARTIFACTS (CI uploads it), else the test's temporary
// directory.
func artifacts(t *testing.T) string {
	t.Helper()
	if d := os.Getenv("SBCWATCH_ARTIFACTS"); d != "" {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		return d
	}
	return t.TempDir()
}
