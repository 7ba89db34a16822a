package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sbcwatch/sbcwatch/analyze"
	"github.com/sbcwatch/sbcwatch/api"
	"github.com/sbcwatch/sbcwatch/config"
	"github.com/sbcwatch/sbcwatch/internal/testtool"
	"github.com/sbcwatch/sbcwatch/store"
	"github.com/sbcwatch/sbcwatch/store/storetest"
)

const labPcap = "../testdata/lab/transfer_fails_default_cert.pcap"

// needRoot skips (fails under CI) unless the test runs as root, which
// network namespaces and AF_PACKET need.
func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("this test needs root (network namespaces, AF_PACKET); CI runs tests as root")
	}
	t.Skip("needs root: network namespaces and AF_PACKET capture")
}

// labNetns creates a network namespace holding a veth pair, vrep (where
// tcpreplay sends) and vcap (what serve captures), both up, and returns
// its name; it is deleted when the test ends.
func labNetns(t *testing.T) string {
	t.Helper()
	ip := testtool.Need(t, "ip")
	ns := fmt.Sprintf("sbcw16-%d-%d", os.Getpid(), time.Now().UnixNano()%100000)
	sh := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(ip, args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	sh("netns", "add", ns)
	t.Cleanup(func() { _ = exec.Command(ip, "netns", "del", ns).Run() })
	sh("-n", ns, "link", "add", "vrep", "type", "veth", "peer", "name", "vcap")
	sh("-n", ns, "link", "set", "vrep", "up")
	sh("-n", ns, "link", "set", "vcap", "up")
	return ns
}

// inNetns runs f on an OS thread switched into the namespace ns: sockets
// f opens (the capture's AF_PACKET socket) stay in ns.
func inNetns(t *testing.T, ns string, f func() error) error {
	t.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()
	target, err := os.Open("/var/run/netns/" + ns)
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		t.Fatal(err)
	}
	ferr := f()
	if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
		panic(err) // the thread cannot go back: never let it run anything else
	}
	return ferr
}

// dbProxy forwards TCP to Postgres and can be stopped and started, to
// take the database away from one serve without stopping the server
// other tests share.
type dbProxy struct {
	t      *testing.T
	target string
	addr   string
	mu     sync.Mutex
	ln     net.Listener
	conns  map[net.Conn]bool
}

func newDBProxy(t *testing.T, target string) *dbProxy {
	p := &dbProxy{t: t, target: target, conns: map[net.Conn]bool{}}
	p.start("127.0.0.1:0")
	t.Cleanup(p.stop)
	return p
}

func (p *dbProxy) start(addr string) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		p.t.Fatal(err)
	}
	p.mu.Lock()
	p.ln, p.addr = ln, ln.Addr().String()
	p.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", p.target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns[c], p.conns[up] = true, true
			p.mu.Unlock()
			go func() { _, _ = io.Copy(up, c); up.Close() }()
			go func() { _, _ = io.Copy(c, up); c.Close() }()
		}
	}()
}

// stop closes the listener and cuts every connection: the database is
// gone for serve.
func (p *dbProxy) stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for c := range p.conns {
		c.Close()
	}
	clear(p.conns)
}

// runLab replays the lab capture onto vrep while a daemon captures vcap,
// then stops the daemon (which decides and writes everything) and
// returns the store it wrote to. during, when set, runs while the replay
// goes on.
func runLab(t *testing.T, ns, pcap string, frames uint64, st *store.Store, during func()) *Daemon {
	t.Helper()
	tcpreplay := testtool.Need(t, "tcpreplay")
	cfg, err := config.Load("../testdata/lab/sbcwatch.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Serve.Interfaces = []string{"vcap"}
	cfg.Serve.Spool.Dir = t.TempDir()
	cfg.Serve.Listen = "127.0.0.1:0"
	cfg.Serve.ShutdownTimeout = config.Duration(60 * time.Second)
	if err := store.UpsertSBC(context.Background(), st.Pool(), store.SBC{Name: "lab-sbc"}); err != nil {
		t.Fatal(err)
	}
	var d *Daemon
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo}))
	if err := inNetns(t, ns, func() error {
		var err error
		d, err = New(context.Background(), Options{Config: cfg, Store: st, Logger: log, Listen: "127.0.0.1:0"})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	rep := exec.Command("ip", "netns", "exec", ns, tcpreplay, "-q", "-i", "vrep", pcap)
	if err := rep.Start(); err != nil {
		t.Fatal(err)
	}
	if during != nil {
		during()
	}
	if err := rep.Wait(); err != nil {
		t.Fatalf("tcpreplay: %v", err)
	}
	// Let the engine take what the capture queued, then stop.
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if q := d.srcs[0].q.Stats(); q.Queued == 0 && q.Received >= frames {
			break
		}
	}
	if q := d.srcs[0].q.Stats(); q.Received < frames || q.Dropped != 0 {
		t.Fatalf("captured %+v, want the %d frames of the capture and no drop", q, frames)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if c := d.srcs[0].src.Counters(); c["kernel_drops"] != 0 || c["frames"] < frames {
		t.Errorf("capture counters %v", c)
	}
	return d
}

type apiFinding struct {
	Rule       string `json:"rule"`
	CallID     string `json:"call_id"`
	Connection string `json:"connection"`
}

// apiFindings lists the stored findings through the API.
func apiFindings(t *testing.T, st *store.Store) []string {
	t.Helper()
	tok, err := store.CreateToken(context.Background(), st.Pool(), fmt.Sprintf("t%d", time.Now().UnixNano()), store.ScopeRead)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api.NewServer(st, api.Options{}))
	defer srv.Close()
	req, _ := http.NewRequest("GET", srv.URL+"/api/v1/findings?limit=500&from="+url.QueryEscape("2000-01-01T00:00:00Z"), nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var page struct {
		Items []apiFinding `json:"items"`
	}
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || json.Unmarshal(b, &page) != nil {
		t.Fatalf("GET findings: %d %s", resp.StatusCode, b)
	}
	var out []string
	for _, f := range page.Items {
		out = append(out, findingID(f.Rule, f.CallID, f.Connection))
	}
	sort.Strings(out)
	return out
}

// findingID names a finding for the comparison: rule, call and
// connection. tls_cert_inconsistent names the listener's earliest
// connection both offline and live, whichever closed first.
func findingID(rule, callID, conn string) string {
	return rule + " " + callID + " " + conn
}

func counts(t *testing.T, st *store.Store) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, tbl := range []string{"calls", "sip_messages", "tls_connections", "findings"} {
		var n int
		if err := st.Pool().QueryRow(context.Background(), "select count(*) from "+tbl).Scan(&n); err != nil {
			t.Fatal(err)
		}
		out[tbl] = n
	}
	return out
}

