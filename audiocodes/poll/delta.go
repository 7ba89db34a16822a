package poll

import (
	"math"
	"strings"
	"time"
)

// Sample is one counter of one scope at one poll. Value is the raw value
// (nil: not supported, or a derived value that could not be computed).
// Delta and Rate (per second) are set for counters from the second poll
// on. Reset marks a delta taken across a counter reset: it is then the
// value accumulated since the reset, not over the whole interval.
type Sample struct {
	SBC     string    `json:"sbc"`
	Scope   string    `json:"scope"` // "global" or "ipgroup:N"
	Counter string    `json:"counter"`
	Time    time.Time `json:"time"`
	Value   *float64  `json:"value"`
	Delta   *float64  `json:"delta,omitempty"`
	Rate    *float64  `json:"rate,omitempty"`
	Reset   bool      `json:"reset,omitempty"`
}

// Interval is what one scope did between two polls, as the rules read it.
type Interval struct {
	SBC     string
	Scope   string
	Time    time.Time
	Elapsed time.Duration
	// Deltas holds the counters' deltas (nil when not computable).
	Deltas map[string]*float64
	// Reset is true when any counter of the scope was reset.
	Reset bool
}

// Tracker turns the successive Readings of one SBC into Samples and
// Intervals. It is not safe for concurrent use.
type Tracker struct {
	prev *Reading
}

// Previous returns the last reading given to Update.
func (t *Tracker) Previous() *Reading { return t.prev }

// Update differences r against the previous reading.
//
// A reset is detected when the device uptime went down (allowing for the
// 32-bit TimeTicks wrap after ~497 days), or when one counter went down;
// the delta is then the new value (what accumulated since the reset) and
// the sample is flagged. A counter that went down from the top quarter
// of its range (2^32 or 2^64, when the bit width is known from SNMP) to
// the bottom quarter without an uptime reset is taken as a wrap and
// differenced modulo 2^bits.
func (t *Tracker) Update(r *Reading) ([]Sample, []Interval) {
	prev := t.prev
	t.prev = r
	var elapsed time.Duration
	uptimeReset := false
	if prev != nil {
		elapsed = r.Time.Sub(prev.Time)
		if prev.Uptime != nil && r.Uptime != nil && *r.Uptime < *prev.Uptime && !ticksWrapped(*prev.Uptime, *r.Uptime, elapsed) {
			uptimeReset = true
		}
	}
	var samples []Sample
	var ivs []Interval
	for _, scope := range r.Scopes() {
		cur := r.scopeValues(scope)
		var old Values
		if prev != nil {
			old = prev.scopeValues(scope)
		}
		iv := Interval{SBC: r.SBC, Scope: scope, Time: r.Time, Elapsed: elapsed, Deltas: map[string]*float64{}}
		for _, name := range orderedNames(cur) {
			s := Sample{SBC: r.SBC, Scope: scope, Counter: name, Time: r.Time, Value: cur[name]}
			if KindOf(name) == Counter && cur[name] != nil && old != nil && old[name] != nil && elapsed > 0 {
				d, reset := counterDelta(prev, r, scope, name, uptimeReset)
				s.Delta, s.Reset = &d, reset
				span := elapsed
				if reset && r.Uptime != nil && *r.Uptime > 0 && *r.Uptime < span {
					span = *r.Uptime
				}
				rate := d / span.Seconds()
				s.Rate = &rate
				iv.Deltas[name] = s.Delta
				iv.Reset = iv.Reset || reset
			}
			samples = append(samples, s)
		}
		if prev != nil && old != nil && elapsed > 0 {
			samples = append(samples, derived(iv)...)
			ivs = append(ivs, iv)
		}
	}
	return samples, ivs
}

