package bboltstore

import (
	"context"
	"fmt"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/quantumlayer/qinfra/pkg/inventory"
	commonv1 "github.com/quantumlayer/qinfra/proto/gen/qinfra/common/v1"
	"github.com/quantumlayer/qinfra/server/internal/store"
)

// TestPruneInBatches prunes history and audit entries over several
// transactions, and checks that the history's time index and emptied host
// buckets go with the rows.
func TestPruneInBatches(t *testing.T) {
	defer func(n int) { pruneBatch = n }(pruneBatch)
	pruneBatch = 7
	s := openTemp(t)
	ctx := context.Background()
	populate(t, s, nil)
	var cur []*commonv1.Item
	for seq := uint64(2); seq <= 6; seq++ {
		var ups []*commonv1.Item
		for i := range 10 {
			ups = append(ups, testPkg(t, fmt.Sprintf("p%d", i), fmt.Sprint(seq)))
		}
		cur = ups
		out, err := s.ApplyInventory(ctx, &store.InventoryUpdate{HostID: "host-1", SpoolID: "sp", Seq: seq,
			Upserts: ups, SetHash: inventory.SetOf(cur).Hash(), ReceivedAt: now.Add(time.Duration(seq) * time.Minute)})
		if err != nil || out != store.Applied {
			t.Fatalf("ApplyInventory = %v, %v", out, err)
		}
	}
	for range 20 {
		if err := s.AppendAudit(ctx, &store.AuditEntry{Time: now, Action: "test"}); err != nil {
			t.Fatal(err)
		}
	}
	keys := func(b []byte) int {
		n := 0
		if err := s.db.View(func(tx *bolt.Tx) error {
			n = tx.Bucket(b).Stats().KeyN
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := keys(bucketHistoryByTime); n != 50 {
		t.Fatalf("%d changes indexed, want 50", n)
	}
	if n, err := s.PruneHistory(ctx, now.Add(4*time.Minute)); err != nil || n != 20 {
		t.Fatalf("PruneHistory = %d, %v; want 20", n, err)
	}
	if n := keys(bucketHistoryByTime); n != 30 {
		t.Fatalf("%d changes indexed after pruning, want 30", n)
	}
	if n, err := s.PruneHistory(ctx, now.Add(time.Hour)); err != nil || n != 30 {
		t.Fatalf("PruneHistory = %d, %v; want 30", n, err)
	}
	if n := keys(bucketHistory); n != 0 {
		t.Fatalf("%d keys left in the history bucket, want none (no empty host bucket)", n)
	}
	if n, err := s.PruneAudit(ctx, now.Add(time.Second)); err != nil || n != 21 {
		t.Fatalf("PruneAudit = %d, %v; want 21", n, err)
	}
	e := &store.AuditEntry{Time: now, Action: "after"}
	if err := s.AppendAudit(ctx, e); err != nil || e.Seq != 22 {
		t.Fatalf("AppendAudit after pruning everything: seq %d, %v; want 22", e.Seq, err)
	}
}