// TestCaptureInNetnsMatchesAnalyze replays the field-case lab capture
// with tcpreplay onto one end of a veth pair in a network namespace while
// the daemon captures the other end (AF_PACKET, kernel BPF filter). The
// findings the API then lists are those of `sbcwatch analyze` on the same
// file. A second run goes through a TCP proxy in front of Postgres that
// is stopped for 30 s during the replay (the shared server itself keeps
// running for the other tests): the writer spools, replays when the
// database returns, and the stored counts equal those of the first run.
func TestCaptureInNetnsMatchesAnalyze(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: replays three lab captures in real time (about two minutes); make test runs it")
	}
	needRoot(t)
	ns := labNetns(t)

	cfg, err := config.Load("../testdata/lab/sbcwatch.yaml")
	if err != nil {
		t.Fatal(err)
	}
	rep, err := analyze.Files(context.Background(), []string{labPcap}, analyze.Options{Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, f := range rep.Findings {
		want = append(want, findingID(f.Rule, f.CallID, f.Connection))
	}
	sort.Strings(want)
	for _, rule := range []string{"refer_delivery_failed ", "tls_cert_inconsistent "} {
		if !slices.ContainsFunc(want, func(s string) bool { return strings.HasPrefix(s, rule) }) {
			t.Fatalf("analyze found no %s: %v", rule, want)
		}
	}

	st, _ := storetest.New(t)
	runLab(t, ns, labPcap, 121, st, nil)
	got := apiFindings(t, st)
	if !slices.Equal(got, want) {
		t.Fatalf("findings from the live capture differ from analyze:\n got  %q\n want %q", got, want)
	}
	base := counts(t, st)
	if base["calls"] == 0 || base["tls_connections"] == 0 {
		t.Fatalf("stored %v", base)
	}

	t.Run("busy SBC", func(t *testing.T) {
		const busy = "../testdata/lab/busy_sbc.pcap"
		rep, err := analyze.Files(context.Background(), []string{busy}, analyze.Options{Config: cfg})
		if err != nil {
			t.Fatal(err)
		}
		var want []string
		for _, f := range rep.Findings {
			want = append(want, findingID(f.Rule, f.CallID, f.Connection))
		}
		sort.Strings(want)
		st3, _ := storetest.New(t)
		runLab(t, ns, busy, 278, st3, nil)
		if got := apiFindings(t, st3); !slices.Equal(got, want) {
			t.Fatalf("findings from the live capture differ from analyze:\n got  %q\n want %q", got, want)
		}
	})

	t.Run("database outage", func(t *testing.T) {
		st2, dsn := storetest.New(t)
		u, err := url.Parse(dsn)
		if err != nil {
			t.Fatal(err)
		}
		proxy := newDBProxy(t, u.Host)
		u.Host = proxy.addr
		pst, err := store.Open(context.Background(), u.String())
		if err != nil {
			t.Fatal(err)
		}
		defer pst.Close()
		d := runLab(t, ns, labPcap, 121, pst, func() {
			time.Sleep(2 * time.Second)
			proxy.stop()
			time.Sleep(30 * time.Second)
			proxy.start(proxy.addr)
		})
		wc := d.writer.Counters()
		if wc["spooled"] == 0 || wc["replayed"] < wc["spooled"] || wc["spool_segments"] != 0 || wc["dropped_spool_full"] != 0 {
			t.Fatalf("the outage did not go through the spool: %v", wc)
		}
		if got := counts(t, st2); fmt.Sprint(got) != fmt.Sprint(base) {
			t.Fatalf("after the outage stored %v, without it %v", got, base)
		}
		if got := apiFindings(t, st2); !slices.Equal(got, want) {
			t.Fatalf("findings after the outage %q, want %q", got, want)
		}
	})
}
