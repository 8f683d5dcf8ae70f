package api_test

import (
	"net/http"
	"strings"
	"testing"
)

// TestRoles calls every authenticated endpoint with no token, a bad one
// and each role, and checks who gets in.
func TestRoles(t *testing.T) {
	f := newFixture(t)
	f.addHost("h-a", "web-1", nil)

	type call struct {
		method, path string
		body         any
		need         string
	}
	calls := []call{
		{"GET", "/api/v1/server-info", nil, "viewer"},
		{"GET", "/api/v1/hosts", nil, "viewer"},
		{"GET", "/api/v1/hosts/h-a", nil, "viewer"},
		{"GET", "/api/v1/hosts/h-a/inventory", nil, "viewer"},
		{"POST", "/api/v1/hosts/h-a/labels", map[string]any{"set": map[string]string{"a": "b"}}, "operator"},
		{"POST", "/api/v1/enrollment-tokens", map[string]any{}, "operator"},
		{"GET", "/api/v1/enrollment-tokens", nil, "operator"},
		{"POST", "/api/v1/hosts/h-a/revoke", nil, "operator"},
		{"GET", "/api/v1/audit", nil, "admin"},
	}
	rank := map[string]int{"viewer": 1, "operator": 2, "admin": 3}
	tokens := map[string]string{"viewer": f.viewer, "operator": f.operator, "admin": f.admin}

	for _, c := range calls {
		for _, tok := range []string{"", "qat_nope_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "garbage", f.viewer + "x"} {
			r := f.do(c.method, c.path, tok, c.body)
			if r.status != http.StatusUnauthorized || r.errorCode(t) != "unauthenticated" {
				t.Errorf("%s %s with token %q: status %d", c.method, c.path, tok, r.status)
			}
			if !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("%s %s: 401 without WWW-Authenticate", c.method, c.path)
			}
		}
		for role, tok := range tokens {
			r := f.do(c.method, c.path, tok, c.body)
			allowed := rank[role] >= rank[c.need]
			switch {
			case allowed && r.status >= 400:
				t.Errorf("%s %s as %s: status %d, want success; %s", c.method, c.path, role, r.status, r.body)
			case !allowed && r.status != http.StatusForbidden:
				t.Errorf("%s %s as %s: status %d, want 403", c.method, c.path, role, r.status)
			case !allowed && r.errorCode(t) != "forbidden":
				t.Errorf("%s %s as %s: code %s", c.method, c.path, role, r.errorCode(t))
			}
		}
	}

	// Other spellings of the header.
	for _, h := range []string{"bearer " + f.viewer, "BEARER  " + f.viewer} {
		req, _ := http.NewRequest("GET", f.srv.URL+"/api/v1/hosts", nil)
		req.Header.Set("Authorization", h)
		resp, err := f.srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("Authorization %q: status %d", h[:8], resp.StatusCode)
		}
	}
	for _, h := range []string{"Basic " + f.viewer, f.viewer, "Bearer", "Bearer "} {
		req, _ := http.NewRequest("GET", f.srv.URL+"/api/v1/hosts", nil)
		req.Header.Set("Authorization", h)
		resp, err := f.srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("malformed Authorization: status %d", resp.StatusCode)
		}
	}

	// Forbidden mutations change nothing and are not audited; the allowed
	// ones above are, each once.
	entries := f.auditEntries()
	actions := map[string]int{}
	for _, e := range entries {
		actions[e.Action]++
	}
	if actions["host.label"] != 2 || actions["enrollment_token.create"] != 2 || actions["host.revoke"] != 2 || len(entries) != 6 {
		t.Errorf("audit actions = %v", actions)
	}
}

