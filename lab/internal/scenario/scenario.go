// Package scenario defines the lab's network plan (addresses, names,
// numbers) and its scenarios: which calls are placed when, how the SBC's
// TLS listener picks a certificate, how the SBC answers a REFER and how
// Microsoft's proxy retries REFER delivery. The sbc, msproxy and carrier
// programs read the same table, and all times are offsets from a common
// start instant (t0) handed to each program by lab/run.sh.
package scenario

import (
	"fmt"
	"sort"
	"time"
)

// Network plan. The addresses live in network namespaces built by run.sh.
const (
	SBCAddr       = "192.0.2.10"
	SBCFQDN       = "sbc.contoso.example"
	SBCUDPPort    = 5060
	SBCTLSPort    = 5061
	CollectorAddr = "192.0.2.200"
	ACDRPort      = 925
	CarrierAddr   = "198.51.100.7"
	CarrierPort   = 5060
	// MSProxyAddr is sip.pstnhub.microsoft.com for the SBC: its outbound
	// TLS leg, OPTIONS both ways.
	MSProxyAddr = "52.114.132.46"
	// MSCallsAddr originates Teams-to-PSTN calls over new connections.
	MSCallsAddr = "52.114.76.76"
	// MSReferAddr delivers REFERs over new connections; it is a Microsoft
	// address that is not in the SBC's proxy set (field case).
	MSReferAddr = "52.114.75.24"
	MSProxyFQDN = "sip.pstnhub.microsoft.com"
	MSPort      = 5061
	UserAgent   = "M800C/v.7.40A.100.114"
	MSUserAgent = "Microsoft.PSTNHub.SIPProxy v.2026.11.9.1 i.EUWE.7"
	TenantID    = "3f2504e0-4f89-41d3-9a0c-0305e82c3301"
	// AutoAttendant is the resource account number that expects a transfer.
	AutoAttendant = "+496912345600"
	// CallQueue is the transfer target.
	CallQueue = "+496912345610"
	// SBCAllow is the Allow header the SBC sends towards Microsoft.
	SBCAllow = "REGISTER,OPTIONS,INVITE,ACK,CANCEL,BYE,NOTIFY,PRACK,REFER,INFO,SUBSCRIBE,UPDATE"
	// SBCAllowNoRefer is SBCAllow without REFER (scenario refer_not_allowed).
	SBCAllowNoRefer = "REGISTER,OPTIONS,INVITE,ACK,CANCEL,BYE,NOTIFY,PRACK,INFO,SUBSCRIBE,UPDATE"
)

// ProxySet lists the Microsoft addresses the SBC has in its Teams proxy
// set: connections from them get the Teams TLS context.
var ProxySet = []string{MSProxyAddr, MSCallsAddr}

// Certificate policies of the SBC's TLS listener.
const (
	// PolicyPublic always serves the public certificate.
	PolicyPublic = "public"
	// PolicyProxySet serves the public certificate to peers in ProxySet
	// and the default self-signed one to any other address (AudioCodes
	// GetTlsContextIdForIpAddress with ProxySetId = -1).
	PolicyProxySet = "proxyset"
	// PolicyEveryN serves the default certificate on every Nth inbound
	// connection (counting from 1) and the public one otherwise.
	PolicyEveryN = "every-n"
	// PolicyExpired serves a public certificate that expired.
	PolicyExpired = "expired"
	// PolicyExpiring serves a public certificate that expires in 10 to 25
	// days.
	PolicyExpiring = "expiring"
)

// Direction of a call.
const (
	// FromCarrier: carrier -> SBC (UDP) -> Microsoft (TLS), carrier hangs up.
	FromCarrier = "carrier"
	// FromTeams: Microsoft (new TLS connection) -> SBC -> carrier, Microsoft hangs up.
	FromTeams = "teams"
)

// Transfer is a REFER Microsoft tries to deliver for a call.
type Transfer struct {
	// After is the time from answer to the first delivery attempt.
	After time.Duration
	// Target is the number in the Refer-To.
	Target string
}

// Call is one call of a scenario.
type Call struct {
	Name   string
	From   string // FromCarrier or FromTeams
	Start  time.Duration
	Caller string
	Called string
	// HangupAfter is measured from the answer; the originating side hangs up.
	HangupAfter time.Duration
	Transfer    *Transfer
}

