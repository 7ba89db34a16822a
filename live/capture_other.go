//go:build !linux

package live

import (
	"context"
	"errors"
)

// CaptureSource is only available on Linux (AF_PACKET).
type CaptureSource struct{ iface string }

var _ Source = (*CaptureSource)(nil)

// NewCapture returns a source whose Start fails: capture needs Linux.
func NewCapture(iface string, _ Filter, _ int) *CaptureSource { return &CaptureSource{iface: iface} }

func (s *CaptureSource) Name() string { return "capture-" + s.iface }

func (s *CaptureSource) Start(context.Context) error {
	return errors.New("live: " + s.Name() + ": packet capture needs Linux (AF_PACKET)")
}

func (s *CaptureSource) Run(context.Context, *Queue) error { return nil }

func (s *CaptureSource) Counters() map[string]uint64 { return nil }

// SetFilter fails: capture needs Linux.
func (s *CaptureSource) SetFilter(Filter) error {
	return errors.New("live: " + s.Name() + ": packet capture needs Linux (AF_PACKET)")
}
