package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/sbcwatch/sbcwatch/lab/acdrenc"
)

// liveMsg is one SIP message of a dialog with its addresses.
type liveMsg struct {
	src, dst netip.AddrPort
	text     string
}

// liveMessages is a Teams call: Microsoft's INVITE, 100, 200, ACK, then
// the SBC's BYE and Microsoft's 200.
func liveMessages(callID string) []liveMsg {
	ms := netip.MustParseAddrPort("52.114.75.24:5061")
	sbc := netip.MustParseAddrPort("192.0.2.10:5061")
	from := "<sip:+4915112345678@sip.pstnhub.microsoft.com>;tag=ms-1"
	to := "<sip:+496912345@sbc.contoso.example>"
	via := "SIP/2.0/TLS 52.114.75.24:5061;branch=z9hG4bK-" + callID
	bvia := "SIP/2.0/TLS 192.0.2.10:5061;branch=z9hG4bK-bye-" + callID
	m := func(start string, hdrs ...string) string {
		return start + "\r\n" + strings.Join(hdrs, "\r\n") + "\r\nCall-ID: " + callID + "\r\nContent-Length: 0\r\n\r\n"
	}
	return []liveMsg{
		{ms, sbc, m("INVITE sip:+496912345@sbc.contoso.example:5061 SIP/2.0", "Via: "+via, "Max-Forwards: 70", "From: "+from, "To: "+to, "CSeq: 1 INVITE", "Contact: <sip:sip.pstnhub.microsoft.com:5061;transport=tls>")},
		{sbc, ms, m("SIP/2.0 100 Trying", "Via: "+via, "From: "+from, "To: "+to, "CSeq: 1 INVITE")},
		{sbc, ms, m("SIP/2.0 200 OK", "Via: "+via, "From: "+from, "To: "+to+";tag=sbc-1", "CSeq: 1 INVITE", "Contact: <sip:sbc.contoso.example:5061;transport=tls>")},
		{ms, sbc, m("ACK sip:sbc.contoso.example:5061 SIP/2.0", "Via: "+via+"-ack", "Max-Forwards: 70", "From: "+from, "To: "+to+";tag=sbc-1", "CSeq: 1 ACK")},
		{sbc, ms, m("BYE sip:sip.pstnhub.microsoft.com:5061 SIP/2.0", "Via: "+bvia, "Max-Forwards: 70", "From: "+to+";tag=sbc-1", "To: "+from, "CSeq: 1 BYE")},
		{ms, sbc, m("SIP/2.0 200 OK", "Via: "+bvia, "From: "+to+";tag=sbc-1", "To: "+from, "CSeq: 1 BYE")},
	}
}