// ticksWrapped reports whether sysUpTime went down because the 32-bit
// TimeTicks (hundredths of a second) wrapped rather than the device
// restarting: the old value plus the wall time elapsed passes 2^32 ticks
// and the new value is about what is left over.
func ticksWrapped(old, cur, elapsed time.Duration) bool {
	const wrap = time.Duration(1<<32) * 10 * time.Millisecond
	if old+elapsed < wrap-time.Minute {
		return false
	}
	expected := old + elapsed - wrap
	diff := cur - expected
	return diff > -time.Minute && diff < time.Minute
}

func counterDelta(prev, cur *Reading, scope, name string, uptimeReset bool) (float64, bool) {
	nv := *cur.scopeValues(scope)[name]
	ov := *prev.scopeValues(scope)[name]
	if uptimeReset {
		return nv, true
	}
	key := scope + "/" + name
	nr, okN := cur.raw[key]
	or, okO := prev.raw[key]
	if okN && okO {
		if nr.v >= or.v {
			return float64(nr.v - or.v), false
		}
		if nr.bits == 32 || nr.bits == 64 {
			quarter := uint64(1) << (nr.bits - 2)
			top := uint64(math.MaxUint64)
			if nr.bits == 32 {
				top = math.MaxUint32
			}
			if or.v > top-quarter && nr.v < quarter {
				// Wrapped: difference modulo 2^bits.
				if nr.bits == 64 {
					return float64(nr.v - or.v), false
				}
				return float64((nr.v - or.v) & math.MaxUint32), false
			}
		}
		return float64(nr.v), true
	}
	if nv >= ov {
		return nv - ov, false
	}
	return nv, true
}

// derived computes the Health Dashboard style series of one interval
// (docs/direct-routing-facts.md §4.5) and the short-call ratio:
//
//	ner_interval = (established + busy + no answer) / attempted × 100
//	average_call_duration_interval_s = Δminutes_of_usage × 60 / established
//	short_call_ratio = Δshort_calls / established
//
// where established, attempted, busy and no answer are the in+out deltas
// of the interval (established_calls on performanceMonitoring firmware).
// A missing input leaves Value nil.
func derived(iv Interval) []Sample {
	est := sumDeltas(iv.Deltas, EstablishedCallsIn, EstablishedCallsOut)
	if est == nil {
		est = iv.Deltas[EstablishedCallsLegacy]
	}
	att := sumDeltas(iv.Deltas, AttemptedCallsIn, AttemptedCallsOut)
	busy := sumDeltas(iv.Deltas, BusyCallsIn, BusyCallsOut)
	noAns := sumDeltas(iv.Deltas, NoAnswerCallsIn, NoAnswerCallsOut)
	mk := func(name string, v *float64) Sample {
		return Sample{SBC: iv.SBC, Scope: iv.Scope, Counter: name, Time: iv.Time, Value: v, Reset: iv.Reset}
	}
	var ner, acd, ratio *float64
	if est != nil && att != nil && *att > 0 {
		n := *est
		if busy != nil {
			n += *busy
		}
		if noAns != nil {
			n += *noAns
		}
		ner = f64(math.Min(100, n / *att * 100))
	}
	if mou := iv.Deltas[MinutesOfUsage]; mou != nil && est != nil && *est > 0 {
		acd = f64(*mou * 60 / *est)
	}
	if sc := iv.Deltas[ShortCalls]; sc != nil && est != nil && *est > 0 {
		ratio = f64(*sc / *est)
	}
	return []Sample{mk(DerivedNER, ner), mk(DerivedAverageCallDuration, acd), mk(DerivedShortCallRatio, ratio)}
}

// sumDeltas adds the named deltas; nil when none is present.
func sumDeltas(d map[string]*float64, names ...string) *float64 {
	var sum *float64
	for _, n := range names {
		if v := d[n]; v != nil {
			if sum == nil {
				sum = f64(0)
			}
			*sum += *v
		}
	}
	return sum
}

// IPGroupOf returns the IP Group id of a scope, or "" for global.
func IPGroupOf(scope string) string {
	id, _ := strings.CutPrefix(scope, ipGroupPrefix)
	if id == scope {
		return ""
	}
	return id
}
