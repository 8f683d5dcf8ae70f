package api_test

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/quantumlayer/qinfra/server/internal/api"
	"github.com/quantumlayer/qinfra/server/internal/auth"
)

// FuzzCreateEnrollmentTokenBody posts arbitrary bodies to the endpoint that
// takes the richest input; whatever arrives, the answer is never a 5xx and
// always a JSON body.
func FuzzCreateEnrollmentTokenBody(f *testing.F) {
	for _, seed := range []string{
		`{}`, `{"uses":3,"ttl":"2h","labels":{"env":"prod"},"description":"x"}`,
		`{"uses":-1}`, `{"uses":1e400}`, `{"ttl":"9223372036854775807ns"}`, `{"ttl":"-0s"}`,
		`{"labels":{"a/":"b"}}`, `{"labels":{"":""}}`, `{"labels":null}`, `{"uses":null}`,
		`{"description":"\ud800"}`, `{"uses":3}garbage`, `{"uses":3`, `[]`, `null`, ``, "\xff\xfe",
		`{"labels":{"k":{"nested":1}}}`, `{"uses":1,"uses":2}`,
	} {
		f.Add([]byte(seed))
	}
	st := openStore(f)
	secret, err := auth.NewAPIToken(context.Background(), st, "fuzz", "operator")
	if err != nil {
		f.Fatal(err)
	}
	h := api.New(api.Options{
		Store:        st,
		Logger:       slog.New(slog.DiscardHandler),
		MaxBodyBytes: 4 << 10,
		Now:          func() time.Time { return testNow },
	})
	f.Fuzz(func(t *testing.T, body []byte) {
		req := httptest.NewRequest("POST", "/api/v1/enrollment-tokens", strings.NewReader(string(body)))
		req.Header.Set("Authorization", "Bearer "+secret)
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("body %q: status %d %s", body, rec.Code, rec.Body)
		}
		if rec.Code != http.StatusCreated && !strings.Contains(rec.Body.String(), `"error":{"code":`) {
			t.Fatalf("body %q: status %d without an error body: %s", body, rec.Code, rec.Body)
		}
	})
}
