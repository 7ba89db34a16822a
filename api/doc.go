// Package api serves what sbcwatch stored over REST: calls with their SIP
// ladders, TLS connections, certificates, findings (with acknowledgement),
// counter series, audits and SBCs, under /api/v1, plus an evidence bundle
// per call that an admin can paste into a ticket.
//
// NewServer builds the whole chi router (every route is in routes.go) from
// a *store.Store and Options. Requests to /api/v1 need a bearer token made
// with `sbcwatch token create`: a read token can GET, an admin token can
// also POST. /healthz, /readyz, /metrics and /api/v1/openapi.json are
// public. Every error has one JSON shape:
//
//	{"error":{"code":"not_found","message":"...","request_id":"..."}}
//
// See README.md for the routes and curl examples.
package api
