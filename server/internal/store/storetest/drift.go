package storetest

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
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
	{"DriftScopedReplace", testDriftScopedReplace},
	{"DriftPrune", testDriftPrune},
	{"DriftCount", testDriftCount},
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

// replaceScoped is replace for a scoped re-check; the events come sorted,
// the contract not ordering them.
func replaceScoped(t *testing.T, s store.Store, now time.Time, host string, scope *baseline.Scope, devs ...baseline.Deviation) []string {
	t.Helper()
	ev, err := s.ReplaceHostDrift(t.Context(), now, store.HostDeviations{HostID: host, Deviations: devs, Scope: scope})
	if err != nil {
		t.Fatalf("ReplaceHostDrift(%s, scoped): %v", host, err)
	}
	var out []string
	for _, e := range ev {
		out = append(out, e.Op+" "+e.Drift.Key)
	}
	slices.Sort(out)
	return out
}

func fileDev(bl, path, actual string) baseline.Deviation {
	return baseline.Deviation{
		Baseline: bl, BaselineVersion: 1, Type: baseline.TypePermissions, Severity: baseline.SeverityHigh, Action: "alert",
		Kind: "file", Key: path, Rule: baseline.RuleFileMode, Expected: "0644", Actual: actual,
	}
}

func testDriftScopedReplace(t *testing.T, s store.Store) {
	ctx := t.Context()
	t1, t2, t3, t4 := t0, t0.Add(time.Minute), t0.Add(2*time.Minute), t0.Add(3*time.Minute)
	// A complete evaluation opens everything.
	replace(t, s, t1, "h1",
		dev("web", "openssl", "1.0"), dev("web", "curl", "not installed"), dev("web", "zlib:amd64", "1.2"),
		dev("web", "bash", "4.0"), fileDev("web", "/etc/motd", "0666"))
	replace(t, s, t1, "h2", dev("web", "openssl", "1.0"))
	before := map[string]*store.Drift{}
	for _, d := range listDrift(t, s, store.DriftFilter{HostID: "h1"}) {
		before[d.Key] = d
	}
	if len(before) != 5 {
		t.Fatalf("open drift of h1 = %q", slices.Collect(maps.Keys(before)))
	}
	// unchanged checks that the drift of each key is open as t1 left it.
	unchanged := func(what string, ks ...string) {
		t.Helper()
		for _, k := range ks {
			d, err := s.GetDrift(ctx, before[k].ID)
			if err != nil || !d.Open() || !d.UpdatedAt.Equal(t1) || d.Actual != before[k].Actual {
				t.Fatalf("%s: drift of %s = %+v, %v; want open and unchanged since t1", what, k, d, err)
			}
		}
	}

	// A re-check of openssl, zlib (by name: its key is "name:arch") and
	// nginx: openssl changed, zlib is gone, nginx is new. curl, bash and
	// the file are outside the scope: not given, yet not resolved.
	scope := &baseline.Scope{}
	scope.AddPackage("openssl")
	scope.AddPackage("zlib")
	scope.AddPackage("nginx")
	got := replaceScoped(t, s, t2, "h1", scope, dev("web", "openssl", "1.1"), dev("web", "nginx", "not installed"))
	if want := []string{"opened nginx", "resolved zlib:amd64", "updated openssl"}; !slices.Equal(got, want) {
		t.Fatalf("scoped replace = %q, want %q", got, want)
	}
	unchanged("after a scoped replace", "curl", "bash", "/etc/motd")
	if d, err := s.GetDrift(ctx, before["openssl"].ID); err != nil || !d.Open() || d.Actual != "1.1" || !d.UpdatedAt.Equal(t2) || !d.OpenedAt.Equal(t1) {
		t.Fatalf("updated drift = %+v, %v", d, err)
	}
	if d, err := s.GetDrift(ctx, before["zlib:amd64"].ID); err != nil || d.Open() || !d.ResolvedAt.Equal(t2) {
		t.Fatalf("resolved drift = %+v, %v", d, err)
	}
	if got, want := keys(listDrift(t, s, store.DriftFilter{HostID: "h1"})), []string{
		"h1/openssl/1.1", "h1/curl/not installed", "h1/bash/4.0", "h1//etc/motd/0666", "h1/nginx/not installed",
	}; !slices.Equal(sorted(got), sorted(want)) {
		t.Fatalf("open drift = %q, want %q", got, want)
	}
	// The other host was not touched.
	if got := keys(listDrift(t, s, store.DriftFilter{HostID: "h2"})); !slices.Equal(got, []string{"h2/openssl/1.0"}) {
		t.Fatalf("open drift of h2 = %q", got)
	}

	// The same re-check again: nothing changed within the scope, so
	// nothing happens, though open drift outside it was not given.
	if got := replaceScoped(t, s, t3, "h1", scope, dev("web", "openssl", "1.1"), dev("web", "nginx", "not installed")); len(got) != 0 {
		t.Fatalf("unchanged scoped replace = %q", got)
	}
	// An empty scope with no deviations changes nothing.
	if got := replaceScoped(t, s, t3, "h1", &baseline.Scope{}); len(got) != 0 {
		t.Fatalf("empty scoped replace = %q", got)
	}
	unchanged("after unchanged scoped replaces", "curl", "bash", "/etc/motd")
	if n := len(listDrift(t, s, store.DriftFilter{HostID: "h1"})); n != 5 {
		t.Fatalf("%d open drifts after unchanged scoped replaces, want 5", n)
	}

	// A file scope resolves the file's drift only; a scope that names a
	// package that is a prefix of another name, but not the name, leaves
	// that one alone ("bas" is not "bash").
	fscope := &baseline.Scope{}
	fscope.AddFile("/etc/motd")
	fscope.AddPackage("bas")
	fscope.AddPackage("zlib")
	if got := replaceScoped(t, s, t3, "h1", fscope); !slices.Equal(got, []string{"resolved /etc/motd"}) {
		t.Fatalf("file scoped replace = %q", got)
	}
	unchanged("after a file scoped replace", "curl", "bash")

	// Several hosts in one call, scoped and not: each as documented.
	cscope := &baseline.Scope{}
	cscope.AddPackage("curl")
	ev, err := s.ReplaceHostDrift(ctx, t4,
		store.HostDeviations{HostID: "h1", Scope: cscope, Deviations: []baseline.Deviation{dev("web", "curl", "7.0")}},
		store.HostDeviations{HostID: "h2"})
	if err != nil {
		t.Fatal(err)
	}
	var evs []string
	for _, e := range ev {
		evs = append(evs, e.Drift.HostID+" "+e.Op+" "+e.Drift.Key)
	}
	if want := []string{"h1 updated curl", "h2 resolved openssl"}; !slices.Equal(sorted(evs), want) {
		t.Fatalf("batch replace = %q, want %q", evs, want)
	}
	unchanged("after a batch replace", "bash")
	if got, want := keys(listDrift(t, s, store.DriftFilter{})), []string{
		"h1/openssl/1.1", "h1/curl/7.0", "h1/bash/4.0", "h1/nginx/not installed",
	}; !slices.Equal(sorted(got), sorted(want)) {
		t.Fatalf("open drift = %q, want %q", got, want)
	}
}

