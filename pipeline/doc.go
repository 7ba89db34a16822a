// Package pipeline is sbcwatch's one streaming engine, run by `analyze`
// (captures and SBC logs, offline) and by every `serve` source (ACDR and
// HEP copies, live). It owns the front half — content dispatch of TCP
// streams (SIP, TLS, SIP over WebSocket, by their first bytes), SIP
// parsing and the dialog tracker, the TLS handshake tracker, the SBC's
// log events — and the correlation that turns calls and connections into
// findings. Results leave through a Sink as they are decided.
//
// # API
//
//	eng, err := pipeline.New(pipeline.Options{Config: cfg, Sink: sink})
//	eng.Packet(pkt)                  // offline: a captured frame (capture clock)
//	eng.PacketPreparsed(pkt, pre)    // the same, its SIP datagram parsed ahead
//	eng.ACDR(exporter, payload, t)   // live: an ACDR datagram received at t
//	eng.HEP(exporter, payload, t)    // live: HEP v3 datagram(s) received at t
//	eng.Message(msg)                 // a SIP message from an SBC log
//	eng.Socket(sock)                 // a TLS socket from an SBC log
//	eng.Advance(now)                 // live: move the watermark on a timer
//	call, conn := eng.Pending()      // what has not left the engine yet
//	stats, hints := eng.Close()      // end of input: every remaining decision
//
// Sink has three methods, called from the feeding goroutine:
// Call(*sip.Call) when the tracker lets a call go, TLSConn(*tlsaudit.Conn)
// when a connection ends, and Finding(*finding.Finding) when a finding is
// decided. A Finding with a Key already sent is an update of that finding
// (the store keeps one row per key). With Options.ProvisionalAfter
// (serve) a refer_delivery_failed may first come with Provisional set;
// its settling comes later under the same ID and Key: the finding again
// without Provisional (confirmed), or a copy with Retracted set (the
// full verdict does not hold it; a sink hides it and counts nothing).
//
// # Clock
//
// The engine has one clock, the watermark: the latest capture time seen
// offline (packets and log lines merged in time order by the caller), or
// the receive time of each datagram and of Advance live (set
// Options.ReceiveClock so messages are dated by it, not by the
// exporter). Dialog timeouts, the linger of ended calls and the rules'
// windows are measured against it; nothing reads the wall clock.
// Offline the watermark is acted on (trackers expired, decisions taken)
// every 30 s of capture time and every 4096 packets, so a capture
// arriving slowly on a pipe gets its findings as its time passes, not
// when more packets come. Pending tells a caller what is still held
// (the earliest call still tracked, the earliest TLS connection not yet
// handed over), for state it keeps beside the engine's.
//
// # Correlation
//
// Calls and connections go to the sink as they leave the trackers, and
// to correlate.Stream, which decides each rule once its windows have
// passed on the watermark and sends the findings (correlate/README.md,
// "Streaming", says when each rule decides and what it holds). Finding
// IDs ("F<n>") are numbered in decision order; Key is stable across runs.
// Options.Batch instead holds everything and correlates once at Close
// (correlate.Run): the whole-input semantics the equivalence tests
// compare against.
//
// # Bounds
//
// Memory follows the calls up at once and the correlation windows, not
// the length of the input. The tracker (limits.max_dialogs,
// max_messages_per_call, max_kept_messages), the TLS tracker
// (max_tls_conns), the TCP reassembly (max_buffered_pages_*) and the
// correlation windows (max_window_calls, max_window_conns,
// max_window_events) are bounded by the config; what they let go early is
// counted in Stats (DialogsEvicted, Correlate.Evicted*). The engine is not
// safe for concurrent use: one goroutine feeds it.
//
// # Second core
//
// The one stateless and costly step, parsing a SIP datagram, can be done
// ahead: a Preparser (Engine.Preparser) is safe on another goroutine and
// parses the SIP payload of plain link/IP/UDP frames into a Preparsed;
// PacketPreparsed hands it with its frame. The engine takes it only when
// its decoder delivers exactly those bytes with exactly that meta (a
// fragment, a tunnel, HEP or ACDR are parsed as always), so the results
// are the same as Packet's; Stats.Preparsed counts what was taken. A
// pre-parsed message keeps its datagram inside the frame (tap.Source
// hands each frame in a buffer of its own that nobody modifies) instead
// of a copy, unless the frame is much bigger than the datagram.
// `analyze` reads the captures in batches on a second goroutine and
// pre-parses there (analyze.Options.Sequential turns it off).
//
// # Errors
//
// Malformed bytes are counted and skipped by the decoders (tap, sip,
// tlsaudit). A panic after the bytes were decoded — in the tracker, the
// correlation or a Sink — is a bug: it is counted in Stats.Panics and the
// first one is logged with its stack.
package pipeline
