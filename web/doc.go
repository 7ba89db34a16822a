// Package web serves sbcwatch's HTML pages next to the REST API: the call
// page (root cause and advice on top, the call's other legs with their
// verdicts, call facts, an SVG ladder that draws the TLS attempts between
// the SIP messages, findings with their evidence folded, TLS table), a
// short list of the latest calls with findings, and the admin's pages:
//
//   - /calls: a search form over every stored call (part of a number in
//     any form, time range, SBC, kind, rule, severity, answered, talk
//     time, final response), keyset paging, the query in the URL, and
//     /calls.csv with the same query for the whole result (cells that a
//     spreadsheet would read as a formula, "+49…" included, get a
//     leading apostrophe);
//   - /certificates (/tls redirects): every certificate each listener
//     served per SNI over the last 7 days (?window=1d|7d|30d|all), days to expiry, the trust verdict of its last
//     check, how many connections got it, inconsistent listeners first;
//   - /audits: per audited target the last result, the history and an
//     SVG chart of handshake time per resolved address;
//   - /sbcs: per SBC the poll status and SVG charts of short calls, NER
//     and ACD with spikes (values far above the series' median) marked.
//
// The call page links a call's other legs (store.PartnerLegs: same SBC,
// the same caller and callee digits either way round, overlapping time),
// so the carrier leg of a failed transfer shows the Teams leg's root
// cause. The search, certificates, audits and SBCs pages read the store
// directly (store.SearchCalls, ServedCertificates, AuditAttempts,
// ListCounterSamples); the call page reads the API's evidence bundle.
// Every page fits an 800 px window (the tests check that the page is no
// wider than the window in headless chromium). A browser asking for an
// unknown path outside /api/ gets an HTML error page (OwnsRequest).
//
// The pages are a client of the API: each one reads the API's JSON in
// process (GET /api/v1/calls/{call_id}/evidence, GET /api/v1/calls), so
// the verdict, the related TLS connections and the findings' order are
// exactly the API's. Everything is rendered on the server with
// html/template (inline SVG, inline CSS, no JavaScript, nothing fetched
// from elsewhere), so the pages read without JavaScript and print. The
// ladder draws at most DefaultLadderSteps rows (Options.LadderSteps):
// a call of thousands of messages shows its TLS connections and its
// first and last messages, and says how many it left out.
//
// The evidence bundle has page routes of its own,
// /calls/{call_id}/evidence.txt, .json and .pcap: they forward in process
// to GET /api/v1/calls/{call_id}/evidence?format=text, json or pcap with
// the page's token and pass the API's status, Content-Type,
// Content-Disposition and body through, so a browser signed in by cookie
// can open what the call page links.
//
// Each page is counted in the API's /metrics under its route pattern
// (route="/calls/{call_id}"): the pages record the ServeMux pattern they
// matched in chi's routing context, which the API's metrics read.
//
// Authentication is the API's bearer token as "Authorization: Bearer",
// or a browser session: POST /login checks the pasted token against the
// store and sets the HttpOnly, SameSite=Strict cookie sbcwatch_session,
// which holds a random session id, never the token. The store keeps the
// id's hash (table web_sessions); the session ends after 12 hours, at
// POST /logout (revoked in the store, so a copied cookie dies too), or
// when its token is revoked. Sign-in and sign-out are refused from any
// other origin, a sibling subdomain included (Sec-Fetch-Site, Origin),
// and the post-login target must be a path on this origin. Tokens are
// never logged.
package web
