package live

import (
	"fmt"
	"net/netip"
	"slices"

	"golang.org/x/net/bpf"
)

// Filter says which frames a capture keeps; the kernel applies it, so
// what it drops costs no copy to user space.
type Filter struct {
	// Hosts are the SBC's addresses: a frame is kept only when its source
	// or destination is one of them. Empty keeps every host.
	Hosts []netip.Addr
	// Ports are the TCP and UDP ports kept (SIP, TLS, ACDR, HEP): a frame
	// whose source or destination port is one of them.
	Ports []uint16
	// KeepUDP keeps every UDP datagram of the hosts (RTP included);
	// otherwise RTP and other UDP go only when on one of Ports.
	KeepUDP bool
}

// DefaultPorts are SIP (5060), SIP over TLS (5061), AudioCodes debug
// recording (925) and HEP (9060).
var DefaultPorts = []uint16{5060, 5061, 925, 9060}

// asm is a tiny assembler with symbolic jump targets.
type asm struct {
	ins    []bpf.Instruction
	labels map[string]int
	fix    []fixup
}

type fixup struct {
	at          int
	true, false string // labels; "" falls through
	always      string
}

func (a *asm) emit(i bpf.Instruction) { a.ins = append(a.ins, i) }
func (a *asm) label(l string)         { a.labels[l] = len(a.ins) }

// jeq compares A with v: to t when equal, else to f ("" = next).
func (a *asm) jeq(v uint32, t, f string) {
	a.fix = append(a.fix, fixup{at: len(a.ins), true: t, false: f})
	a.emit(bpf.JumpIf{Cond: bpf.JumpEqual, Val: v})
}

func (a *asm) jset(v uint32, t, f string) {
	a.fix = append(a.fix, fixup{at: len(a.ins), true: t, false: f})
	a.emit(bpf.JumpIf{Cond: bpf.JumpBitsSet, Val: v})
}

func (a *asm) ja(l string) {
	a.fix = append(a.fix, fixup{at: len(a.ins), always: l})
	a.emit(bpf.Jump{})
}

func (a *asm) resolve() ([]bpf.Instruction, error) {
	rel := func(at int, l string) (int, error) {
		if l == "" {
			return 0, nil
		}
		to, ok := a.labels[l]
		if !ok {
			return 0, fmt.Errorf("bpf: no label %q", l)
		}
		d := to - at - 1
		if d < 0 {
			return 0, fmt.Errorf("bpf: backward jump to %q", l)
		}
		return d, nil
	}
	for _, f := range a.fix {
		if f.always != "" {
			d, err := rel(f.at, f.always)
			if err != nil {
				return nil, err
			}
			a.ins[f.at] = bpf.Jump{Skip: uint32(d)}
			continue
		}
		t, err := rel(f.at, f.true)
		if err != nil {
			return nil, err
		}
		e, err := rel(f.at, f.false)
		if err != nil {
			return nil, err
		}
		if t > 255 || e > 255 {
			return nil, fmt.Errorf("bpf: filter too long for a conditional jump (%d addresses and ports)", len(a.labels))
		}
		j := a.ins[f.at].(bpf.JumpIf)
		j.SkipTrue, j.SkipFalse = uint8(t), uint8(e)
		a.ins[f.at] = j
	}
	return a.ins, nil
}

// Program assembles the filter for Ethernet frames (with at most one
// 802.1Q tag), IPv4 and IPv6. Non-first IPv4 fragments and IPv6
// fragments of the hosts are kept (their ports are not visible).
func (f Filter) Program() ([]bpf.Instruction, error) {
	ports := slices.Clone(f.Ports)
	if len(ports) == 0 {
		ports = slices.Clone(DefaultPorts)
	}
	slices.Sort(ports)
	ports = slices.Compact(ports)
	var v4, v6 []netip.Addr
	for _, h := range f.Hosts {
		h = h.Unmap()
		if h.Is4() {
			v4 = append(v4, h)
		} else if h.Is6() {
			v6 = append(v6, h)
		}
	}
	a := &asm{labels: map[string]int{}}
	a.emit(bpf.LoadAbsolute{Off: 12, Size: 2})
	a.jeq(0x8100, "vlan", "")
	f.ipSection(a, "e", 14, 12, v4, v6, ports)
	a.label("vlan")
	a.emit(bpf.LoadAbsolute{Off: 16, Size: 2})
	f.ipSection(a, "v", 18, 16, v4, v6, ports)
	a.label("accept")
	a.emit(bpf.RetConstant{Val: 262144})
	a.label("drop")
	a.emit(bpf.RetConstant{Val: 0})
	return a.resolve()
}

