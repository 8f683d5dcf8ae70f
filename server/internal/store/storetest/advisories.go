package storetest

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/quantumlayer/qinfra/server/internal/store"
)

var advisoryTests = []test{
	{"Advisories/PutAndReadBack", testAdvisoriesPut},
	{"Advisories/NewerWinsAndSince", testAdvisoriesNewerWins},
	{"Advisories/Invalid", testAdvisoriesInvalid},
	{"Mutes/CRUD", testMutes},
}

func advisory(id string, modified time.Time, withdrawn bool, pkgs ...string) store.StoredAdvisory {
	return store.StoredAdvisory{
		ID: id, Modified: modified, Withdrawn: withdrawn,
		Ecosystems: []string{"Debian:12"}, Packages: pkgs,
		Raw: fmt.Appendf(nil, `{"id":%q,"modified":%q}`, id, modified.Format(time.RFC3339)),
	}
}

// since collects AdvisoriesSince(after).
func since(t *testing.T, s store.Store, after uint64) []store.StoredAdvisory {
	t.Helper()
	var out []store.StoredAdvisory
	if err := s.AdvisoriesSince(t.Context(), after, func(a store.StoredAdvisory) error {
		out = append(out, a)
		return nil
	}); err != nil {
		t.Fatalf("AdvisoriesSince(%d): %v", after, err)
	}
	return out
}

func ids(as []store.StoredAdvisory) []string {
	var out []string
	for _, a := range as {
		out = append(out, a.ID)
	}
	return out
}

func advisoryState(t *testing.T, s store.Store) store.AdvisoryState {
	t.Helper()
	st, err := s.GetAdvisoryState(t.Context())
	if err != nil {
		t.Fatalf("GetAdvisoryState: %v", err)
	}
	return st
}

func testAdvisoriesPut(t *testing.T, s store.Store) {
	if st := advisoryState(t, s); st != (store.AdvisoryState{}) {
		t.Fatalf("empty store: state %+v, want zero", st)
	}
	if got := since(t, s, 0); len(got) != 0 {
		t.Fatalf("empty store: AdvisoriesSince(0) = %v", ids(got))
	}
	recs := []store.StoredAdvisory{
		advisory("DSA-2", t0, false, "curl"),
		advisory("CVE-1", t0, true, "openssl", "libssl"),
	}
	if err := s.PutAdvisories(t.Context(), recs, t0); err != nil {
		t.Fatalf("PutAdvisories: %v", err)
	}
	st := advisoryState(t, s)
	if st.Count != 2 || st.Withdrawn != 1 || st.Revision == 0 || !st.UpdatedAt.Equal(t0) {
		t.Fatalf("state %+v, want 2 advisories, 1 withdrawn, a revision, updated at %s", st, t0)
	}
	got := since(t, s, 0)
	if !slices.Equal(ids(got), []string{"CVE-1", "DSA-2"}) {
		t.Fatalf("AdvisoriesSince(0) = %v, want [CVE-1 DSA-2]", ids(got))
	}
	a := got[0]
	if !a.Withdrawn || !a.Modified.Equal(t0) || !slices.Equal(a.Packages, []string{"openssl", "libssl"}) ||
		!slices.Equal(a.Ecosystems, []string{"Debian:12"}) || string(a.Raw) != string(recs[1].Raw) || a.Revision != st.Revision {
		t.Fatalf("read back %+v (raw %s), want %+v at revision %d", a, a.Raw, recs[1], st.Revision)
	}
	if got := since(t, s, st.Revision); len(got) != 0 {
		t.Fatalf("AdvisoriesSince(current) = %v, want none", ids(got))
	}
}

