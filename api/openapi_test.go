package api

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"

	"github.com/sbcwatch/sbcwatch/internal/testtool"
	"github.com/sbcwatch/sbcwatch/store"
)

// strictDoc loads openapi.json, validates it as OpenAPI 3, and closes
// every object schema that lists properties (additionalProperties:
// false), so a response field the document does not list fails the
// validation. Free-form objects (evidence, reports) stay open.
func strictDoc(t *testing.T) *openapi3.T {
	t.Helper()
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(openAPI)
	if err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("openapi.json is not valid OpenAPI 3: %v", err)
	}
	no := false
	seen := map[*openapi3.Schema]bool{}
	var close func(s *openapi3.SchemaRef)
	close = func(s *openapi3.SchemaRef) {
		if s == nil || s.Value == nil || seen[s.Value] {
			return
		}
		v := s.Value
		seen[v] = true
		if len(v.Properties) > 0 && v.AdditionalProperties.Has == nil && v.AdditionalProperties.Schema == nil {
			v.AdditionalProperties.Has = &no
		}
		for _, p := range v.Properties {
			close(p)
		}
		close(v.Items)
		for _, l := range [][]*openapi3.SchemaRef{v.AllOf, v.OneOf, v.AnyOf} {
			for _, x := range l {
				close(x)
			}
		}
	}
	for _, s := range doc.Components.Schemas {
		close(s)
	}
	for _, p := range doc.Paths.Map() {
		for _, op := range p.Operations() {
			for _, r := range op.Responses.Map() {
				if r.Value == nil {
					continue
				}
				for _, mt := range r.Value.Content {
					close(mt.Schema)
				}
			}
		}
	}
	return doc
}

