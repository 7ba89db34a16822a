package syslog

import (
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Line is one log line split into its envelope and its text.
type Line struct {
	Raw string
	// Pri is the syslog priority, -1 when absent.
	Pri int
	// Recv is the receive timestamp as written (viewer or relay clock).
	Recv string
	// Host is the device address when the line carries one.
	Host string
	// Facility is "local0.notice" and the like.
	Facility string
	// Seq is the [S=] sequence number, -1 when absent; a gap means lost
	// datagrams.
	Seq int
	// SID is the session id of a call-related line ([SID=...]); BID the
	// board id of a non-call line ([BID=...]).
	SID, BID string
	// N is the (N <n>) counter, -1 when absent. Lines that continue a
	// split SIP message carry none.
	N int
	// Text is what the device logged, without envelope and trailers.
	Text string
	// cont is Text before trimming, for the pieces of a split SIP
	// message where a space at a datagram's edge is content.
	cont string
	// DevTime is the [Time:] stamp on the device clock (zero when absent).
	DevTime time.Time
}

var (
	reEnvelope = regexp.MustCompile(`^(?:<(\d{1,3})>)?\s*` +
		`(?:(\d{4}-\d{2}-\d{2}T\S+|\d{2}:\d{2}:\d{2}(?:\.\d+)?)\s+)?` +
		`(?:(\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3})\s+)?` +
		`(?:([a-z]+[0-9]?\.[a-z]+)\s+)?` +
		`(?:\[S=(\d+)\]\s*)?` +
		`(?:\[(SID|BID)[=:]([^\]]*)\]\s*)?` +
		`(?:\(N\s*(\d+)\)\s*)?`)
	reTrailer = regexp.MustCompile(`^\[Time:(\d{2})-(\d{2})@(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?\](?:\s*\[\d+\])?\s*$`)
)

// ParseLine splits one line. Year and loc place the device clock
// (DD-MM@HH:MM:SS.mmm) in time; loc nil means UTC.
func ParseLine(raw string, year int, loc *time.Location) Line {
	raw = strings.TrimRight(raw, "\r\n")
	l := Line{Raw: raw, Pri: -1, Seq: -1, N: -1}
	rest := raw
	if m := reEnvelope.FindStringSubmatchIndex(rest); m != nil {
		get := func(i int) string {
			if m[2*i] < 0 {
				return ""
			}
			return rest[m[2*i]:m[2*i+1]]
		}
		l.Pri = atoi(get(1), -1)
		l.Recv = get(2)
		l.Host = get(3)
		l.Facility = get(4)
		l.Seq = atoi(get(5), -1)
		switch get(6) {
		case "SID":
			l.SID = get(7)
		case "BID":
			l.BID = get(7)
		}
		l.N = atoi(get(8), -1)
		rest = rest[m[1]:]
	}
	at := strings.LastIndex(rest, "[Time:")
	if at < 0 {
		at = len(rest)
	}
	tail := rest[at:]
	if m := reTrailer.FindStringSubmatchIndex(tail); m != nil {
		sub := func(i int) string { return tail[m[2*i]:m[2*i+1]] }
		day, month := atoi(sub(1), 1), atoi(sub(2), 1)
		h, mi, s := atoi(sub(3), 0), atoi(sub(4), 0), atoi(sub(5), 0)
		ns := 0
		if m[12] >= 0 {
			frac := sub(6)
			ns = atoi((frac + "000000000")[:9], 0)
		}
		if loc == nil {
			loc = time.UTC
		}
		if month >= 1 && month <= 12 && day >= 1 && day <= 31 {
			l.DevTime = time.Date(year, time.Month(month), day, h, mi, s, ns, loc).UTC()
		}
		rest = strings.TrimRight(rest[:at], " \t")
	}
	l.cont = rest
	l.Text = strings.TrimSpace(rest)
	return l
}

func atoi(s string, def int) int {
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return def
	}
	return n
}
