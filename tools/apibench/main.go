// Command apibench measures the REST API on a large store: seed fills a
// fresh schema with many calls (one number in a set share of them), their
// findings and a thousand calls with stored messages, and prints the DSN,
// a read token and the paths to ask; load sends requests at a fixed rate
// (open loop: latency counts from when a request was due, so a slow
// server cannot hide its queue) and prints percentiles per route; drop
// removes the schema.
//
//	eval "$(go run ./tools/apibench seed -db postgres://... -calls 1000000 -busy 100000)"
//	sbcwatch serve --db "$APIBENCH_DSN" --listen 127.0.0.1:18080 &
//	go run ./tools/apibench load -url http://127.0.0.1:18080 -token "$APIBENCH_TOKEN" -rate 200 -duration 30s $APIBENCH_PATHS
//	go run ./tools/apibench drop -db postgres://... -schema "$APIBENCH_SCHEMA"
package main

import (
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sbcwatch/sbcwatch/report"
	"github.com/sbcwatch/sbcwatch/sip"
	"github.com/sbcwatch/sbcwatch/store"
)

func main() {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: apibench seed|load|drop [flags]")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	var err error
	switch os.Args[1] {
	case "seed":
		err = seed(ctx, os.Args[2:])
	case "load":
		err = load(ctx, os.Args[2:])
	case "drop":
		err = drop(ctx, os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q (seed, load or drop)", os.Args[1])
	}
	if err != nil {
		log.Error("apibench: " + err.Error())
		os.Exit(1)
	}
}

// busyNumber is the number that appears in -busy calls.
const busyNumber = "+4930999000"

// detailCalls is how many calls get stored messages and are asked for.
const detailCalls = 1000

func seed(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("seed", flag.ContinueOnError)
	dsn := fs.String("db", "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable", "database URL")
	calls := fs.Int("calls", 1000000, "stored calls")
	busy := fs.Int("busy", 100000, "calls of the busy number "+busyNumber)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *busy < 1 || *calls < *busy || *calls < detailCalls {
		return fmt.Errorf("seed: need calls >= busy >= 1 and calls >= %d", detailCalls)
	}
	var sfx [6]byte
	_, _ = rand.Read(sfx[:])
	schema := fmt.Sprintf("sbcw_bench_%x", sfx)
	conn, err := pgx.Connect(ctx, *dsn)
	if err != nil {
		return fmt.Errorf("seed: %w", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "create schema "+schema); err != nil {
		return fmt.Errorf("seed: %w", err)
	}
	sdsn, err := withSearchPath(*dsn, schema)
	if err != nil {
		return err
	}
	st, err := store.Open(ctx, sdsn)
	if err != nil {
		return err
	}
	defer st.Close()
	st.SetLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err := st.Migrate(ctx); err != nil {
		return err
	}
	db := st.Pool()
	// Calls start one every 0.8 s, spread over the days before now.
	t0 := time.Now().UTC().Add(-time.Duration(*calls) * 800 * time.Millisecond).Truncate(time.Hour)
	began := time.Now()
	every := *calls / *busy
	for _, q := range []struct {
		sql  string
		args []any
	}{
		{`insert into sbcs (name) values ('sbc1')`, nil},
		{`insert into calls (sbc, call_id, kind, from_number, to_number, from_digits, to_digits, from_uri, to_uri,
		    caller, callee, start_time, answer_time, end_time, last_time, answered, final_status, ended_by,
		    end_reason, message_count, invites)
		  select 'sbc1', 'bench-' || i || '@198.51.100.7', 'invite', n.f, '+4969' || (i % 100000), ltrim(n.f, '+'),
		    '4969' || (i % 100000), 'sip:' || n.f || '@198.51.100.7', 'sip:+4969' || (i % 100000) || '@192.0.2.10',
		    '198.51.100.7:5060', '192.0.2.10:5060', s, s + interval '2 s', s + interval '62 s', s + interval '62 s',
		    true, 200, 'caller', 'BYE', 7, 1
		  from generate_series(1, $1::int) i,
		    lateral (select $2::timestamptz + i * interval '800 ms' as s) t,
		    lateral (select case when i % $3::int = 0 then $4::text else '+4930' || (1000000 + i) end as f) n`,
			[]any{*calls, t0, every, busyNumber}},
	} {
		if _, err := db.Exec(ctx, q.sql, q.args...); err != nil {
			return fmt.Errorf("seed: calls: %w", err)
		}
	}
	// A finding on every tenth call, so a search and a call detail both
	// have findings to count.
	var days []time.Time
	for d := t0; d.Before(time.Now().Add(24 * time.Hour)); d = d.Add(24 * time.Hour) {
		days = append(days, d)
	}
	if err := store.EnsurePartitions(ctx, db, "findings", days); err != nil {
		return err
	}
	if _, err := db.Exec(ctx, `insert into findings (time, id, rule, severity, severity_rank, call_id, sbc, summary)
	  select c.start_time + interval '62 s', 'b' || c.id, 'short_call', 'info', 3, c.call_id, 'sbc1', 'call shorter than 65 s'
	  from calls c where c.id % 10 = 0`); err != nil {
		return fmt.Errorf("seed: findings: %w", err)
	}
	// Calls with stored messages, through the normal save path.
	r := &report.Report{}
	for i := range detailCalls {
		r.CallRecords = append(r.CallRecords, detailCall(time.Now().UTC().Add(-time.Duration(detailCalls-i)*time.Minute), i))
	}
	if err := st.SaveReport(ctx, "sbc1", "apibench", r); err != nil {
		return err
	}
	if _, err := db.Exec(ctx, "analyze"); err != nil {
		return fmt.Errorf("seed: analyze: %w", err)
	}
	tok, err := store.CreateToken(ctx, db, "apibench", "read")
	if err != nil {
		return err
	}
	paths := []string{
		"/api/v1/calls?number=" + url.QueryEscape(busyNumber),
		"/api/v1/calls?number=" + url.QueryEscape("+4930"+fmt.Sprint(1000000+*calls-1)),
	}
	for i := 0; i < 8; i++ {
		paths = append(paths, "/api/v1/calls/"+url.PathEscape(detailID(i*detailCalls/8)))
	}
	paths = append(paths, "/api/v1/findings", "/api/v1/findings?rule=short_call")
	fmt.Printf("APIBENCH_SCHEMA=%s\nAPIBENCH_DSN='%s'\nAPIBENCH_TOKEN=%s\nAPIBENCH_PATHS='%s'\n",
		schema, sdsn, tok, strings.Join(paths, " "))
	fmt.Fprintf(os.Stderr, "apibench: seeded %d calls (%d of %s) in %s\n", *calls, *calls/every, busyNumber,
		time.Since(began).Round(time.Second))
	return nil
}

func detailID(i int) string { return fmt.Sprintf("detail-%d@192.0.2.10", i) }

// detailCall is a short answered call with its seven messages.
func detailCall(t0 time.Time, i int) *sip.Call {
	carrier, sbc := netip.MustParseAddrPort("198.51.100.7:5060"), netip.MustParseAddrPort("192.0.2.10:5060")
	id := detailID(i)
	c := &sip.Call{CallID: id, Kind: "invite", From: "+4930555" + fmt.Sprint(i), To: "+4969987654",
		Caller: carrier, Callee: sbc, Start: t0, Answer: t0.Add(2 * time.Second), End: t0.Add(62 * time.Second),
		Last: t0.Add(62 * time.Second), Answered: true, FinalStatus: 200, EndedBy: "caller", EndReason: "BYE",
		MessageCount: 7, Invites: 1}
	steps := []struct {
		req    bool
		method string
		status int
		at     time.Duration
	}{{true, "INVITE", 0, 0}, {false, "INVITE", 100, 10 * time.Millisecond}, {false, "INVITE", 180, time.Second},
		{false, "INVITE", 200, 2 * time.Second}, {true, "ACK", 0, 2010 * time.Millisecond},
		{true, "BYE", 0, 62 * time.Second}, {false, "BYE", 200, 62010 * time.Millisecond}}
	for k, s := range steps {
		src, dst := carrier, sbc
		if !s.req {
			src, dst = sbc, carrier
		}
		cseq := uint32(1)
		if s.method == "BYE" {
			cseq = 2
		}
		var b strings.Builder
		if s.req {
			fmt.Fprintf(&b, "%s sip:+4969987654@192.0.2.10 SIP/2.0\r\n", s.method)
		} else {
			fmt.Fprintf(&b, "SIP/2.0 %d X\r\n", s.status)
		}
		fmt.Fprintf(&b, "Via: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK%d-%d\r\nFrom: <sip:%s@198.51.100.7>;tag=c%d\r\nTo: <sip:+4969987654@192.0.2.10>\r\nCall-ID: %s\r\nCSeq: %d %s\r\nContent-Length: 0\r\n\r\n",
			i, k, c.From, i, id, cseq, s.method)
		c.Messages = append(c.Messages, &sip.Message{Time: t0.Add(s.at), Src: src, Dst: dst, Transport: "udp",
			Origin: "wire", IsRequest: s.req, Method: s.method, StatusCode: s.status, CallID: id, CSeq: cseq,
			CSeqMethod: s.method, FromUser: c.From, ToUser: c.To, Raw: []byte(b.String())})
	}
	return c
}

func withSearchPath(dsn, schema string) (string, error) {
	u, err := url.Parse(dsn)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return "", fmt.Errorf("seed: -db must be a postgres:// URL")
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String(), nil
}

func drop(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("drop", flag.ContinueOnError)
	dsn := fs.String("db", "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable", "database URL")
	schema := fs.String("schema", "", "schema seed made")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if !strings.HasPrefix(*schema, "sbcw_bench_") {
		return errors.New("drop: -schema must name a schema seed made (sbcw_bench_…)")
	}
	conn, err := pgx.Connect(ctx, *dsn)
	if err != nil {
		return fmt.Errorf("drop: %w", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "drop schema "+pgx.Identifier{*schema}.Sanitize()+" cascade"); err != nil {
		return fmt.Errorf("drop: %w", err)
	}
	return nil
}

// sample is one answered request.
type sample struct {
	path    int
	latency time.Duration
	status  int
}

func load(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("load", flag.ContinueOnError)
	base := fs.String("url", "http://127.0.0.1:8080", "server")
	token := fs.String("token", "", "read token")
	rate := fs.Float64("rate", 200, "requests per second, all paths together")
	dur := fs.Duration("duration", 30*time.Second, "how long to send")
	warm := fs.Duration("warmup", 3*time.Second, "sent first and not counted")
	if err := fs.Parse(args); err != nil {
		return err
	}
	paths := fs.Args()
	if len(paths) == 0 || *rate <= 0 || *dur <= 0 {
		return errors.New("load: need paths as arguments, -rate > 0 and -duration > 0")
	}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 512, MaxConnsPerHost: 512}}
	interval := time.Duration(float64(time.Second) / *rate)
	var (
		mu      sync.Mutex
		samples []sample
		wg      sync.WaitGroup
	)
	start := time.Now()
	counted := start.Add(*warm)
	end := counted.Add(*dur)
	ctx, cancel := context.WithTimeout(ctx, *warm+*dur+15*time.Second)
	defer cancel()
	for k := 0; ; k++ {
		due := start.Add(time.Duration(k) * interval)
		if !due.Before(end) {
			break
		}
		if d := time.Until(due); d > 0 {
			select {
			case <-time.After(d):
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		p := k % len(paths)
		wg.Go(func() {
			status := get(ctx, client, *base+paths[p], *token)
			if due.Before(counted) {
				return
			}
			mu.Lock()
			samples = append(samples, sample{p, time.Since(due), status})
			mu.Unlock()
		})
	}
	wg.Wait()
	sent := time.Since(counted)
	show := func(label string, ss []sample) {
		if len(ss) == 0 {
			return
		}
		lat := make([]time.Duration, len(ss))
		bad := 0
		for i, s := range ss {
			lat[i] = s.latency
			if s.status != http.StatusOK {
				bad++
			}
		}
		slices.Sort(lat)
		q := func(f float64) string {
			return fmt.Sprintf("%.1f", float64(lat[min(len(lat)-1, int(f*float64(len(lat))))].Microseconds())/1000)
		}
		fmt.Printf("%-18s n=%-6d p50=%sms p99=%sms max=%sms non-200=%d\n", label, len(ss), q(0.5), q(0.99), q(1), bad)
	}
	for _, r := range []string{"search by number", "call detail", "findings", "other"} {
		var ss []sample
		for _, s := range samples {
			if route(paths[s.path]) == r {
				ss = append(ss, s)
			}
		}
		show(r, ss)
	}
	show("all", samples)
	fmt.Printf("achieved %.0f req/s over %s\n", float64(len(samples))/sent.Seconds(), sent.Round(time.Second))
	return nil
}

// route names the API route a path asks.
func route(p string) string {
	switch {
	case strings.HasPrefix(p, "/api/v1/calls?"):
		return "search by number"
	case strings.HasPrefix(p, "/api/v1/calls/"):
		return "call detail"
	case strings.HasPrefix(p, "/api/v1/findings"):
		return "findings"
	}
	return "other"
}

// get asks for one path and returns the status (0 on a transport error).
func get(ctx context.Context, c *http.Client, u, token string) int {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := c.Do(req)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}
