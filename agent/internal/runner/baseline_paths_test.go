package runner

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/quantumlayer/qinfra/agent/internal/collect"
	"github.com/quantumlayer/qinfra/agent/internal/spool"
	"github.com/quantumlayer/qinfra/pkg/inventory"

	agentv1 "github.com/quantumlayer/qinfra/proto/gen/qinfra/agent/v1"
)

// baselineRoot is a host root with a watched file and one the agent's
// configuration does not watch.
func baselineRoot(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	for p, content := range map[string]string{
		"etc/app/main.conf":  "main\n",
		"etc/app/extra.conf": "extra\n",
	} {
		if err := os.MkdirAll(filepath.Join(root, filepath.Dir(p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, p), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// filesOnly returns real collectors of root reporting only files, from
// the watch path /etc/app/main.conf.
func filesOnly(t *testing.T, root string) *Collectors {
	t.Helper()
	c := NewCollectors(collect.Config{Root: root, WatchPaths: []string{"/etc/app/main.conf"},
		Disabled: []string{"os", "ports", "processes", "dpkg", "rpm", "apk", "systemd", "users", "groups", "programs", "services"}})
	if !slices.Equal(c.Names(), []string{"files"}) {
		t.Skipf("no files collector alone on this platform: %v", c.Names())
	}
	return c
}

// pathWatcher is a Watcher recording the extra paths it is given.
type pathWatcher struct {
	fakeWatcher
	mu    sync.Mutex
	paths []string
}

func (w *pathWatcher) SetExtraPaths(paths []string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.paths = slices.Clone(paths)
}

func (w *pathWatcher) extra() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.paths
}

// scanRequested reports, and consumes, a pending ScanNow.
func scanRequested(r *Runner) bool {
	select {
	case <-r.scanCh:
		return true
	default:
		return false
	}
}

// lastSetHas reports whether the set last spooled holds the file item.
func lastSetHas(t *testing.T, sp *spool.Spool, p string) bool {
	t.Helper()
	set, err := sp.LastSet()
	if err != nil {
		t.Fatal(err)
	}
	_, ok := set[inventory.Ref{Kind: inventory.KindFile, Key: p}]
	return ok
}

// TestBaselinePathsReachTheInventory: after a ConfigUpdate naming a file
// the agent's configuration does not watch, a scan is asked for and the
// next inventory reports the file with its hash; invalid entries are
// dropped, the valid ones kept; the list survives a restart, so the file
// is not reported removed before the server says so; an unchanged list
// asks for no scan, and an empty one clears it.
func TestBaselinePathsReachTheInventory(t *testing.T) {
	root := baselineRoot(t)
	sp := openSpool(t)
	ctx := context.Background()
	w := &pathWatcher{}
	r := New(Options{Servers: []string{"x"}, Spool: sp, Scanner: filesOnly(t, root), AcceptBaselinePaths: true, Watcher: w})
	if err := r.Scan(ctx); err != nil {
		t.Fatal(err)
	}
	if lastSetHas(t, sp, "/etc/app/extra.conf") {
		t.Fatal("the unwatched file is reported before any baseline names it")
	}

	r.applyConfig(&agentv1.ConfigUpdate{BaselinePaths: []string{
		"/etc/app/extra.conf", "relative/path", "/etc/../etc/app/main.conf", "/etc/nul\x00", "/" + strings.Repeat("a", 5000),
	}})
	if !scanRequested(r) {
		t.Fatal("new baseline paths must ask for a scan")
	}
	if got := w.extra(); !slices.Equal(got, []string{"/etc/app/extra.conf"}) {
		t.Fatalf("the watcher watches %q besides its own paths", got)
	}
	if err := r.Scan(ctx); err != nil {
		t.Fatal(err)
	}
	invs := inventories(t, sp)
	last := invs[len(invs)-1]
	upserts, removed := keys(last)
	if last.GetFull() || !slices.Equal(upserts, []string{"/etc/app/extra.conf"}) || len(removed) != 0 {
		t.Fatalf("inventory after the config update: full=%v upserts %v removed %v", last.GetFull(), upserts, removed)
	}
	sum := sha256.Sum256([]byte("extra\n"))
	if got := last.GetItems()[0].GetFile().GetSha256(); got != hex.EncodeToString(sum[:]) {
		t.Fatalf("sha256 %q", got)
	}

	// The same list again (a reconnect's Welcome): nothing to do.
	r.applyConfig(&agentv1.ConfigUpdate{BaselinePaths: []string{"/etc/app/extra.conf"}})
	if scanRequested(r) {
		t.Fatal("an unchanged list must not ask for a scan")
	}
	// A Welcome without a configuration keeps the list.
	r.applyConfig(nil)

	// A restarted agent reports the file from its first scan on.
	r2 := New(Options{Servers: []string{"x"}, Spool: sp, Scanner: filesOnly(t, root), AcceptBaselinePaths: true})
	r2.loadBaselinePaths()
	before := len(inventories(t, sp))
	if err := r2.Scan(ctx); err != nil {
		t.Fatal(err)
	}
	if n := len(inventories(t, sp)); n != before {
		t.Fatalf("a restart spooled %d inventories; the file must not look removed", n-before)
	}

	// An empty list clears: the file is removed from the inventory.
	r2.applyConfig(&agentv1.ConfigUpdate{})
	if !scanRequested(r2) {
		t.Fatal("clearing the list must ask for a scan")
	}
	if err := r2.Scan(ctx); err != nil {
		t.Fatal(err)
	}
	invs = inventories(t, sp)
	if _, removed := keys(invs[len(invs)-1]); !slices.Equal(removed, []string{"/etc/app/extra.conf"}) {
		t.Fatalf("removed %v after clearing", removed)
	}
}

// TestBaselinePathsRefused: with accept_baseline_paths off, a ConfigUpdate
// naming a file changes nothing: no scan, and the file never reaches the
// inventory.
func TestBaselinePathsRefused(t *testing.T) {
	root := baselineRoot(t)
	sp := openSpool(t)
	ctx := context.Background()
	r := New(Options{Servers: []string{"x"}, Spool: sp, Scanner: filesOnly(t, root), AcceptBaselinePaths: false})
	if err := r.Scan(ctx); err != nil {
		t.Fatal(err)
	}
	r.applyConfig(&agentv1.ConfigUpdate{ScanIntervalSeconds: 5, BaselinePaths: []string{"/etc/app/extra.conf"}})
	if scanRequested(r) {
		t.Fatal("refused baseline paths must not ask for a scan")
	}
	if err := r.Scan(ctx); err != nil {
		t.Fatal(err)
	}
	if n := len(inventories(t, sp)); n != 1 {
		t.Fatalf("%d inventories spooled, want only the first", n)
	}
	if lastSetHas(t, sp, "/etc/app/extra.conf") {
		t.Fatal("a refused baseline path was reported")
	}
	if _, stored, err := sp.Get(baselinePathsKey); err != nil || stored {
		t.Fatalf("refused baseline paths stored (%v)", err)
	}
	// The rest of the configuration still applies.
	r.mu.Lock()
	interval := r.scanInterval
	r.mu.Unlock()
	if interval.Seconds() != 5 {
		t.Fatalf("scan interval %s", interval)
	}
}