// TestUnauthenticatedEndpoints checks the endpoints probes and tooling
// reach without a token.
func TestUnauthenticatedEndpoints(t *testing.T) {
	f := newFixture(t)
	r := f.do("GET", "/healthz", "", nil).mustStatus(t, http.StatusOK)
	if strings.TrimSpace(string(r.body)) != `{"status":"ok"}` {
		t.Errorf("healthz = %s", r.body)
	}
	f.do("GET", "/readyz", "", nil).mustStatus(t, http.StatusOK)
	f.readyMu.Lock()
	f.ready = errString("store closed")
	f.readyMu.Unlock()
	r = f.do("GET", "/readyz", "", nil).mustStatus(t, http.StatusServiceUnavailable)
	if r.errorCode(t) != "not_ready" || !strings.Contains(string(r.body), "store closed") {
		t.Errorf("readyz = %s", r.body)
	}
	r = f.do("GET", "/api/v1/openapi.json", "", nil).mustStatus(t, http.StatusOK)
	var doc struct {
		OpenAPI string         `json:"openapi"`
		Paths   map[string]any `json:"paths"`
	}
	r.json(t, &doc)
	if doc.OpenAPI == "" || doc.Paths["/api/v1/hosts"] == nil {
		t.Errorf("served document lacks fields: %.200s", r.body)
	}
}

type errString string

func (e errString) Error() string { return string(e) }

func TestServerInfo(t *testing.T) {
	f := newFixture(t)
	var info map[string]string
	f.do("GET", "/api/v1/server-info", f.viewer, nil).mustStatus(t, http.StatusOK).json(t, &info)
	if info["ca_fingerprint"] != "sha256:abcd" || info["grpc_address"] != "qinfra.example:8444" || info["version"] == "" {
		t.Errorf("server-info = %v", info)
	}
}

// TestUnknownRoutes checks the mux's own answers are JSON too.
func TestUnknownRoutes(t *testing.T) {
	f := newFixture(t)
	r := f.do("GET", "/api/v1/nope", f.admin, nil).mustStatus(t, http.StatusNotFound)
	if r.errorCode(t) != "not_found" {
		t.Error(string(r.body))
	}
	r = f.do("DELETE", "/api/v1/hosts", f.admin, nil).mustStatus(t, http.StatusMethodNotAllowed)
	if r.errorCode(t) != "method_not_allowed" || !strings.Contains(r.header.Get("Allow"), "GET") {
		t.Errorf("405: %s, Allow %q", r.body, r.header.Get("Allow"))
	}
	f.do("GET", "/api/v1/hosts/h-a/revoke", f.admin, nil).mustStatus(t, http.StatusMethodNotAllowed)
}

// TestRequestLog checks the one log line per request.
func TestRequestLog(t *testing.T) {
	f := newFixture(t)
	f.do("GET", "/api/v1/hosts", f.viewer, nil).mustStatus(t, http.StatusOK)
	f.do("GET", "/api/v1/audit", f.viewer, nil).mustStatus(t, http.StatusForbidden)
	logs := f.logs.String()
	for _, want := range []string{
		`"method":"GET","path":"/api/v1/hosts","route":"GET /api/v1/hosts","status":200`,
		`"status":403`,
		`"actor":"dash (` + tokenID(f.viewer) + `)"`,
		`"duration":`,
		`"component":"api"`,
	} {
		if !strings.Contains(logs, want) {
			t.Errorf("logs lack %s:\n%s", want, logs)
		}
	}
	if strings.Contains(logs, f.viewer) {
		t.Error("logs contain a token secret")
	}
	if n := strings.Count(logs, `"msg":"request"`); n != 2 {
		t.Errorf("%d request lines, want 2", n)
	}
}

// TestStoreFailure checks that a failing store gives a 500 whose body hides
// the cause, which the log line records.
func TestStoreFailure(t *testing.T) {
	f := newFixture(t)
	if err := f.st.Close(); err != nil {
		t.Fatal(err)
	}
	r := f.do("GET", "/api/v1/hosts", f.viewer, nil).mustStatus(t, http.StatusInternalServerError)
	if r.errorCode(t) != "internal" || !strings.Contains(string(r.body), `"message":"internal error"`) {
		t.Errorf("500 body %s", r.body)
	}
	logs := f.logs.String()
	if !strings.Contains(logs, `"level":"ERROR"`) || !strings.Contains(logs, `"error":"authenticate: look up API token:`) {
		t.Errorf("log lacks the cause:\n%s", logs)
	}
	// Health does not touch the store.
	f.do("GET", "/healthz", "", nil).mustStatus(t, http.StatusOK)
}
