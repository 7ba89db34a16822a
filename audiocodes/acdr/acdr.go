// Package acdr decodes and encodes AudioCodes debug recording (ACDR)
// packets, the copies an AudioCodes SBC sends of what it receives and
// sends (SIP, decrypted TLS application data, media) to a recording host,
// by default on UDP port 925.
//
// The layout follows Wireshark's packet-acdr.c (written by AudioCodes):
// header minor versions 0 to 9, major version 0. Multi-byte fields are
// big-endian.
//
//	minor <=3: Version(1) Timestamp(6) SrcID(2) DstID(2) ExtraData(1) TracePoint(1) MediaType(1) PayloadOffset(1)     = 15
//	minor 4:   Version(1) Timestamp(4) Seq(2) SrcID(2) DstID(2) ExtraData(1) TracePoint(1) MediaType(1) PayloadOffset(1) = 15
//	minor 5-6: as 4, the last byte is HeaderExtLen, then SessionID(4)                                                      = 19
//	minor 7:   as 5, then FullSessionID(8) = Board(3) Reset(1) Session(4)                                                   = 23
//	minor 8:   as 5, then FullSessionID(9) = Board(3) Reset(1) Session(5)                                                   = 24
//	minor 9:   SrcID and DstID are 4 bytes, FullSessionID(9)                                                               = 28
//
// The header extension (HeaderExtLen bytes, minor >= 5 only) follows the
// fixed header; the payload follows the extension. As in Wireshark, the
// PayloadOffset byte of minor versions below 5 does not move the payload.
//
// The timestamp is a microsecond counter of the device (32 bits from minor
// version 4 on, so it wraps every 71.6 minutes; 48 bits before), not a
// wall clock: callers should date packets by their capture time.
package acdr

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
)

// Media types (packet-acdr.h). Only the ones sbcwatch acts on are named.
const (
	MediaRTP        = 1
	MediaRTCP       = 2
	MediaT38        = 3
	MediaEvent      = 4
	MediaInfo       = 5
	MediaVoiceAI    = 6
	MediaSIP        = 10
	MediaMEGACO     = 11
	MediaMGCP       = 12
	MediaTPNCP      = 13
	MediaControl    = 14
	MediaTLS        = 33
	MediaTLSPeek    = 34
	MediaSignaling  = 37
	MediaFragmented = 38
	MediaDTLS       = 61
)

// Trace points.
const (
	TraceNet2Dsp     = 0
	TraceDsp2Net     = 1
	TraceDsp2Host    = 2
	TraceHost2Dsp    = 3
	TraceNet2Host    = 4
	TraceHost2Net    = 5
	TraceSystem      = 6
	TraceDspIncoming = 33
	TraceDspOutgoing = 34
)

// ExtraData flag bits.
const (
	FlagMII         = 0x01
	FlagIPv6        = 0x02
	FlagFragmented  = 0x04
	FlagHeaderAdded = 0x08
	FlagEncrypted   = 0x10
	FlagMtce        = 0x20
	FlagLI          = 0x40
	// LegacyNoFlags is the ExtraData value minor versions <= 3 always set;
	// it means no flag.
	LegacyNoFlags = 0xAA
)

// TLS application codes of the TLS header extension.
const (
	TLSAppUnknown = 0
	TLSAppHTTP    = 1
	TLSAppSIP     = 3
	TLSAppTCP     = 6
)

// MaxMinor is the highest minor version understood.
const MaxMinor = 9

// ErrShort is returned for a packet shorter than its header.
var ErrShort = errors.New("acdr: packet shorter than its header")

// Packet is one decoded ACDR packet. Fields that a version does not carry
// are zero.
type Packet struct {
	Version   uint8  // whole version byte: major<<4 | minor
	Timestamp uint64 // device microseconds (48 bits for minor <= 3, else 32)
	Seq       uint16 // minor >= 4
	SrcID     int32  // 2 bytes (0xFFFF = -1) before minor 9, 4 bytes from 9
	DstID     int32
	Extra     uint8 // ExtraData flags
	Trace     uint8 // trace point
	Media     uint8 // media type
	// PayloadOffset is the last fixed byte for minor < 5 (kept, unused).
	PayloadOffset uint8
	// SessionID is the session number: 4 bytes (minor 5-7), 5 bytes
	// (minor >= 8).
	SessionID uint64
	// BoardID and ResetCounter complete the full session ID (minor >= 7).
	BoardID      uint32 // 24 bits
	ResetCounter uint8
	// Ext is the raw header extension (minor >= 5).
	Ext []byte
	// Payload is what follows the extension (for HeaderAdded packets, an
	// IP packet).
	Payload []byte
}

// Minor returns the minor version.
func (p *Packet) Minor() int { return int(p.Version & 0x0f) }

// Has reports whether ExtraData flag f is set (the legacy 0xAA value of
// old versions means no flag).
func (p *Packet) Has(f uint8) bool {
	if p.Extra == LegacyNoFlags && p.Minor() <= 3 {
		return false
	}
	if f == FlagMII && p.Minor() < 3 {
		return false
	}
	return p.Extra&f == f
}

