package finding

// advice is what an admin should check or change for each rule, in the
// admin's words; AudioCodes names where the SBC is one (TLS context,
// proxy set, IP group, SIP interface). docs/findings.md lists the same
// text: keep them in step.
var advice = map[string]string{
	ReferDeliveryFailed: "Microsoft could not open a TLS connection to deliver the REFER. Make every inbound TLS " +
		"connection from Microsoft get the TLS context with the public certificate for the SBC's FQDN: on " +
		"AudioCodes, the Teams proxy set must list all Microsoft signaling addresses (or classify by FQDN) so " +
		"Microsoft's new connections match it, and the SIP interface towards Teams must use the Teams TLS " +
		"context, not the default one (#0). See the supporting findings for the certificate that was served.",
	TransferMissing: "The call was answered but never transferred. Check the Auto Attendant's transfer target in " +
		"Teams, and whether a refer_delivery_failed finding explains it (Microsoft could not reach the SBC).",
	ReferRejected: "The SBC refused the REFER. On AudioCodes, allow REFER in the IP profile of the Teams IP group " +
		"(Remote REFER Mode) and check the message manipulation rules applied to it.",
	ReferNotFollowed: "The SBC accepted the REFER but sent no new INVITE to Microsoft. On AudioCodes, check the " +
		"IP-to-IP routing rules for the Refer-To target and the Teams IP group's Remote REFER Mode " +
		"(handle locally rather than forwarding).",
	ReferNoNotify: "The SBC sent no NOTIFY after accepting the REFER; Microsoft may end the transfer. Check the " +
		"Teams IP profile's REFER handling and any manipulation that drops NOTIFY.",
	ReferNotAllowed: "The SBC does not advertise REFER towards Microsoft, so Microsoft will not transfer through it. " +
		"Add REFER to the Allow header of the Teams IP profile (or remove the manipulation that strips it).",
	ContactNotFQDN: "Microsoft needs the SBC's FQDN in Contact. On AudioCodes, set the Teams IP group's SIP Group " +
		"Name / Local Host Name to the FQDN on the SBC certificate.",
	MediaErrorBye: "A BYE reported a media problem. Check media ports and firewall rules between the SBC and " +
		"Microsoft's media ranges, and the media settings (SRTP, codecs) of the Teams IP profile.",
	ShortCall: "Calls this short are often failed transfers or one-way audio. Look for other findings on the " +
		"same call or at the same time.",
	TLSContextWrong: "The SBC chose the wrong TLS context for a Microsoft connection. On AudioCodes, add the " +
		"Microsoft address to the Teams proxy set (or let the proxy set classify by FQDN) and give the SIP " +
		"interface / proxy set the Teams TLS context.",
	TLSHandshakeFailed: "A TLS handshake with the SBC failed. Read the alert: bad_certificate or unknown_ca from " +
		"Microsoft means the SBC served a certificate Microsoft does not trust (see the certificate findings); " +
		"a reset or close from the SBC points at the SBC's TLS context (version, ciphers, client certificate).",
	TLSCertUntrusted: "Load the public certificate for the SBC's FQDN with its full chain (intermediate CA) into " +
		"the TLS context used for Teams, and make sure no default or self-signed context answers Microsoft.",
	TLSCertNameMismatch: "The certificate does not name the SBC's FQDN. Issue one whose SAN covers the FQDN " +
		"Microsoft connects to, or check which TLS context answered (default context #0?).",
	TLSCertInconsistent: "The same listener served different certificates: a second TLS context (often the " +
		"default) answers some connections. On AudioCodes, check which SIP interfaces and proxy sets share the " +
		"listener and give all of them the Teams TLS context.",
	TLSCertExpired:     "Renew the certificate and load it, with its chain, into the Teams TLS context now.",
	TLSCertExpiring:    "Renew the certificate before it expires and load it, with its chain, into the Teams TLS context.",
	TLSCertNotYetValid: "The certificate is not valid yet at the time of the handshake: either it was loaded before its start date or the SBC's clock is wrong. Check the SBC's date, time and NTP server, and keep the previous certificate in the Teams TLS context until the new one's notBefore has passed.",
	TLSSNIIPAddress:    "The client named an IP address in SNI, which RFC 6066 forbids, so the SBC cannot pick a TLS context by name. Make the peer connect to the SBC's FQDN (for Teams: the FQDN in the Direct Routing configuration); on AudioCodes, check which TLS context the SIP interface uses when no name matches.",
	TLSSNIUnrecognized: "The SBC did not recognise the name the client asked for and fell back to another TLS context. On AudioCodes, make the Teams TLS context's certificate (and the SIP interface's TLS context) cover the FQDN Microsoft uses, so its SNI selects the public certificate.",
	TLSVersionWeak:     "Set the TLS context's minimum version to TLS 1.2; Microsoft refuses older versions.",
	TLSCertNoServerAuth: "Reissue the certificate with the Server Authentication extended key usage (and Client " +
		"Authentication, since the SBC also connects out to Microsoft).",
	ShortCallsSpike: "Many short calls at once usually mean transfers or media failing. Look at the findings for " +
		"calls in that interval, and the IP group the counter belongs to.",
	SBCUnreachable: "sbcwatch could not reach the SBC. Check the address, port and firewall, and the SBC's " +
		"management or SIP interface.",
	OptionsMissing: "Microsoft and the SBC stopped exchanging OPTIONS: Microsoft will mark the SBC down. Check the " +
		"Teams proxy set's keep-alive (OPTIONS) setting and the TLS connection towards Microsoft.",
	AuditPassesLiveFails: "The audit got a good certificate but Microsoft's connections fail: the SBC answers " +
		"Microsoft's addresses with a different TLS context. Add every Microsoft signaling address to the Teams " +
		"proxy set, or ask Microsoft (support case) which address and SNI its failing connections use.",
}

// Advice returns what to check or change on the SBC for a rule, or ""
// for an unknown rule.
func Advice(rule string) string { return advice[rule] }

// Fold marks root causes among fs, which are in report order (most
// severe first): a finding that cites others explains each cited finding
// not already explained by an earlier one, which gets CausedBy set to its
// ID. A finding that is itself caused by another explains nothing more,
// so every chain is one level deep and a reader sees the root cause with
// its evidence under it. Fold also fills Advice. Run it once IDs and
// Cites are final.
func Fold(fs []*Finding) {
	byID := make(map[string]*Finding, len(fs))
	for _, f := range fs {
		if f != nil {
			f.CausedBy, f.Explains = "", nil
			if f.ID != "" {
				byID[f.ID] = f
			}
		}
	}
	for _, f := range fs {
		if f == nil {
			continue
		}
		if f.Advice == "" {
			f.Advice = Advice(f.Rule)
		}
		if f.CausedBy != "" {
			continue
		}
		for _, id := range f.Cites {
			g := byID[id]
			if g == nil || g == f || g.CausedBy != "" || len(g.Explains) > 0 {
				continue
			}
			g.CausedBy = f.ID
			f.Explains = append(f.Explains, id)
		}
	}
}