// Scenario is one lab run.
type Scenario struct {
	Name        string
	Description string
	CertPolicy  string
	EveryN      int
	// ReferResponse is the SBC's final answer to a REFER (202 or 403).
	ReferResponse int
	// FollowRefer makes the SBC send the new INVITE and NOTIFY 200.
	FollowRefer bool
	// MediaErrorBye makes the SBC put the field case's Reason
	// (Q.850 cause 22, "<guid>;MediaError") in the BYE it sends to
	// Microsoft; otherwise it sends Q.850 cause 16 (normal clearing).
	MediaErrorBye bool
	// NoReferInAllow leaves REFER out of the SBC's Allow towards
	// Microsoft, which then transfers inside Teams without a REFER.
	NoReferInAllow bool
	// ContactIP makes the SBC put its IP address, not its FQDN, in the
	// Contact of its INVITEs towards Microsoft.
	ContactIP bool
	// OptionsEvery repeats the OPTIONS pings (0: once each way at start).
	OptionsEvery time.Duration
	// Probes are the offsets at which Microsoft (MSCallsAddr) opens a
	// connection, completes the TLS handshake and closes it with
	// close_notify without sending any SIP, as health checks and load
	// balancers do.
	Probes []time.Duration
	Calls  []Call
	// Length bounds the run: every program exits at t0+Length.
	Length time.Duration
}

// ReferRetries are the delays of Microsoft's REFER delivery attempts after
// the first one: two quick retries (three attempts within one second) and
// one late retry whose delay is a flag of msproxy (LateRetry).
var ReferRetries = []time.Duration{300 * time.Millisecond, 300 * time.Millisecond}

// LateRetry is the default delay of the fourth attempt (field case: ~12 s).
const LateRetry = 12 * time.Second

// Timings shared by the scenarios.
const (
	aaDelay  = 12 * time.Second // Auto Attendant greeting until the caller picks the queue
	holdTime = 28 * time.Second // caller hangs up this long after the answer
)

func aaCall(name, caller string, start time.Duration) Call {
	return Call{Name: name, From: FromCarrier, Start: start, Caller: caller, Called: AutoAttendant,
		HangupAfter: holdTime, Transfer: &Transfer{After: aaDelay, Target: CallQueue}}
}

