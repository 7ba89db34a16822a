package daemon

import (
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/sbcwatch/sbcwatch/config"
	"github.com/sbcwatch/sbcwatch/finding"
	"github.com/sbcwatch/sbcwatch/sip"
)

// optionsWatch is the live-only rule options_missing: Microsoft's SIP
// proxies and the SBC ping each other with OPTIONS (typically every
// minute); when no OPTIONS (request or answer) passes between the SBC and
// a Microsoft proxy for longer than the threshold, the proxy considers the
// SBC down and stops routing calls to it. A pair is watched once an
// OPTIONS was seen between them; a raised pair is cleared when OPTIONS
// pass again, and a later silence raises a new finding.
type optionsWatch struct {
	cfg   *config.Config
	after time.Duration

	mu    sync.Mutex
	pairs map[optPair]*optState
}

type optPair struct{ sbc, ms netip.Addr }

type optState struct {
	last   time.Time
	raised bool
}

// maxOptionPairs bounds the pairs watched.
const maxOptionPairs = 1024

func newOptionsWatch(cfg *config.Config, after time.Duration) *optionsWatch {
	if after <= 0 {
		after = 3 * time.Minute
	}
	return &optionsWatch{cfg: cfg, after: after, pairs: map[optPair]*optState{}}
}

// setConfig changes the configuration (Microsoft ranges, SBC names) and
// the threshold (reload); the pairs watched stay.
func (w *optionsWatch) setConfig(cfg *config.Config, d time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.cfg = cfg
	if d > 0 {
		w.after = d
	}
}

// observeCall notes an OPTIONS transaction the tracker let go (kind
// "options") between the SBC and a Microsoft address, at its last
// message.
func (w *optionsWatch) observeCall(c *sip.Call) {
	if c.Kind != "options" {
		return
	}
	w.observe(c.Caller.Addr().Unmap(), c.Callee.Addr().Unmap(), c.Last)
}

// observe notes an OPTIONS between src and dst at t.
func (w *optionsWatch) observe(src, dst netip.Addr, t time.Time) {
	var p optPair
	switch {
	case w.cfg.IsMicrosoft(src) && !w.cfg.IsMicrosoft(dst):
		p = optPair{sbc: dst, ms: src}
	case w.cfg.IsMicrosoft(dst) && !w.cfg.IsMicrosoft(src):
		p = optPair{sbc: src, ms: dst}
	default:
		return
	}
	if !p.sbc.IsValid() || !p.ms.IsValid() {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	s := w.pairs[p]
	if s == nil {
		if len(w.pairs) >= maxOptionPairs {
			return
		}
		s = &optState{}
		w.pairs[p] = s
	}
	if !t.After(s.last) {
		return // an older ping handed over late changes nothing
	}
	s.last = t
	s.raised = false // pings are back (or never stopped)
}

// check raises options_missing for every pair silent longer than the
// threshold at now, once per silence.
func (w *optionsWatch) check(now time.Time) []*finding.Finding {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []*finding.Finding
	for p, s := range w.pairs {
		if s.raised || now.Sub(s.last) <= w.after {
			continue
		}
		s.raised = true
		f := finding.New(finding.OptionsMissing, finding.Warning, s.last.Add(w.after),
			"no SIP OPTIONS between the SBC %s and the Microsoft proxy %s for more than %s (last at %s): Microsoft takes an SBC that does not answer its pings out of service and stops sending it calls",
			p.sbc, p.ms, w.after, s.last.UTC().Format(time.RFC3339))
		f.SBC = w.sbcName(p.sbc)
		f.Connection = p.sbc.String() + "<->" + p.ms.String()
		f.Evidence["sbc_address"] = p.sbc.String()
		f.Evidence["microsoft_address"] = p.ms.String()
		f.Evidence["last_seen"] = s.last.UTC().Format(finding.TimeLayout)
		f.Evidence["threshold"] = w.after.String()
		f.Key = finding.KeyOf(f)
		out = append(out, f)
	}
	return out
}

// Raised lists the pairs currently silent ("sbc<->microsoft").
func (w *optionsWatch) Raised() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	for p, s := range w.pairs {
		if s.raised {
			out = append(out, fmt.Sprintf("%s<->%s", p.sbc, p.ms))
		}
	}
	return out
}

func (w *optionsWatch) sbcName(a netip.Addr) string {
	for _, s := range w.cfg.SBCs {
		for _, x := range s.Addresses {
			if p, err := netip.ParseAddr(x); err == nil && p.Unmap() == a {
				return s.Name
			}
		}
	}
	if len(w.cfg.SBCs) == 1 {
		return w.cfg.SBCs[0].Name
	}
	return ""
}
