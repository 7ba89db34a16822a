package report

import (
	"bytes"
	"fmt"
	"io"
	"net/netip"
	"runtime"
	"strings"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/sbcwatch/sbcwatch/finding"
	"github.com/sbcwatch/sbcwatch/sip"
	"github.com/sbcwatch/sbcwatch/tlsaudit"
)

// genRecords makes n calls over two days (some answered, some with
// Microsoft, numbers of varying length and a non-ASCII name), n/4 TLS
// connections, and a finding for the first few calls and connections.
func genRecords(n int) ([]*sip.Call, []*tlsaudit.Conn, []*finding.Finding) {
	t0 := time.Date(2026, 4, 1, 23, 50, 0, 0, time.UTC)
	var calls []*sip.Call
	var conns []*tlsaudit.Conn
	var fs []*finding.Finding
	for i := 0; i < n; i++ {
		start := t0.Add(time.Duration((i*7919)%n) * time.Second)
		c := &sip.Call{CallID: fmt.Sprintf("call-%d-%s@sbc.example", i, strings.Repeat("x", i%13)), Kind: "invite", Start: start,
			From: fmt.Sprintf("+4969%0*d", 4+i%5, i), To: fmt.Sprintf("Zoë %d", i%97), MessageCount: 3 + i%11,
			Caller: netip.MustParseAddrPort("192.0.2.1:5060"), Callee: netip.MustParseAddrPort("52.114.1.1:5061")}
		if i%3 == 0 {
			c.Answered, c.Answer = true, start.Add(2*time.Second)
			c.End, c.EndedBy, c.EndReason = start.Add(time.Duration(5+i%300)*time.Second), "caller", "BYE"
		}
		if i%5 == 0 {
			c.Kind = "options"
		}
		calls = append(calls, c)
		if i < 6 {
			f := finding.New(finding.ShortCall, finding.Warning, start, "call %s was short", c.CallID)
			f.ID, f.CallID = fmt.Sprintf("F%d", len(fs)+1), c.CallID
			fs = append(fs, f)
		}
		if i%4 == 0 {
			k := &tlsaudit.Conn{ID: fmt.Sprintf("T%d", i), FirstSeen: start,
				Client: netip.MustParseAddrPort(fmt.Sprintf("192.0.2.%d:%d", 1+i%200, 40000+i%9000)),
				Server: netip.MustParseAddrPort("52.114.1.1:5061"), SNI: "sip.example.com", Outcome: tlsaudit.OutcomeEstablished,
				Duration: time.Duration(i%900) * time.Millisecond}
			if i%8 == 0 {
				k.Outcome = tlsaudit.OutcomeAlert
			}
			conns = append(conns, k)
			if i < 20 {
				f := finding.New(finding.TLSHandshakeFailed, finding.Critical, start, "handshake with %s failed", k.Server)
				f.ID, f.Connection = fmt.Sprintf("F%d", len(fs)+1), k.Client.String()+"->"+k.Server.String()
				fs = append(fs, f)
			}
		}
	}
	return calls, conns, fs
}

func spoolOf(t testing.TB, calls []*sip.Call, conns []*tlsaudit.Conn, fs []*finding.Finding, run, fanIn int) *Spool {
	sp, err := NewSpool(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sp.Close() })
	sp.run, sp.fanIn = run, fanIn
	for _, c := range calls {
		sp.Call(c)
	}
	for _, c := range conns {
		sp.TLSConn(c)
	}
	for _, f := range fs {
		sp.Finding(f)
	}
	return sp
}

// TestSpoolTextMatchesFilter: the text and CSV written in two passes
// over the spool are, for every view and width, what Report.Filter
// writes from every record in memory.
func TestSpoolTextMatchesFilter(t *testing.T) {
	calls, conns, fs := genRecords(300)
	sp := spoolOf(t, calls, conns, fs, 37, 3)
	st := Stats{Packets: 1234, SIPMessages: 999, Seconds: 3600}
	rep, err := sp.Report(st, []string{"a hint"}, []string{"a warning"})
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Date(2026, 4, 1, 23, 52, 0, 0, time.UTC)
	views := []View{{}, {Limit: 5}, {OnlyFindings: true}, {Number: "4969"}, {Number: "0000012"},
		{Since: t0, Until: t0.Add(time.Minute)}, {Since: t0, Limit: 3}, {OnlyFindings: true, Limit: 2}}
	for _, v := range views {
		for _, width := range []int{0, 30, 80, 120, 400} {
			var want, got bytes.Buffer
			if err := rep.Filter(v).WriteTextWidth(&want, width); err != nil {
				t.Fatal(err)
			}
			if err := sp.WriteText(&got, v, width, st, []string{"a hint"}, []string{"a warning"}); err != nil {
				t.Fatal(err)
			}
			if got.String() != want.String() {
				t.Fatalf("view %+v width %d: spooled text differs:\n--- memory\n%s\n--- spool\n%s", v, width, want.String(), got.String())
			}
		}
		var want, got bytes.Buffer
		if err := rep.Filter(v).WriteCallsCSV(&want); err != nil {
			t.Fatal(err)
		}
		if err := sp.WriteCallsCSV(&got, v, st, nil, nil); err != nil {
			t.Fatal(err)
		}
		if got.String() != want.String() {
			t.Fatalf("view %+v: spooled CSV differs:\n--- memory\n%s\n--- spool\n%s", v, want.String(), got.String())
		}
	}
}