// liveDialog is liveMessages exported as ACDR packets.
func liveDialog(t *testing.T, callID string) [][]byte {
	t.Helper()
	sbc := netip.MustParseAddrPort("192.0.2.10:5061")
	var out [][]byte
	for i, x := range liveMessages(callID) {
		b, err := acdrenc.Packet{Time: time.Now(), Seq: uint16(i), BoardID: 0x665997, ResetCounter: 1, Session: 9,
			Src: x.src, Dst: x.dst, Proto: acdrenc.ProtoTCP, Outgoing: x.src == sbc, Payload: []byte(x.text)}.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

// hepPacket encodes one SIP message as a HEP v3 packet (IPv4, TCP).
func hepPacket(m liveMsg) []byte {
	var body []byte
	chunk := func(typ uint16, v []byte) {
		body = binary.BigEndian.AppendUint16(body, 0)
		body = binary.BigEndian.AppendUint16(body, typ)
		body = binary.BigEndian.AppendUint16(body, uint16(6+len(v)))
		body = append(body, v...)
	}
	u16 := func(v uint16) []byte { return binary.BigEndian.AppendUint16(nil, v) }
	u32 := func(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }
	src, dst := m.src.Addr().As4(), m.dst.Addr().As4()
	now := time.Now()
	chunk(1, []byte{2}) // IPv4
	chunk(2, []byte{6}) // TCP
	chunk(3, src[:])
	chunk(4, dst[:])
	chunk(7, u16(m.src.Port()))
	chunk(8, u16(m.dst.Port()))
	chunk(9, u32(uint32(now.Unix())))
	chunk(10, u32(uint32(now.Nanosecond()/1000)))
	chunk(11, []byte{1}) // SIP
	chunk(12, u32(2001))
	chunk(15, []byte(m.text))
	out := append([]byte("HEP3"), u16(uint16(6+len(body)))...)
	return append(out, body...)
}

// TestServeStoresLiveACDRCalls starts `serve` with serve.acdr_listen set,
// sends an ACDR dialog to it and finds the call, with its messages,
// through the API once its (short) linger is over.
func TestServeStoresLiveACDRCalls(t *testing.T) {
	dsn := testDatabase(t)
	dir := t.TempDir()
	udp := freeUDPTCPPort(t) // acdr_listen binds UDP and TCP
	addr := freeAddr(t)
	cfg := filepath.Join(dir, "sbcwatch.yaml")
	// dialog_timeout bounds the linger of ended calls: 2s hands the call
	// over quickly.
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`sbcs:
  - name: lab
    fqdns: [sbc.contoso.example]
    addresses: [192.0.2.10]
dialog_timeout: 2s
serve:
  acdr_listen: "%s"
`, udp)), 0o600); err != nil {
		t.Fatal(err)
	}
	tok := newToken(t, dsn, "ci", "read")

	out := startServe(t, "--db", dsn, "--listen", addr, "--config", cfg)
	waitListening(t, out)
	conn, err := net.Dial("udp", udp)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	const callID = "live-wiring-1@ms"
	for _, p := range liveDialog(t, callID) {
		if _, err := conn.Write(p); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * time.Millisecond)
	}

	get := func(path string, v any) int {
		req, _ := http.NewRequest("GET", "http://"+addr+path, nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode == 200 {
			if err := json.Unmarshal(b, v); err != nil {
				t.Fatalf("%s: %v: %s", path, err, b)
			}
		}
		return resp.StatusCode
	}
	var list struct {
		Items []struct {
			SBC      string `json:"sbc"`
			CallID   string `json:"call_id"`
			Answered bool   `json:"answered"`
			EndedBy  string `json:"ended_by"`
			Messages int    `json:"messages"`
		} `json:"items"`
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if get("/api/v1/calls?call_id="+url.QueryEscape(callID), &list) == 200 && len(list.Items) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("live call not stored in time; daemon said: %s", out.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
	c := list.Items[0]
	if c.SBC != "lab" || c.CallID != callID || !c.Answered || c.EndedBy != "callee" || c.Messages != 6 {
		t.Fatalf("stored call %+v", c)
	}
	var detail struct {
		Messages []struct {
			Origin string `json:"origin"`
			Src    string `json:"src"`
			Method string `json:"method"`
			Status int    `json:"status"`
		} `json:"messages"`
	}
	if code := get("/api/v1/calls/"+url.PathEscape(callID), &detail); code != 200 {
		t.Fatalf("call detail: HTTP %d", code)
	}
	var labels []string
	for _, m := range detail.Messages {
		if m.Origin != "acdr" {
			t.Errorf("message origin %q", m.Origin)
		}
		if m.Status != 0 {
			labels = append(labels, fmt.Sprint(m.Status))
		} else {
			labels = append(labels, m.Method)
		}
	}
	if got := strings.Join(labels, " "); got != "INVITE 100 200 ACK BYE 200" {
		t.Fatalf("stored messages %q", got)
	}
	if len(detail.Messages) > 0 && detail.Messages[0].Src != "52.114.75.24:5061" {
		t.Fatalf("first message from %q, want Microsoft's original address", detail.Messages[0].Src)
	}
}

// TestServeStoresOpenLiveCallsAtShutdown: a call still ringing when serve
// stops is handed over by the live input while stopping and written
// before serve returns.
func TestServeStoresOpenLiveCallsAtShutdown(t *testing.T) {
	dsn := testDatabase(t)
	udp := freeUDPTCPPort(t) // acdr_listen binds UDP and TCP
	cfg := filepath.Join(t.TempDir(), "sbcwatch.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf("serve:\n  acdr_listen: %q\n  instance: site-b\n", udp)), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := &syncBuffer{}
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"serve", "--db", dsn, "--listen", freeAddr(t), "--config", cfg}, out, out)
	}()
	waitListening(t, out)
	conn, err := net.Dial("udp", udp)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	const callID = "live-ringing-1@ms"
	for _, p := range liveDialog(t, callID)[:2] { // INVITE, 100 Trying
		if _, err := conn.Write(p); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(300 * time.Millisecond) // let the pipeline take them
	cancel()
	select {
	case code := <-done:
		if code != exitOK {
			t.Fatalf("serve exited %d: %s", code, out.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("serve did not stop")
	}
	if !strings.Contains(out.String(), "live input stopped") {
		t.Errorf("no stop line with the counters: %s", out.String())
	}
	db, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(context.Background())
	var sbc, endedBy, instance string
	var n int
	var answered bool
	if err := db.QueryRow(context.Background(),
		"select sbc, message_count, answered, coalesce(ended_by, ''), instance from calls where call_id = $1", callID).Scan(&sbc, &n, &answered, &endedBy, &instance); err != nil {
		t.Fatalf("open call not stored at shutdown: %v; daemon said: %s", err, out.String())
	}
	if sbc != "live" || n != 2 || answered || endedBy != "" || instance != "site-b" {
		t.Fatalf("stored open call: sbc %q messages %d answered %v ended_by %q instance %q", sbc, n, answered, endedBy, instance)
	}
}

// waitListening waits until the daemon says its live input listens.
func waitListening(t *testing.T, out *syncBuffer) {
	t.Helper()
	for deadline := time.Now().Add(15 * time.Second); !strings.Contains(out.String(), "listening for exported SIP"); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("live input not listening; daemon said: %s", out.String())
		}
	}
}

// TestServeACDROverTCP: the same exported dialog sent over TCP
// (ACDR with a 16-bit length before each packet) is stored like the UDP
// one.
func TestServeACDROverTCP(t *testing.T) {
	dsn := testDatabase(t)
	la := freeUDPTCPPort(t)
	cfg := filepath.Join(t.TempDir(), "sbcwatch.yaml")
	if err := os.WriteFile(cfg, []byte("dialog_timeout: 2s\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out := startServe(t, "--db", dsn, "--listen", freeAddr(t), "--config", cfg, "--acdr-listen", la)
	waitListening(t, out)
	conn, err := net.Dial("tcp", la)
	if err != nil {
		t.Fatal(err)
	}
	const callID = "live-tcp-1@ms"
	for _, p := range liveDialog(t, callID) {
		if _, err := conn.Write(append([]byte{byte(len(p) >> 8), byte(len(p))}, p...)); err != nil {
			t.Fatal(err)
		}
	}
	conn.Close()
	db, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(context.Background())
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		var n int
		var endedBy string
		err := db.QueryRow(context.Background(), "select message_count, coalesce(ended_by, '') from calls where call_id = $1", callID).Scan(&n, &endedBy)
		if err == nil {
			if n != 6 || endedBy != "callee" {
				t.Fatalf("stored call: %d messages, ended by %q", n, endedBy)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("call over TCP not stored: %v\n%s", err, out.String())
		}
	}
}

// TestServeHEPOverTCP: HEP v3 packets over a TCP connection to
// --hep-listen (self-delimiting, several per segment) are stored as a
// call with its messages.
func TestServeHEPOverTCP(t *testing.T) {
	dsn := testDatabase(t)
	lh := freeUDPTCPPort(t)
	cfg := filepath.Join(t.TempDir(), "sbcwatch.yaml")
	if err := os.WriteFile(cfg, []byte("dialog_timeout: 2s\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out := startServe(t, "--db", dsn, "--listen", freeAddr(t), "--config", cfg, "--hep-listen", lh)
	waitListening(t, out)
	conn, err := net.Dial("tcp", lh)
	if err != nil {
		t.Fatal(err)
	}
	const callID = "live-hep-tcp-1@ms"
	var stream []byte
	for _, m := range liveMessages(callID) {
		stream = append(stream, hepPacket(m)...)
	}
	if _, err := conn.Write(stream); err != nil { // all six in one write
		t.Fatal(err)
	}
	conn.Close()
	db, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(context.Background())
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		var n int
		var origin string
		err := db.QueryRow(context.Background(), "select c.message_count, m.origin from calls c join sip_messages m using (call_id) where c.call_id = $1 limit 1", callID).Scan(&n, &origin)
		if err == nil {
			if n != 6 || origin != "hep" {
				t.Fatalf("stored call: %d messages, origin %q", n, origin)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("call over HEP/TCP not stored: %v\n%s", err, out.String())
		}
	}
}
