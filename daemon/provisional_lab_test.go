package daemon

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/sbcwatch/sbcwatch/alert"
	"github.com/sbcwatch/sbcwatch/api"
	"github.com/sbcwatch/sbcwatch/config"
	"github.com/sbcwatch/sbcwatch/finding"
	"github.com/sbcwatch/sbcwatch/internal/testtool"
	"github.com/sbcwatch/sbcwatch/store"
	"github.com/sbcwatch/sbcwatch/store/storetest"
)

// TestProvisionalInNetns replays the field-case lab capture with
// tcpreplay onto a veth pair in a network namespace while serve captures
// the other end, and watches the API as an admin would: the
// refer_delivery_failed appears about a minute after the call ended,
// marked provisional with when it settles; it is then confirmed under the
// same id; the store holds one row for it and one problem sighting; the
// signed webhook gets it once, confirmed (the default policy). The
// figures are logged.
func TestProvisionalInNetns(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: replays the field case in real time and waits for the confirmation (about 3.5 minutes)")
	}
	needRoot(t)
	ns := labNetns(t)
	tcpreplay := testtool.Need(t, "tcpreplay")
	st, _ := storetest.New(t)
	ctx := context.Background()

	const secret = "lab-secret"
	var mu sync.Mutex
	type delivery struct {
		at time.Time
		f  finding.Finding
	}
	var hooks []delivery
	badSig := 0
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var p struct {
			Finding finding.Finding `json:"finding"`
		}
		mu.Lock()
		defer mu.Unlock()
		if !alert.Verify(secret, r.Header.Get("X-Sbcwatch-Timestamp"), body, r.Header.Get("X-Sbcwatch-Signature")) || json.Unmarshal(body, &p) != nil {
			badSig++
			return
		}
		hooks = append(hooks, delivery{time.Now(), p.Finding})
	}))
	defer recv.Close()
	secretFile := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secretFile, []byte(secret), 0o600); err != nil {
		t.Fatal(err)
	}

	cfg, err := config.Load("../testdata/lab/sbcwatch.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Serve.Interfaces = []string{"vcap"}
	cfg.Serve.Spool.Dir = t.TempDir()
	cfg.Serve.Alerts.Webhooks = []config.Webhook{{Name: "soc", Kind: "json", URL: recv.URL, SecretFile: secretFile}}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if got := cfg.Serve.ProvisionalAfter.D(); got != time.Minute {
		t.Fatalf("serve.provisional_after defaults to %s", got)
	}
	var d *Daemon
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	if err := inNetns(t, ns, func() error {
		var err error
		d, err = New(ctx, Options{Config: cfg, Store: st, Logger: log, Listen: "127.0.0.1:0"})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- d.Run(rctx) }()

	tok, err := store.CreateToken(ctx, st.Pool(), "lab", store.ScopeRead)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api.NewServer(st, api.Options{}))
	defer srv.Close()
	get := func(path string, v any) {
		t.Helper()
		req, _ := http.NewRequest("GET", srv.URL+path, nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || json.Unmarshal(b, v) != nil {
			t.Fatalf("GET %s: %d %s", path, resp.StatusCode, b)
		}
	}

	rep := exec.Command("ip", "netns", "exec", ns, tcpreplay, "-q", "-i", "vrep", labPcap)
	if err := rep.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = rep.Wait() }()

	type page struct {
		Items []store.Finding `json:"items"`
	}
	var prov, conf store.Finding
	var seenProv, seenConf time.Time
	for deadline := time.Now().Add(6 * time.Minute); seenConf.IsZero(); time.Sleep(200 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no confirmed refer_delivery_failed within 6 minutes (provisional seen: %v)", !seenProv.IsZero())
		}
		var p page
		get("/api/v1/findings?rule=refer_delivery_failed&retracted=true", &p)
		if len(p.Items) > 1 {
			t.Fatalf("%d refer_delivery_failed rows listed, want one", len(p.Items))
		}
		if len(p.Items) == 0 {
			continue
		}
		f := p.Items[0]
		switch {
		case f.Retracted:
			t.Fatalf("the field case's refer_delivery_failed was retracted")
		case f.Provisional && seenProv.IsZero():
			prov, seenProv = f, time.Now()
		case !f.Provisional:
			conf, seenConf = f, time.Now()
		}
	}
	if seenProv.IsZero() {
		t.Fatal("the API never showed the finding provisional")
	}
	var calls struct {
		Items []store.Call `json:"items"`
	}
	get("/api/v1/calls?call_id="+prov.CallID, &calls)
	if len(calls.Items) != 1 || calls.Items[0].End == nil {
		t.Fatalf("call %s: %+v", prov.CallID, calls.Items)
	}
	end := *calls.Items[0].End
	early, late := seenProv.Sub(end), seenConf.Sub(end)
	t.Logf("API shows refer_delivery_failed provisional %.1f s after the call ended (settles by +%.0f s), confirmed %.1f s after",
		early.Seconds(), prov.SettlesAt.Sub(end).Seconds(), late.Seconds())
	if early < 55*time.Second || early > 66*time.Second {
		t.Errorf("provisional in the API %s after the call ended, want about a minute", early)
	}
	if conf.ID != prov.ID || conf.CallID != prov.CallID || conf.SettlesAt != nil || late > 3*time.Minute+30*time.Second || late < 2*time.Minute {
		t.Errorf("confirmation %+v %s after the call ended", conf, late)
	}

	// The webhook: once, confirmed, after the confirmation was decided.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		mu.Lock()
		n := 0
		for _, h := range hooks {
			if h.f.Rule == finding.ReferDeliveryFailed {
				n++
			}
		}
		mu.Unlock()
		if n > 0 || time.Now().After(deadline) {
			break
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	var rows, problems int64
	if err := st.Pool().QueryRow(ctx, `select count(*) from findings where rule = 'refer_delivery_failed'`).Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if err := st.Pool().QueryRow(ctx, `select coalesce(sum(count), 0) from problems where rule = 'refer_delivery_failed'`).Scan(&problems); err != nil {
		t.Fatal(err)
	}
	if rows != 1 || problems != 1 {
		t.Errorf("stored %d rows and %d problem sightings of refer_delivery_failed, want 1 and 1", rows, problems)
	}
	mu.Lock()
	defer mu.Unlock()
	var got []delivery
	for _, h := range hooks {
		if h.f.Rule == finding.ReferDeliveryFailed {
			got = append(got, h)
		}
	}
	if len(got) != 1 || got[0].f.Provisional || got[0].f.Retracted || got[0].f.CallID != prov.CallID || badSig != 0 {
		t.Fatalf("webhook got %d refer_delivery_failed (%+v), %d bad signatures", len(got), got, badSig)
	}
	t.Logf("webhook got it %.1f s after the call ended", got[0].at.Sub(end).Seconds())
	if c := d.engine.Counters(); c["findings_provisional"] != 1 || c["findings_confirmed"] != 1 || c["findings_retracted"] != 0 {
		t.Errorf("engine counters %v", c)
	}
}
