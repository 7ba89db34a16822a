package acdr

import (
	"bytes"
	"errors"
	"net/netip"
	"reflect"
	"testing"
)

func samplePacket(minor int) *Packet {
	p := &Packet{
		Version: uint8(minor),
		Extra:   FlagHeaderAdded,
		Trace:   TraceSystem,
		Media:   MediaSIP,
		SrcID:   -1,
		DstID:   1234,
		Payload: []byte("INVITE sip:a@b SIP/2.0\r\n\r\n"),
	}
	switch {
	case minor <= 3:
		p.Timestamp = 0x0000_1234_5678_9abc
		p.PayloadOffset = 7
	default:
		p.Timestamp = 0xdeadbeef
		p.Seq = 4242
	}
	if minor >= 9 {
		p.SrcID = 70000
		p.DstID = -5
	}
	if minor >= 5 {
		p.SessionID = 0x01020304
		p.Ext = SystemExt{
			Src:        netip.MustParseAddrPort("52.114.132.46:5061"),
			Dst:        netip.MustParseAddrPort("192.0.2.10:5061"),
			IPProtocol: 6,
			Outgoing:   false,
		}.Bytes()
	}
	if minor >= 7 {
		p.BoardID = 0x736502
		p.ResetCounter = 31
	}
	if minor >= 8 {
		p.SessionID = 0x01_2345_6789 // 40 bits
	}
	return p
}

func TestRoundTripEveryVersion(t *testing.T) {
	for minor := 0; minor <= MaxMinor; minor++ {
		p := samplePacket(minor)
		b, err := Encode(p)
		if err != nil {
			t.Fatalf("v%d: encode: %v", minor, err)
		}
		if want := HeaderLen(minor) + len(p.Ext) + len(p.Payload); len(b) != want {
			t.Fatalf("v%d: encoded %d bytes, want %d", minor, len(b), want)
		}
		got, err := Decode(b)
		if err != nil {
			t.Fatalf("v%d: decode: %v", minor, err)
		}
		if len(got.Ext) == 0 {
			got.Ext = nil
		}
		if !reflect.DeepEqual(got, p) {
			t.Fatalf("v%d: round trip\n got %+v\nwant %+v", minor, got, p)
		}
		if !got.Has(FlagHeaderAdded) || got.Has(FlagIPv6) {
			t.Fatalf("v%d: flags wrong: %#x", minor, got.Extra)
		}
	}
}

func TestKnownBytesV5(t *testing.T) {
	// Hand-laid v5 header: a SIP packet at trace point System.
	ext := []byte{10, 0, 0, 1, 52, 112, 0, 9, 0x13, 0xc4, 0x13, 0xc5, 17, 1}
	b := []byte{
		0x05,                   // version 0.5
		0x00, 0x01, 0x00, 0x00, // timestamp 65536 µs
		0x00, 0x07, // seq 7
		0xff, 0xff, // src cid -1
		0x00, 0x02, // dst cid 2
		0x00,                   // extra
		6,                      // trace point System
		10,                     // SIP
		14,                     // ext len
		0x00, 0x00, 0x01, 0x00, // session 256
	}
	b = append(b, ext...)
	b = append(b, "OPTIONS sip:x SIP/2.0\r\n"...)
	p, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if p.Timestamp != 65536 || p.Seq != 7 || p.SrcID != -1 || p.DstID != 2 || p.SessionID != 256 || p.Media != MediaSIP || p.Trace != TraceSystem {
		t.Fatalf("fields: %+v", p)
	}
	se, err := ParseSystemExt(p.Ext)
	if err != nil {
		t.Fatal(err)
	}
	if se.Src.String() != "10.0.0.1:5060" || se.Dst.String() != "52.112.0.9:5061" || se.IPProtocol != 17 || !se.Outgoing {
		t.Fatalf("ext: %+v", se)
	}
	if string(p.Payload) != "OPTIONS sip:x SIP/2.0\r\n" {
		t.Fatalf("payload %q", p.Payload)
	}
	if !bytes.Equal(se.Bytes(), ext) {
		t.Fatalf("ext re-encode %x", se.Bytes())
	}
}

func TestSessionString(t *testing.T) {
	p := samplePacket(8)
	if got := p.SessionString(); got != "736502:31:4886718345" {
		t.Fatalf("session %q", got)
	}
}

func TestTLSExt(t *testing.T) {
	e := TLSExt{Src: netip.MustParseAddrPort("52.114.1.2:40000"), Dst: netip.MustParseAddrPort("192.0.2.1:5061"), Application: TLSAppSIP}
	got, err := ParseTLSExt(e.Bytes())
	if err != nil || got != e {
		t.Fatalf("tls ext %+v %v", got, err)
	}
	if _, err := ParseTLSExt(make([]byte, 12)); err == nil {
		t.Fatal("short tls ext accepted")
	}
}

func TestDecodeErrors(t *testing.T) {
	if _, err := Decode(nil); !errors.Is(err, ErrShort) {
		t.Fatalf("nil: %v", err)
	}
	if _, err := Decode([]byte{0x10, 0, 0}); err == nil {
		t.Fatal("major version 1 accepted")
	}
	if _, err := Decode([]byte{0x0a}); err == nil {
		t.Fatal("minor 10 accepted")
	}
	b, _ := Encode(samplePacket(6))
	if _, err := Decode(b[:18]); !errors.Is(err, ErrShort) {
		t.Fatalf("truncated header: %v", err)
	}
	if _, err := Decode(b[:19+5]); !errors.Is(err, ErrShort) {
		t.Fatalf("truncated extension: %v", err)
	}
	if _, err := Encode(&Packet{Version: 4, Ext: []byte{1}}); err == nil {
		t.Fatal("extension on v4 accepted")
	}
}

func FuzzDecode(f *testing.F) {
	for minor := 0; minor <= MaxMinor; minor++ {
		b, _ := Encode(samplePacket(minor))
		f.Add(b)
	}
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := Decode(b)
		if err != nil {
			return
		}
		if p.Minor() < 5 && len(p.Ext) != 0 {
			t.Fatal("extension on old version")
		}
		// Re-encoding a decoded packet gives the same bytes, except the
		// unused PayloadOffset byte which is kept as is.
		out, err := Encode(p)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		if !bytes.Equal(out, b) {
			t.Fatalf("re-encode differs:\n%x\n%x", out, b)
		}
		_, _ = ParseSystemExt(p.Ext)
		_, _ = ParseTLSExt(p.Ext)
	})
}
