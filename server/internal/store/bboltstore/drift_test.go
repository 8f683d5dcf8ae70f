package bboltstore

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/quantumlayer/qinfra/pkg/baseline"
	"github.com/quantumlayer/qinfra/server/internal/store"
)

func testDev(key string) baseline.Deviation {
	return baseline.Deviation{
		Baseline: "web", BaselineVersion: 1, Type: baseline.TypeVersion, Severity: baseline.SeverityHigh, Action: "alert",
		Kind: "package", Key: key, Rule: baseline.RulePackageMinimum, Expected: ">= 2", Actual: "1",
	}
}

// openAndResolveDrift opens 10 drifts on each of 3 hosts at now and
// resolves them all, host i's at now + i minutes.
func openAndResolveDrift(t *testing.T, s *Store) {
	t.Helper()
	ctx := context.Background()
	for h := range 3 {
		var devs []baseline.Deviation
		for i := range 10 {
			devs = append(devs, testDev(fmt.Sprintf("p%d", i)))
		}
		host := fmt.Sprintf("host-%d", h)
		if _, err := s.ReplaceHostDrift(ctx, now, store.HostDeviations{HostID: host, Deviations: devs}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.ReplaceHostDrift(ctx, now.Add(time.Duration(h)*time.Minute), store.HostDeviations{HostID: host}); err != nil {
			t.Fatal(err)
		}
	}
}

func bucketKeys(t *testing.T, s *Store, name []byte) int {
	t.Helper()
	n := -1
	if err := s.db.View(func(tx *bolt.Tx) error {
		if b := tx.Bucket(name); b != nil {
			n = b.Stats().KeyN
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestPruneDriftInBatches prunes drift over several transactions and checks
// that the indexes and emptied host buckets go with it.
func TestPruneDriftInBatches(t *testing.T) {
	defer func(n int) { pruneBatch = n }(pruneBatch)
	pruneBatch = 7
	s := openTemp(t)
	ctx := context.Background()
	openAndResolveDrift(t, s)
	if n := bucketKeys(t, s, bucketDriftResolved); n != 30 {
		t.Fatalf("%d resolved drifts indexed, want 30", n)
	}
	if n, err := s.PruneDrift(ctx, now.Add(90*time.Second)); err != nil || n != 20 {
		t.Fatalf("PruneDrift = %d, %v; want 20", n, err)
	}
	if n := bucketKeys(t, s, bucketDriftResolved); n != 10 {
		t.Fatalf("%d resolved drifts indexed after pruning, want 10", n)
	}
	if n := bucketKeys(t, s, bucketDrift); n != 10 {
		t.Fatalf("%d drifts left, want 10", n)
	}
	// drift_by_host holds host-2's bucket and its 10 drifts.
	if n := bucketKeys(t, s, bucketDriftByHost); n != 11 {
		t.Fatalf("%d keys in drift_by_host, want 11 (no empty host bucket)", n)
	}
	if n, err := s.PruneDrift(ctx, now.Add(time.Hour)); err != nil || n != 10 {
		t.Fatalf("PruneDrift = %d, %v; want 10", n, err)
	}
	for _, b := range [][]byte{bucketDrift, bucketDriftResolved, bucketDriftByHost} {
		if n := bucketKeys(t, s, b); n != 0 {
			t.Fatalf("%d keys left in %s, want none", n, b)
		}
	}
}

// TestIndexDrift opens a file whose drift predates drift_resolved and the
// values CountDrift reads: Open brings it up to date once, and pruning and
// counting then work.
func TestIndexDrift(t *testing.T) {
	defer func(n int) { pruneBatch = n }(pruneBatch)
	pruneBatch = 4
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "qinfra.db")
	s := openAt(t, path)
	openAndResolveDrift(t, s)
	// Two drifts stay open, one accepted.
	crit := testDev("crit")
	crit.Severity = baseline.SeverityCritical
	if _, err := s.ReplaceHostDrift(ctx, now, store.HostDeviations{HostID: "host-0", Deviations: []baseline.Deviation{testDev("open"), crit}}); err != nil {
		t.Fatal(err)
	}
	open, err := s.ListDrift(ctx, store.DriftFilter{})
	if err != nil || len(open) != 2 {
		t.Fatalf("open drift = %v, %v", open, err)
	}
	for _, d := range open {
		if d.Key == "crit" {
			if _, err := s.AcceptDrift(ctx, d.ID, store.Acceptance{Justification: "j", Until: now.Add(time.Hour), By: "ops", At: now}); err != nil {
				t.Fatal(err)
			}
		}
	}
	wantCounts := func(s *Store) {
		t.Helper()
		got, err := s.CountDrift(ctx, store.DriftFilter{}, now)
		want := []store.DriftCount{
			{HostID: "host-0", Baseline: "web", Type: baseline.TypeVersion, Severity: baseline.SeverityCritical, Accepted: true, Count: 1},
			{HostID: "host-0", Baseline: "web", Type: baseline.TypeVersion, Severity: baseline.SeverityHigh, Count: 1},
		}
		if err != nil || !slices.Equal(got, want) {
			t.Fatalf("CountDrift = %+v, %v; want %+v", got, err, want)
		}
	}
	wantCounts(s)
	// Make it an older file: no drift_resolved, drift_open values of 24
	// bytes, empty drift_accepted values, no version.
	if err := s.db.Update(func(tx *bolt.Tx) error {
		if err := tx.DeleteBucket(bucketDriftResolved); err != nil {
			return err
		}
		hb := tx.Bucket(bucketDriftOpen).Bucket([]byte("host-0"))
		if err := hb.ForEach(func(k, v []byte) error { return hb.Put(k, bytes.Clone(v[:24])) }); err != nil {
			return err
		}
		acc := tx.Bucket(bucketDriftAccepted)
		if err := acc.ForEach(func(k, _ []byte) error { return acc.Put(k, nil) }); err != nil {
			return err
		}
		return tx.Bucket(bucketMeta).Delete(keyDriftIndex)
	}); err != nil {
		t.Fatal(err)
	}
	// Counting still works on the old entries, by decoding.
	wantCounts(s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openAt(t, path)
	if n := bucketKeys(t, s, bucketDriftResolved); n != 30 {
		t.Fatalf("%d resolved drifts indexed by Open, want 30", n)
	}
	if err := s.db.View(func(tx *bolt.Tx) error {
		if err := tx.Bucket(bucketDriftOpen).Bucket([]byte("host-0")).ForEach(func(k, v []byte) error {
			if _, _, ok := openTypeSeverity(v); !ok {
				return fmt.Errorf("drift_open value %x not extended", v)
			}
			return nil
		}); err != nil {
			return err
		}
		return tx.Bucket(bucketDriftAccepted).ForEach(func(k, v []byte) error {
			if len(v) != 8 {
				return fmt.Errorf("drift_accepted value %x not extended", v)
			}
			return nil
		})
	}); err != nil {
		t.Fatal(err)
	}
	wantCounts(s)
	if n, err := s.PruneDrift(ctx, now.Add(90*time.Second)); err != nil || n != 20 {
		t.Fatalf("PruneDrift = %d, %v; want 20", n, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// The version is set: a second Open does not index again (an entry
	// removed by hand stays removed).
	s = openAt(t, path)
	if err := s.db.Update(func(tx *bolt.Tx) error {
		return tx.DeleteBucket(bucketDriftResolved)
	}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openAt(t, path)
	if n := bucketKeys(t, s, bucketDriftResolved); n != -1 {
		t.Fatalf("Open indexed again: %d entries", n)
	}
	if ds, err := s.ListDrift(ctx, store.DriftFilter{All: true}); err != nil || len(ds) != 12 {
		t.Fatalf("ListDrift(all) = %d drifts, %v; want 12", len(ds), err)
	}
}
