package web

import (
	"net/http"
	"slices"
)

// evidenceFormat is one page route of the evidence bundle:
// /calls/{call_id}/evidence.<ext> forwards to the API's
// /api/v1/calls/{call_id}/evidence?format=<format>.
type evidenceFormat struct {
	ext    string // the page route's suffix
	format string // the API's format parameter
	accept string // the Accept header sent to the API
}

// evidenceFormats are the bundle's page routes. A browser signed in by
// cookie opens these; the API itself wants a bearer header.
var evidenceFormats = []evidenceFormat{
	{ext: "txt", format: "text", accept: "text/plain"},
	{ext: "json", format: "json", accept: "application/json"},
	{ext: "pcap", format: "pcap", accept: "application/vnd.tcpdump.pcap"},
}

// EvidencePath is the page route of a call's evidence bundle in the
// format named by ext ("txt", "json" or "pcap"), with the Call-ID escaped
// as one path segment and sbc, when set, as the query.
func EvidencePath(callID, sbc, ext string) string {
	return withSBC("/calls/"+segment(callID)+"/evidence."+ext, sbc)
}

// forwardHeaders are the API answer's headers a forwarded answer keeps;
// the page's own security headers stay, the API's request id does not.
var forwardHeaders = []string{"Content-Type", "Content-Disposition", "Content-Length", "Content-Encoding"}

// handleEvidence forwards the page request to the API's evidence handler
// in process, with the page's token, and passes the API's status,
// content type, Content-Disposition and body through unchanged (its
// errors too: the API's JSON error answers what was wrong). The page's
// query is forwarded as is, so the API checks it; format is the route's.
func (p *Pages) handleEvidence(f evidenceFormat) func(w http.ResponseWriter, r *http.Request, tok string) {
	return func(w http.ResponseWriter, r *http.Request, tok string) {
		q := r.URL.Query()
		q.Set("format", f.format)
		path := "/api/v1/calls/" + segment(r.PathValue("call_id")) + "/evidence?" + q.Encode()
		req, err := p.apiRequest(r.Context(), tok, path, f.accept)
		if err != nil {
			p.log.Error("evidence", "format", f.format, "err", err)
			p.renderError(w, http.StatusInternalServerError, "The evidence could not be read; the server log has the details.")
			return
		}
		fw := &forwardWriter{w: w, h: http.Header{}}
		p.opts.API.ServeHTTP(fw, req)
		if !fw.wrote {
			fw.WriteHeader(http.StatusOK)
		}
	}
}

// forwardWriter streams an in-process API answer to the page's writer,
// keeping only forwardHeaders of the API's headers.
type forwardWriter struct {
	w     http.ResponseWriter
	h     http.Header
	wrote bool
}

func (f *forwardWriter) Header() http.Header { return f.h }

func (f *forwardWriter) WriteHeader(status int) {
	if f.wrote {
		return
	}
	f.wrote = true
	dst := f.w.Header()
	for _, k := range forwardHeaders {
		if v := f.h.Values(k); len(v) > 0 {
			dst[k] = slices.Clone(v)
		}
	}
	f.w.WriteHeader(status)
}

func (f *forwardWriter) Write(b []byte) (int, error) {
	if !f.wrote {
		f.WriteHeader(http.StatusOK)
	}
	return f.w.Write(b)
}

// Flush lets a large answer (a pcap) stream.
func (f *forwardWriter) Flush() {
	if !f.wrote {
		f.WriteHeader(http.StatusOK)
	}
	if fl, ok := f.w.(http.Flusher); ok {
		fl.Flush()
	}
}
