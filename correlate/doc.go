// Package correlate joins SIP calls (package sip) and TLS connections
// (package tlsaudit) on one capture timeline and turns them into the call
// findings of docs/findings.md: refer_delivery_failed, transfer_missing,
// refer_rejected, refer_not_followed, refer_no_notify, refer_not_allowed,
// contact_not_fqdn, media_error_bye and short_call; and, given the
// sockets of the SBC's own log (package audiocodes/syslog),
// tls_context_wrong.
//
// Run is a pure function of its Input (the whole input at once): no wall
// clock, no I/O, the same input gives the same findings in the same
// order. Stream applies the same rules incrementally, as records arrive,
// deciding each once its windows have passed and holding only bounded
// windows (README.md, "Streaming"); pipeline runs it for analyze and
// serve. "Now" is the
// latest time seen in the records, so a call still open when the capture
// ended, or a REFER whose window had not elapsed, never fires a rule that
// needs the end of something.
//
// The flagship rule is refer_delivery_failed: Microsoft opened new inbound
// TLS connections to the SBC during an answered call (to deliver a REFER),
// every one failed before carrying SIP, no REFER reached the dialog, and
// the caller hung up soon after. On a busy SBC several calls are up at
// once, so the rule blames one call (critical, with its call id) only
// when it alone fits, or when the best fit is clearly ahead of the next:
// it alone calls a number configured to expect a transfer; or, equal on
// that, it alone ended within a quarter of the give-up window after the
// last attempt; or, equal on both, it alone never had a REFER. Otherwise
// one warning without call id lists the candidates, best first. Attempts
// belong together while each follows the previous within 32 s (RFC 3261
// Timer F, the life of the REFER transaction Microsoft retries). Findings cite what they rest on: refer_delivery_failed cites
// the TLS findings of its connections, the call's transfer_missing and the
// tls_context_wrong about the same connections; Hints and
// UnexplainedFailures cover the failed connections no call explains.
package correlate
