package correlate

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/sbcwatch/sbcwatch/config"
	"github.com/sbcwatch/sbcwatch/finding"
	"github.com/sbcwatch/sbcwatch/sip"
)

// referRules applies refer_rejected, refer_not_followed and
// refer_no_notify to every REFER Microsoft sent towards the SBC in c.
func (a *analysis) referRules(c *sip.Call) []*finding.Finding {
	var out []*finding.Finding
	for _, r := range c.Refers {
		if r == nil || !a.towardsSBC(c, r) {
			continue
		}
		for _, f := range []*finding.Finding{
			a.referRejected(c, r),
			a.referNotFollowed(c, r),
			a.referNoNotify(c, r),
		} {
			if f != nil {
				f.CallID = c.CallID
				f.Evidence["call_id"] = c.CallID
				f.Evidence["refer_to"] = r.ReferTo
				f.Evidence["refer_time"] = r.Time.UTC()
				out = append(out, f)
			}
		}
	}
	return out
}

// towardsSBC reports whether a REFER went from Microsoft to the SBC (the
// only direction these rules judge). Without addresses (exported copies)
// any REFER in a Microsoft call counts.
func (a *analysis) towardsSBC(c *sip.Call, r *sip.Refer) bool {
	if r.Src.IsValid() {
		if a.isMicrosoft(r.Src) {
			return true
		}
		return r.Dst.IsValid() && c.SBCSide.IsValid() && a.sameSBC(r.Dst.Addr(), c.SBCSide.Addr())
	}
	return c.Microsoft
}

// shown is a Refer-To as a summary names it: the target URI without
// display name, angle brackets and escaped headers (the evidence keeps
// the header as sent).
func shown(referTo string) string {
	s := strings.TrimSpace(referTo)
	if i := strings.IndexByte(s, '<'); i >= 0 {
		s = s[i+1:]
		if j := strings.IndexByte(s, '>'); j >= 0 {
			s = s[:j]
		}
	}
	if i := strings.IndexByte(s, '?'); i >= 0 {
		s = s[:i]
	}
	return s
}

func accepted(r *sip.Refer) bool { return r.Response >= 200 && r.Response < 300 }

// referRejected: the REFER got a final non-2xx response.
func (a *analysis) referRejected(c *sip.Call, r *sip.Refer) *finding.Finding {
	if r.Response < 300 {
		return nil
	}
	t := r.ResponseTime
	if t.IsZero() {
		t = r.Time
	}
	resp := fmt.Sprintf("%d %s", r.Response, r.ResponseReason)
	if r.ResponseReason == "" {
		resp = fmt.Sprintf("%d", r.Response)
	}
	f := finding.New(finding.ReferRejected, finding.Critical, t,
		"%s: the SBC rejected Microsoft's transfer (REFER to %s) with %s, so the caller was not transferred.",
		callLabel(c), shown(r.ReferTo), resp)
	f.Evidence["response_code"] = r.Response
	f.Evidence["response_reason"] = r.ResponseReason
	return f
}

// windowStart is when the SBC's clock for a REFER starts: its 2xx, or the
// REFER itself when the response time is unknown.
func windowStart(r *sip.Refer) time.Time {
	if !r.ResponseTime.IsZero() && r.ResponseTime.After(r.Time) {
		return r.ResponseTime
	}
	return r.Time
}

// fromSBCOf reports whether src is the SBC that received REFER r in c.
func (a *analysis) fromSBCOf(src netip.AddrPort, c *sip.Call, r *sip.Refer) bool {
	if !src.IsValid() {
		return true
	}
	switch {
	case r.Dst.IsValid():
		return a.sameSBC(src.Addr(), r.Dst.Addr())
	case c.SBCSide.IsValid():
		return a.sameSBC(src.Addr(), c.SBCSide.Addr())
	}
	return !a.isMicrosoft(src)
}

