package drift

import (
	"context"
	"flag"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/quantumlayer/qinfra/pkg/baseline"
	"github.com/quantumlayer/qinfra/pkg/inventory"
	"github.com/quantumlayer/qinfra/server/internal/auth"
	"github.com/quantumlayer/qinfra/server/internal/store"
	"github.com/quantumlayer/qinfra/server/internal/store/bboltstore"
)

var engineHosts = flag.Int("engine-hosts", 10000, "hosts in BenchmarkEngineBaselineEdit")

// BenchmarkEngineBaselineEdit is the path a baseline edit takes in the
// server: the engine re-reads every selected host's inventory from the
// store, evaluates it and writes the drift that changed. Unlike
// BenchmarkDriftRecompute, the inventories live in bbolt, as they do in
// production. Setup (storing 10,000 inventories) is outside the timer.
func BenchmarkEngineBaselineEdit(b *testing.B) {
	n := *engineHosts
	st, err := bboltstore.Open(filepath.Join(b.TempDir(), "qinfra.db"), bboltstore.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	const images = 5
	now := time.Now()
	imgs := make([]*baseline.Baseline, images)
	tokens := make([][]byte, images)
	for i := range images {
		_, _, hash := auth.GenerateSecret(auth.PrefixEnrollmentToken)
		tokens[i] = hash
		err := st.CreateEnrollmentToken(ctx, &store.EnrollmentToken{ID: fmt.Sprintf("tok%d", i), Hash: hash, UsesAllowed: n,
			Labels: map[string]string{"image": fmt.Sprintf("img%d", i)}, ExpiresAt: now.Add(time.Hour), CreatedAt: now})
		if err != nil {
			b.Fatal(err)
		}
		imgs[i] = baseline.Capture(image(i), baseline.CaptureOptions{Name: fmt.Sprintf("img%d", i), Selector: map[string]string{"image": fmt.Sprintf("img%d", i)}})
		if _, err := st.PutBaseline(ctx, imgs[i]); err != nil {
			b.Fatal(err)
		}
	}
	// Concurrent writers, as many agent streams are, share bbolt's group
	// commits.
	start := time.Now()
	var wg sync.WaitGroup
	jobs := make(chan int)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for h := range jobs {
				id := fmt.Sprintf("host-%05d", h)
				if err := st.EnrollHost(ctx, tokens[h%images], now, &store.Host{ID: id, EnrolledAt: now}); err != nil {
					b.Error(err)
					return
				}
				items := hostItems(image(h%images), h%images, h)
				if _, err := st.ApplyInventory(ctx, &store.InventoryUpdate{HostID: id, SpoolID: "s", Seq: 1, Full: true,
					Upserts: items, SetHash: inventory.SetOf(items).Hash(), ReceivedAt: now}); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	for h := range n {
		jobs <- h
	}
	close(jobs)
	wg.Wait()
	if b.Failed() {
		return
	}
	e := New(st, nil, nil)
	hosts, err := e.CheckSelected(ctx, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("setup: %d hosts stored and checked in %s", len(hosts), time.Since(start).Round(time.Millisecond))
	b.ResetTimer()
	for i := range b.N {
		for j := range images {
			old, err := st.GetBaseline(ctx, fmt.Sprintf("img%d", j), 0)
			if err != nil {
				b.Fatal(err)
			}
			upd := *old
			upd.Packages = append([]baseline.PackageRule(nil), old.Packages...)
			upd.Packages[5].Version = fmt.Sprintf("1.%d.5-%d", j, 1+(i+1)%2)
			if _, err := st.PutBaseline(ctx, &upd); err != nil {
				b.Fatal(err)
			}
		}
		t0 := time.Now()
		// One re-check of every host for all five edits, as an API call
		// per baseline would do it host set by host set.
		if _, err := e.CheckSelected(ctx, nil); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(time.Since(t0).Seconds(), "recheck-s")
		b.Logf("edit %d: re-read, re-evaluated and wrote %d hosts in %s", i, n, time.Since(t0).Round(time.Millisecond))
	}
}
