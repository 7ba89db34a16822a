//go:build linux

package live

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gopacket/gopacket/afpacket"
	"github.com/gopacket/gopacket/layers"
)

// CaptureSource reads frames from one network interface with AF_PACKET
// (TPACKET_V3 ring, no cgo) behind a kernel BPF filter. The kernel's own
// counters (packets passed by the filter, drops when the ring was full,
// queue freezes) are read every few seconds and exported.
type CaptureSource struct {
	iface  string
	filter Filter
	blocks int
	tp     *afpacket.TPacket
	mu     sync.Mutex // tp's filter against its close
	closed bool

	frames                                    atomic.Uint64
	kernelPackets, kernelDrops, kernelFreezes atomic.Uint64
	readErrors                                atomic.Uint64
}

var _ Source = (*CaptureSource)(nil)

// ringBlock is the size of one TPACKET_V3 block; blocks of it make the
// ring (CaptureOptions.RingMB).
const ringBlock = 1 << 20

// NewCapture returns a capture of iface behind filter with a ring of
// ringMB MiB (default 64).
func NewCapture(iface string, filter Filter, ringMB int) *CaptureSource {
	if ringMB <= 0 {
		ringMB = 64
	}
	return &CaptureSource{iface: iface, filter: filter, blocks: ringMB}
}

// Name is "capture-<interface>".
func (s *CaptureSource) Name() string { return "capture-" + s.iface }

// Start opens the ring on the interface and attaches the filter. A
// missing interface or a missing CAP_NET_RAW is a clear error.
func (s *CaptureSource) Start(ctx context.Context) error {
	if _, err := net.InterfaceByName(s.iface); err != nil {
		return fmt.Errorf("live: %s: no interface %q: %w", s.Name(), s.iface, err)
	}
	raw, err := s.filter.Assemble()
	if err != nil {
		return fmt.Errorf("live: %s: %w", s.Name(), err)
	}
	tp, err := afpacket.NewTPacket(
		afpacket.OptInterface(s.iface),
		afpacket.TPacketVersion3,
		afpacket.OptBlockSize(ringBlock),
		afpacket.OptFrameSize(afpacket.DefaultFrameSize),
		afpacket.OptNumBlocks(s.blocks),
		afpacket.OptBlockTimeout(20*time.Millisecond),
		afpacket.OptPollTimeout(200*time.Millisecond),
	)
	if err != nil {
		if errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EACCES) {
			return fmt.Errorf("live: %s: capturing needs CAP_NET_RAW (run as root or `setcap cap_net_raw+ep` the binary): %w", s.Name(), err)
		}
		return fmt.Errorf("live: %s: %w", s.Name(), err)
	}
	if err := tp.SetBPF(raw); err != nil {
		tp.Close()
		return fmt.Errorf("live: %s: attaching the BPF filter: %w", s.Name(), err)
	}
	s.tp = tp
	return nil
}

// SetFilter replaces the kernel filter of a started capture (serve's
// reload: SBC addresses or ports changed); the ring and the frames in it
// stay. A filter that does not assemble or attach leaves the old one.
func (s *CaptureSource) SetFilter(f Filter) error {
	raw, err := f.Assemble()
	if err != nil {
		return fmt.Errorf("live: %s: %w", s.Name(), err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tp == nil {
		return fmt.Errorf("live: %s: not started", s.Name())
	}
	if s.closed {
		return fmt.Errorf("live: %s: stopped", s.Name())
	}
	if err := s.tp.SetBPF(raw); err != nil {
		return fmt.Errorf("live: %s: attaching the BPF filter: %w", s.Name(), err)
	}
	s.filter = f
	return nil
}

// Run reads frames until ctx ends.
func (s *CaptureSource) Run(ctx context.Context, q *Queue) error {
	if s.tp == nil {
		return fmt.Errorf("live: %s: not started", s.Name())
	}
	defer func() {
		s.mu.Lock()
		s.closed = true
		s.tp.Close()
		s.mu.Unlock()
	}()
	lastStats := time.Now()
	for ctx.Err() == nil {
		if time.Since(lastStats) > 2*time.Second {
			s.readKernel()
			lastStats = time.Now()
		}
		data, ci, err := s.tp.ZeroCopyReadPacketData()
		if err != nil {
			if errors.Is(err, afpacket.ErrTimeout) {
				continue
			}
			s.readErrors.Add(1)
			if s.readErrors.Load() > 100 && s.frames.Load() == 0 {
				return fmt.Errorf("live: %s: read: %w", s.Name(), err)
			}
			continue
		}
		s.frames.Add(1)
		t := ci.Timestamp
		if t.IsZero() {
			t = time.Now()
		}
		q.Offer(Item{Kind: KindFrame, Time: t, Data: append([]byte(nil), data...), LinkType: layers.LinkTypeEthernet})
	}
	s.readKernel()
	return nil
}

func (s *CaptureSource) readKernel() {
	_, v3, err := s.tp.SocketStats()
	if err != nil {
		return
	}
	s.kernelPackets.Store(uint64(v3.Packets()))
	s.kernelDrops.Store(uint64(v3.Drops()))
	s.kernelFreezes.Store(uint64(v3.QueueFreezes()))
}

// Counters: frames read, and the kernel's packets, drops and queue
// freezes (PACKET_STATISTICS).
func (s *CaptureSource) Counters() map[string]uint64 {
	return map[string]uint64{
		"frames": s.frames.Load(), "read_errors": s.readErrors.Load(),
		"kernel_packets": s.kernelPackets.Load(), "kernel_drops": s.kernelDrops.Load(),
		"kernel_queue_freezes": s.kernelFreezes.Load(),
	}
}
