// Package web serves sbcwatch's HTML pages next to the REST API: the call
// page (verdict, call facts, an SVG ladder that draws the TLS attempts
// between the SIP messages, findings with their evidence, TLS table) and
// a short list of the latest calls with findings.
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
