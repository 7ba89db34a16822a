package report

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"

	"github.com/sbcwatch/sbcwatch/finding"
	"github.com/sbcwatch/sbcwatch/sip"
	"github.com/sbcwatch/sbcwatch/tlsaudit"
)

// NDJSON writes records as a streaming analysis decides them, one JSON
// object per line with a "type" member: "call" (the fields of a "calls"
// entry), "tls" (a "tls" entry), "finding" (a "findings" entry; a later
// line with the same "id" updates it), and at the end "stats" (the
// "stats" member), then one "hint" and one "warning" line per sentence
// ({"type":"hint","text":"…"}). IDs are numbered in decision order;
// caused_by and explains, which need the whole sorted list
// (finding.Fold), are left to the json and text reports. It has the
// methods of pipeline.Sink.
type NDJSON struct {
	w   *bufio.Writer
	err error
}

// NewNDJSON returns an NDJSON writer on w.
func NewNDJSON(w io.Writer) *NDJSON { return &NDJSON{w: bufio.NewWriterSize(w, 1<<16)} }

// Call writes a "call" line.
func (n *NDJSON) Call(c *sip.Call) { n.line("call", CallView(c)) }

// TLSConn writes a "tls" line.
func (n *NDJSON) TLSConn(c *tlsaudit.Conn) { n.line("tls", ConnView(c)) }

// Finding writes a "finding" line and flushes: a finding is what a
// pipeline downstream waits for.
func (n *NDJSON) Finding(f *finding.Finding) {
	c := *f
	if c.Advice == "" {
		c.Advice = finding.Advice(c.Rule)
	}
	n.line("finding", c)
	if n.err == nil {
		n.err = n.w.Flush()
	}
}

// End writes the "stats", "hint" and "warning" lines and flushes; it
// returns the first error met writing.
func (n *NDJSON) End(st Stats, hints, warnings []string) error {
	n.line("stats", st)
	type text struct {
		Text string `json:"text"`
	}
	for _, h := range hints {
		n.line("hint", text{h})
	}
	for _, w := range warnings {
		n.line("warning", text{w})
	}
	if n.err == nil {
		n.err = n.w.Flush()
	}
	return n.err
}

// line writes {"type":kind, …v's members…}.
func (n *NDJSON) line(kind string, v any) {
	if n.err != nil {
		return
	}
	b, err := json.Marshal(v)
	if err != nil {
		n.err = fmt.Errorf("report: ndjson: %w", err)
		return
	}
	fmt.Fprintf(n.w, `{"type":%q`, kind)
	if len(b) > 2 {
		n.w.WriteByte(',')
		n.w.Write(b[1:])
	} else {
		n.w.WriteByte('}')
	}
	_, n.err = n.w.WriteString("\n")
}