// HeaderLen returns the fixed header length of a minor version.
func HeaderLen(minor int) int {
	switch {
	case minor < 5:
		return 15
	case minor < 7:
		return 19
	case minor == 7:
		return 23
	case minor == 8:
		return 24
	}
	return 28
}

// Decode parses one ACDR packet. The returned slices alias b.
func Decode(b []byte) (*Packet, error) {
	if len(b) < 1 {
		return nil, ErrShort
	}
	p := &Packet{Version: b[0]}
	minor := p.Minor()
	if p.Version>>4 != 0 || minor > MaxMinor {
		return nil, fmt.Errorf("acdr: version %d.%d not supported", p.Version>>4, minor)
	}
	hl := HeaderLen(minor)
	if len(b) < hl {
		return nil, ErrShort
	}
	off := 1
	if minor <= 3 {
		p.Timestamp = uint64(binary.BigEndian.Uint32(b[off:]))<<16 | uint64(binary.BigEndian.Uint16(b[off+4:]))
		off += 6
	} else {
		p.Timestamp = uint64(binary.BigEndian.Uint32(b[off:]))
		off += 4
		p.Seq = binary.BigEndian.Uint16(b[off:])
		off += 2
	}
	if minor >= 9 {
		p.SrcID = int32(binary.BigEndian.Uint32(b[off:]))
		p.DstID = int32(binary.BigEndian.Uint32(b[off+4:]))
		off += 8
	} else {
		p.SrcID = cid16(binary.BigEndian.Uint16(b[off:]))
		p.DstID = cid16(binary.BigEndian.Uint16(b[off+2:]))
		off += 4
	}
	p.Extra, p.Trace, p.Media = b[off], b[off+1], b[off+2]
	off += 3
	extLen := 0
	if minor < 5 {
		p.PayloadOffset = b[off]
	} else {
		extLen = int(b[off])
	}
	off++
	switch {
	case minor >= 8:
		p.BoardID = uint32(b[off])<<16 | uint32(b[off+1])<<8 | uint32(b[off+2])
		p.ResetCounter = b[off+3]
		p.SessionID = uint64(b[off+4])<<32 | uint64(binary.BigEndian.Uint32(b[off+5:]))
	case minor == 7:
		p.BoardID = uint32(b[off])<<16 | uint32(b[off+1])<<8 | uint32(b[off+2])
		p.ResetCounter = b[off+3]
		p.SessionID = uint64(binary.BigEndian.Uint32(b[off+4:]))
	case minor >= 5:
		p.SessionID = uint64(binary.BigEndian.Uint32(b[off:]))
	}
	if len(b) < hl+extLen {
		return nil, fmt.Errorf("acdr: header extension of %d bytes beyond the packet (%d bytes): %w", extLen, len(b), ErrShort)
	}
	p.Ext = b[hl : hl+extLen : hl+extLen]
	p.Payload = b[hl+extLen:]
	return p, nil
}

func cid16(v uint16) int32 {
	if v == 0xFFFF {
		return -1
	}
	return int32(v)
}

// Encode builds the wire form of p; Ext is written with its length in the
// HeaderExtLen byte (minor >= 5; for older versions Ext must be empty).
func Encode(p *Packet) ([]byte, error) {
	minor := p.Minor()
	if p.Version>>4 != 0 || minor > MaxMinor {
		return nil, fmt.Errorf("acdr: version %d.%d not supported", p.Version>>4, minor)
	}
	if minor < 5 && len(p.Ext) > 0 {
		return nil, fmt.Errorf("acdr: version %d has no header extension", minor)
	}
	if len(p.Ext) > 255 {
		return nil, fmt.Errorf("acdr: header extension of %d bytes exceeds 255", len(p.Ext))
	}
	hl := HeaderLen(minor)
	b := make([]byte, hl, hl+len(p.Ext)+len(p.Payload))
	b[0] = p.Version
	off := 1
	if minor <= 3 {
		binary.BigEndian.PutUint32(b[off:], uint32(p.Timestamp>>16))
		binary.BigEndian.PutUint16(b[off+4:], uint16(p.Timestamp))
		off += 6
	} else {
		binary.BigEndian.PutUint32(b[off:], uint32(p.Timestamp))
		binary.BigEndian.PutUint16(b[off+4:], p.Seq)
		off += 6
	}
	if minor >= 9 {
		binary.BigEndian.PutUint32(b[off:], uint32(p.SrcID))
		binary.BigEndian.PutUint32(b[off+4:], uint32(p.DstID))
		off += 8
	} else {
		binary.BigEndian.PutUint16(b[off:], uint16(p.SrcID))
		binary.BigEndian.PutUint16(b[off+2:], uint16(p.DstID))
		off += 4
	}
	b[off], b[off+1], b[off+2] = p.Extra, p.Trace, p.Media
	off += 3
	if minor < 5 {
		b[off] = p.PayloadOffset
	} else {
		b[off] = byte(len(p.Ext))
	}
	off++
	switch {
	case minor >= 8:
		b[off], b[off+1], b[off+2] = byte(p.BoardID>>16), byte(p.BoardID>>8), byte(p.BoardID)
		b[off+3] = p.ResetCounter
		b[off+4] = byte(p.SessionID >> 32)
		binary.BigEndian.PutUint32(b[off+5:], uint32(p.SessionID))
	case minor == 7:
		b[off], b[off+1], b[off+2] = byte(p.BoardID>>16), byte(p.BoardID>>8), byte(p.BoardID)
		b[off+3] = p.ResetCounter
		binary.BigEndian.PutUint32(b[off+4:], uint32(p.SessionID))
	case minor >= 5:
		binary.BigEndian.PutUint32(b[off:], uint32(p.SessionID))
	}
	b = append(b, p.Ext...)
	b = append(b, p.Payload...)
	return b, nil
}

