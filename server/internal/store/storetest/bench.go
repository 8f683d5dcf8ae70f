package storetest

import (
	"context"
	"crypto/sha256"
	"fmt"
	"testing"
	"time"

	"github.com/quantumlayer/qinfra/pkg/inventory"
	commonv1 "github.com/quantumlayer/qinfra/proto/gen/qinfra/common/v1"
	"github.com/quantumlayer/qinfra/server/internal/store"
)

// BenchItems returns n sealed dpkg packages of a typical size, all at
// version, for the backends' benchmarks.
func BenchItems(tb testing.TB, n int, version string) []*commonv1.Item {
	tb.Helper()
	items := make([]*commonv1.Item, n)
	for i := range items {
		name := fmt.Sprintf("lib-benchmark-package-%05d", i)
		items[i] = &commonv1.Item{
			Kind: inventory.KindPackage, Key: "dpkg:" + name + ":amd64",
			Body: &commonv1.Item_Package{Package: &commonv1.Package{
				Manager: "dpkg", Name: name, Version: version, Arch: "amd64",
				SourceName: name, SourceVersion: version, Status: "installed",
				UpstreamVersion: version, Vendor: "Debian",
			}},
		}
		if err := inventory.Seal(items[i]); err != nil {
			tb.Fatal(err)
		}
	}
	return items
}

// EnrollBench enrolls n hosts named host-00000, host-00001 ... in s.
func EnrollBench(tb testing.TB, s store.Store, n int, now time.Time) {
	tb.Helper()
	ctx := context.Background()
	hash := sha256.Sum256([]byte("bench"))
	tok := &store.EnrollmentToken{ID: "bench", Hash: hash[:], UsesAllowed: n, ExpiresAt: now.Add(time.Hour), CreatedAt: now}
	if err := s.CreateEnrollmentToken(ctx, tok); err != nil {
		tb.Fatal(err)
	}
	for i := range n {
		if err := s.EnrollHost(ctx, tok.Hash, now, &store.Host{ID: fmt.Sprintf("host-%05d", i), EnrolledAt: now}); err != nil {
			tb.Fatal(err)
		}
	}
}

// BenchApplyDelta applies 5-item deltas (each changes the version of 5
// packages) to one host holding 2,000 items, the way an agent computes
// them: the set hash kept with an inventory.Accumulator. s must be empty.
func BenchApplyDelta(b *testing.B, s store.Store, now time.Time) {
	const n, k = 2000, 5
	EnrollBench(b, s, 1, now)
	versions := [2][]*commonv1.Item{BenchItems(b, n, "1.0-1"), BenchItems(b, n, "1.0-2")}
	ctx := context.Background()
	out, err := s.ApplyInventory(ctx, &store.InventoryUpdate{
		HostID: "host-00000", SpoolID: "sp", Seq: 1, Full: true,
		Upserts: versions[0], SetHash: inventory.SetOf(versions[0]).Hash(), ReceivedAt: now,
	})
	if err != nil || out != store.Applied {
		b.Fatalf("full ApplyInventory = %v, %v", out, err)
	}
	// The agent's side: which version each item is at, and the set hash.
	var acc inventory.Accumulator
	for _, it := range versions[0] {
		acc.Add(inventory.RefOf(it), it.GetHash())
	}
	at := make([]int, n)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		ups := make([]*commonv1.Item, k)
		for j := range ups {
			idx := (i*k + j) % n
			old := versions[at[idx]][idx]
			at[idx] ^= 1
			ups[j] = versions[at[idx]][idx]
			acc.Remove(inventory.RefOf(old), old.GetHash())
			acc.Add(inventory.RefOf(ups[j]), ups[j].GetHash())
		}
		out, err := s.ApplyInventory(ctx, &store.InventoryUpdate{
			HostID: "host-00000", SpoolID: "sp", Seq: uint64(i + 2),
			Upserts: ups, SetHash: acc.Sum(), ReceivedAt: now,
		})
		if err != nil || out != store.Applied {
			b.Fatalf("delta %d: ApplyInventory = %v, %v", i, out, err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "deltas/s")
	b.ReportMetric(float64(b.N*k)/b.Elapsed().Seconds(), "items/s")
}
