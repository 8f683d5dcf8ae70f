package runner

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/quantumlayer/qinfra/agent/internal/collect"
	"github.com/quantumlayer/qinfra/agent/internal/spool"
	"github.com/quantumlayer/qinfra/pkg/inventory"

	agentv1 "github.com/quantumlayer/qinfra/proto/gen/qinfra/agent/v1"
	commonv1 "github.com/quantumlayer/qinfra/proto/gen/qinfra/common/v1"
)

// byCollector is a PartialScanner whose collectors report what the test
// sets, and which counts the runs of each.
type byCollector struct {
	mu    sync.Mutex
	items map[string][]*commonv1.Item
	errs  map[string]error
	runs  map[string]int
}

func (b *byCollector) set(name string, items ...*commonv1.Item) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.items[name] = items
}

func (b *byCollector) Collect(ctx context.Context) ([]*commonv1.Item, error) {
	return b.CollectOnly(ctx, []string{"dpkg", "users", "files"})
}

func (b *byCollector) CollectOnly(_ context.Context, names []string) ([]*commonv1.Item, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	var items []*commonv1.Item
	var errs []error
	for _, n := range names {
		b.runs[n]++
		items = append(items, b.items[n]...)
		if err := b.errs[n]; err != nil {
			errs = append(errs, &collect.CollectorError{Collector: n, Err: err})
		}
	}
	return items, errors.Join(errs...)
}

func (b *byCollector) runsOf(name string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.runs[name]
}

func newByCollector() *byCollector {
	return &byCollector{items: map[string][]*commonv1.Item{}, errs: map[string]error{}, runs: map[string]int{}}
}

func openSpool(t *testing.T) *spool.Spool {
	t.Helper()
	sp, err := spool.Open(filepath.Join(t.TempDir(), "spool.db"), spool.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sp.Close() })
	return sp
}

func inventories(t *testing.T, sp *spool.Spool) []*agentv1.Inventory {
	t.Helper()
	entries, err := sp.Pending(0, 100)
	if err != nil {
		t.Fatal(err)
	}
	var out []*agentv1.Inventory
	for _, e := range entries {
		if inv := e.Msg.GetInventory(); inv != nil {
			out = append(out, inv)
		}
	}
	return out
}

func keys(inv *agentv1.Inventory) (upserts, removed []string) {
	for _, it := range inv.GetItems() {
		upserts = append(upserts, it.GetKey())
	}
	for _, r := range inv.GetRemoved() {
		removed = append(removed, r.GetKey())
	}
	return upserts, removed
}

func TestScanOnlyRescansOnlyTheNamedCollectors(t *testing.T) {
	sp := openSpool(t)
	sc := newByCollector()
	a1, b1 := item(t, "package", "dpkg:a:amd64", "1"), item(t, "package", "dpkg:b:amd64", "1")
	alice1, alice2 := item(t, "user", "alice", "/bin/sh"), item(t, "user", "alice", "/bin/bash")
	sc.set("dpkg", a1, b1)
	sc.set("users", alice1)
	r := New(Options{Servers: []string{"x"}, Spool: sp, Scanner: sc})
	ctx := context.Background()
	if err := r.Scan(ctx); err != nil {
		t.Fatal(err)
	}
	// a upgraded, b removed, c installed; alice changed too, but only dpkg
	// is rescanned: her change waits for its own rescan.
	a2, c1 := item(t, "package", "dpkg:a:amd64", "2"), item(t, "package", "dpkg:c:amd64", "1")
	sc.set("dpkg", a2, c1)
	sc.set("users", alice2)
	if err := r.ScanOnly(ctx, []string{"dpkg"}); err != nil {
		t.Fatal(err)
	}
	if n := sc.runsOf("users"); n != 1 {
		t.Fatalf("users ran %d times, want once (the full scan)", n)
	}
	invs := inventories(t, sp)
	if len(invs) != 2 {
		t.Fatalf("%d inventories spooled, want 2", len(invs))
	}
	up, rm := keys(invs[1])
	if invs[1].GetFull() || !slices.Equal(up, []string{"dpkg:a:amd64", "dpkg:c:amd64"}) || !slices.Equal(rm, []string{"dpkg:b:amd64"}) {
		t.Fatalf("delta full=%v upserts=%v removed=%v", invs[1].GetFull(), up, rm)
	}
	// The set hash is that of the whole host as the server now holds it.
	if want := inventory.SetOf([]*commonv1.Item{a2, c1, alice1}).Hash(); !bytes.Equal(invs[1].GetSetHash(), want) {
		t.Fatal("set hash is not that of the merged set")
	}
	// Nothing new for dpkg: nothing spooled.
	if err := r.ScanOnly(ctx, []string{"dpkg"}); err != nil {
		t.Fatal(err)
	}
	if err := r.ScanOnly(ctx, []string{"users"}); err != nil {
		t.Fatal(err)
	}
	invs = inventories(t, sp)
	if len(invs) != 3 {
		t.Fatalf("%d inventories spooled, want 3", len(invs))
	}
	if up, rm := keys(invs[2]); !slices.Equal(up, []string{"alice"}) || len(rm) != 0 {
		t.Fatalf("users delta upserts=%v removed=%v", up, rm)
	}
	// A full scan now finds nothing the rescans missed.
	if err := r.Scan(ctx); err != nil {
		t.Fatal(err)
	}
	if n := len(inventories(t, sp)); n != 3 {
		t.Fatalf("the full scan found a difference the targeted ones missed (%d inventories)", n)
	}
}

