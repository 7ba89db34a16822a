// Package acdrenc encodes SIP messages as AudioCodes debug recording (ACDR)
// packets, version 0.7, the way an AudioCodes SBC exports the decrypted SIP
// of its TLS legs to a debug-recording collector (UDP port 925).
//
// The byte layout (all multi-byte fields big-endian) is documented in
// lab/README.md and follows Wireshark's packet-acdr.c for minor version 7:
//
//	off len field
//	  0   1 version        0x07 (major 0, minor 7)
//	  1   4 timestamp      microseconds, low 32 bits of Unix time in µs
//	  5   2 sequence       per exporter, wraps at 65536
//	  7   2 source id      0xFFFF (-1, no channel)
//	  9   2 dest id        0xFFFF (-1)
//	 11   1 extra data     0x00 (no MII, IPv4, not fragmented, raw payload)
//	 12   1 trace point    6 (System)
//	 13   1 media type     10 (SIP)
//	 14   1 header ext len 14
//	 15   8 session id     board id (3) · reset counter (1) · session (4)
//	 23   4 src IPv4
//	 27   4 dst IPv4
//	 31   2 src port
//	 33   2 dst port
//	 35   1 IP protocol    6 (TCP, also for TLS) or 17 (UDP)
//	 36   1 direction      0 incoming, 1 outgoing (seen from the SBC)
//	 37   n payload        the SIP message text exactly as sent/received
package acdrenc

import (
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// Constants of the emitted layout.
const (
	Version        = 0x07
	TracePointSys  = 6
	MediaTypeSIP   = 10
	HeaderLen      = 23
	ExtLen         = 14
	PayloadOffset  = HeaderLen + ExtLen
	ProtoTCP       = 6
	ProtoUDP       = 17
	DirIncoming    = 0
	DirOutgoing    = 1
	noChannel      = 0xFFFF
	maxBoardID     = 1<<24 - 1
	MaxPayloadSize = 65507 - PayloadOffset
)

// Packet is one exported SIP message.
type Packet struct {
	// Time is when the SBC sent or received the message.
	Time time.Time
	// Seq is the exporter's sequence number.
	Seq uint16
	// BoardID (24 bits), ResetCounter and Session form the AudioCodes
	// session id "%x:%d:%d", shared by both legs of one SBC call.
	BoardID      uint32
	ResetCounter uint8
	Session      uint32
	// Src and Dst are the original IPv4 endpoints of the message.
	Src, Dst netip.AddrPort
	// Proto is ProtoTCP (TCP or TLS) or ProtoUDP.
	Proto uint8
	// Outgoing is true for messages the SBC sent.
	Outgoing bool
	// Payload is the SIP message text.
	Payload []byte
}

// Timestamp returns the 32-bit microsecond timestamp written for t.
func Timestamp(t time.Time) uint32 { return uint32(uint64(t.UnixMicro())) }

// Marshal encodes the packet.
func (p Packet) Marshal() ([]byte, error) {
	if !p.Src.Addr().Is4() || !p.Dst.Addr().Is4() {
		return nil, fmt.Errorf("acdrenc: only IPv4 endpoints are encoded: %v -> %v", p.Src, p.Dst)
	}
	if p.BoardID > maxBoardID {
		return nil, fmt.Errorf("acdrenc: board id %#x exceeds 24 bits", p.BoardID)
	}
	if len(p.Payload) > MaxPayloadSize {
		return nil, errors.New("acdrenc: payload too large for one datagram")
	}
	if p.Proto != ProtoTCP && p.Proto != ProtoUDP {
		return nil, fmt.Errorf("acdrenc: IP protocol %d is neither TCP nor UDP", p.Proto)
	}
	b := make([]byte, PayloadOffset, PayloadOffset+len(p.Payload))
	b[0] = Version
	putU32(b[1:], Timestamp(p.Time))
	putU16(b[5:], p.Seq)
	putU16(b[7:], noChannel)
	putU16(b[9:], noChannel)
	b[11] = 0x00
	b[12] = TracePointSys
	b[13] = MediaTypeSIP
	b[14] = ExtLen
	b[15] = byte(p.BoardID >> 16)
	b[16] = byte(p.BoardID >> 8)
	b[17] = byte(p.BoardID)
	b[18] = p.ResetCounter
	putU32(b[19:], p.Session)
	s4, d4 := p.Src.Addr().As4(), p.Dst.Addr().As4()
	copy(b[23:27], s4[:])
	copy(b[27:31], d4[:])
	putU16(b[31:], p.Src.Port())
	putU16(b[33:], p.Dst.Port())
	b[35] = p.Proto
	if p.Outgoing {
		b[36] = DirOutgoing
	} else {
		b[36] = DirIncoming
	}
	return append(b, p.Payload...), nil
}

func putU16(b []byte, v uint16) { b[0], b[1] = byte(v>>8), byte(v) }

func putU32(b []byte, v uint32) {
	b[0], b[1], b[2], b[3] = byte(v>>24), byte(v>>16), byte(v>>8), byte(v)
}