func sorted(ss []string) []string {
	out := slices.Clone(ss)
	slices.Sort(out)
	return out
}

// testDriftPrune resolves drift at different times, prunes at a cut-off
// between them, and checks that only drift resolved before it went.
func testDriftPrune(t *testing.T, s store.Store) {
	ctx := t.Context()
	t1, t2, t3, t4 := t0, t0.Add(time.Hour), t0.Add(2*time.Hour), t0.Add(3*time.Hour)
	replace(t, s, t1, "h1", dev("web", "openssl", "1.0"), dev("web", "curl", "1"), dev("web", "bash", "4"), dev("web", "zlib", "1"))
	replace(t, s, t1, "h2", dev("web", "openssl", "1.0"), dev("web", "curl", "1"))
	ids := map[string]string{} // host/key → ID of the first drift
	for _, d := range listDrift(t, s, store.DriftFilter{}) {
		ids[d.HostID+"/"+d.Key] = d.ID
	}
	// bash stays open and is accepted.
	if _, err := s.AcceptDrift(ctx, ids["h1/bash"], store.Acceptance{Justification: "pinned", Until: t4.Add(time.Hour), By: "ops", At: t1}); err != nil {
		t.Fatal(err)
	}
	// At t2, h1's curl and h2's openssl and curl are resolved (h2 has no
	// drift left); at t3, h1's openssl. zlib stays open.
	replace(t, s, t2, "h1", dev("web", "openssl", "1.0"), dev("web", "bash", "4"), dev("web", "zlib", "1"))
	replace(t, s, t2, "h2")
	replace(t, s, t3, "h1", dev("web", "bash", "4"), dev("web", "zlib", "1"))

	// Nothing was resolved before t2.
	if n, err := s.PruneDrift(ctx, t2); err != nil || n != 0 {
		t.Fatalf("PruneDrift(t2) = %d, %v; want 0", n, err)
	}
	// A cut-off between t2 and t3: the three resolved at t2 go.
	if n, err := s.PruneDrift(ctx, t2.Add(time.Minute)); err != nil || n != 3 {
		t.Fatalf("PruneDrift(t2+1m) = %d, %v; want 3", n, err)
	}
	for _, k := range []string{"h1/curl", "h2/openssl", "h2/curl"} {
		if d, err := s.GetDrift(ctx, ids[k]); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("GetDrift(%s, pruned %s) = %+v, %v; want ErrNotFound", ids[k], k, d, err)
		}
	}
	if d, err := s.GetDrift(ctx, ids["h1/openssl"]); err != nil || d.Open() || !d.ResolvedAt.Equal(t3) {
		t.Fatalf("GetDrift(openssl, resolved at t3) = %+v, %v", d, err)
	}
	if d, err := s.GetDrift(ctx, ids["h1/bash"]); err != nil || !d.Open() || !d.Accepted(t3) {
		t.Fatalf("GetDrift(bash, open and accepted) = %+v, %v", d, err)
	}
	wantAll := []string{"h1/openssl/1.0", "h1/bash/4", "h1/zlib/1"}
	if got := keys(listDrift(t, s, store.DriftFilter{All: true})); !slices.Equal(sorted(got), sorted(wantAll)) {
		t.Fatalf("ListDrift(all) after pruning = %q, want %q", got, wantAll)
	}
	if got := keys(listDrift(t, s, store.DriftFilter{All: true, HostID: "h2"})); len(got) != 0 {
		t.Fatalf("ListDrift(all, h2) after pruning = %q, want none", got)
	}
	if got := keys(listDrift(t, s, store.DriftFilter{})); !slices.Equal(sorted(got), sorted([]string{"h1/bash/4", "h1/zlib/1"})) {
		t.Fatalf("open drift after pruning = %q", got)
	}
	// Pruning again at the same cut-off is a no-op.
	if n, err := s.PruneDrift(ctx, t2.Add(time.Minute)); err != nil || n != 0 {
		t.Fatalf("second PruneDrift(t2+1m) = %d, %v; want 0", n, err)
	}
	// A recurrence of pruned drift opens a new drift as usual.
	if got := replace(t, s, t4, "h2", dev("web", "curl", "2")); !slices.Equal(got, []string{"opened curl"}) {
		t.Fatalf("recurrence after pruning = %q", got)
	}
	h2 := listDrift(t, s, store.DriftFilter{All: true, HostID: "h2"})
	if len(h2) != 1 || !h2[0].Open() || !h2[0].OpenedAt.Equal(t4) || h2[0].ID == ids["h2/curl"] {
		t.Fatalf("h2 drift after recurrence = %+v", h2)
	}
	// A cut-off after everything: only what is resolved goes, never open
	// drift, accepted or not.
	if n, err := s.PruneDrift(ctx, t4.Add(24*time.Hour)); err != nil || n != 1 {
		t.Fatalf("PruneDrift(all resolved) = %d, %v; want 1", n, err)
	}
	if got := keys(listDrift(t, s, store.DriftFilter{All: true})); !slices.Equal(sorted(got), sorted([]string{"h1/bash/4", "h1/zlib/1", "h2/curl/2"})) {
		t.Fatalf("ListDrift(all) after pruning every resolved drift = %q", got)
	}
	if n, err := s.PruneDrift(ctx, t4.Add(24*time.Hour)); err != nil || n != 0 {
		t.Fatalf("second PruneDrift(all resolved) = %d, %v; want 0", n, err)
	}
	// The remaining drift still resolves and is pruned like any other.
	replace(t, s, t4.Add(time.Hour), "h1")
	if n, err := s.PruneDrift(ctx, t4.Add(2*time.Hour)); err != nil || n != 2 {
		t.Fatalf("PruneDrift after resolving h1 = %d, %v; want 2", n, err)
	}
}