func TestScanOnlyKeepsItemsOfAFailedCollector(t *testing.T) {
	sp := openSpool(t)
	sc := newByCollector()
	a1, b1 := item(t, "package", "dpkg:a:amd64", "1"), item(t, "package", "dpkg:b:amd64", "1")
	sc.set("dpkg", a1, b1)
	r := New(Options{Servers: []string{"x"}, Spool: sp, Scanner: sc})
	ctx := context.Background()
	if err := r.Scan(ctx); err != nil {
		t.Fatal(err)
	}
	a2 := item(t, "package", "dpkg:a:amd64", "2")
	sc.set("dpkg", a2)
	sc.errs["dpkg"] = errors.New("updates/0003: truncated")
	if err := r.ScanOnly(ctx, []string{"dpkg"}); err != nil {
		t.Fatal(err)
	}
	invs := inventories(t, sp)
	up, rm := keys(invs[len(invs)-1])
	if !slices.Equal(up, []string{"dpkg:a:amd64"}) || len(rm) != 0 {
		t.Fatalf("upserts=%v removed=%v: a failed collector's missing items must be kept", up, rm)
	}
}

func TestScanOnlyBeforeAnySnapshotAsksForAFullScan(t *testing.T) {
	sp := openSpool(t)
	sc := newByCollector()
	sc.set("dpkg", item(t, "package", "dpkg:a:amd64", "1"))
	r := New(Options{Servers: []string{"x"}, Spool: sp, Scanner: sc})
	if err := r.ScanOnly(context.Background(), []string{"dpkg"}); err != nil {
		t.Fatal(err)
	}
	if n := len(inventories(t, sp)); n != 0 {
		t.Fatalf("%d inventories spooled from a partial scan with nothing sent", n)
	}
	select {
	case <-r.scanCh:
	default:
		t.Fatal("no full scan asked for")
	}
}

// fakeWatcher delivers what the test sends.
type fakeWatcher struct {
	ready   chan struct{}
	changes chan []string
	ran     chan struct{}
}

func (f *fakeWatcher) Run(ctx context.Context) {
	close(f.ran)
	close(f.ready)
	<-ctx.Done()
}
func (f *fakeWatcher) Ready() <-chan struct{}   { return f.ready }
func (f *fakeWatcher) Changes() <-chan []string { return f.changes }

func TestChangesAreScannedAtOnceAndRateBounded(t *testing.T) {
	sp := openSpool(t)
	sc := newByCollector()
	sc.set("dpkg", item(t, "package", "dpkg:a:amd64", "1"))
	fw := &fakeWatcher{ready: make(chan struct{}), changes: make(chan []string), ran: make(chan struct{})}
	r := New(Options{Servers: []string{"x"}, Spool: sp, Scanner: sc, Watcher: fw, ScanInterval: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	r.startWatch(ctx, &wg)
	select {
	case <-fw.ran:
	default:
		t.Fatal("startWatch returned before the watcher ran")
	}
	if err := r.Scan(ctx); err != nil {
		t.Fatal(err)
	}
	wg.Go(func() { r.scanLoop(ctx) })

	start := time.Now()
	for range 5 {
		fw.changes <- []string{"dpkg"}
	}
	last := item(t, "package", "dpkg:a:amd64", "2")
	sc.set("dpkg", last)
	fw.changes <- []string{"dpkg"}
	deadline := time.Now().Add(5 * time.Second)
	// The first scan and one per change; the last change may be seen
	// by the scan of the one before, not spooled by its own.
	for sc.runsOf("dpkg") < 7 || len(inventories(t, sp)) < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("dpkg ran %d times for 6 changes, want 7 with the first scan", sc.runsOf("dpkg"))
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Six scans, at most five a second: the last at least a second after
	// the first.
	if d := time.Since(start); d < changeScanWindow {
		t.Fatalf("6 change scans in %s: not rate bounded", d)
	}
	invs := inventories(t, sp)
	if len(invs) != 2 || !bytes.Equal(invs[1].GetItems()[0].GetHash(), last.GetHash()) {
		t.Fatalf("%d inventories; want the first and the one change", len(invs))
	}
	if n := sc.runsOf("users"); n != 1 {
		t.Fatalf("users ran %d times; only dpkg changed", n)
	}
}

func TestCollectorsRunOnlyTheNamedOnes(t *testing.T) {
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, content := range map[string]string{
		"passwd": "root:x:0:0:root:/root:/bin/sh\n",
		"group":  "root:x:0:\n",
	} {
		if err := os.WriteFile(filepath.Join(root, "etc", name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	c := NewCollectors(collect.Config{Root: root, WatchPaths: []string{"/etc/passwd"}, Disabled: []string{"os"}})
	if slices.Contains(c.Names(), "os") || !slices.Contains(c.Names(), "files") {
		t.Fatalf("names %v", c.Names())
	}
	kinds := func(items []*commonv1.Item) []string {
		var out []string
		for _, it := range items {
			out = append(out, it.GetKind()+"/"+it.GetKey())
		}
		return out
	}
	items, err := c.CollectOnly(context.Background(), []string{"users", "nonexistent"})
	if err != nil {
		t.Fatal(err)
	}
	if got := kinds(items); !slices.Equal(got, []string{"user/root"}) {
		t.Fatalf("CollectOnly(users) = %v", got)
	}
	items, err = c.Collect(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got := kinds(items); !slices.Equal(got, []string{"file//etc/passwd", "group/root", "user/root"}) {
		t.Fatalf("Collect = %v", got)
	}
}
