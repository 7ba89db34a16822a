package api

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/sbcwatch/sbcwatch/store"
	"github.com/sbcwatch/sbcwatch/store/storetest"
)

// TestOddBytesAre400: a NUL or invalid UTF-8 in any query parameter, path
// segment, cursor or body is a 400 with the JSON error shape, never a 500
// (PostgreSQL's SQLSTATE 22021) and never an ERROR in the log.
func TestOddBytesAre400(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{})
	b.seedFieldCase(t, "odd@x")
	nulCursor := base64.RawURLEncoding.EncodeToString([]byte(`{"t":"2026-01-01T00:00:00Z","k":"a\u0000b"}`))
	badCursor := base64.RawURLEncoding.EncodeToString([]byte("{\"t\":\"2026-01-01T00:00:00Z\",\"k\":\"a\xffb\"}"))
	var paths []string
	for _, rt := range walkRoutes(t, b.h) {
		if rt.method != "GET" {
			continue
		}
		p := strings.ReplaceAll(strings.ReplaceAll(rt.path, "{call_id}", "odd@x"), "{id}", "1")
		for _, v := range []string{"%00", "%FF", "a%00b", "%C3%28"} {
			for _, k := range []string{"sbc", "peer", "subject", "call_id", "number", "rule", "cursor"} {
				paths = append(paths, p+"?"+k+"="+v)
			}
			paths = append(paths, p+"?"+v+"=1")
		}
	}
	for _, seg := range []string{"%00", "a%00b", "%FF", "%C3%28"} {
		paths = append(paths, "/api/v1/calls/"+seg, "/api/v1/calls/"+seg+"/evidence", "/api/v1/audits/"+seg, "/calls/"+seg)
	}
	paths = append(paths, "/calls?number=%00", "/calls?number=a%FFb", "/certificates?window=%00", "/?x=%C3%28")
	for _, c := range []string{nulCursor, badCursor} {
		for _, p := range []string{"/api/v1/findings", "/api/v1/tls", "/api/v1/certificates", "/api/v1/counters"} {
			paths = append(paths, p+"?cursor="+c)
		}
	}
	for _, p := range paths {
		got := b.do(t, "GET", p, b.read, nil)
		if got.status != 400 {
			t.Errorf("GET %s: %d %s", p, got.status, got.body)
			continue
		}
		checkError(t, got, 400, "bad_request")
	}
	for _, body := range []string{`{"by":"a\u0000b"}`, "{\"by\":\"a\x00b\"}", "{\"by\":\"a\xffb\"}", `{"by":"\\\u0000"}`} {
		got := b.do(t, "POST", "/api/v1/findings/1/ack", b.admin, strings.NewReader(body), "Content-Type", "application/json")
		checkError(t, got, 400, "bad_request")
	}
	if strings.Contains(b.logs.String(), "level=ERROR") {
		t.Errorf("odd bytes logged an ERROR:\n%s", b.logs.String())
	}
}

// TestAckBody: the ack route takes only application/json, one document,
// and a bounded "by".
func TestAckBody(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{})
	b.seedFieldCase(t, "ackbody@x")
	f, err := store.ListFindings(context.Background(), b.st.Pool(), store.FindingQuery{Limit: 1})
	if err != nil || len(f.Items) == 0 {
		t.Fatal(err)
	}
	path := "/api/v1/findings/" + f.Items[0].ID + "/ack"
	ack := func(body, ctype string) resp {
		return b.do(t, "POST", path, b.admin, strings.NewReader(body), "Content-Type", ctype)
	}
	checkError(t, ack(`{"by":"alice"}`, "text/plain"), 415, "unsupported_media_type")
	checkError(t, ack(`by=alice`, "application/x-www-form-urlencoded"), 415, "unsupported_media_type")
	checkError(t, ack(`{"by":"alice"}`, ""), 415, "unsupported_media_type")
	checkError(t, ack(`{"by":"alice"}{"by":"mallory"}`, "application/json"), 400, "bad_request")
	checkError(t, ack(`{"by":"alice"} [1]`, "application/json"), 400, "bad_request")
	checkError(t, ack(`{"by":"`+strings.Repeat("é", maxAckBy+1)+`"}`, "application/json"), 400, "bad_request")
	got := ack(`{"by":"`+strings.Repeat("é", maxAckBy)+`"}`+"\n", "application/json; charset=utf-8")
	if got.status != 200 {
		t.Fatalf("ack: %d %s", got.status, got.body)
	}
	if got := b.do(t, "POST", path, b.admin, nil); got.status != 200 {
		t.Fatalf("ack without a body: %d %s", got.status, got.body)
	}
	// The problems' ack route takes the same body.
	checkError(t, b.do(t, "POST", "/api/v1/problems/1/ack", b.admin, strings.NewReader(`{"by":"alice"}`), "Content-Type", "text/plain"), 415, "unsupported_media_type")
	checkError(t, b.do(t, "POST", "/api/v1/problems/1/ack", b.admin, strings.NewReader(`{"by":"`+strings.Repeat("x", maxAckBy+1)+`"}`), "Content-Type", "application/json"), 400, "bad_request")
}