// ipSection handles the frame once A holds the ethertype at etOff and
// the IP header starts at l2.
func (f Filter) ipSection(a *asm, p string, l2, etOff uint32, v4, v6 []netip.Addr, ports []uint16) {
	_ = etOff
	a.jeq(0x0800, p+"ip4", "")
	a.jeq(0x86dd, p+"ip6", "drop")

	// IPv4.
	a.label(p + "ip4")
	if len(v4) == 0 && len(f.Hosts) > 0 {
		a.ja("drop")
	} else {
		if len(v4) > 0 {
			for _, off := range []uint32{12, 16} {
				a.emit(bpf.LoadAbsolute{Off: l2 + off, Size: 4})
				for _, h := range v4 {
					b := h.As4()
					a.jeq(uint32(b[0])<<24|uint32(b[1])<<16|uint32(b[2])<<8|uint32(b[3]), p+"ip4host", "")
				}
			}
			a.ja("drop")
		}
		a.label(p + "ip4host")
		a.emit(bpf.LoadAbsolute{Off: l2 + 6, Size: 2})
		a.jset(0x1fff, "accept", "") // a later fragment: no ports to see
		a.emit(bpf.LoadAbsolute{Off: l2 + 9, Size: 1})
		if f.KeepUDP {
			a.jeq(17, "accept", "")
			a.jeq(6, "", "drop")
		} else {
			a.jeq(6, p+"ip4ports", "")
			a.jeq(17, "", "drop")
		}
		a.label(p + "ip4ports")
		a.emit(bpf.LoadMemShift{Off: l2})
		for _, off := range []uint32{0, 2} {
			a.emit(bpf.LoadIndirect{Off: l2 + off, Size: 2})
			for _, port := range ports {
				a.jeq(uint32(port), "accept", "")
			}
		}
		a.ja("drop")
	}

	// IPv6 (extension headers other than a fragment header are not
	// followed: such packets are dropped).
	a.label(p + "ip6")
	if len(v6) == 0 && len(f.Hosts) > 0 {
		a.ja("drop")
		return
	}
	if len(v6) > 0 {
		for i, off := range []uint32{8, 24} {
			for j, h := range v6 {
				b := h.As16()
				next := fmt.Sprintf("%sip6n%d_%d", p, i, j)
				for w := range 4 {
					a.emit(bpf.LoadAbsolute{Off: l2 + off + uint32(4*w), Size: 4})
					val := uint32(b[4*w])<<24 | uint32(b[4*w+1])<<16 | uint32(b[4*w+2])<<8 | uint32(b[4*w+3])
					if w < 3 {
						a.jeq(val, "", next)
					} else {
						a.jeq(val, p+"ip6host", next)
					}
				}
				a.label(next)
			}
		}
		a.ja("drop")
	}
	a.label(p + "ip6host")
	a.emit(bpf.LoadAbsolute{Off: l2 + 6, Size: 1})
	a.jeq(44, "accept", "") // fragment header
	if f.KeepUDP {
		a.jeq(17, "accept", "")
		a.jeq(6, "", "drop")
	} else {
		a.jeq(6, p+"ip6ports", "")
		a.jeq(17, "", "drop")
	}
	a.label(p + "ip6ports")
	for _, off := range []uint32{40, 42} {
		a.emit(bpf.LoadAbsolute{Off: l2 + off, Size: 2})
		for _, port := range ports {
			a.jeq(uint32(port), "accept", "")
		}
	}
	a.ja("drop")
}

// Assemble returns the filter as raw instructions for SO_ATTACH_FILTER.
func (f Filter) Assemble() ([]bpf.RawInstruction, error) {
	prog, err := f.Program()
	if err != nil {
		return nil, err
	}
	raw, err := bpf.Assemble(prog)
	if err != nil {
		return nil, fmt.Errorf("bpf: %w", err)
	}
	return raw, nil
}
