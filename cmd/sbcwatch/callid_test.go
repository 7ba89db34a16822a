package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sbcwatch/sbcwatch/sip"
	"github.com/sbcwatch/sbcwatch/store"
)

// A Call-ID that is not valid UTF-8 is printed in one form (sip.CallIDText)
// that --call, the store and the API look up again.
func TestCallIDNotUTF8RoundTrip(t *testing.T) {
	const wire = "e2e\xff\xfe\\1@10.0.0.1"
	want := sip.CallIDText(wire)
	if want != `e2e\xff\xfe\\1@10.0.0.1` {
		t.Fatalf("CallIDText = %q", want)
	}
	hdr := func(first, cseq, toTag string) string {
		return first + "\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK" + cseq[:1] + toTag + "\r\n" +
			"From: <sip:+4930111@10.0.0.1>;tag=a1\r\nTo: <sip:+4930222@10.0.0.2>" + toTag + "\r\n" +
			"Call-ID: " + wire + "\r\nCSeq: " + cseq + "\r\nContent-Length: 0\r\n\r\n"
	}
	msgs := []string{
		hdr("INVITE sip:+4930222@10.0.0.2 SIP/2.0", "1 INVITE", ""),
		hdr("SIP/2.0 200 OK", "1 INVITE", ";tag=b2"),
		hdr("BYE sip:+4930222@10.0.0.2 SIP/2.0", "2 BYE", ";tag=b2"),
		hdr("SIP/2.0 200 OK", "2 BYE", ";tag=b2"),
	}
	path := filepath.Join(t.TempDir(), "callid.pcap")
	writeUDPPcap(t, path, msgs)

	code, out, errOut := runCLI("analyze", "--format", "json", path)
	if code != exitOK {
		t.Fatalf("analyze: exit %d: %s", code, errOut)
	}
	var doc struct {
		Calls []struct {
			CallID string `json:"call_id"`
		} `json:"calls"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Calls) != 1 || doc.Calls[0].CallID != want {
		t.Fatalf("calls %+v, want call_id %q", doc.Calls, want)
	}
	code, out, errOut = runCLI("analyze", "--call", doc.Calls[0].CallID, path)
	if code != exitOK || !strings.Contains(out, want) || !strings.Contains(out, "BYE") {
		t.Fatalf("--call: exit %d: %s %s", code, out, errOut)
	}

	dsn := testDatabase(t)
	code, _, errOut = runCLI("analyze", "--store", "--db", dsn, "--sbc", "lab", path)
	if code != exitOK {
		t.Fatalf("store: exit %d: %s", code, errOut)
	}
	ctx := context.Background()
	st, err := storeOpen(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	c, err := store.GetCall(ctx, st.Pool(), doc.Calls[0].CallID, "lab")
	if err != nil || c.CallID != want {
		t.Fatalf("store lookup of %q: %+v %v", want, c.CallID, err)
	}
}

// writeUDPPcap writes one UDP datagram per payload, alternating
// 10.0.0.1:5060 -> 10.0.0.2:5060 and back.
func writeUDPPcap(t *testing.T, path string, payloads []string) {
	t.Helper()
	var b bytes.Buffer
	hdr := make([]byte, 24)
	binary.LittleEndian.PutUint32(hdr[0:], 0xa1b2c3d4)
	binary.LittleEndian.PutUint16(hdr[4:], 2)
	binary.LittleEndian.PutUint16(hdr[6:], 4)
	binary.LittleEndian.PutUint32(hdr[16:], 65535)
	binary.LittleEndian.PutUint32(hdr[20:], 1)
	b.Write(hdr)
	for i, p := range payloads {
		src, dst := byte(1), byte(2)
		if i%2 == 1 {
			src, dst = 2, 1
		}
		udp := make([]byte, 8)
		binary.BigEndian.PutUint16(udp[0:], 5060)
		binary.BigEndian.PutUint16(udp[2:], 5060)
		binary.BigEndian.PutUint16(udp[4:], uint16(8+len(p)))
		ip := []byte{0x45, 0, 0, 0, 0, byte(i), 0, 0, 64, 17, 0, 0, 10, 0, 0, src, 10, 0, 0, dst}
		binary.BigEndian.PutUint16(ip[2:], uint16(20+8+len(p)))
		frame := append(append(append(make([]byte, 12), 0x08, 0x00), ip...), append(udp, p...)...)
		rec := make([]byte, 16)
		binary.LittleEndian.PutUint32(rec[0:], uint32(1775037305+i))
		binary.LittleEndian.PutUint32(rec[8:], uint32(len(frame)))
		binary.LittleEndian.PutUint32(rec[12:], uint32(len(frame)))
		b.Write(rec)
		b.Write(frame)
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}
