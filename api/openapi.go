package api

import (
	_ "embed"
	"net/http"
	"net/url"
)

// openAPI is the hand-written OpenAPI 3 document of this API.
//
//go:embed openapi.json
var openAPI []byte

func (s *Server) handleOpenAPI(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(openAPI)
}

func urlPathEscape(s string) string { return url.PathEscape(s) }
