package storetest

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/quantumlayer/qinfra/pkg/baseline"
	"github.com/quantumlayer/qinfra/server/internal/store"
)

var driftTests = []test{
	{"DriftOpenUpdateResolve", testDriftOpenUpdateResolve},
	{"DriftListFilters", testDriftListFilters},
	{"DriftAcceptAndExpire", testDriftAcceptAndExpire},
}

func dev(bl, key, actual string) baseline.Deviation {
	return baseline.Deviation{
		Baseline: bl, BaselineVersion: 1, Type: baseline.TypeVersion, Severity: baseline.SeverityHigh, Action: "auto-patch",
		Kind: "package", Key: key, Rule: baseline.RulePackageMinimum, Expected: ">= 2", Actual: actual,
	}
}

func replace(t *testing.T, s store.Store, now time.Time, host string, devs ...baseline.Deviation) []string {
	t.Helper()
	ev, err := s.ReplaceHostDrift(t.Context(), now, store.HostDeviations{HostID: host, Deviations: devs})
	if err != nil {
		t.Fatalf("ReplaceHostDrift(%s): %v", host, err)
	}
	var out []string
	for _, e := range ev {
		out = append(out, e.Op+" "+e.Drift.Key)
	}
	return out
}

func listDrift(t *testing.T, s store.Store, f store.DriftFilter) []*store.Drift {
	t.Helper()
	ds, err := s.ListDrift(t.Context(), f)
	if err != nil {
		t.Fatalf("ListDrift(%+v): %v", f, err)
	}
	return ds
}

func keys(ds []*store.Drift) []string {
	var out []string
	for _, d := range ds {
		out = append(out, fmt.Sprintf("%s/%s/%s", d.HostID, d.Key, d.Actual))
	}
	return out
}

func testDriftOpenUpdateResolve(t *testing.T, s store.Store) {
	t1, t2, t3 := t0, t0.Add(time.Minute), t0.Add(2*time.Minute)
	if got := replace(t, s, t1, "h1", dev("web", "openssl", "1.0"), dev("web", "curl", "not installed")); !slices.Equal(got, []string{"opened openssl", "opened curl"}) {
		t.Fatalf("first replace: %q", got)
	}
	// Identical: nothing changes.
	if got := replace(t, s, t2, "h1", dev("web", "curl", "not installed"), dev("web", "openssl", "1.0")); len(got) != 0 {
		t.Fatalf("unchanged replace: %q", got)
	}
	open := listDrift(t, s, store.DriftFilter{HostID: "h1"})
	if len(open) != 2 || !open[0].OpenedAt.Equal(t1) || open[0].ID == "" || open[0].ID == open[1].ID {
		t.Fatalf("open drift = %+v", open)
	}
	sslID := ""
	for _, d := range open {
		if d.Key == "openssl" {
			sslID = d.ID
		}
	}
	// openssl's actual changes (updated in place, same ID); curl goes.
	if got := replace(t, s, t2, "h1", dev("web", "openssl", "1.1")); !slices.Equal(got, []string{"updated openssl", "resolved curl"}) {
		t.Fatalf("second replace: %q", got)
	}
	d, err := s.GetDrift(t.Context(), sslID)
	if err != nil || d.Actual != "1.1" || !d.OpenedAt.Equal(t1) || !d.UpdatedAt.Equal(t2) || !d.Open() {
		t.Fatalf("GetDrift(%s) = %+v, %v", sslID, d, err)
	}
	if _, err := s.GetDrift(t.Context(), "d-999999"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("GetDrift unknown: %v", err)
	}
	if _, err := s.GetDrift(t.Context(), "garbage"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("GetDrift garbage: %v", err)
	}
	// curl comes back: a new drift, the old one stays resolved in history.
	replace(t, s, t3, "h1", dev("web", "openssl", "1.1"), dev("web", "curl", "not installed"))
	all := listDrift(t, s, store.DriftFilter{HostID: "h1", All: true})
	if len(all) != 3 {
		t.Fatalf("history = %q", keys(all))
	}
	var resolved, reopened int
	for _, d := range all {
		if d.Key == "curl" && !d.Open() && d.ResolvedAt.Equal(t2) {
			resolved++
		}
		if d.Key == "curl" && d.Open() && d.OpenedAt.Equal(t3) {
			reopened++
		}
	}
	if resolved != 1 || reopened != 1 {
		t.Fatalf("curl history: %+v", all)
	}
	// All gone.
	if got := replace(t, s, t3, "h1"); len(got) != 2 {
		t.Fatalf("clearing replace: %q", got)
	}
	if open := listDrift(t, s, store.DriftFilter{HostID: "h1"}); len(open) != 0 {
		t.Fatalf("open after clearing: %q", keys(open))
	}
}