// testDriftCount checks CountDrift against the drift ListDrift returns.
func testDriftCount(t *testing.T, s store.Store) {
	ctx := t.Context()
	count := func(f store.DriftFilter, now time.Time) []store.DriftCount {
		t.Helper()
		cs, err := s.CountDrift(ctx, f, now)
		if err != nil {
			t.Fatalf("CountDrift(%+v): %v", f, err)
		}
		return cs
	}
	// fromList is what CountDrift must answer: ListDrift's drift, counted.
	fromList := func(f store.DriftFilter, now time.Time) []store.DriftCount {
		t.Helper()
		m := map[store.DriftCount]int{}
		for _, d := range listDrift(t, s, f) {
			m[store.DriftCount{HostID: d.HostID, Baseline: d.Baseline, Type: d.Type, Severity: d.Severity, Accepted: d.Accepted(now)}]++
		}
		var out []store.DriftCount
		for c, n := range m {
			c.Count = n
			out = append(out, c)
		}
		slices.SortFunc(out, func(a, b store.DriftCount) int {
			return cmp.Or(cmp.Compare(a.HostID, b.HostID), cmp.Compare(a.Baseline, b.Baseline), cmp.Compare(a.Type, b.Type),
				cmp.Compare(a.Severity, b.Severity), cmp.Compare(fmt.Sprint(a.Accepted), fmt.Sprint(b.Accepted)))
		})
		return out
	}
	if got := count(store.DriftFilter{}, t0); len(got) != 0 {
		t.Fatalf("CountDrift of an empty store = %+v", got)
	}
	users := dev("base", "mallory", "present")
	users.Type, users.Severity, users.Rule, users.Kind = baseline.TypeUsers, baseline.SeverityCritical, baseline.RuleUserAllowed, "user"
	crit := dev("web", "bash", "4")
	crit.Severity = baseline.SeverityCritical
	replace(t, s, t0, "h1", dev("web", "openssl", "1"), dev("web", "curl", "1"), crit, users)
	replace(t, s, t0, "h2", dev("web", "openssl", "1"), dev("web", "zlib", "1"))
	replace(t, s, t0, "h3", dev("web", "openssl", "1"))
	ids := map[string]string{}
	for _, d := range listDrift(t, s, store.DriftFilter{}) {
		ids[d.HostID+"/"+d.Key] = d.ID
	}
	// h1's curl accepted for an hour, h2's zlib for two.
	for k, until := range map[string]time.Time{"h1/curl": t0.Add(time.Hour), "h2/zlib": t0.Add(2 * time.Hour)} {
		if _, err := s.AcceptDrift(ctx, ids[k], store.Acceptance{Justification: "j", Until: until, By: "ops", At: t0}); err != nil {
			t.Fatal(err)
		}
	}
	// h3's openssl is resolved, then comes back with a new severity.
	replace(t, s, t0.Add(time.Minute), "h3")
	again := dev("web", "openssl", "1")
	again.Severity = baseline.SeverityLow
	replace(t, s, t0.Add(2*time.Minute), "h3", again)

	web, high, ver := "web", baseline.SeverityHigh, baseline.TypeVersion
	want := []store.DriftCount{
		{HostID: "h1", Baseline: "base", Type: baseline.TypeUsers, Severity: baseline.SeverityCritical, Count: 1},
		{HostID: "h1", Baseline: web, Type: ver, Severity: baseline.SeverityCritical, Count: 1},
		{HostID: "h1", Baseline: web, Type: ver, Severity: high, Count: 1},
		{HostID: "h1", Baseline: web, Type: ver, Severity: high, Accepted: true, Count: 1},
		{HostID: "h2", Baseline: web, Type: ver, Severity: high, Count: 1},
		{HostID: "h2", Baseline: web, Type: ver, Severity: high, Accepted: true, Count: 1},
		{HostID: "h3", Baseline: web, Type: ver, Severity: baseline.SeverityLow, Count: 1},
	}
	if got := count(store.DriftFilter{}, t0); !slices.Equal(got, want) {
		t.Fatalf("CountDrift(open, t0) =\n%+v\nwant\n%+v", got, want)
	}
	for _, now := range []time.Time{t0, t0.Add(time.Hour), t0.Add(90 * time.Minute), t0.Add(3 * time.Hour)} {
		for _, f := range []store.DriftFilter{
			{}, {All: true}, {HostID: "h1"}, {HostID: "h3", All: true}, {Baseline: "web"}, {Type: baseline.TypeUsers},
			{Severity: high}, {Severity: high, HostID: "h2"}, {Baseline: "web", Severity: baseline.SeverityLow, All: true},
			{HostID: "nope"}, {Baseline: "nope", All: true},
		} {
			if got, want := count(f, now), fromList(f, now); !slices.Equal(got, want) {
				t.Errorf("CountDrift(%+v, %s) =\n%+v\nwant\n%+v", f, now.Sub(t0), got, want)
			}
		}
	}
	// An acceptance that expired is counted as not accepted once expired
	// in the store too.
	if _, err := s.ExpireDriftAcceptances(ctx, t0.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if got, want := count(store.DriftFilter{}, t0), fromList(store.DriftFilter{}, t0); !slices.Equal(got, want) {
		t.Errorf("CountDrift after expiry =\n%+v\nwant\n%+v", got, want)
	}
	// A changed actual value clears an acceptance.
	replace(t, s, t0.Add(3*time.Minute), "h2", dev("web", "openssl", "1"), dev("web", "zlib", "2"))
	if got := count(store.DriftFilter{HostID: "h2"}, t0); len(got) != 1 || got[0].Count != 2 || got[0].Accepted {
		t.Errorf("CountDrift(h2) after a change = %+v, want 2 not accepted", got)
	}
}
