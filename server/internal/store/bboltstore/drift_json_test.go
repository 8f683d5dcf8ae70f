package bboltstore

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/quantumlayer/qinfra/pkg/baseline"
	"github.com/quantumlayer/qinfra/server/internal/store"
)

// TestDriftOldJSONInStore: a store whose drift bucket holds JSON values,
// as an older build left it, reads them as before (also when Open indexes
// them again), and a write rewrites a drift in the binary form.
func TestDriftOldJSONInStore(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "qinfra.db")
	s := openAt(t, path)
	openAndResolveDrift(t, s)
	if _, err := s.ReplaceHostDrift(ctx, now, store.HostDeviations{HostID: "host-0", Deviations: []baseline.Deviation{testDev("open"), testDev("open2")}}); err != nil {
		t.Fatal(err)
	}
	open, err := s.ListDrift(ctx, store.DriftFilter{HostID: "host-0"})
	if err != nil || len(open) != 2 {
		t.Fatalf("open drift: %v, %v", open, err)
	}
	if _, err := s.AcceptDrift(ctx, open[0].ID, store.Acceptance{Justification: "j", Until: now.Add(time.Hour), By: "ops", At: now}); err != nil {
		t.Fatal(err)
	}
	all, err := s.ListDrift(ctx, store.DriftFilter{All: true})
	if err != nil || len(all) != 32 {
		t.Fatalf("all drift: %d, %v", len(all), err)
	}
	counts, err := s.CountDrift(ctx, store.DriftFilter{All: true}, now)
	if err != nil {
		t.Fatal(err)
	}
	forms := func() (bin, js int) {
		t.Helper()
		if err := s.db.View(func(tx *bolt.Tx) error {
			return tx.Bucket(bucketDrift).ForEach(func(_, v []byte) error {
				switch v[0] {
				case store.DriftCodecV1:
					bin++
				case '{':
					js++
				}
				return nil
			})
		}); err != nil {
			t.Fatal(err)
		}
		return bin, js
	}
	if bin, js := forms(); bin != 32 || js != 0 {
		t.Fatalf("drift values: %d binary, %d JSON; want all 32 binary", bin, js)
	}
	// Rewrite every drift as JSON, as an older build wrote it, and make
	// Open index the drift again.
	if err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketDrift)
		for _, d := range all {
			n, _ := driftNum(d.ID)
			v, err := json.Marshal(d)
			if err != nil {
				return err
			}
			if err := b.Put(u64(n), v); err != nil {
				return err
			}
		}
		if err := tx.DeleteBucket(bucketDriftResolved); err != nil {
			return err
		}
		return tx.Bucket(bucketMeta).Delete(keyDriftIndex)
	}); err != nil {
		t.Fatal(err)
	}
	if bin, js := forms(); bin != 0 || js != 32 {
		t.Fatalf("drift values: %d binary, %d JSON; want all 32 JSON", bin, js)
	}
	s.Close()
	s = openAt(t, path)
	if got, err := s.ListDrift(ctx, store.DriftFilter{All: true}); err != nil || !reflect.DeepEqual(got, all) {
		t.Fatalf("from JSON: %v\n got %+v\nwant %+v", err, got, all)
	}
	if got, err := s.CountDrift(ctx, store.DriftFilter{All: true}, now); err != nil || !reflect.DeepEqual(got, counts) {
		t.Fatalf("counts from JSON: %+v, %v; want %+v", got, err, counts)
	}
	if n := bucketKeys(t, s, bucketDriftResolved); n != 30 {
		t.Fatalf("drift_resolved has %d keys after indexing JSON drift, want 30", n)
	}
	// A write rewrites the drift in the binary form; the rest stay JSON.
	d, err := s.AcceptDrift(ctx, open[1].ID, store.Acceptance{Justification: "k", Until: now.Add(2 * time.Hour), By: "ops", At: now})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := s.GetDrift(ctx, open[1].ID); err != nil || !reflect.DeepEqual(got, d) {
		t.Fatalf("GetDrift = %+v, %v; want %+v", got, err, d)
	}
	if bin, js := forms(); bin != 1 || js != 31 {
		t.Fatalf("drift values: %d binary, %d JSON; want 1 and 31", bin, js)
	}
	if n, err := s.PruneDrift(ctx, now.Add(time.Hour)); err != nil || n != 30 {
		t.Fatalf("PruneDrift = %d, %v; want 30", n, err)
	}
	if got, err := s.ListDrift(ctx, store.DriftFilter{All: true}); err != nil || len(got) != 2 || !reflect.DeepEqual(got[1], d) {
		t.Fatalf("after pruning: %+v, %v", got, err)
	}
}

