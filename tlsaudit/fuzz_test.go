package tlsaudit

import (
	"net/netip"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/sbcwatch/sbcwatch/tap"
)

// collector keeps the first bytes of each direction of a stream.
type collector struct {
	b   [2][]byte
	out *[][2][]byte
}

func (c *collector) Data(dir tap.Dir, data []byte, t time.Time) {
	if len(c.b[dir]) < 8192 {
		c.b[dir] = append(c.b[dir], data[:min(len(data), 8192-len(c.b[dir]))]...)
	}
}
func (c *collector) Gap(tap.Dir, int, time.Time) {}
func (c *collector) Event(tap.Event)             {}
func (c *collector) Close(time.Time, tap.CloseReason) {
	*c.out = append(*c.out, c.b)
}

// seedStreams returns the opening bytes of both directions of the TLS
// connections in our capture and a few shared ones.
func seedStreams(t testing.TB) [][2][]byte {
	var out [][2][]byte
	// outcomes.pcap.gz adds HelloRetryRequests, warning alerts, probes
	// closed with close_notify and hand-made ServerHellos.
	files := []string{filepath.Join("testdata", "peers.pcap"), filepath.Join("testdata", "outcomes.pcap.gz")}
	if dir, ok := findCaptures(); ok {
		for _, f := range []string{"arkime/badcurveball.pcap", "nDPI/ssl-cert-name-mismatch.pcap", "suricata-verify/ja4-tls--input.pcap", "nDPI/tls_alert.pcap"} {
			files = append(files, filepath.Join(dir, f))
		}
	}
	for _, f := range files {
		replayTo(t, f, func(tap.ConnInfo) tap.StreamConsumer { return &collector{out: &out} })
	}
	return out
}

// FuzzRecords feeds two arbitrary byte streams, cut into chunks, through a
// connection and checks the record's invariants.
func FuzzRecords(f *testing.F) {
	for _, s := range seedStreams(f) {
		f.Add(s[0], s[1], uint8(7))
	}
	f.Add(records(22, handshakeMsg(hsClientHello, specHello(f, true)), 50), []byte{21, 3, 3, 0, 2, 2, 40}, uint8(1))
	f.Fuzz(func(t *testing.T, client, server []byte, chunk uint8) {
		n := int(chunk)%64 + 1
		tr := NewTracker(Options{IsMicrosoft: func(netip.Addr) bool { return true }})
		t0 := time.Unix(1700000000, 0)
		s := tr.Stream(tap.ConnInfo{Client: netip.MustParseAddrPort("52.112.0.1:1"), Server: netip.MustParseAddrPort("10.0.0.1:5061"), FirstSeen: t0})
		at := t0
		for i := 0; i < max(len(client), len(server)); i += n {
			at = at.Add(time.Millisecond)
			if i < len(client) {
				s.Data(tap.ClientToServer, client[i:min(i+n, len(client))], at)
			}
			if i < len(server) {
				s.Data(tap.ServerToClient, server[i:min(i+n, len(server))], at)
			}
		}
		s.Event(tap.Event{Kind: tap.EventFIN, Dir: tap.Dir(chunk & 1), Time: at})
		s.Close(at, tap.CloseFIN)
		cs := tr.Conns()
		if len(cs) != 1 {
			t.Fatalf("%d conns", len(cs))
		}
		c := cs[0]
		switch c.Outcome {
		case OutcomeEstablished, OutcomeAlert, OutcomeReset, OutcomeClosed, OutcomeIncomplete:
		default:
			t.Fatalf("outcome %q", c.Outcome)
		}
		if len(c.Alerts) > MaxAlerts || len(c.Anomalies) > MaxAnomalies+1 || len(c.Chain) > MaxChain {
			t.Fatalf("bounds: %d alerts %d anomalies %d certs", len(c.Alerts), len(c.Anomalies), len(c.Chain))
		}
		c2s, s2c := uint64(len(client)), uint64(len(server))
		if c.Client.String() == "10.0.0.1:5061" { // roles taken from content (no SYN)
			c2s, s2c = s2c, c2s
		}
		if c.BytesC2S != c2s || c.BytesS2C != s2c {
			t.Fatalf("bytes %d/%d, fed %d/%d", c.BytesC2S, c.BytesS2C, len(client), len(server))
		}
		if c.Established && c.Outcome != OutcomeEstablished && c.Outcome != OutcomeAlert {
			t.Fatalf("established but %s", c.Outcome)
		}
		if c.Duration < 0 || c.ClosedBy == "" {
			t.Fatalf("duration %v closed by %q", c.Duration, c.ClosedBy)
		}
	})
}

var ja4RE = regexp.MustCompile(`^t(13|12|11|10|s3|s2|d1|d2|d3|00)[di]\d\d\d\d[0-9a-zA-Z]{2}_[0-9a-f]{12}_[0-9a-f]{12}$`)

// FuzzClientHello parses arbitrary ClientHello bodies.
func FuzzClientHello(f *testing.F) {
	f.Add(specHello(f, false))
	f.Add(specHello(f, true))
	for _, s := range seedStreams(f) {
		b := s[0]
		if len(b) > 9 && b[0] == 22 && b[5] == hsClientHello {
			n := int(b[6])<<16 | int(b[7])<<8 | int(b[8])
			if 9+n <= len(b) {
				f.Add(b[9 : 9+n])
			}
		}
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		h, err := ParseClientHello(body)
		if err != nil {
			return
		}
		if !ja4RE.MatchString(h.JA4) || len(h.JA3Hash) != 32 {
			t.Fatalf("fingerprints %q %q", h.JA4, h.JA3Hash)
		}
		h2, _ := ParseClientHello(body)
		if h2.JA4 != h.JA4 || h2.JA3 != h.JA3 {
			t.Fatal("not deterministic")
		}
	})
}

// BenchmarkTracker replays the opening bytes of the real streams (our
// capture and the shared ones) through a tracker, one connection each.
func BenchmarkTracker(b *testing.B) {
	streams := seedStreams(b)
	total := 0
	for _, s := range streams {
		total += len(s[0]) + len(s[1])
	}
	b.SetBytes(int64(total))
	t0 := time.Unix(1700000000, 0)
	info := tap.ConnInfo{Client: netip.MustParseAddrPort("52.112.0.1:1"), Server: netip.MustParseAddrPort("10.0.0.1:5061"), FirstSeen: t0, SawSYN: true}
	b.ReportAllocs()
	for b.Loop() {
		tr := NewTracker(Options{})
		for _, s := range streams {
			c := tr.Stream(info)
			c.Data(tap.ClientToServer, s[0], t0)
			c.Data(tap.ServerToClient, s[1], t0)
			c.Close(t0, tap.CloseEnd)
		}
	}
}
