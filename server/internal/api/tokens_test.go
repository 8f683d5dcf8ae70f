package api_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/quantumlayer/qinfra/server/internal/auth"
	"github.com/quantumlayer/qinfra/server/internal/store"
)

type createdTokenJSON struct {
	Token       string            `json:"token"`
	ID          string            `json:"id"`
	ExpiresAt   time.Time         `json:"expires_at"`
	UsesAllowed int               `json:"uses_allowed"`
	Labels      map[string]string `json:"labels"`
	Description string            `json:"description"`
}

func TestCreateEnrollmentToken(t *testing.T) {
	f := newFixture(t)

	var got createdTokenJSON
	r := f.do("POST", "/api/v1/enrollment-tokens", f.operator, map[string]any{
		"uses": 5, "ttl": "24h", "labels": map[string]string{"env": "prod"}, "description": "rack 7",
	}).mustStatus(t, http.StatusCreated)
	r.json(t, &got)
	if r.header.Get("Cache-Control") != "no-store" {
		t.Errorf("Cache-Control = %q", r.header.Get("Cache-Control"))
	}
	id, ok := auth.SecretID(auth.PrefixEnrollmentToken, got.Token)
	if !ok || id != got.ID || !strings.HasPrefix(got.Token, "qet_") {
		t.Errorf("token %q id %q", got.Token, got.ID)
	}
	if got.UsesAllowed != 5 || !got.ExpiresAt.Equal(testNow.Add(24*time.Hour)) || got.Labels["env"] != "prod" || got.Description != "rack 7" {
		t.Errorf("created = %+v", got)
	}

	// The secret works: an agent can enroll with it and gets its labels.
	ctx := context.Background()
	h := &store.Host{ID: "h-new", Hostname: "n"}
	if err := f.st.EnrollHost(ctx, auth.HashSecret(got.Token), testNow, h); err != nil {
		t.Fatalf("enroll with created token: %v", err)
	}
	if h.Labels["env"] != "prod" {
		t.Errorf("enrolled host labels = %v", h.Labels)
	}

	// Defaults: one use, the default TTL.
	f.do("POST", "/api/v1/enrollment-tokens", f.operator, map[string]any{}).mustStatus(t, http.StatusCreated).json(t, &got)
	if got.UsesAllowed != 1 || !got.ExpiresAt.Equal(testNow.Add(time.Hour)) || got.Labels == nil {
		t.Errorf("defaults = %+v", got)
	}

	// The audit records the creation, never the secret.
	entries := f.auditEntries()
	if len(entries) != 2 {
		t.Fatalf("audit has %d entries", len(entries))
	}
	for _, e := range entries {
		if e.Action != "enrollment_token.create" || !strings.HasPrefix(e.Target, "enrollment_token/") {
			t.Errorf("entry = %+v", e)
		}
		if strings.Contains(e.Detail, "qet_") {
			t.Errorf("audit detail leaks the secret: %s", e.Detail)
		}
	}
	var detail map[string]any
	if err := json.Unmarshal([]byte(entries[0].Detail), &detail); err != nil || detail["uses"] != float64(5) || detail["ttl"] != "24h0m0s" {
		t.Errorf("detail = %s", entries[0].Detail)
	}

	// The list shows both without secrets, with state.
	var list struct {
		Tokens []map[string]any `json:"tokens"`
	}
	r = f.do("GET", "/api/v1/enrollment-tokens", f.operator, nil).mustStatus(t, http.StatusOK)
	r.json(t, &list)
	if len(list.Tokens) != 2 || strings.Contains(string(r.body), "qet_") || strings.Contains(string(r.body), "hash") {
		t.Fatalf("list = %s", r.body)
	}
	// Both were created at testNow, so find the first by ID.
	var first map[string]any
	for _, tok := range list.Tokens {
		if tok["id"] == id {
			first = tok
		}
	}
	if first["state"] != "active" || first["used"] != float64(1) || first["uses_allowed"] != float64(5) || first["created_by"] != "ops ("+tokenID(f.operator)+")" {
		t.Errorf("first token = %v", first)
	}
}

func TestEnrollmentTokenState(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	for _, tc := range []struct {
		id           string
		expires      time.Time
		used, usable int
	}{
		{"t-active", testNow.Add(time.Minute), 0, 1},
		{"t-expired", testNow, 0, 1},
		{"t-used", testNow.Add(time.Minute), 2, 2},
	} {
		_, _, hash := auth.GenerateSecret(auth.PrefixEnrollmentToken)
		if err := f.st.CreateEnrollmentToken(ctx, &store.EnrollmentToken{
			ID: tc.id, Hash: hash, UsesAllowed: tc.usable, Used: tc.used, ExpiresAt: tc.expires, CreatedAt: testNow.Add(-time.Hour),
		}); err != nil {
			t.Fatal(err)
		}
	}
	var list struct {
		Tokens []struct{ ID, State string } `json:"tokens"`
	}
	f.do("GET", "/api/v1/enrollment-tokens", f.operator, nil).mustStatus(t, http.StatusOK).json(t, &list)
	got := map[string]string{}
	for _, tok := range list.Tokens {
		got[tok.ID] = tok.State
	}
	if got["t-active"] != "active" || got["t-expired"] != "expired" || got["t-used"] != "used_up" {
		t.Errorf("states = %v", got)
	}
}

