package acdrenc

import (
	"bytes"
	"encoding/hex"
	"net/netip"
	"testing"
	"time"
)

func TestMarshalLayout(t *testing.T) {
	p := Packet{
		Time:         time.UnixMicro(0x1_0203_0405),
		Seq:          0x0a0b,
		BoardID:      0x665997,
		ResetCounter: 5,
		Session:      29,
		Src:          netip.MustParseAddrPort("52.114.75.24:8576"),
		Dst:          netip.MustParseAddrPort("192.0.2.10:5061"),
		Proto:        ProtoTCP,
		Outgoing:     false,
		Payload:      []byte("OPTIONS sip:x SIP/2.0\r\n\r\n"),
	}
	got, err := p.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	want, _ := hex.DecodeString("07" + "02030405" + "0a0b" + "ffff" + "ffff" + "00" + "06" + "0a" + "0e" +
		"665997" + "05" + "0000001d" +
		"34724b18" + "c000020a" + "2180" + "13c5" + "06" + "00")
	if !bytes.Equal(got[:PayloadOffset], want) {
		t.Fatalf("header\n got %x\nwant %x", got[:PayloadOffset], want)
	}
	if string(got[PayloadOffset:]) != string(p.Payload) {
		t.Fatalf("payload %q", got[PayloadOffset:])
	}
	p.Outgoing = true
	got, _ = p.Marshal()
	if got[36] != DirOutgoing {
		t.Fatalf("direction byte %d", got[36])
	}
}

func TestMarshalRejects(t *testing.T) {
	p := Packet{Src: netip.MustParseAddrPort("[::1]:5061"), Dst: netip.MustParseAddrPort("192.0.2.10:5061"), Proto: ProtoTCP}
	if _, err := p.Marshal(); err == nil {
		t.Fatal("IPv6 accepted")
	}
	p.Src = netip.MustParseAddrPort("192.0.2.1:1")
	p.BoardID = 1 << 24
	if _, err := p.Marshal(); err == nil {
		t.Fatal("25-bit board id accepted")
	}
}
