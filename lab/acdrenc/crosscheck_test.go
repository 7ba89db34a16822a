package acdrenc_test

import (
	"net/netip"
	"testing"
	"time"

	"github.com/sbcwatch/sbcwatch/audiocodes/acdr"
	"github.com/sbcwatch/sbcwatch/lab/acdrenc"
)

// TestProductDecoderReadsLabPackets checks sbcwatch's ACDR decoder against
// what the lab emits.
func TestProductDecoderReadsLabPackets(t *testing.T) {
	now := time.Now()
	in := acdrenc.Packet{Time: now, Seq: 7, BoardID: 0x665997, ResetCounter: 5, Session: 29,
		Src: netip.MustParseAddrPort("192.0.2.10:5061"), Dst: netip.MustParseAddrPort("52.114.75.24:39709"),
		Proto: acdrenc.ProtoTCP, Outgoing: true, Payload: []byte("SIP/2.0 202 Accepted\r\nContent-Length: 0\r\n\r\n")}
	b, err := in.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	p, err := acdr.Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if p.Minor() != 7 || p.Seq != 7 || p.Trace != acdrenc.TracePointSys || p.Media != acdrenc.MediaTypeSIP {
		t.Fatalf("header %+v", p)
	}
	if p.Timestamp != uint64(acdrenc.Timestamp(now)) {
		t.Fatalf("timestamp %d, want %d", p.Timestamp, acdrenc.Timestamp(now))
	}
	if got := p.SessionString(); got != "665997:5:29" {
		t.Fatalf("session %q", got)
	}
	ext, err := acdr.ParseSystemExt(p.Ext)
	if err != nil {
		t.Fatal(err)
	}
	if ext.Src != in.Src || ext.Dst != in.Dst || ext.IPProtocol != acdrenc.ProtoTCP || !ext.Outgoing {
		t.Fatalf("extension %+v", ext)
	}
	if string(p.Payload) != string(in.Payload) {
		t.Fatalf("payload %q", p.Payload)
	}
}