func testDriftListFilters(t *testing.T, s store.Store) {
	users := dev("base", "mallory", "present")
	users.Type, users.Severity, users.Rule, users.Kind = baseline.TypeUsers, baseline.SeverityCritical, baseline.RuleUserAllowed, "user"
	_, err := s.ReplaceHostDrift(t.Context(), t0,
		store.HostDeviations{HostID: "h2", Deviations: []baseline.Deviation{dev("web", "openssl", "1"), users}},
		store.HostDeviations{HostID: "h1", Deviations: []baseline.Deviation{dev("web", "openssl", "1")}},
		store.HostDeviations{HostID: "h3"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		f    store.DriftFilter
		want []string
	}{
		{store.DriftFilter{}, []string{"h1/openssl/1", "h2/openssl/1", "h2/mallory/present"}},
		{store.DriftFilter{Baseline: "web"}, []string{"h1/openssl/1", "h2/openssl/1"}},
		{store.DriftFilter{Type: baseline.TypeUsers}, []string{"h2/mallory/present"}},
		{store.DriftFilter{Severity: baseline.SeverityHigh, HostID: "h2"}, []string{"h2/openssl/1"}},
		{store.DriftFilter{HostID: "h3"}, nil},
		{store.DriftFilter{HostID: "nope", All: true}, nil},
	} {
		if got := keys(listDrift(t, s, tc.f)); !slices.Equal(got, tc.want) {
			t.Errorf("ListDrift(%+v) = %q, want %q", tc.f, got, tc.want)
		}
	}
}

func testDriftAcceptAndExpire(t *testing.T, s store.Store) {
	ctx := t.Context()
	replace(t, s, t0, "h1", dev("web", "openssl", "1.0"), dev("web", "curl", "not installed"))
	open := listDrift(t, s, store.DriftFilter{HostID: "h1"})
	byKey := map[string]string{}
	for _, d := range open {
		byKey[d.Key] = d.ID
	}
	a := store.Acceptance{Justification: "vendor pinned", Until: t0.Add(time.Hour), By: "ops", At: t0}
	d, err := s.AcceptDrift(ctx, byKey["openssl"], a)
	if err != nil || d.Acceptance == nil || !d.Accepted(t0) || d.Accepted(t0.Add(time.Hour)) {
		t.Fatalf("AcceptDrift = %+v, %v", d, err)
	}
	if _, err := s.AcceptDrift(ctx, byKey["curl"], a); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AcceptDrift(ctx, "d-999999", a); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("AcceptDrift unknown: %v", err)
	}
	got, err := s.GetDrift(ctx, byKey["openssl"])
	if err != nil || got.Acceptance == nil || got.Acceptance.Justification != "vendor pinned" || !got.Acceptance.Until.Equal(a.Until) {
		t.Fatalf("stored acceptance: %+v, %v", got, err)
	}
	// Unchanged evaluation keeps the acceptance; a changed actual value
	// clears it.
	replace(t, s, t0.Add(time.Minute), "h1", dev("web", "openssl", "1.0"), dev("web", "curl", "not installed (really)"))
	if d, _ := s.GetDrift(ctx, byKey["openssl"]); d.Acceptance == nil {
		t.Fatal("unchanged drift lost its acceptance")
	}
	if d, _ := s.GetDrift(ctx, byKey["curl"]); d.Acceptance != nil {
		t.Fatal("changed drift kept its acceptance")
	}
	if ex, err := s.ExpireDriftAcceptances(ctx, t0.Add(30*time.Minute)); err != nil || len(ex) != 0 {
		t.Fatalf("early expiry = %v, %v", ex, err)
	}
	ex, err := s.ExpireDriftAcceptances(ctx, t0.Add(time.Hour))
	if err != nil || len(ex) != 1 || ex[0].ID != byKey["openssl"] || ex[0].Acceptance != nil {
		t.Fatalf("expiry = %+v, %v", ex, err)
	}
	if d, _ := s.GetDrift(ctx, byKey["openssl"]); d.Acceptance != nil {
		t.Fatal("expired acceptance still stored")
	}
	// Resolved drift cannot be accepted.
	replace(t, s, t0.Add(2*time.Hour), "h1")
	if _, err := s.AcceptDrift(ctx, byKey["openssl"], a); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("AcceptDrift resolved: %v, want ErrInvalid", err)
	}
}