// TestTableMatchesTabwriter: the tables, laid out from column widths
// measured in a first pass, are what text/tabwriter (which holds every
// row) lays out.
func TestTableMatchesTabwriter(t *testing.T) {
	calls, conns, _ := genRecords(200)
	rep := Build(calls, conns, nil)
	var want bytes.Buffer
	tw := tabwriter.NewWriter(&want, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(callsHeader, "\t"))
	w := cellWidths(nil, callsHeader)
	for i := range rep.Calls {
		row := callRow(&rep.Calls[i])
		fmt.Fprintln(tw, strings.Join(row, "\t"))
		w = cellWidths(w, row)
	}
	tw.Flush()
	want.WriteString("\n")
	wt := cellWidths(nil, tlsHeader)
	for i := range rep.TLS {
		wt = cellWidths(wt, tlsRow(&rep.TLS[i]))
	}
	tw = tabwriter.NewWriter(&want, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(tlsHeader, "\t"))
	for i := range rep.TLS {
		fmt.Fprintln(tw, strings.Join(tlsRow(&rep.TLS[i]), "\t"))
	}
	tw.Flush()

	var got bytes.Buffer
	ew := &errWriter{w: &got}
	writeRow(ew, w, callsHeader)
	for i := range rep.Calls {
		writeRow(ew, w, callRow(&rep.Calls[i]))
	}
	ew.printf("\n")
	writeRow(ew, wt, tlsHeader)
	for i := range rep.TLS {
		writeRow(ew, wt, tlsRow(&rep.TLS[i]))
	}
	if got.String() != want.String() {
		t.Fatalf("tables differ from text/tabwriter:\n--- tabwriter\n%s\n--- two passes\n%s", want.String(), got.String())
	}
	widest := 0
	for _, l := range strings.Split(got.String(), "\n")[:len(rep.Calls)+1] {
		widest = max(widest, runeLen(l))
	}
	if tableWidth(w) != widest {
		t.Fatalf("tableWidth %d, widest calls line %d", tableWidth(w), widest)
	}
}

// peakHeap is a writer that, every few writes, collects garbage and
// notes the live heap: the peak memory a report writer holds while it
// writes.
type peakHeap struct {
	n    int
	peak uint64
}

func (p *peakHeap) Write(b []byte) (int, error) {
	p.n++
	if p.n%256 == 0 {
		p.sample()
	}
	return len(b), nil
}

func (p *peakHeap) sample() {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	p.peak = max(p.peak, m.HeapAlloc)
}

// TestSpoolTextMemoryFlat writes the text report (both layouts) and
// the CSV of n and of 10n spooled calls and checks that the live heap
// while writing does not grow with the calls: reading every row back
// (as before) costs about 1 KB a call, 20 MB more for the larger input.
func TestSpoolTextMemoryFlat(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 22 000 calls twice; not in -short")
	}
	const n = 2000
	measure := func(calls int, write func(*Spool, io.Writer) error) uint64 {
		c, k, fs := genRecords(calls)
		sp := spoolOf(t, c, k, fs, 1024, 4)
		c, k, fs = nil, nil, nil
		p := &peakHeap{}
		p.sample()
		base := p.peak
		if err := write(sp, p); err != nil {
			t.Fatal(err)
		}
		p.sample()
		return p.peak - min(base, p.peak)
	}
	writers := map[string]func(*Spool, io.Writer) error{
		"text": func(sp *Spool, w io.Writer) error { return sp.WriteText(w, View{}, 0, Stats{}, nil, nil) },
		"text-80": func(sp *Spool, w io.Writer) error {
			return sp.WriteText(w, View{Since: time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC)}, 80, Stats{}, nil, nil)
		},
		"csv": func(sp *Spool, w io.Writer) error {
			return sp.WriteCallsCSV(w, View{OnlyFindings: false}, Stats{}, nil, nil)
		},
	}
	// The control: the report read back whole, as text and CSV were
	// written before, must break the bound, or the bound proves nothing.
	writers["control: in memory"] = func(sp *Spool, w io.Writer) error {
		rep, err := sp.Report(Stats{}, nil, nil)
		if err != nil {
			return err
		}
		return rep.Filter(View{}).WriteTextWidth(w, 0)
	}
	for name, write := range writers {
		small := measure(n, write)
		large := measure(10*n, write)
		t.Logf("%s: heap while writing %d calls: +%d KB; %d calls: +%d KB", name, n, small>>10, 10*n, large>>10)
		// Generous: noise, never a row per call (the merge reads at most
		// fanIn runs at once).
		limit := 2*small + 1<<20
		if control := strings.HasPrefix(name, "control"); control != (large > limit) {
			t.Errorf("%s: writing %d calls held %d KB, %d calls %d KB (limit %d KB)",
				name, n, small>>10, 10*n, large>>10, limit>>10)
		}
	}
}