// TestDriftDamagedValue: a damaged drift value is refused with an error
// wrapping ErrCorrupt (and store.ErrCorruptDrift), by GetDrift and by
// ListDrift, never a panic.
func TestDriftDamagedValue(t *testing.T) {
	ctx := context.Background()
	s := openTemp(t)
	if _, err := s.ReplaceHostDrift(ctx, now, store.HostDeviations{HostID: "host-0", Deviations: []baseline.Deviation{testDev("open")}}); err != nil {
		t.Fatal(err)
	}
	open, err := s.ListDrift(ctx, store.DriftFilter{HostID: "host-0"})
	if err != nil || len(open) != 1 {
		t.Fatalf("open drift: %v, %v", open, err)
	}
	n, _ := driftNum(open[0].ID)
	for name, v := range map[string][]byte{
		"unknown form": {0x02, 0x0a, 0x00},
		"bad JSON":     []byte(`{"id":`),
		"bad tag":      {store.DriftCodecV1, 0x80},
	} {
		if err := s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketDrift).Put(u64(n), v) }); err != nil {
			t.Fatal(err)
		}
		if d, err := s.GetDrift(ctx, open[0].ID); !errors.Is(err, ErrCorrupt) || !errors.Is(err, store.ErrCorruptDrift) {
			t.Errorf("%s: GetDrift = %+v, %v; want ErrCorrupt and store.ErrCorruptDrift", name, d, err)
		}
		if ds, err := s.ListDrift(ctx, store.DriftFilter{All: true}); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: ListDrift = %+v, %v; want ErrCorrupt", name, ds, err)
		}
	}
}

// realisticDrift is a drift like the fleet benchmark's: a package version
// requirement of an image baseline.
func realisticDrift(host, pkg string, n uint64) *store.Drift {
	t := time.Date(2026, 3, 1, 12, 0, 0, 123456789, time.UTC)
	return &store.Drift{
		ID: driftID(n), HostID: host,
		Deviation: baseline.Deviation{
			Baseline: "img3", BaselineVersion: 4, Type: baseline.TypeVersion, Severity: baseline.SeverityHigh, Action: "alert",
			Kind: "package", Key: pkg + ":amd64", Rule: baseline.RulePackageMinimum, Expected: ">= 1.3.5-2", Actual: "1.3.5-1",
		},
		OpenedAt: t, UpdatedAt: t.Add(time.Hour),
	}
}

// TestDriftBucketSize reports the bytes of the drift bucket on disk, pages
// and all, per drift and per host, for 200 hosts with 48 drifts each in
// the binary form, against the JSON values older builds wrote.
func TestDriftBucketSize(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	s := openTemp(t)
	const hosts, per = 200, 48
	var total, totalJSON int
	if err := s.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketDrift)
		if err != nil {
			return err
		}
		b.FillPercent = appendFill
		n := uint64(0)
		for h := range hosts {
			for i := range per {
				n++
				d := realisticDrift(fmt.Sprintf("host-%05d.example.net", h), fmt.Sprintf("pkg%d-%s", i, strings.Repeat("x", i%8)), n)
				v, err := store.EncodeDrift(d, driftID(n))
				if err != nil {
					return err
				}
				js, _ := json.Marshal(d)
				total, totalJSON = total+len(v), totalJSON+len(js)
				if err := b.Put(binary.BigEndian.AppendUint64(nil, n), v); err != nil {
					return err
				}
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	sizes, err := s.BucketSizes(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d drifts: values %d B/drift binary, %d B/drift JSON; drift bucket %d B/drift, %d B/host (binary)",
		hosts*per, total/(hosts*per), totalJSON/(hosts*per), sizes["drift"]/(hosts*per), sizes["drift"]/hosts)
}
