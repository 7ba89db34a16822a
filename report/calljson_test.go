package report

import (
	"bytes"
	"encoding/json"
	"math"
	"testing"
	"time"

	"github.com/sbcwatch/sbcwatch/finding"
)

func checkCallJSON(t *testing.T, v CallJSON) {
	t.Helper()
	want, err := json.Marshal(v)
	got, ok := appendCallJSON(nil, &v)
	if !ok {
		return // the caller uses json.Marshal
	}
	if err != nil {
		t.Fatalf("%+v: encoding/json fails (%v), appendCallJSON wrote %s", v, err, got)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%+v:\ngot  %s\nwant %s", v, got, want)
	}
}

// TestCallJSONEncoding: the spool's call encoder writes what
// encoding/json writes.
func TestCallJSONEncoding(t *testing.T) {
	t0 := finding.Time(time.Date(2026, 12, 6, 19, 0, 1, 123456789, time.FixedZone("X", 3600)))
	t1 := finding.Time(time.Date(2026, 12, 6, 19, 3, 0, 0, time.UTC))
	for _, v := range []CallJSON{
		{},
		{CallID: "gen-1@198.51.100.7", Kind: "invite", From: "+4930", To: "+4969", Start: t0, Answer: &t1, End: &t1,
			DurationS: 178.877, Answered: true, ReferCount: 2, EndedBy: "caller", EndReason: "BYE", Messages: 7,
			Microsoft: true, Q850Cause: 16, FinalStatus: 200, Truncated: true},
		{CallID: "a<b>&\"c\\\x01\u2028é\xff", EndReason: "486 Busy Here", DurationS: -0.5, End: &t0},
		{DurationS: 1e-7}, {DurationS: 1e22}, {DurationS: math.Inf(1)}, {DurationS: 123456789.001},
		{Messages: -3, ReferCount: math.MaxInt32, Q850Cause: -1, FinalStatus: 699},
		{Start: finding.Time(time.Date(-5, 1, 1, 0, 0, 0, 999, time.UTC))},
		{Start: finding.Time(time.Date(10000, 12, 31, 23, 59, 59, 999999999, time.UTC))},
		{Start: finding.Time(time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.FixedZone("W", -7200)))},
		{Start: finding.Time(time.Date(0, 1, 1, 0, 0, 0, 1000, time.UTC))},
	} {
		checkCallJSON(t, v)
	}
	v := CallJSON{DurationS: 1e-7}
	if _, ok := appendCallJSON(nil, &v); ok {
		t.Error("a float in exponent form was written instead of left to encoding/json")
	}
}

// FuzzCallJSONEncoding: any call view encodes as encoding/json does.
func FuzzCallJSONEncoding(f *testing.F) {
	f.Add("id@host", "invite", "+49", "+1", int64(1765047600123456789), int64(5), 1.5, true, 3, "caller", "BYE", 7, 16, 200, false)
	f.Add("x\"<\xff", "", "", "", int64(-1), int64(-7), -0.0, false, 0, "", "", 0, 0, 0, true)
	f.Fuzz(func(t *testing.T, id, kind, from, to string, start, dur int64, durS float64, answered bool,
		refers int, by, reason string, msgs, q850, final int, trunc bool) {
		st := finding.Time(time.Unix(0, start))
		v := CallJSON{CallID: id, Kind: kind, From: from, To: to, Start: st, DurationS: durS, Answered: answered,
			ReferCount: refers, EndedBy: by, EndReason: reason, Messages: msgs, Q850Cause: q850, FinalStatus: final, Truncated: trunc}
		if dur%3 != 0 {
			e := finding.Time(time.Unix(0, start+dur))
			v.End = &e
		}
		if dur%2 != 0 {
			a := finding.Time(time.Unix(0, start+dur/2))
			v.Answer = &a
		}
		checkCallJSON(t, v)
	})
}