func testAdvisoriesNewerWins(t *testing.T, s store.Store) {
	put := func(recs ...store.StoredAdvisory) {
		t.Helper()
		if err := s.PutAdvisories(t.Context(), recs, t0); err != nil {
			t.Fatalf("PutAdvisories: %v", err)
		}
	}
	put(advisory("A", t0, false, "a"), advisory("B", t0, false, "b"))
	rev1 := advisoryState(t, s).Revision

	// An older version is ignored and changes no revision.
	put(advisory("A", t0.Add(-time.Hour), true, "a"))
	if st := advisoryState(t, s); st.Revision != rev1 || st.Count != 2 || st.Withdrawn != 0 {
		t.Fatalf("after putting an older version: state %+v, want revision %d, 2 advisories, none withdrawn", st, rev1)
	}
	// A newer one replaces it and is all that changed since rev1.
	put(advisory("B", t0.Add(time.Hour), true, "b"), advisory("C", t0, false, "c"))
	st := advisoryState(t, s)
	if st.Revision <= rev1 || st.Count != 3 || st.Withdrawn != 1 {
		t.Fatalf("after an update: state %+v, want revision > %d, 3 advisories, 1 withdrawn", st, rev1)
	}
	got := since(t, s, rev1)
	if !slices.Equal(ids(got), []string{"B", "C"}) || !got[0].Withdrawn || !got[0].Modified.Equal(t0.Add(time.Hour)) {
		t.Fatalf("AdvisoriesSince(%d) = %+v, want the new B and C", rev1, got)
	}
	if all := since(t, s, 0); !slices.Equal(ids(all), []string{"A", "B", "C"}) {
		t.Fatalf("AdvisoriesSince(0) = %v, want [A B C], each once", ids(all))
	}
	// The same version again is an upsert of equal data.
	put(advisory("C", t0, false, "c"))
	if st := advisoryState(t, s); st.Count != 3 {
		t.Fatalf("after re-putting C: %d advisories, want 3", st.Count)
	}
}

func testAdvisoriesInvalid(t *testing.T, s store.Store) {
	bad := advisory("X", t0, false)
	bad.Raw = []byte("{not json")
	for name, a := range map[string]store.StoredAdvisory{
		"no id":       {Modified: t0, Raw: []byte(`{}`)},
		"no modified": {ID: "X", Raw: []byte(`{}`)},
		"bad json":    bad,
	} {
		err := s.PutAdvisories(t.Context(), []store.StoredAdvisory{advisory("OK", t0, false), a}, t0)
		if !errors.Is(err, store.ErrInvalid) {
			t.Fatalf("PutAdvisories(%s) = %v, want ErrInvalid", name, err)
		}
	}
	if st := advisoryState(t, s); st.Count != 0 {
		t.Fatalf("after refused puts: %d advisories, want 0 (nothing stored)", st.Count)
	}
}

func testMutes(t *testing.T, s store.Store) {
	if got, err := s.ListMutes(t.Context()); err != nil || len(got) != 0 {
		t.Fatalf("ListMutes on an empty store = %v, %v", got, err)
	}
	m1 := &store.Mute{ID: "m2", HostID: "h1", Vulnerability: "CVE-2024-1", Package: "openssl",
		Justification: "not reachable", Until: t0.Add(24 * time.Hour), CreatedBy: "alice", CreatedAt: t0}
	m2 := &store.Mute{ID: "m1", Vulnerability: "DSA-5514-1", Justification: "accepted", Until: t0.Add(time.Hour), CreatedBy: "bob", CreatedAt: t0}
	for _, m := range []*store.Mute{m1, m2} {
		if err := s.PutMute(t.Context(), m); err != nil {
			t.Fatalf("PutMute(%s): %v", m.ID, err)
		}
	}
	if err := s.PutMute(t.Context(), m1); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("PutMute of an existing ID = %v, want ErrConflict", err)
	}
	if err := s.PutMute(t.Context(), &store.Mute{ID: "m3"}); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("PutMute without vulnerability = %v, want ErrInvalid", err)
	}
	got, err := s.ListMutes(t.Context())
	if err != nil {
		t.Fatalf("ListMutes: %v", err)
	}
	if len(got) != 2 || !sameMute(got[0], m2) || !sameMute(got[1], m1) {
		t.Fatalf("ListMutes = %+v, want [m1 m2] as put", got)
	}
	if err := s.DeleteMute(t.Context(), "m1"); err != nil {
		t.Fatalf("DeleteMute: %v", err)
	}
	if err := s.DeleteMute(t.Context(), "m1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("DeleteMute of a deleted mute = %v, want ErrNotFound", err)
	}
	if got, _ := s.ListMutes(t.Context()); len(got) != 1 || got[0].ID != "m2" {
		t.Fatalf("ListMutes after delete = %+v, want [m2]", got)
	}
}

func sameMute(a, b *store.Mute) bool {
	return a.ID == b.ID && a.HostID == b.HostID && a.Vulnerability == b.Vulnerability && a.Package == b.Package &&
		a.Justification == b.Justification && a.Until.Equal(b.Until) && a.CreatedBy == b.CreatedBy && a.CreatedAt.Equal(b.CreatedAt)
}
