package drift

import (
	"crypto/sha256"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/quantumlayer/qinfra/pkg/baseline"
	"github.com/quantumlayer/qinfra/pkg/inventory"
	commonv1 "github.com/quantumlayer/qinfra/proto/gen/qinfra/common/v1"
	"github.com/quantumlayer/qinfra/server/internal/store"
	"github.com/quantumlayer/qinfra/server/internal/store/bboltstore"
)

// TestSweepHeals: a baseline stored without its re-check (as when the
// re-check failed) leaves drift wrong; sweeps of two hosts at a time, in
// ID order and wrapping around, bring every host back to a full
// evaluation, and a further sweep changes nothing.
func TestSweepHeals(t *testing.T) {
	st, err := bboltstore.Open(filepath.Join(t.TempDir(), "qinfra.db"), bboltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx := t.Context()
	now := time.Now()
	e := New(st, nil, nil)
	hash := sha256.Sum256([]byte("sweep"))
	if err := st.CreateEnrollmentToken(ctx, &store.EnrollmentToken{ID: "t", Hash: hash[:], UsesAllowed: 3, ExpiresAt: now.Add(time.Hour), CreatedAt: now}); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		id := fmt.Sprintf("h-%d", i)
		if err := st.EnrollHost(ctx, hash[:], now, &store.Host{ID: id, EnrolledAt: now}); err != nil {
			t.Fatal(err)
		}
		items := []*commonv1.Item{pkgItem("openssl", "1.0")}
		if _, err := st.ApplyInventory(ctx, &store.InventoryUpdate{HostID: id, SpoolID: "s", Seq: 1, Full: true,
			Upserts: items, SetHash: inventory.SetOf(items).Hash(), ReceivedAt: now}); err != nil {
			t.Fatal(err)
		}
	}
	// Stored, never re-checked.
	if _, err := st.PutBaseline(ctx, &baseline.Baseline{Name: "min", Packages: []baseline.PackageRule{{Name: "openssl", Constraint: "minimum", Version: "2.0"}}}); err != nil {
		t.Fatal(err)
	}
	open := func() int {
		ds, err := st.ListDrift(ctx, store.DriftFilter{})
		if err != nil {
			t.Fatal(err)
		}
		return len(ds)
	}
	if n := open(); n != 0 {
		t.Fatalf("%d drifts before any sweep", n)
	}
	next, changes, err := e.Sweep(ctx, "", 2)
	if err != nil || next != "h-1" || changes != 2 || open() != 2 {
		t.Fatalf("first sweep: next %q, %d changes, %v; %d open", next, changes, err, open())
	}
	next, changes, err = e.Sweep(ctx, next, 2)
	if err != nil || next != "h-0" || changes != 1 || open() != 3 {
		t.Fatalf("second sweep (wrapping): next %q, %d changes, %v; %d open", next, changes, err, open())
	}
	checkAgainstFull(t, st, "after the sweeps")
	if _, changes, err = e.Sweep(ctx, next, 1); err != nil || changes != 0 {
		t.Fatalf("a sweep of a healed fleet changed %d (%v)", changes, err)
	}
}
