package pipeline

import (
	"encoding/binary"
	"net/netip"

	"github.com/gopacket/gopacket/layers"

	"github.com/sbcwatch/sbcwatch/sip"
	"github.com/sbcwatch/sbcwatch/tap"
)

// Preparsed is the SIP message of one frame, parsed ahead of the engine
// on another goroutine (offline read-ahead). It only records what was
// parsed and from which bytes: the engine uses it for a datagram when the
// decoder hands over exactly those bytes (the same slice of the frame)
// with exactly the MessageMeta it would have built, and parses itself
// otherwise. So a frame the pre-parser reads differently from the
// decoder (a tunnel, an ACDR port, a fragment) costs only wasted work,
// never a different result.
type Preparsed struct {
	ok      bool
	meta    sip.MessageMeta
	payload []byte
	msg     *sip.Message
	err     error
}

// Preparser pre-parses the SIP datagrams of plain frames. It reads only
// immutable engine state and is safe to use from another goroutine
// while the engine runs.
type Preparser struct {
	parser *sip.Parser
}

// Preparser returns a pre-parser using the engine's SIP parser.
func (e *Engine) Preparser() Preparser { return Preparser{parser: e.parser} }

// Parse fills out for pkt: when pkt is a link/IPv4/IPv6/UDP frame
// that decodes statelessly (no fragment, no tunnel) and carries a SIP
// datagram, the parse of that datagram with the meta the engine builds;
// otherwise nothing (the engine parses as usual). out is overwritten.
// pkt.Data is handed over as tap.Source hands it (a fresh buffer that
// nobody modifies): the message keeps its datagram without a copy
// (sip.Parser.ParseDatagramOwned) unless the frame is much bigger.
func (p Preparser) Parse(pkt tap.Packet, out *Preparsed) {
	*out = Preparsed{}
	src, dst, payload, ok := plainUDP(pkt.LinkType, pkt.Data)
	if !ok || !sip.LooksLikeSIP(payload) {
		return
	}
	mm := metaOf(tap.Meta{
		Time: pkt.Info.Timestamp, Src: src, Dst: dst, Transport: tap.UDP,
		Origin: tap.OriginWire, Frame: pkt.Frame,
	})
	var msg *sip.Message
	var err error
	if cap(pkt.Data) <= len(payload)+maxFrameOverhead {
		msg, err = p.parser.ParseDatagramOwned(mm, payload)
	} else {
		// Trailing bytes past the IP packet: a kept message would pin
		// them, so it gets a copy of its own.
		msg, err = p.parser.ParseDatagram(mm, payload)
	}
	*out = Preparsed{ok: true, meta: mm, payload: payload, msg: msg, err: err}
}

// maxFrameOverhead bounds the bytes of a frame around its SIP datagram
// (link, VLAN, IP and UDP headers, padding) that a message may pin by
// keeping its datagram without a copy.
const maxFrameOverhead = 256

// take returns the pre-parsed message for a datagram when it was parsed
// from the very same bytes with the very same meta, and marks it used.
func (pp *Preparsed) take(mm sip.MessageMeta, payload []byte) (msg *sip.Message, ok bool, err error) {
	if pp == nil || !pp.ok || len(payload) == 0 || len(payload) != len(pp.payload) ||
		&payload[0] != &pp.payload[0] || mm != pp.meta {
		return nil, false, nil
	}
	pp.ok = false
	return pp.msg, true, pp.err
}

// tunnelOrExport is true for the UDP payloads the decoder reads as HEP,
// ACDR (default port) or a tunnel before they could be a datagram: they
// are left to the engine.
func tunnelOrExport(sp, dp uint16, payload []byte) bool {
	return sp == 925 || dp == 925 || dp == 4789 || dp == 8472 || dp == 6081 ||
		(len(payload) >= 4 && string(payload[:4]) == "HEP3")
}

// plainUDP peels Ethernet (with VLAN tags), Linux SLL/SLL2, BSD loopback
// or raw IP, then an unfragmented IPv4 or IPv6 header (no extension
// headers) and UDP, exactly as tap.Decoder does for such frames, and
// returns the endpoints and the UDP payload. Anything else is not ok.
func plainUDP(lt layers.LinkType, b []byte) (src, dst netip.AddrPort, payload []byte, ok bool) {
	var et uint16
	switch lt {
	case layers.LinkTypeEthernet:
		if len(b) < 14 {
			return
		}
		et, b = binary.BigEndian.Uint16(b[12:]), b[14:]
	case layers.LinkTypeLinuxSLL:
		if len(b) < 16 {
			return
		}
		et, b = binary.BigEndian.Uint16(b[14:]), b[16:]
	case layers.LinkTypeLinuxSLL2:
		if len(b) < 20 {
			return
		}
		et, b = binary.BigEndian.Uint16(b[0:]), b[20:]
	case layers.LinkTypeNull, layers.LinkTypeLoop:
		if len(b) < 4 {
			return
		}
		fam := binary.LittleEndian.Uint32(b)
		if fam > 0xffff {
			fam = binary.BigEndian.Uint32(b)
		}
		switch fam {
		case 2:
			et = 0x0800
		case 10, 23, 24, 26, 28, 30:
			et = 0x86dd
		default:
			return
		}
		b = b[4:]
	case layers.LinkTypeRaw, layers.LinkTypeIPv4, layers.LinkTypeIPv6, 12, 14:
		if len(b) < 1 {
			return
		}
		switch b[0] >> 4 {
		case 4:
			et = 0x0800
		case 6:
			et = 0x86dd
		default:
			return
		}
	default:
		return
	}
	for range 8 {
		if et != 0x8100 && et != 0x88a8 && et != 0x9100 && et != 0x9200 {
			break
		}
		if len(b) < 4 {
			return
		}
		et, b = binary.BigEndian.Uint16(b[2:]), b[4:]
	}
	var sa, da netip.Addr
	switch et {
	case 0x0800:
		if len(b) < 20 || b[0]>>4 != 4 {
			return
		}
		ihl := int(b[0]&0x0f) * 4
		total := int(binary.BigEndian.Uint16(b[2:]))
		if ihl < 20 || total < ihl || len(b) < ihl {
			return
		}
		if total < len(b) {
			b = b[:total]
		}
		flags := binary.BigEndian.Uint16(b[6:])
		if flags&0x2000 != 0 || flags&0x1fff != 0 || b[9] != 17 {
			return
		}
		sa = netip.AddrFrom4([4]byte(b[12:16]))
		da = netip.AddrFrom4([4]byte(b[16:20]))
		b = b[ihl:]
	case 0x86dd:
		if len(b) < 40 || b[0]>>4 != 6 || b[6] != 17 {
			return
		}
		plen := int(binary.BigEndian.Uint16(b[4:]))
		sa = netip.AddrFrom16([16]byte(b[8:24]))
		da = netip.AddrFrom16([16]byte(b[24:40]))
		b = b[40:]
		if plen != 0 && plen < len(b) {
			b = b[:plen]
		}
	default:
		return
	}
	if len(b) < 8 {
		return
	}
	sp := binary.BigEndian.Uint16(b)
	dp := binary.BigEndian.Uint16(b[2:])
	n := int(binary.BigEndian.Uint16(b[4:]))
	payload = b[8:]
	if n >= 8 && n-8 < len(payload) {
		payload = payload[:n-8]
	}
	if tunnelOrExport(sp, dp, payload) {
		return
	}
	return netip.AddrPortFrom(sa, sp), netip.AddrPortFrom(da, dp), payload, true
}