// referNotFollowed: the REFER was accepted, yet within the REFER window
// the SBC sent no INVITE (in any call) whose Request-URI is the Refer-To
// to a Microsoft proxy. What followed instead is reported: an INVITE with
// that Request-URI sent elsewhere, or one with the Refer-To's user part
// or that the tracker linked to the REFER (Referred-By) with another
// Request-URI or destination.
// Nothing fires while the window has not elapsed within the capture.
func (a *analysis) referNotFollowed(c *sip.Call, r *sip.Refer) *finding.Finding {
	if !accepted(r) {
		return nil
	}
	start := windowStart(r)
	deadline := start.Add(a.cfg.ReferWindow.D())
	user := uriUser(r.ReferTo)
	var exactElsewhere, sameUser []inviteSent
	i, _ := slices.BinarySearchFunc(a.invites, r.Time, func(v inviteSent, t time.Time) int {
		if v.time.Before(t) {
			return -1
		}
		return 1 // land on the first INVITE at or after the REFER
	})
	// The tracker links the INVITE that carried the REFER out (same
	// Referred-By, or the Refer-To's target); it counts as a follow-up
	// whatever its Request-URI.
	linked := inviteSent{callID: r.NewCallID, time: r.NewInviteTime, src: r.NewInviteSrc, dst: r.NewInviteDst, ruri: r.NewInviteURI}
	invites := a.invites[i:]
	if r.NewCallID != "" && !slices.ContainsFunc(invites, func(v inviteSent) bool {
		return v.callID == linked.callID && v.time.Equal(linked.time)
	}) {
		invites = slices.Concat([]inviteSent{linked}, invites)
		slices.SortStableFunc(invites, func(x, y inviteSent) int { return x.time.Compare(y.time) })
	}
	for _, v := range invites {
		if v.time.After(deadline) {
			break
		}
		if v.time.Before(r.Time) || !a.fromSBCOf(v.src, c, r) {
			continue
		}
		if v.callID == c.CallID && v.ruri != "" && !sameURI(v.ruri, r.ReferTo) {
			continue // a re-INVITE of the referred call itself
		}
		isLinked := r.NewCallID != "" && v.callID == r.NewCallID
		switch {
		case sameURI(v.ruri, r.ReferTo):
			if !v.dst.IsValid() || a.isMicrosoft(v.dst) {
				return nil // followed as Microsoft requires
			}
			exactElsewhere = append(exactElsewhere, v)
		case isLinked, user != "" && sameUserPart(uriUser(v.ruri), user):
			sameUser = append(sameUser, v)
		}
	}
	followed := slices.Concat(exactElsewhere, sameUser)
	if len(followed) == 0 && a.now.Before(deadline) {
		return nil // the capture ended before the window did
	}
	var f *finding.Finding
	switch {
	case len(exactElsewhere) > 0:
		v := exactElsewhere[0]
		f = finding.New(finding.ReferNotFollowed, finding.Critical, v.time,
			"%s: the SBC accepted Microsoft's REFER to %s but sent the new INVITE to %s, which is not a Microsoft proxy; Microsoft requires it back at its SIP proxy, so the transfer fails.",
			callLabel(c), shown(r.ReferTo), addrString(v.dst))
		f.Evidence["what_followed"] = "INVITE to a non-Microsoft destination"
	case len(sameUser) > 0:
		v := sameUser[0]
		where := addrString(v.dst)
		if where == "" {
			where = "an unknown destination"
		}
		if a.isMicrosoft(v.dst) {
			f = finding.New(finding.ReferNotFollowed, finding.Critical, v.time,
				"%s: the SBC accepted Microsoft's REFER but its new INVITE (Request-URI %s) is not the exact Refer-To %s, so Microsoft cannot match it to the transfer.",
				callLabel(c), v.ruri, shown(r.ReferTo))
			f.Evidence["what_followed"] = "INVITE to a Microsoft proxy with a Request-URI other than the Refer-To"
		} else {
			f = finding.New(finding.ReferNotFollowed, finding.Critical, v.time,
				"%s: the SBC accepted Microsoft's REFER to %s but sent the transfer to %s (Request-URI %s) instead of back to a Microsoft proxy, so the transfer fails.",
				callLabel(c), shown(r.ReferTo), where, v.ruri)
			f.Evidence["what_followed"] = "INVITE to a non-Microsoft destination"
		}
	default:
		f = finding.New(finding.ReferNotFollowed, finding.Critical, deadline,
			"%s: the SBC accepted Microsoft's REFER to %s (%d) but sent no new INVITE to that target within %s, so the transfer never happened.",
			callLabel(c), shown(r.ReferTo), r.Response, humanDur(a.cfg.ReferWindow.D()))
		f.Evidence["what_followed"] = "nothing"
	}
	var list []map[string]any
	for _, v := range followed {
		list = append(list, map[string]any{
			"call_id":      v.callID,
			"time":         v.time.UTC(),
			"request_uri":  v.ruri,
			"src":          addrString(v.src),
			"dst":          addrString(v.dst),
			"to_microsoft": a.isMicrosoft(v.dst),
		})
	}
	f.Evidence["followed_by"] = list
	f.Evidence["response_code"] = r.Response
	f.Evidence["window_s"] = seconds(a.cfg.ReferWindow.D())
	return f
}

// sameUserPart compares user parts, on digits for telephone numbers.
func sameUserPart(x, y string) bool {
	if x == y {
		return true
	}
	dx, dy := config.Digits(x), config.Digits(y)
	return isNumber(x) && isNumber(y) && dx != "" && dx == dy
}

func isNumber(s string) bool {
	for i, r := range s {
		switch {
		case r >= '0' && r <= '9', r == '-', r == '.', r == ' ':
		case r == '+' && i == 0:
		default:
			return false
		}
	}
	return s != ""
}

// referNoNotify: the REFER was accepted but the SBC sent no NOTIFY in
// that dialog within the REFER window.
func (a *analysis) referNoNotify(c *sip.Call, r *sip.Refer) *finding.Finding {
	if !accepted(r) {
		return nil
	}
	start := windowStart(r)
	deadline := start.Add(a.cfg.ReferWindow.D())
	var late time.Time
	for _, n := range r.Notifies {
		if n.Src.IsValid() && a.isMicrosoft(n.Src) {
			continue // not the SBC's
		}
		if n.Time.Before(r.Time) {
			continue
		}
		if !n.Time.After(deadline) {
			return nil
		}
		if late.IsZero() {
			late = n.Time
		}
	}
	if late.IsZero() && a.now.Before(deadline) {
		return nil
	}
	f := finding.New(finding.ReferNoNotify, finding.Warning, deadline,
		"%s: the SBC accepted Microsoft's REFER to %s but sent no NOTIFY within %s; Microsoft waits for the NOTIFY to learn how the transfer went.",
		callLabel(c), shown(r.ReferTo), humanDur(a.cfg.ReferWindow.D()))
	f.Evidence["window_s"] = seconds(a.cfg.ReferWindow.D())
	f.Evidence["response_code"] = r.Response
	f.Evidence["late_notify"] = timeOrNil(late)
	return f
}
