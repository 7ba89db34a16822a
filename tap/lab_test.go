package tap

import (
	"bytes"
	"path/filepath"
	"testing"
	"time"

	"github.com/gopacket/gopacket/layers"
)

// TestLoopbackTLSAbort decodes a real loopback capture of a TLS 1.2
// handshake the client aborts after the server's self-signed certificate.
func TestLoopbackTLSAbort(t *testing.T) {
	file := filepath.Join("testdata", "tls12-selfsigned-abort.pcap")
	for _, p := range readAll(t, file) {
		if p.LinkType != layers.LinkTypeEthernet {
			t.Fatalf("link type %v", p.LinkType)
		}
	}
	r, st := decodeAll(t, Options{}, file)
	if st.Packets != 11 || st.TCPSegments != 11 || st.TCPConns != 1 || st.Malformed != 0 {
		t.Fatalf("stats %+v", st)
	}
	s := r.streams[0]
	if !s.info.SawSYN || s.info.Server.Port() != 15062 || s.info.Client.Addr().String() != "127.0.0.1" {
		t.Fatalf("conn %+v", s.info)
	}
	k := s.kinds()
	want := []EventKind{EventSYN, EventSYNACK, EventFIN, EventFIN}
	if len(k) != 4 || k[0] != want[0] || k[1] != want[1] || k[2] != want[2] || k[3] != want[3] {
		t.Fatalf("events %v", k)
	}
	if s.events[2].Dir != ClientToServer || s.events[3].Dir != ServerToClient {
		t.Fatalf("FIN directions %v", s.events)
	}
	srvData, cliData := s.data[ServerToClient].Bytes(), s.data[ClientToServer].Bytes()
	if len(srvData) != 1184 || !bytes.HasPrefix(srvData, []byte{0x16, 0x03, 0x03}) || !bytes.Contains(srvData, []byte("default-sbc")) {
		t.Fatalf("server flight: %d bytes % x", len(srvData), srvData[:min(8, len(srvData))])
	}
	alert := []byte{0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 48}
	if len(cliData) != 212+7 || !bytes.HasPrefix(cliData, []byte{0x16, 0x03, 0x01}) || !bytes.HasSuffix(cliData, alert) {
		t.Fatalf("client bytes: %d, ends % x", len(cliData), cliData[max(0, len(cliData)-7):])
	}
	// The abort comes within milliseconds of the certificate.
	if d := s.times[len(s.times)-1].Sub(s.times[len(s.times)-2]); d <= 0 || d > 10*time.Millisecond {
		t.Fatalf("alert %v after the certificate", d)
	}
	// Closed by the second FIN, at its time (the last ACK comes after).
	if s.closes != 1 || s.reason != CloseFIN || !s.closeAt.Equal(s.events[3].Time) || !s.closeAt.Before(st.Last) {
		t.Fatalf("close %d %v at %v (second FIN %v)", s.closes, s.reason, s.closeAt, s.events[3].Time)
	}
}
