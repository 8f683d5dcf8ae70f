package bboltstore

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

// benchItems returns n sealed packages of a typical size.
func benchItems(b *testing.B, n int, version string) []*commonv1.Item {
	items := make([]*commonv1.Item, n)
	for i := range items {
		name := fmt.Sprintf("lib-benchmark-package-%05d", i)
		items[i] = sealed(b, &commonv1.Item{
			Kind: inventory.KindPackage, Key: "dpkg:" + name + ":amd64",
			Body: &commonv1.Item_Package{Package: &commonv1.Package{
				Manager: "dpkg", Name: name, Version: version, Arch: "amd64",
				SourceName: name, SourceVersion: version, Status: "installed",
				UpstreamVersion: version, Vendor: "Debian",
			}},
		})
	}
	return items
}

// enrollBench enrolls n hosts named host-00000... in s.
func enrollBench(b testing.TB, s *Store, n int) {
	ctx := context.Background()
	hash := sha256.Sum256([]byte("bench"))
	tok := &store.EnrollmentToken{ID: "bench", Hash: hash[:], UsesAllowed: n, ExpiresAt: now.Add(time.Hour), CreatedAt: now}
	if err := s.CreateEnrollmentToken(ctx, tok); err != nil {
		b.Fatal(err)
	}
	for i := range n {
		if err := s.EnrollHost(ctx, tok.Hash, now, &store.Host{ID: fmt.Sprintf("host-%05d", i), EnrolledAt: now}); err != nil {
			b.Fatal(err)
		}
	}
}

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

// BenchmarkApplyDelta applies 5-item deltas (each changes the version of 5
// packages) to one host holding 2,000 items.
func BenchmarkApplyDelta(b *testing.B) {
	const n, k = 2000, 5
	s := openTemp(b)
	enrollBench(b, s, 1)
	versions := [2][]*commonv1.Item{benchItems(b, n, "1.0-1"), benchItems(b, n, "1.0-2")}
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
	b.ReportMetric(float64(b.N*k)/b.Elapsed().Seconds(), "items/s")
}