// SessionString formats the session ID as AudioCodes syslog does in
// [SID=board:reset:session] (board in hex).
func (p *Packet) SessionString() string {
	if p.Minor() < 7 {
		return fmt.Sprintf("%d", p.SessionID)
	}
	return fmt.Sprintf("%x:%d:%d", p.BoardID, p.ResetCounter, p.SessionID)
}

// SystemExt is the header extension of a SIP (or MEGACO, MGCP, TPNCP,
// Control, VoiceAI) packet at trace point System: the original endpoints.
type SystemExt struct {
	Src, Dst   netip.AddrPort
	IPProtocol uint8 // IANA: 6 TCP, 17 UDP
	// Outgoing is true when the SBC sent the message (Direction 1),
	// false when it received it (0).
	Outgoing bool
}

// SystemExtLen is the length of an encoded SystemExt.
const SystemExtLen = 14

// ParseSystemExt reads a System trace point extension.
func ParseSystemExt(ext []byte) (SystemExt, error) {
	if len(ext) < SystemExtLen {
		return SystemExt{}, fmt.Errorf("acdr: system extension of %d bytes, want %d", len(ext), SystemExtLen)
	}
	src := netip.AddrFrom4([4]byte(ext[0:4]))
	dst := netip.AddrFrom4([4]byte(ext[4:8]))
	return SystemExt{
		Src:        netip.AddrPortFrom(src, binary.BigEndian.Uint16(ext[8:])),
		Dst:        netip.AddrPortFrom(dst, binary.BigEndian.Uint16(ext[10:])),
		IPProtocol: ext[12],
		Outgoing:   ext[13] == 1,
	}, nil
}

// Bytes encodes the extension (IPv4 addresses only, as on the wire; other
// addresses are written as zero).
func (e SystemExt) Bytes() []byte {
	b := make([]byte, SystemExtLen)
	if a := e.Src.Addr().Unmap(); a.Is4() {
		copy(b[0:4], a.AsSlice())
	}
	if a := e.Dst.Addr().Unmap(); a.Is4() {
		copy(b[4:8], a.AsSlice())
	}
	binary.BigEndian.PutUint16(b[8:], e.Src.Port())
	binary.BigEndian.PutUint16(b[10:], e.Dst.Port())
	b[12] = e.IPProtocol
	if e.Outgoing {
		b[13] = 1
	}
	return b
}

// TLSExt is the header extension of a TLS or TLSPeek packet.
type TLSExt struct {
	Src, Dst    netip.AddrPort
	Application uint8 // TLSApp*
}

// TLSExtLen is the length of an encoded TLSExt.
const TLSExtLen = 13

// ParseTLSExt reads a TLS extension: SrcPort DstPort SrcIP DstIP App.
func ParseTLSExt(ext []byte) (TLSExt, error) {
	if len(ext) < TLSExtLen {
		return TLSExt{}, fmt.Errorf("acdr: tls extension of %d bytes, want %d", len(ext), TLSExtLen)
	}
	src := netip.AddrFrom4([4]byte(ext[4:8]))
	dst := netip.AddrFrom4([4]byte(ext[8:12]))
	return TLSExt{
		Src:         netip.AddrPortFrom(src, binary.BigEndian.Uint16(ext[0:])),
		Dst:         netip.AddrPortFrom(dst, binary.BigEndian.Uint16(ext[2:])),
		Application: ext[12],
	}, nil
}

// Bytes encodes the extension.
func (e TLSExt) Bytes() []byte {
	b := make([]byte, TLSExtLen)
	binary.BigEndian.PutUint16(b[0:], e.Src.Port())
	binary.BigEndian.PutUint16(b[2:], e.Dst.Port())
	if a := e.Src.Addr().Unmap(); a.Is4() {
		copy(b[4:8], a.AsSlice())
	}
	if a := e.Dst.Addr().Unmap(); a.Is4() {
		copy(b[8:12], a.AsSlice())
	}
	b[12] = e.Application
	return b
}
