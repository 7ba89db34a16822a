package correlate

import (
	"net/netip"

	"github.com/sbcwatch/sbcwatch/config"
)

// SetConfig makes the decisions taken from now on use cfg (serve's
// reload): thresholds and windows (short_call, refer_window,
// give_up_window, dialog_timeout), expect_transfer, the Microsoft ranges
// and host suffixes, the SBC names and addresses, the Teams TLS context
// and the window limits. What the stream holds stays: calls, connections
// and events waiting for their windows are judged with the new settings
// when their time comes, and findings already decided are not revisited.
// The SBC addresses of cfg are known at once; addresses known before
// (configured, or learned from the traffic as a call's SBC side) stay
// known: the stream does not tell the two apart, and an address the
// configuration drops (the SBC moved) is not seen again anyway.
func (s *Stream) SetConfig(cfg *config.Config) {
	if cfg == nil {
		return
	}
	for _, sb := range cfg.SBCs {
		for _, v := range sb.Addresses {
			if p, err := netip.ParseAddr(v); err == nil {
				s.a.sbcAddrs[p.Unmap()] = true
			}
		}
	}
	withLog := s.lag > cmpLag(s.cfg)+2*retryGap // AddSocket raised it
	s.cfg, s.a.cfg = cfg, cfg
	s.o.Config, s.o.TeamsContextID = cfg, cfg.TeamsTLSContextID
	s.lag = cmpLag(cfg) + 2*retryGap
	s.connKeep = 2*s.lag + cfg.GiveUpWindow.D() + 4*retryGap
	if withLog {
		s.lag = max(s.lag, syslogMatchWindow+2*retryGap+cmpLag(cfg))
		s.connKeep = max(s.connKeep, 2*s.lag+cfg.GiveUpWindow.D()+4*retryGap, s.lag+syslogMatchWindow)
	}
	s.maxCalls = pick(cfg.Limits.MaxWindowCalls, DefaultMaxWindowCalls)
	s.maxConns = pick(cfg.Limits.MaxWindowConns, DefaultMaxWindowConns)
	s.maxEvents = pick(cfg.Limits.MaxWindowEvents, DefaultMaxWindowEvents)
}