// Every response of every route, for the statuses the tests provoke, is
// what openapi.json says: status documented, every field listed with its
// type, nullability and format, every required field present.
func TestResponsesMatchOpenAPI(t *testing.T) {
	t.Parallel()
	doc := strictDoc(t)
	ran := false
	b := setup(t, Options{RunAudit: func(ctx context.Context, req AuditRunRequest) (any, error) {
		if req.SBC == "nope" {
			return nil, &Error{Status: http.StatusNotFound, Code: "not_found", Message: "no SBC named \"nope\" with an audit is configured"}
		}
		if req.SBC == "down" {
			return nil, fmt.Errorf("connection refused")
		}
		ran = true
		return map[string]any{"audit_ids": []int64{1}}, nil
	}})
	ctx := context.Background()
	b.seedFieldCase(t, "doc-call@x")
	now := time.Now().UTC().Truncate(time.Second)
	b.seedProvisional(t, now)
	d := 3.0
	if err := b.st.SaveCounterSamples(ctx, []store.CounterSample{
		{SBC: "sbc1", Counter: "short_calls", Scope: "global", Time: now.Add(-time.Minute), Value: 10},
		{SBC: "sbc1", Counter: "short_calls", Scope: "global", Time: now, Value: 13, Delta: &d, Rate: &d},
	}); err != nil {
		t.Fatal(err)
	}
	auditID, err := b.st.SaveAudit(ctx, store.AuditRecord{SBC: "sbc1", Kind: "tls", StartedAt: now.Add(-time.Minute), FinishedAt: now,
		OK: true, Summary: "audit of sbc.example.com:5061: 2 handshakes, no findings",
		Report:  map[string]any{"target": "sbc.example.com:5061"},
		Results: []store.AuditResult{{Target: "192.0.2.10:5061", SNI: "sbc.example.com", OK: true, Result: map[string]any{"handshake_ok": true}}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := store.UpsertSBC(ctx, b.st.Pool(), store.SBC{Name: "sbc2", FQDNs: []string{"sbc2.example.com"}, Addresses: []string{"192.0.2.20"}}); err != nil {
		t.Fatal(err)
	}
	fs, err := store.ListFindings(ctx, b.st.Pool(), store.FindingQuery{Limit: 1})
	if err != nil || len(fs.Items) == 0 {
		t.Fatal(err)
	}
	fid := fs.Items[0].ID
	cid := url.PathEscape(b.callID)
	ps, err := store.ListProblems(ctx, b.st.Pool(), store.ProblemQuery{Limit: 1})
	if err != nil || len(ps.Items) == 0 {
		t.Fatalf("no problem stored for the field case: %v", err)
	}
	pid := fmt.Sprint(ps.Items[0].ID)

	type call struct {
		method, pattern, path, token, body string
		status                             int
		hdr                                []string
	}
	R, A := b.read, b.admin
	calls := []call{
		{"GET", "/healthz", "/healthz", "", "", 200, nil},
		{"GET", "/readyz", "/readyz", "", "", 200, nil},
		{"GET", "/metrics", "/metrics", "", "", 200, nil},
		{"GET", "/api/v1/openapi.json", "/api/v1/openapi.json", "", "", 200, nil},
		{"GET", "/api/v1/calls", "/api/v1/calls", R, "", 200, nil},
		{"GET", "/api/v1/calls", "/api/v1/calls?limit=1", R, "", 200, nil},
		{"GET", "/api/v1/calls", "/api/v1/calls?has_findings=true&rule=refer_delivery_failed&number=%2B4930555", R, "", 200, nil},
		{"GET", "/api/v1/calls", "/api/v1/calls?limit=0", R, "", 400, nil},
		{"GET", "/api/v1/calls", "/api/v1/calls", "", "", 401, nil},
		{"GET", "/api/v1/calls/{call_id}", "/api/v1/calls/" + cid, R, "", 200, nil},
		{"GET", "/api/v1/calls/{call_id}", "/api/v1/calls/plain@x?sbc=sbc1", R, "", 200, nil},
		{"GET", "/api/v1/calls/{call_id}", "/api/v1/calls/nope@x", R, "", 404, nil},
		{"GET", "/api/v1/calls/{call_id}/evidence", "/api/v1/calls/" + cid + "/evidence", R, "", 200, nil},
		{"GET", "/api/v1/calls/{call_id}/evidence", "/api/v1/calls/plain@x/evidence", R, "", 200, nil},
		{"GET", "/api/v1/calls/{call_id}/evidence", "/api/v1/calls/" + cid + "/evidence?format=text", R, "", 200, nil},
		{"GET", "/api/v1/calls/{call_id}/evidence", "/api/v1/calls/nope@x/evidence", R, "", 404, nil},
		{"GET", "/api/v1/findings", "/api/v1/findings", R, "", 200, nil},
		{"GET", "/api/v1/findings", "/api/v1/findings?severity=bad", R, "", 400, nil},
		{"POST", "/api/v1/findings/{id}/ack", "/api/v1/findings/" + fid + "/ack", R, "", 403, nil},
		{"POST", "/api/v1/findings/{id}/ack", "/api/v1/findings/" + fid + "/ack", A, `{"by":"alice"}`, 200, []string{"Content-Type", "application/json"}},
		{"POST", "/api/v1/findings/{id}/ack", "/api/v1/findings/nope/ack", A, "", 404, nil},
		{"GET", "/api/v1/findings", "/api/v1/findings?acknowledged=true", R, "", 200, nil},
		{"GET", "/api/v1/findings", "/api/v1/findings?state=open", R, "", 200, nil},
		{"GET", "/api/v1/findings", "/api/v1/findings?retracted=true&rule=refer_delivery_failed", R, "", 200, nil},
		{"GET", "/api/v1/findings", "/api/v1/findings?retracted=maybe", R, "", 400, nil},
		{"GET", "/api/v1/calls", "/api/v1/calls?call_id=prov@x", R, "", 200, nil},
		{"GET", "/api/v1/calls/{call_id}/evidence", "/api/v1/calls/prov@x/evidence", R, "", 200, nil},
		{"GET", "/api/v1/tls", "/api/v1/tls", R, "", 200, nil},
		{"GET", "/api/v1/tls", "/api/v1/tls?failed=true&from_microsoft=true", R, "", 200, nil},
		{"GET", "/api/v1/certificates", "/api/v1/certificates", R, "", 200, nil},
		{"GET", "/api/v1/counters", "/api/v1/counters?sbc=sbc1&counter=short_calls", R, "", 200, nil},
		{"GET", "/api/v1/audits", "/api/v1/audits", R, "", 200, nil},
		{"GET", "/api/v1/audits/{id}", fmt.Sprintf("/api/v1/audits/%d", auditID), R, "", 200, nil},
		{"GET", "/api/v1/audits/{id}", "/api/v1/audits/999999", R, "", 404, nil},
		{"GET", "/api/v1/audits/{id}", "/api/v1/audits/x", R, "", 400, nil},
		{"POST", "/api/v1/audits/run", "/api/v1/audits/run", A, `{"sbc":"sbc1"}`, 200, []string{"Content-Type", "application/json"}},
		{"POST", "/api/v1/audits/run", "/api/v1/audits/run", A, `{"sbc":"nope"}`, 404, []string{"Content-Type", "application/json"}},
		{"POST", "/api/v1/audits/run", "/api/v1/audits/run", A, `{"sbc":"down"}`, 502, []string{"Content-Type", "application/json"}},
		{"GET", "/api/v1/sbcs", "/api/v1/sbcs", R, "", 200, nil},
		{"GET", "/api/v1/problems", "/api/v1/problems", R, "", 200, nil},
		{"GET", "/api/v1/problems", "/api/v1/problems?state=open&severity=critical", R, "", 200, nil},
		{"GET", "/api/v1/problems", "/api/v1/problems?state=bad", R, "", 400, nil},
		{"POST", "/api/v1/problems/{id}/ack", "/api/v1/problems/" + pid + "/ack", R, "", 403, nil},
		{"POST", "/api/v1/problems/{id}/ack", "/api/v1/problems/" + pid + "/ack", A, `{"by":"alice"}`, 200, []string{"Content-Type", "application/json"}},
		{"POST", "/api/v1/problems/{id}/ack", "/api/v1/problems/999999/ack", A, `{"by":"alice"}`, 404, []string{"Content-Type", "application/json"}},
		{"GET", "/api/v1/problems", "/api/v1/problems?acknowledged=true", R, "", 200, nil},
	}
	okOps := map[string]bool{}
	for _, c := range calls {
		t.Run(c.method+" "+c.path, func(t *testing.T) {
			var body io.Reader
			if c.body != "" {
				body = strings.NewReader(c.body)
			}
			got := b.do(t, c.method, c.path, c.token, body, c.hdr...)
			if got.status != c.status {
				t.Fatalf("status %d, want %d: %s", got.status, c.status, got.body)
			}
			item := doc.Paths.Value(c.pattern)
			if item == nil {
				t.Fatalf("%s is not in openapi.json", c.pattern)
			}
			op := item.GetOperation(c.method)
			if op == nil {
				t.Fatalf("%s %s is not in openapi.json", c.method, c.pattern)
			}
			req := httptest.NewRequest(c.method, c.path, strings.NewReader(c.body))
			for i := 0; i+1 < len(c.hdr); i += 2 {
				req.Header.Set(c.hdr[i], c.hdr[i+1])
			}
			if c.token != "" {
				req.Header.Set("Authorization", "Bearer "+c.token)
			}
			params := map[string]string{}
			pp := strings.Split(c.pattern, "/")
			for i, seg := range strings.Split(strings.SplitN(c.path, "?", 2)[0], "/") {
				if i < len(pp) && strings.HasPrefix(pp[i], "{") {
					v, _ := url.PathUnescape(seg)
					params[strings.Trim(pp[i], "{}")] = v
				}
			}
			in := &openapi3filter.RequestValidationInput{
				Request: req, PathParams: params,
				Route:   &routers.Route{Spec: doc, Path: c.pattern, PathItem: item, Method: c.method, Operation: op},
				Options: &openapi3filter.Options{MultiError: true, AuthenticationFunc: openapi3filter.NoopAuthenticationFunc},
			}
			if c.status < 400 {
				if err := openapi3filter.ValidateRequest(context.Background(), in); err != nil {
					t.Errorf("request does not match openapi.json: %v", err)
				}
			}
			rin := &openapi3filter.ResponseValidationInput{
				RequestValidationInput: in, Status: got.status, Header: got.header,
				Body:    io.NopCloser(bytes.NewReader(got.body)),
				Options: &openapi3filter.Options{MultiError: true, IncludeResponseStatus: true},
			}
			if err := openapi3filter.ValidateResponse(context.Background(), rin); err != nil {
				t.Errorf("response does not match openapi.json: %v\n%.2000s", err, got.body)
			}
			if got.status < 300 {
				okOps[c.method+" "+c.pattern] = true
			}
		})
	}
	if !ran {
		t.Error("POST /api/v1/audits/run never reached RunAudit")
	}
	// Every documented operation was answered successfully at least once.
	for p, item := range doc.Paths.Map() {
		for m := range item.Operations() {
			if !okOps[m+" "+p] {
				t.Errorf("%s %s: no successful response validated", m, p)
			}
		}
	}
}

// The document itself: every operation has an operationId, tags and a
// description; servers is set; every property has a type (or a $ref);
// times are format date-time.
func TestOpenAPIDocumentComplete(t *testing.T) {
	t.Parallel()
	doc := strictDoc(t)
	if len(doc.Servers) == 0 {
		t.Error("no servers")
	}
	ids := map[string]bool{}
	for p, item := range doc.Paths.Map() {
		for m, op := range item.Operations() {
			if op.OperationID == "" || len(op.Tags) == 0 || op.Description == "" || op.Summary == "" {
				t.Errorf("%s %s: operationId %q, tags %v, summary and description are required", m, p, op.OperationID, op.Tags)
			}
			if ids[op.OperationID] {
				t.Errorf("operationId %s twice", op.OperationID)
			}
			ids[op.OperationID] = true
			if strings.HasPrefix(p, "/api/v1/") && p != "/api/v1/openapi.json" {
				for _, code := range []string{"400", "401", "403"} {
					if op.Responses.Value(code) == nil {
						t.Errorf("%s %s does not document %s", m, p, code)
					}
				}
			}
		}
	}
	timeName := regexp.MustCompile(`(^time$|_at$|^start$|^end$|^answer$|^last$|^first_seen$|^last_seen$|^not_before$|^not_after$|^started_at$|^finished_at$)`)
	for name, s := range doc.Components.Schemas {
		for pn, p := range s.Value.Properties {
			if p.Ref != "" {
				continue
			}
			v := p.Value
			if v.Type == nil || len(v.Type.Slice()) == 0 {
				if len(v.OneOf) == 0 && len(v.AnyOf) == 0 && len(v.AllOf) == 0 {
					t.Errorf("%s.%s has no type", name, pn)
				}
				continue
			}
			if timeName.MatchString(pn) && v.Type.Is("string") && v.Format != "date-time" {
				t.Errorf("%s.%s is a time without format date-time", name, pn)
			}
		}
	}
}

// redocly lint (the npm @redocly/cli that scripts/deps.sh installs)
// reports no error and no warning on openapi.json, with the recommended
// rules less the two redocly.yaml turns off (and says why).
func TestRedoclyLint(t *testing.T) {
	t.Parallel()
	redocly := testtool.Need(t, "redocly")
	cmd := exec.Command(redocly, "lint", "--config", "redocly.yaml", "--format=stylish", "openapi.json")
	cmd.Env = append(os.Environ(), "REDOCLY_TELEMETRY=off", "REDOCLY_SUPPRESS_UPDATE_NOTICE=true")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("redocly lint: %v\n%s", err, out)
	}
	for _, l := range strings.Split(string(out), "\n") {
		if strings.Contains(l, " warning ") || strings.Contains(l, " error ") {
			t.Errorf("redocly: %s", strings.TrimSpace(l))
		}
	}
	if !slices.ContainsFunc(strings.Split(string(out), "\n"), func(l string) bool { return strings.Contains(l, "validated in") }) {
		t.Errorf("redocly did not validate: %s", out)
	}
}
