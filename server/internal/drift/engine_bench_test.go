package drift

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quantumlayer/qinfra/pkg/baseline"
	"github.com/quantumlayer/qinfra/pkg/inventory"
	"github.com/quantumlayer/qinfra/pkg/pki"
	commonv1 "github.com/quantumlayer/qinfra/proto/gen/qinfra/common/v1"
	"github.com/quantumlayer/qinfra/server/internal/auth"
	"github.com/quantumlayer/qinfra/server/internal/store"
	"github.com/quantumlayer/qinfra/server/internal/store/bboltstore"
	"google.golang.org/protobuf/proto"
)

var engineHosts = flag.Int("engine-hosts", 10000, "hosts in BenchmarkEngineBaselineEdit")

// rowBytes is what one row per host×item holds at the least: the host ID,
// the item's kind and key and its encoded body, with no row header or
// index.
func rowBytes(hostID string, items []*commonv1.Item) int64 {
	var n int64
	for _, it := range items {
		n += int64(len(hostID) + len(it.GetKind()) + len(it.GetKey()) + proto.Size(it))
	}
	return n
}

// BenchmarkEngineBaselineEdit is the path a baseline edit takes in the
// server (PUT /api/v1/baselines/{name} calls Engine.BaselineChanged): each
// of the five image baselines changes one package's version requirement,
// so all 10,000 hosts are re-checked for that package, read from bbolt,
// and every host's drift for it is updated. recheck-s is the time for all
// five edits; full-recheck-s is a whole re-read and re-evaluation of every
// host (what a label change or a full inventory costs per host), for
// comparison. Setup (storing 10,000 inventories) is outside the timer.
func BenchmarkEngineBaselineEdit(b *testing.B) {
	n := *engineHosts
	path := filepath.Join(b.TempDir(), "qinfra.db")
	st, err := bboltstore.Open(path, bboltstore.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	start := time.Now()
	naive, ok := loadFleet(b, st, n)
	if !ok {
		return
	}
	e := New(st, nil, nil)
	hosts, err := e.CheckSelected(ctx, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("setup: %d hosts stored and checked in %s", len(hosts), time.Since(start).Round(time.Millisecond))
	// Storage: the inventory buckets (what content addressing keeps
	// small), and the whole file (drift, free pages and all), against the
	// item bytes alone of one row per host×item.
	fi, err := os.Stat(path)
	if err != nil {
		b.Fatal(err)
	}
	sizes, err := st.BucketSizes(ctx)
	if err != nil {
		b.Fatal(err)
	}
	var inv, driftBytes int64
	for _, name := range bboltstore.InventoryBuckets {
		inv += sizes[name]
	}
	for name, n := range sizes {
		if strings.HasPrefix(name, "drift") {
			driftBytes += n
		}
	}
	var per []string
	for _, name := range bboltstore.InventoryBuckets {
		per = append(per, fmt.Sprintf("%s %d", name, sizes[name]/int64(n)))
	}
	b.Logf("inventory buckets, bytes per host: %s", strings.Join(per, ", "))
	naiveBytes := float64(naive)
	b.ReportMetric(100*float64(inv)/naiveBytes, "inventory-%")
	b.ReportMetric(100*float64(fi.Size())/naiveBytes, "file-%")
	b.Logf("storage: one row per host×item would hold %.1f MiB of keys and bodies alone; inventory buckets %.1f MiB (%.2f%%, %d B/host); drift %.1f MiB; whole file %.1f MiB (%.2f%%)",
		naiveBytes/(1<<20), float64(inv)/(1<<20), 100*float64(inv)/naiveBytes, inv/int64(n), float64(driftBytes)/(1<<20), float64(fi.Size())/(1<<20), 100*float64(fi.Size())/naiveBytes)
	b.ResetTimer()
	var fullDur time.Duration
	for i := range b.N {
		var dur time.Duration
		rechecked := 0
		for j := range fleetImages {
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
			t0 := time.Now()
			k, err := e.BaselineChanged(ctx, old, &upd)
			if err != nil {
				b.Fatal(err)
			}
			dur += time.Since(t0)
			rechecked += k
		}
		b.ReportMetric(dur.Seconds(), "recheck-s")
		b.Logf("edit %d: five baseline edits re-checked %d hosts in %s", i, rechecked, dur.Round(time.Millisecond))
		b.StopTimer()
		t0 := time.Now()
		if _, err := e.CheckSelected(ctx, nil); err != nil {
			b.Fatal(err)
		}
		fullDur += time.Since(t0)
		b.StartTimer()
	}
	b.ReportMetric(fullDur.Seconds()/float64(b.N), "full-recheck-s")
}

// fleetImages is how many images loadFleet builds hosts from.
const fleetImages = 5

// loadFleet stores the fleet of the storage benchmarks in st: for each of
// five images a baseline captured from it (img0...) and an enrollment
// token labelling its hosts image=imgN, then n hosts (host h from image
// h%5, with hostItems' 50 differences of its own), each enrolled with
// a host ID as enrollment makes them (random, so hosts' records land all
// over their tables) and sending a full inventory, from 16 concurrent
// writers as many agent streams are. It returns the bytes one row per
// host×item would hold (rowBytes), and false if it failed b.
func loadFleet(b *testing.B, st store.Store, n int) (naive int64, ok bool) {
	ctx := context.Background()
	now := time.Now()
	tokens := make([][]byte, fleetImages)
	for i := range fleetImages {
		_, _, hash := auth.GenerateSecret(auth.PrefixEnrollmentToken)
		tokens[i] = hash
		err := st.CreateEnrollmentToken(ctx, &store.EnrollmentToken{ID: fmt.Sprintf("tok%d", i), Hash: hash, UsesAllowed: n,
			Labels: map[string]string{"image": fmt.Sprintf("img%d", i)}, ExpiresAt: now.Add(time.Hour), CreatedAt: now})
		if err != nil {
			b.Fatal(err)
		}
		bl := baseline.Capture(image(i), baseline.CaptureOptions{Name: fmt.Sprintf("img%d", i), Selector: map[string]string{"image": fmt.Sprintf("img%d", i)}})
		if _, err := st.PutBaseline(ctx, bl); err != nil {
			b.Fatal(err)
		}
	}
	var total atomic.Int64
	var wg sync.WaitGroup
	jobs := make(chan int)
	for range 16 {
		wg.Go(func() {
			for h := range jobs {
				if b.Failed() {
					continue // drain jobs, so the sender never blocks
				}
				id := pki.NewHostID()
				if err := st.EnrollHost(ctx, tokens[h%fleetImages], now, &store.Host{ID: id, EnrolledAt: now}); err != nil {
					b.Error(err)
					continue
				}
				items := hostItems(image(h%fleetImages), h%fleetImages, h)
				total.Add(rowBytes(id, items))
				out, err := st.ApplyInventory(ctx, &store.InventoryUpdate{HostID: id, SpoolID: "s", Seq: 1, Full: true,
					Upserts: items, SetHash: inventory.SetOf(items).Hash(), ReceivedAt: now})
				if err != nil || out != store.Applied {
					b.Errorf("host %s: ApplyInventory = %v, %v; want applied", id, out, err)
				}
			}
		})
	}
	for h := range n {
		jobs <- h
	}
	close(jobs)
	wg.Wait()
	return total.Load(), !b.Failed()
}