// TestLikeWildcardsAreLiteral: % and _ in the peer and subject filters
// match themselves.
func TestLikeWildcardsAreLiteral(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{})
	b.seedFieldCase(t, "like@x")
	count := func(path string) int {
		got := b.do(t, "GET", path, b.read, nil)
		var page struct{ Items []json.RawMessage }
		got.json(t, &page)
		if got.status != 200 {
			t.Fatalf("%s: %d %s", path, got.status, got.body)
		}
		return len(page.Items)
	}
	if n := count("/api/v1/tls?peer=" + url.QueryEscape(storetest.SBCAddr.Addr().String())); n == 0 {
		t.Fatal("peer filter finds nothing: the test data changed")
	}
	if n := count("/api/v1/certificates?subject=ACL_1234"); n == 0 {
		t.Fatal("subject filter finds nothing: the test data changed")
	}
	for _, p := range []string{
		"/api/v1/tls?peer=%25",
		"/api/v1/tls?peer=192.0.2.1_",
		"/api/v1/tls?peer=" + url.QueryEscape(`192.0.2.10\`),
		"/api/v1/certificates?subject=%25",
		"/api/v1/certificates?subject=ACL%251234",
		"/api/v1/certificates?subject=ACL__234",
	} {
		if n := count(p); n != 0 {
			t.Errorf("%s: %d items, want none", p, n)
		}
	}
}

// TestTimeoutAndDisconnect: a request past its deadline is 504 timeout; a
// client that left is neither a 503 nor an ERROR in the log.
func TestTimeoutAndDisconnect(t *testing.T) {
	t.Parallel()
	b := setup(t, Options{RequestTimeout: time.Nanosecond})
	checkError(t, b.do(t, "GET", "/api/v1/calls", b.read, nil), 504, "timeout")

	b2 := setup(t, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	req := httptest.NewRequest("GET", "/api/v1/calls", nil).WithContext(ctx)
	req.Header.Set("Authorization", "Bearer "+b2.read)
	w := httptest.NewRecorder()
	b2.h.ServeHTTP(w, req)
	if w.Code == 503 || w.Code == 500 {
		t.Errorf("disconnected client: %d %s", w.Code, w.Body)
	}
	if strings.Contains(b2.logs.String(), "level=ERROR") {
		t.Errorf("a client that left is logged as an ERROR:\n%s", b2.logs.String())
	}
}

// TestServerOwnErrorsAreJSON: the 400 and 431 net/http answers before
// any handler runs carry the JSON error shape too.
func TestServerOwnErrorsAreJSON(t *testing.T) {
	t.Parallel()
	st, _ := storetest.New(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addrc := make(chan string, 1)
	go ListenAndServe(ctx, "127.0.0.1:0", NewServer(st, Options{}), nil, func(a net.Addr) { addrc <- a.String() })
	addr := <-addrc
	for _, c := range []struct {
		req    string
		status int
		code   string
	}{
		{"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 80<<10) + "\r\n\r\n", 431, "header_too_large"},
		{"GET /healthz HTTP/1.1\r\nHost: a b\r\n\r\n", 400, "bad_request"},
		{"GET /healthz HTTP/1.1\r\n\r\n", 400, "bad_request"},
		{"GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header: 1\r\n\r\n", 400, "bad_request"},
	} {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprint(conn, c.req)
		res, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatalf("%.40q: %v", c.req, err)
		}
		var e errorBody
		err = json.NewDecoder(res.Body).Decode(&e)
		conn.Close()
		if res.StatusCode != c.status || err != nil || e.Error.Code != c.code || e.Error.Message == "" ||
			!strings.HasPrefix(res.Header.Get("Content-Type"), "application/json") {
			t.Errorf("%.40q: %d %q %+v %v", c.req, res.StatusCode, res.Header.Get("Content-Type"), e, err)
		}
	}
	// A handler's own 400 passes through untouched.
	res, err := http.Get("http://" + addr + "/api/v1/calls?limit=0")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 401 {
		t.Errorf("handler answer: %d", res.StatusCode)
	}
}