func TestCreateEnrollmentTokenRejects(t *testing.T) {
	f := newFixture(t)
	hugeLabels := map[string]string{}
	for i := range 1000 {
		hugeLabels["k"+strings.Repeat("a", i%50)+string(rune('a'+i%26))+string(rune('a'+i/26%26))] = "v"
	}
	for name, tc := range map[string]struct {
		body   any
		status int
	}{
		"zero uses":            {`{"uses":0}`, 400},
		"negative uses":        {`{"uses":-1}`, 400},
		"too many uses":        {`{"uses":100001}`, 400},
		"fractional uses":      {`{"uses":1.5}`, 400},
		"huge uses":            {`{"uses":1e30}`, 400},
		"uses as string":       {`{"uses":"5"}`, 400},
		"ttl beyond max":       {`{"ttl":"721h"}`, 400},
		"ttl negative":         {`{"ttl":"-1h"}`, 400},
		"ttl zero":             {`{"ttl":"0s"}`, 400},
		"ttl not duration":     {`{"ttl":"tomorrow"}`, 400},
		"ttl as number":        {`{"ttl":3600}`, 400},
		"ttl overflow":         {`{"ttl":"99999999999999h"}`, 400},
		"bad label":            {`{"labels":{"a b":"c"}}`, 400},
		"huge label map":       {map[string]any{"labels": hugeLabels}, 400},
		"labels not map":       {`{"labels":["a"]}`, 400},
		"long description":     {map[string]any{"description": strings.Repeat("d", 257)}, 400},
		"control description":  {`{"description":"a\u001b[2Jb"}`, 400},
		"unknown field":        {`{"use":3}`, 400},
		"not json":             {`uses=3`, 400},
		"array":                {`[{"uses":3}]`, 400},
		"null":                 {`null`, 400},
		"string":               {`"x"`, 400},
		"empty":                {``, 400},
		"whitespace only":      {"  \n", 400},
		"trailing garbage":     {`{"uses":3} x`, 400},
		"two objects":          {`{"uses":3}{"uses":4}`, 400},
		"truncated":            {`{"uses":3`, 400},
		"oversized":            {`{"description":"` + strings.Repeat("x", 2<<20) + `"}`, 413},
		"oversized whitespace": {`{}` + strings.Repeat(" ", 2<<20), 413},
	} {
		r := f.do("POST", "/api/v1/enrollment-tokens", f.operator, tc.body)
		if r.status != tc.status {
			t.Errorf("%s: status %d, want %d; body %.200s", name, r.status, tc.status, r.body)
			continue
		}
		r.errorCode(t)
	}
	if r := f.do("POST", "/api/v1/enrollment-tokens", f.operator, `{"use":3}`); !strings.Contains(string(r.body), `unknown field \"use\"`) {
		t.Errorf("unknown field not named: %s", r.body)
	}
	if r := f.do("POST", "/api/v1/enrollment-tokens", f.operator, `{"uses":3} x`); !strings.Contains(string(r.body), "after the JSON object") {
		t.Errorf("trailing data not explained: %s", r.body)
	}

	for _, ct := range []string{"", "text/plain", "application/x-www-form-urlencoded", "application/json-seq", "application/json; charset="} {
		r := f.doCT("POST", "/api/v1/enrollment-tokens", f.operator, ct, `{}`)
		if r.status != http.StatusUnsupportedMediaType || r.errorCode(t) != "unsupported_media_type" {
			t.Errorf("Content-Type %q: status %d body %s", ct, r.status, r.body)
		}
	}
	f.doCT("POST", "/api/v1/enrollment-tokens", f.operator, "application/json; charset=utf-8", `{}`).mustStatus(t, http.StatusCreated)
	f.doCT("POST", "/api/v1/enrollment-tokens", f.operator, "Application/JSON", `{}`).mustStatus(t, http.StatusCreated)

	if n := len(f.auditEntries()); n != 2 {
		t.Errorf("audit has %d entries, want 2 (rejected calls are not audited)", n)
	}
	tokens, _ := f.st.ListEnrollmentTokens(context.Background())
	if len(tokens) != 2 {
		t.Errorf("%d tokens stored, want 2", len(tokens))
	}
}