var all = []Scenario{
	{
		Name:          "transfer_fails_default_cert",
		Description:   "field case: REFER connections from a Microsoft address outside the proxy set get the default self-signed certificate; Microsoft gives up, the caller hangs up",
		CertPolicy:    PolicyProxySet,
		ReferResponse: 202, FollowRefer: true, MediaErrorBye: true,
		Calls:  []Call{aaCall("aa", "+4917012345601", time.Second)},
		Length: 33 * time.Second,
	},
	{
		Name:          "transfer_works",
		Description:   "REFER delivered over a new connection with the public certificate; 202, NOTIFY 100/200, new INVITE to the Refer-To, Microsoft BYEs the original leg",
		CertPolicy:    PolicyPublic,
		ReferResponse: 202, FollowRefer: true,
		Calls:  []Call{aaCall("aa", "+4917012345601", time.Second)},
		Length: 33 * time.Second,
	},
	{
		Name:          "refer_rejected",
		Description:   "REFER delivered; the SBC answers 403 Forbidden",
		CertPolicy:    PolicyPublic,
		ReferResponse: 403,
		Calls:         []Call{aaCall("aa", "+4917012345601", time.Second)},
		Length:        33 * time.Second,
	},
	{
		Name:          "refer_not_followed",
		Description:   "REFER delivered and accepted (202, NOTIFY 100 Trying) but the SBC never sends the new INVITE",
		CertPolicy:    PolicyPublic,
		ReferResponse: 202, FollowRefer: false,
		Calls:  []Call{aaCall("aa", "+4917012345601", time.Second)},
		Length: 33 * time.Second,
	},
	{
		Name:           "refer_not_allowed",
		Description:    "the SBC's Allow towards Microsoft lacks REFER: Microsoft sends no REFER (it transfers inside Teams, invisible to the SBC)",
		CertPolicy:     PolicyPublic,
		ReferResponse:  202,
		FollowRefer:    true,
		NoReferInAllow: true,
		Calls:          []Call{aaCall("aa", "+4917012345601", time.Second)},
		Length:         33 * time.Second,
	},
	{
		Name:          "cert_expired",
		Description:   "the SBC's public certificate has expired: every inbound handshake (Microsoft OPTIONS, REFER attempts) fails",
		CertPolicy:    PolicyExpired,
		ReferResponse: 202, FollowRefer: true,
		Calls:  []Call{aaCall("aa", "+4917012345601", time.Second)},
		Length: 33 * time.Second,
	},
	{
		Name:          "some_wrong_cert",
		Description:   "every second inbound connection gets the default certificate: Microsoft's OPTIONS connection gets the public one, the first REFER attempt the default one (aborted), its retry the public one; the transfer works",
		CertPolicy:    PolicyEveryN,
		EveryN:        2,
		ReferResponse: 202, FollowRefer: true,
		Calls:  []Call{aaCall("aa", "+4917012345601", time.Second)},
		Length: 33 * time.Second,
	},
	{
		Name:          "cert_expiring",
		Description:   "as transfer_works, but the SBC's public certificate expires in 10 to 25 days",
		CertPolicy:    PolicyExpiring,
		ReferResponse: 202, FollowRefer: true,
		Calls:  []Call{aaCall("aa", "+4917012345601", time.Second)},
		Length: 33 * time.Second,
	},
	{
		Name:          "contact_ip",
		Description:   "the SBC's Contact towards Microsoft has its IP address instead of its FQDN; a call to a user (no transfer expected), answered anyway",
		CertPolicy:    PolicyPublic,
		ReferResponse: 202, FollowRefer: true,
		ContactIP: true,
		Calls: []Call{{Name: "user1", From: FromCarrier, Start: time.Second, Caller: "+4917012345611",
			Called: "+496912345701", HangupAfter: holdTime}},
		Length: 33 * time.Second,
	},
	{
		Name:        "probes_close_notify",
		Description: "Microsoft's health checks: most inbound connections complete the TLS handshake and close with close_notify without SIP; every fourth inbound connection gets the default certificate and Microsoft aborts; no call",
		CertPolicy:  PolicyEveryN,
		EveryN:      4,
		Probes:      probeTimes(2*time.Second, time.Second, 12),
		Length:      16 * time.Second,
	},
	{
		Name:          "busy_sbc",
		Description:   "five concurrent calls, OPTIONS every 10 s, Teams-originated calls over new connections that succeed; only the Auto Attendant call loses its transfer",
		CertPolicy:    PolicyProxySet,
		ReferResponse: 202, FollowRefer: true,
		OptionsEvery: 10 * time.Second,
		Calls: []Call{
			{Name: "user1", From: FromCarrier, Start: 1 * time.Second, Caller: "+4917012345611", Called: "+496912345701", HangupAfter: 33 * time.Second},
			aaCall("aa", "+4917012345601", 2*time.Second),
			{Name: "user2", From: FromCarrier, Start: 3 * time.Second, Caller: "+4917012345612", Called: "+496912345702", HangupAfter: 30 * time.Second},
			{Name: "teams1", From: FromTeams, Start: 5 * time.Second, Caller: "+496912345671", Called: "+493098765432", HangupAfter: 25 * time.Second},
			{Name: "teams2", From: FromTeams, Start: 20 * time.Second, Caller: "+496912345672", Called: "+493098765433", HangupAfter: 12 * time.Second},
		},
		Length: 38 * time.Second,
	},
}

// probeTimes returns n offsets from first, every step.
func probeTimes(first, step time.Duration, n int) []time.Duration {
	out := make([]time.Duration, n)
	for i := range out {
		out[i] = first + time.Duration(i)*step
	}
	return out
}

// Allow is the Allow header the SBC sends towards Microsoft.
func (s Scenario) Allow() string {
	if s.NoReferInAllow {
		return SBCAllowNoRefer
	}
	return SBCAllow
}

// Get returns the named scenario.
func Get(name string) (Scenario, error) {
	for _, s := range all {
		if s.Name == name {
			return s, nil
		}
	}
	return Scenario{}, fmt.Errorf("scenario: unknown scenario %q (have %v)", name, Names())
}

// Names lists the scenarios.
func Names() []string {
	var n []string
	for _, s := range all {
		n = append(n, s.Name)
	}
	sort.Strings(n)
	return n
}

// CallByCaller finds a call by its calling number.
func (s Scenario) CallByCaller(caller string) (Call, bool) {
	for _, c := range s.Calls {
		if c.Caller == caller {
			return c, true
		}
	}
	return Call{}, false
}

// CallIDs are the lab's Call-ID shapes, reproducible per scenario:
// TeamsCallID for the SBC<->Microsoft leg the SBC opens (field format
// "<hex>@<SBC address>").
func TeamsCallID(hex string) string { return hex + "@" + SBCAddr }
