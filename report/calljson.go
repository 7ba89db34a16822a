package report

import (
	"encoding/json"
	"math"
	"strconv"
	"time"

	"github.com/sbcwatch/sbcwatch/finding"
)

// appendCallJSON appends json.Marshal(v) without reflection: the spool
// encodes one view per call on the engine's goroutine, and
// encoding/json's reflection cost more than the rest of handing a call
// over. ok is false for what it does not write the way encoding/json
// does (a float out of the plain range); the caller then uses
// json.Marshal. TestCallJSONEncoding and FuzzCallJSONEncoding check it
// against encoding/json.
func appendCallJSON(b []byte, v *CallJSON) (_ []byte, ok bool) {
	b = append(b, `{"call_id":`...)
	b = appendJSONString(b, v.CallID)
	b = append(b, `,"kind":`...)
	b = appendJSONString(b, v.Kind)
	b = append(b, `,"from":`...)
	b = appendJSONString(b, v.From)
	b = append(b, `,"to":`...)
	b = appendJSONString(b, v.To)
	b = append(b, `,"start":`...)
	b = appendJSONTime(b, v.Start)
	if v.Answer != nil {
		b = append(b, `,"answer":`...)
		b = appendJSONTime(b, *v.Answer)
	}
	b = append(b, `,"end":`...)
	if v.End != nil {
		b = appendJSONTime(b, *v.End)
	} else {
		b = append(b, "null"...)
	}
	b = append(b, `,"duration_s":`...)
	if f := v.DurationS; f != 0 && (math.Abs(f) < 1e-6 || math.Abs(f) >= 1e21 || math.IsNaN(f)) {
		return b, false // encoding/json's exponent form or error
	}
	b = strconv.AppendFloat(b, v.DurationS, 'f', -1, 64)
	b = append(b, `,"answered":`...)
	b = strconv.AppendBool(b, v.Answered)
	b = append(b, `,"refer_count":`...)
	b = strconv.AppendInt(b, int64(v.ReferCount), 10)
	b = append(b, `,"ended_by":`...)
	b = appendJSONString(b, v.EndedBy)
	b = append(b, `,"end_reason":`...)
	b = appendJSONString(b, v.EndReason)
	b = append(b, `,"messages":`...)
	b = strconv.AppendInt(b, int64(v.Messages), 10)
	b = append(b, `,"microsoft":`...)
	b = strconv.AppendBool(b, v.Microsoft)
	if v.Q850Cause != 0 {
		b = append(b, `,"q850_cause":`...)
		b = strconv.AppendInt(b, int64(v.Q850Cause), 10)
	}
	if v.FinalStatus != 0 {
		b = append(b, `,"final_status":`...)
		b = strconv.AppendInt(b, int64(v.FinalStatus), 10)
	}
	if v.Truncated {
		b = append(b, `,"truncated":true`...)
	}
	return append(b, '}'), true
}

// appendJSONString appends s as encoding/json writes a string: quoted
// directly when it is printable ASCII with nothing to escape (HTML
// characters included), through encoding/json otherwise.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s) // a string always encodes
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// appendJSONTime appends t as finding.Time.MarshalJSON writes it
// (finding.TimeLayout in UTC: microseconds, truncated, and "Z"), digit
// by digit for years 0..9999.
func appendJSONTime(b []byte, t finding.Time) []byte {
	u := time.Time(t).UTC()
	year, month, day := u.Date()
	if year < 0 || year > 9999 {
		b = append(b, '"')
		b = u.AppendFormat(b, finding.TimeLayout)
		return append(b, '"')
	}
	hour, minute, sec := u.Clock()
	b = append(b, '"')
	b = appendDigits(b, year, 4)
	b = append(b, '-')
	b = appendDigits(b, int(month), 2)
	b = append(b, '-')
	b = appendDigits(b, day, 2)
	b = append(b, 'T')
	b = appendDigits(b, hour, 2)
	b = append(b, ':')
	b = appendDigits(b, minute, 2)
	b = append(b, ':')
	b = appendDigits(b, sec, 2)
	b = append(b, '.')
	b = appendDigits(b, u.Nanosecond()/1000, 6)
	return append(b, 'Z', '"')
}

// appendDigits appends v (>= 0) in width digits, zero-padded.
func appendDigits(b []byte, v, width int) []byte {
	var d [6]byte
	for i := width - 1; i >= 0; i-- {
		d[i] = byte('0' + v%10)
		v /= 10
	}
	return append(b, d[:width]...)
}
