package pgstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/quantumlayer/qinfra/pkg/baseline"
	"github.com/quantumlayer/qinfra/server/internal/store"
)

// driftDev is a package version deviation of subject key.
func driftDev(key, actual string) baseline.Deviation {
	return baseline.Deviation{Baseline: "web", BaselineVersion: 1, Type: baseline.TypeVersion,
		Severity: baseline.SeverityHigh, Action: "alert", Kind: "package", Key: key,
		Rule: baseline.RulePackageMinimum, Expected: ">= 2", Actual: actual}
}

// docForms returns the first byte of every drift row's doc, by drift ID:
// '{' for JSON, store.DriftCodecV1 for the binary form.
func docForms(t *testing.T, s *Store) map[string]byte {
	t.Helper()
	rows, err := s.pool.Query(context.Background(), `SELECT id, get_byte(doc, 0) FROM drift`)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]byte{}
	for rows.Next() {
		var n int64
		var b int
		if err := rows.Scan(&n, &b); err != nil {
			t.Fatal(err)
		}
		out[driftID(n)] = byte(b)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// countForms counts the binary and JSON docs in forms.
func countForms(forms map[string]byte) (bin, js int) {
	for _, b := range forms {
		switch b {
		case store.DriftCodecV1:
			bin++
		case '{':
			js++
		}
	}
	return bin, js
}

// TestDriftOldJSON: drift rows whose doc is the store.Drift's JSON, as
// builds before store.EncodeDrift wrote them, read back as they were
// through the Store API, and each is rewritten in the binary form when it
// is next written (ReplaceHostDrift, AcceptDrift, ExpireDriftAcceptances);
// the others stay JSON.
func TestDriftOldJSON(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	var h1 []baseline.Deviation
	for i := range 6 {
		h1 = append(h1, driftDev(fmt.Sprintf("p%d", i), "1"))
	}
	h2 := []baseline.Deviation{driftDev("q0", "1"), driftDev("q1", "1")}
	if _, err := s.ReplaceHostDrift(ctx, benchNow, store.HostDeviations{HostID: "h1", Deviations: h1},
		store.HostDeviations{HostID: "h2", Deviations: h2}); err != nil {
		t.Fatal(err)
	}
	// p0 and p1 resolved; p2 accepted.
	if _, err := s.ReplaceHostDrift(ctx, benchNow.Add(time.Minute), store.HostDeviations{HostID: "h1", Deviations: h1[2:]}); err != nil {
		t.Fatal(err)
	}
	open, err := s.ListDrift(ctx, store.DriftFilter{HostID: "h1"})
	if err != nil || len(open) != 4 || open[0].Key != "p2" {
		t.Fatalf("open drift of h1: %+v, %v", open, err)
	}
	if _, err := s.AcceptDrift(ctx, open[0].ID, store.Acceptance{Justification: "j", Until: benchNow.Add(time.Hour), By: "ops", At: benchNow}); err != nil {
		t.Fatal(err)
	}
	all, err := s.ListDrift(ctx, store.DriftFilter{All: true})
	if err != nil || len(all) != 8 {
		t.Fatalf("all drift: %d, %v", len(all), err)
	}
	counts, err := s.CountDrift(ctx, store.DriftFilter{All: true}, benchNow)
	if err != nil {
		t.Fatal(err)
	}
	if bin, js := countForms(docForms(t, s)); bin != 8 || js != 0 {
		t.Fatalf("docs: %d binary, %d JSON; want all 8 binary", bin, js)
	}
	var binSize int
	if err := s.pool.QueryRow(ctx, `SELECT sum(length(doc)) FROM drift`).Scan(&binSize); err != nil {
		t.Fatal(err)
	}

	// Rewrite every doc as the old code wrote it: json.Marshal of the
	// store.Drift.
	if err := s.inTx(ctx, func(tx pgx.Tx) error {
		for _, d := range all {
			doc, err := json.Marshal(d)
			if err != nil {
				return err
			}
			n, _ := driftNum(d.ID)
			if _, err := tx.Exec(ctx, `UPDATE drift SET doc = $2 WHERE id = $1`, n, doc); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if bin, js := countForms(docForms(t, s)); bin != 0 || js != 8 {
		t.Fatalf("docs: %d binary, %d JSON; want all 8 JSON", bin, js)
	}
	var jsonSize int
	if err := s.pool.QueryRow(ctx, `SELECT sum(length(doc)) FROM drift`).Scan(&jsonSize); err != nil {
		t.Fatal(err)
	}
	t.Logf("doc: %d B/row binary, %d B/row JSON", binSize/len(all), jsonSize/len(all))

	// Every read gives what was written.
	if got, err := s.ListDrift(ctx, store.DriftFilter{All: true}); err != nil || !reflect.DeepEqual(got, all) {
		t.Fatalf("ListDrift from JSON: %v\n got %+v\nwant %+v", err, got, all)
	}
	if got, err := s.ListDrift(ctx, store.DriftFilter{HostID: "h1"}); err != nil || !reflect.DeepEqual(got, all[2:6]) {
		t.Fatalf("open drift of h1 from JSON: %v\n got %+v\nwant %+v", err, got, all[2:6])
	}
	for _, d := range all {
		if got, err := s.GetDrift(ctx, d.ID); err != nil || !reflect.DeepEqual(got, d) {
			t.Fatalf("GetDrift(%s) from JSON = %+v, %v; want %+v", d.ID, got, err, d)
		}
	}
	if got, err := s.CountDrift(ctx, store.DriftFilter{All: true}, benchNow); err != nil || !reflect.DeepEqual(got, counts) {
		t.Fatalf("CountDrift = %+v, %v; want %+v", got, err, counts)
	}

	// Writes rewrite the drift they write in the binary form, and what
	// they return is what reads back.
	want := map[string]*store.Drift{}
	for _, d := range all {
		want[d.ID] = d
	}
	wrote := func(what string, ds ...*store.Drift) {
		t.Helper()
		for _, d := range ds {
			want[d.ID] = d
			if got, err := s.GetDrift(ctx, d.ID); err != nil || !reflect.DeepEqual(got, d) {
				t.Fatalf("%s: GetDrift(%s) = %+v, %v; want %+v", what, d.ID, got, err, d)
			}
		}
		forms := docForms(t, s)
		for id, d := range want {
			if f := forms[id]; (f == store.DriftCodecV1) != (d != all[indexOf(all, id)]) {
				t.Fatalf("%s: doc of %s starts %#x", what, id, f)
			}
		}
	}
	// AcceptDrift: p3.
	d, err := s.AcceptDrift(ctx, all[3].ID, store.Acceptance{Justification: "k", Until: benchNow.Add(3 * time.Hour), By: "ops", At: benchNow})
	if err != nil {
		t.Fatal(err)
	}
	wrote("AcceptDrift", d)
	// ExpireDriftAcceptances: p2's acceptance, not p3's.
	ds, err := s.ExpireDriftAcceptances(ctx, benchNow.Add(2*time.Hour))
	if err != nil || len(ds) != 1 || ds[0].ID != all[2].ID || ds[0].Acceptance != nil {
		t.Fatalf("ExpireDriftAcceptances = %+v, %v", ds, err)
	}
	wrote("ExpireDriftAcceptances", ds...)
	// ReplaceHostDrift: p4 updated, p5 as it was; h2's drift resolved.
	h1[4].Actual = "1.5"
	evs, err := s.ReplaceHostDrift(ctx, benchNow.Add(4*time.Hour), store.HostDeviations{HostID: "h1", Deviations: h1[2:]},
		store.HostDeviations{HostID: "h2"})
	if err != nil || len(evs) != 3 {
		t.Fatalf("ReplaceHostDrift = %+v, %v; want 3 events", evs, err)
	}
	ds = ds[:0]
	for _, ev := range evs {
		ds = append(ds, ev.Drift)
	}
	wrote("ReplaceHostDrift", ds...)
	if bin, js := countForms(docForms(t, s)); bin != 5 || js != 3 {
		t.Fatalf("docs: %d binary, %d JSON; want 5 and 3", bin, js)
	}
	// What is left reads as it should.
	got, err := s.ListDrift(ctx, store.DriftFilter{All: true})
	if err != nil || len(got) != 8 {
		t.Fatalf("ListDrift: %d, %v", len(got), err)
	}
	for _, d := range got {
		if !reflect.DeepEqual(d, want[d.ID]) {
			t.Fatalf("ListDrift: %+v; want %+v", d, want[d.ID])
		}
	}
}

func indexOf(ds []*store.Drift, id string) int {
	for i, d := range ds {
		if d.ID == id {
			return i
		}
	}
	return -1
}

// TestDriftDamagedDoc: a damaged doc is refused with an error wrapping
// store.ErrCorruptDrift.
func TestDriftDamagedDoc(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	evs, err := s.ReplaceHostDrift(ctx, benchNow, store.HostDeviations{HostID: "h1", Deviations: []baseline.Deviation{driftDev("p0", "1")}})
	if err != nil || len(evs) != 1 {
		t.Fatalf("ReplaceHostDrift = %+v, %v", evs, err)
	}
	id := evs[0].Drift.ID
	n, _ := driftNum(id)
	for name, doc := range map[string][]byte{
		"unknown form": {0x02, 0x0a, 0x00},
		"bad JSON":     []byte(`{"id":`),
		"bad tag":      {store.DriftCodecV1, 0x80},
	} {
		if _, err := s.pool.Exec(ctx, `UPDATE drift SET doc = $2 WHERE id = $1`, n, doc); err != nil {
			t.Fatal(err)
		}
		if d, err := s.GetDrift(ctx, id); !errors.Is(err, store.ErrCorruptDrift) {
			t.Errorf("%s: GetDrift = %+v, %v; want store.ErrCorruptDrift", name, d, err)
		}
		if ds, err := s.ListDrift(ctx, store.DriftFilter{}); !errors.Is(err, store.ErrCorruptDrift) {
			t.Errorf("%s: ListDrift = %+v, %v; want store.ErrCorruptDrift", name, ds, err)
		}
		if d, err := s.AcceptDrift(ctx, id, store.Acceptance{Justification: "j", Until: benchNow.Add(time.Hour)}); !errors.Is(err, store.ErrCorruptDrift) {
			t.Errorf("%s: AcceptDrift = %+v, %v; want store.ErrCorruptDrift", name, d, err)
		}
	}
}
