package analyze

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/sbcwatch/sbcwatch/config"
	"github.com/sbcwatch/sbcwatch/finding"
	"github.com/sbcwatch/sbcwatch/tap"
)

// TestSBCLogInput: the AudioCodes log of the field case alone (no
// capture) gives tls_context_wrong for the Microsoft connection.
func TestSBCLogInput(t *testing.T) {
	log := filepath.Join("..", "audiocodes", "syslog", "testdata", "field-evidence.log")
	cfg := config.Default()
	cfg.LogYear = 2026
	rep, err := Files(context.Background(), []string{log}, Options{Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Findings) != 1 || rep.Findings[0].Rule != finding.TLSContextWrong {
		t.Fatalf("findings = %v", ruleSet(rep.Findings))
	}
	f := rep.Findings[0]
	if !strings.Contains(f.Summary, "52.114.75.24") || f.Time.Year() != 2026 || f.Time.Month() != 1 || f.Time.Day() != 4 { // [Time:DD-MM@…] per the AudioCodes manual
		t.Fatalf("finding = %+v", f)
	}
	if rep.Stats.Extra["log_lines"] != 19 {
		t.Fatalf("log lines = %d", rep.Stats.Extra["log_lines"])
	}
}

// TestNotACaptureNorLog: text without AudioCodes lines and binary junk
// are input errors.
func TestNotACaptureNorLog(t *testing.T) {
	dir := t.TempDir()
	text := filepath.Join(dir, "notes.txt")
	junk := filepath.Join(dir, "junk.bin")
	if err := os.WriteFile(text, []byte("hello\nworld\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(junk, []byte{0, 1, 2, 3, 4, 5, 6, 7, 8}, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{text, junk, filepath.Join(dir, "missing")} {
		if _, err := Files(context.Background(), []string{f}, Options{}); !errors.Is(err, ErrInput) {
			t.Errorf("%s: err = %v, want ErrInput", filepath.Base(f), err)
		}
	}
}

// TestDamagedCapture: a record header damaged mid-file ends the read
// there; the report covers what came before and says so. A packet with an
// impossible timestamp is counted as malformed, not fatal.
func TestDamagedCapture(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "testdata", "lab", "transfer_fails_default_cert.pcap"))
	if err != nil {
		t.Fatal(err)
	}
	// Walk the pcap records (little-endian, 24-byte file header) and
	// damage the length field of record 60.
	off := 24
	for i := 1; i < 60; i++ {
		off += 16 + int(uint32(b[off+8])|uint32(b[off+9])<<8|uint32(b[off+10])<<16|uint32(b[off+11])<<24)
	}
	bad := append([]byte(nil), b...)
	copy(bad[off+8:off+12], []byte{0xff, 0xff, 0xff, 0x7f})
	dir := t.TempDir()
	file := filepath.Join(dir, "damaged.pcap")
	if err := os.WriteFile(file, bad, 0o600); err != nil {
		t.Fatal(err)
	}
	rep, err := Files(context.Background(), []string{file}, Options{})
	if err != nil {
		t.Fatalf("damaged capture: %v", err)
	}
	if rep.Stats.Packets != 59 || len(rep.Warnings) != 1 || !strings.Contains(rep.Warnings[0], "damaged after 59 packets") {
		t.Fatalf("packets %d, warnings %v", rep.Stats.Packets, rep.Warnings)
	}
	// A packet stamped in year 30000 (pcapng's 64-bit times allow it):
	// skipped, counted, and the JSON still writes.
	p, err := New(config.Default())
	if err != nil {
		t.Fatal(err)
	}
	p.Packet(tap.Packet{Data: b[40:120], Info: gopacket.CaptureInfo{Timestamp: time.Date(30000, 1, 1, 0, 0, 0, 0, time.UTC)}, LinkType: layers.LinkTypeEthernet})
	rep = p.Finish()
	if rep.Stats.Malformed != 1 || rep.Stats.Packets != 0 {
		t.Fatalf("malformed %d packets %d", rep.Stats.Malformed, rep.Stats.Packets)
	}
	var out strings.Builder
	if err := rep.WriteJSON(&out); err != nil {
		t.Fatalf("JSON with a far-future packet: %v", err)
	}
}
