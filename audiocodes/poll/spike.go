package poll

import (
	"fmt"
	"math"
	"time"

	"github.com/sbcwatch/sbcwatch/finding"
)

// SpikeConfig tunes short_calls_spike. Zero fields take the defaults.
type SpikeConfig struct {
	// Ratio is the short/established ratio per interval that must be
	// reached (config Poll.ShortCallRatio, default 0.3).
	Ratio float64
	// MinDelta is the smallest number of short calls in one interval that
	// can fire (default 5), so 1→2 never does.
	MinDelta float64
	// Window is K, the number of normal intervals kept as the baseline
	// (default 12).
	Window int
	// MinHistory is how many normal intervals must be seen before the
	// rule can fire (default 5): without a baseline a site whose normal
	// short-call share is high would fire at start.
	MinHistory int
	// Sigmas is how many standard deviations above the baseline mean the
	// interval's short calls must lie (default 4; see README.md for the
	// false-alarm rates behind the choice).
	Sigmas float64
	// Interval is the nominal poll interval; deltas of longer or shorter
	// intervals (after a missed poll) are scaled to it before they are
	// compared with the baseline. Zero: no scaling.
	Interval time.Duration
}

func (c SpikeConfig) withDefaults() SpikeConfig {
	if c.Ratio <= 0 {
		c.Ratio = 0.3
	}
	if c.MinDelta <= 0 {
		c.MinDelta = 5
	}
	if c.Window <= 0 {
		c.Window = 12
	}
	if c.MinHistory <= 0 {
		c.MinHistory = 5
	}
	if c.MinHistory > c.Window {
		c.MinHistory = c.Window
	}
	if c.Sigmas <= 0 {
		c.Sigmas = 4
	}
	return c
}

// SpikeDetector applies short_calls_spike to the Intervals of one SBC,
// each scope (global, every IP Group) on its own baseline. It is not safe
// for concurrent use.
//
// An interval fires when all of these hold:
//
//	Δshort ≥ MinDelta
//	Δshort / max(Δestablished, 1) ≥ Ratio
//	at least MinHistory normal intervals are in the baseline, and
//	x > mean + Sigmas × max(σ, √mean + 1)
//
// where x is Δshort scaled to the nominal interval, and mean and σ are
// over the last Window normal (non-firing, non-reset) intervals' scaled
// deltas. √mean + 1 is a floor for σ: short calls are counts, roughly
// Poisson, so a flat or short baseline must not make a small rise fire. An
// interval with a counter reset neither fires nor enters the baseline.
// A finding is emitted once per episode: while consecutive intervals keep
// firing no new finding is made.
type SpikeDetector struct {
	cfg    SpikeConfig
	hist   map[string][]float64
	firing map[string]bool
}

// NewSpikeDetector returns a detector with cfg's zero fields defaulted.
func NewSpikeDetector(cfg SpikeConfig) *SpikeDetector {
	return &SpikeDetector{cfg: cfg.withDefaults(), hist: map[string][]float64{}, firing: map[string]bool{}}
}

// Observe feeds one interval and returns a finding when it fires.
func (d *SpikeDetector) Observe(iv Interval) *finding.Finding {
	short := iv.Deltas[ShortCalls]
	est := sumDeltas(iv.Deltas, EstablishedCallsIn, EstablishedCallsOut)
	if est == nil {
		est = iv.Deltas[EstablishedCallsLegacy]
	}
	if iv.Reset || short == nil || est == nil || iv.Elapsed <= 0 {
		return nil
	}
	x := *short
	if d.cfg.Interval > 0 {
		x = *short * d.cfg.Interval.Seconds() / iv.Elapsed.Seconds()
	}
	ratio := *short / math.Max(*est, 1)
	hist := d.hist[iv.Scope]
	mean, sd := meanStd(hist)
	limit := mean + d.cfg.Sigmas*math.Max(sd, math.Sqrt(mean)+1)
	fire := *short >= d.cfg.MinDelta && ratio >= d.cfg.Ratio &&
		len(hist) >= d.cfg.MinHistory && x > limit
	if !fire {
		d.firing[iv.Scope] = false
		hist = append(hist, x)
		if len(hist) > d.cfg.Window {
			hist = hist[len(hist)-d.cfg.Window:]
		}
		d.hist[iv.Scope] = hist
		return nil
	}
	if d.firing[iv.Scope] {
		return nil
	}
	d.firing[iv.Scope] = true

	where := "the SBC"
	if id := IPGroupOf(iv.Scope); id != "" {
		where = "IP Group " + id
	}
	f := finding.New(finding.ShortCallsSpike, finding.Warning, iv.Time,
		"%s: %.0f short calls on %s in the last %s, %.0f%% of %.0f established calls; baseline %.1f per interval (limit %.1f)",
		iv.SBC, *short, where, iv.Elapsed.Round(time.Second), ratio*100, *est, mean, limit)
	f.Source = finding.SourcePoll
	f.SBC = iv.SBC
	ev := f.Evidence
	ev["sbc"] = iv.SBC
	ev["scope"] = iv.Scope
	if id := IPGroupOf(iv.Scope); id != "" {
		ev["ip_group"] = id
	}
	ev["counter"] = ShortCalls
	ev["interval_s"] = iv.Elapsed.Seconds()
	ev["delta"] = *short
	ev["rate_per_min"] = *short / iv.Elapsed.Minutes()
	ev["established_delta"] = *est
	ev["ratio"] = round3(ratio)
	ev["threshold_ratio"] = d.cfg.Ratio
	ev["baseline_mean"] = round3(mean)
	ev["baseline_stddev"] = round3(sd)
	ev["baseline_limit"] = round3(limit)
	ev["baseline_intervals"] = len(hist)
	ev["min_delta"] = d.cfg.MinDelta
	return f
}

func round3(v float64) float64 { return math.Round(v*1000) / 1000 }

func meanStd(xs []float64) (float64, float64) {
	if len(xs) == 0 {
		return 0, 0
	}
	var sum float64
	for _, x := range xs {
		sum += x
	}
	mean := sum / float64(len(xs))
	var ss float64
	for _, x := range xs {
		ss += (x - mean) * (x - mean)
	}
	return mean, math.Sqrt(ss / float64(len(xs)))
}

// String describes the rule's parameters.
func (c SpikeConfig) String() string {
	c = c.withDefaults()
	return fmt.Sprintf("ratio>=%.2f delta>=%.0f baseline K=%d (min %d) mean+%.0fσ", c.Ratio, c.MinDelta, c.Window, c.MinHistory, c.Sigmas)
}
