package bboltstore

import (
	"context"
	"fmt"
	"github.com/quantumlayer/qinfra/server/internal/store/storetest"
	"testing"

	"github.com/quantumlayer/qinfra/pkg/inventory"
	commonv1 "github.com/quantumlayer/qinfra/proto/gen/qinfra/common/v1"
	"github.com/quantumlayer/qinfra/server/internal/store"
)

// BenchmarkApplyFull applies a 2,000-item full inventory to a new host per
// iteration: one committed, fsynced transaction each.
func BenchmarkApplyFull(b *testing.B) {
	const n = 2000
	s := openTemp(b)
	enrollBench(b, s, b.N)
	items := benchItems(b, n, "1.0-1")
	hash := inventory.SetOf(items).Hash()
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		out, err := s.ApplyInventory(ctx, &store.InventoryUpdate{
			HostID: fmt.Sprintf("host-%05d", i), SpoolID: "sp", Seq: 1, Full: true,
			Upserts: items, SetHash: hash, ReceivedAt: now,
		})
		if err != nil || out != store.Applied {
			b.Fatalf("ApplyInventory = %v, %v", out, err)
		}
	}
	b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "items/s")
}

// benchItems returns n sealed packages of a typical size.
func benchItems(tb testing.TB, n int, version string) []*commonv1.Item {
	return storetest.BenchItems(tb, n, version)
}

// enrollBench enrolls n hosts named host-00000... in s.
func enrollBench(tb testing.TB, s *Store, n int) { storetest.EnrollBench(tb, s, n, now) }

// BenchmarkApplyDelta: see storetest.BenchApplyDelta.
func BenchmarkApplyDelta(b *testing.B) { storetest.BenchApplyDelta(b, openTemp(b), now) }
