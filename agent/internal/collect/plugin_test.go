//go:build linux

package collect

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/quantumlayer/qinfra/agent/internal/config"
	"github.com/quantumlayer/qinfra/pkg/inventory"
	commonv1 "github.com/quantumlayer/qinfra/proto/gen/qinfra/common/v1"
)

var (
	pluginBinOnce sync.Once
	pluginBinDir  string
	pluginBinErr  error
)

// TestMain removes the plugin binaries pluginBins built.
func TestMain(m *testing.M) {
	code := m.Run()
	if pluginBinDir != "" {
		os.RemoveAll(pluginBinDir)
	}
	os.Exit(code)
}

// pluginBins builds the example sysctl plugin and the misbehaving test
// plugin once for the test binary.
func pluginBins(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds plugin binaries")
	}
	pluginBinOnce.Do(func() {
		pluginBinDir, pluginBinErr = os.MkdirTemp("", "qinfra-plugins-")
		if pluginBinErr != nil {
			return
		}
		for out, pkg := range map[string]string{
			"sysctl":    "github.com/quantumlayer/qinfra/plugins/examples/sysctl",
			"misbehave": "./testdata/plugins/misbehave",
		} {
			cmd := exec.Command("go", "build", "-o", filepath.Join(pluginBinDir, out), pkg)
			if b, err := cmd.CombinedOutput(); err != nil {
				pluginBinErr = errors.New(string(b))
				return
			}
		}
	})
	if pluginBinErr != nil {
		t.Fatalf("build plugins: %v", pluginBinErr)
	}
	return pluginBinDir
}

// misbehaving returns the test plugin under the name misbehave-<mode>.
func misbehaving(t *testing.T, mode string) string {
	t.Helper()
	bin := filepath.Join(pluginBins(t), "misbehave")
	p := filepath.Join(t.TempDir(), "misbehave-"+mode)
	if err := os.Link(bin, p); err != nil {
		t.Fatal(err)
	}
	return p
}

// runPlugin runs one plugin collection and checks that its process is gone
// afterwards, whatever happened.
// lockedBuffer is a log sink the test can read while go-plugin's stdio
// goroutine, which may outlive Collect by a moment, still writes to it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func runPlugin(t *testing.T, p config.Plugin, root string) ([]*commonv1.Item, time.Duration, error) {
	t.Helper()
	logs := &lockedBuffer{}
	c := newPluginCollector(p, slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	pid := 0
	c.started = func(p int) { pid = p }
	start := time.Now()
	items, err := c.Collect(context.Background(), HostFS{Root: root})
	took := time.Since(start)
	if pid != 0 {
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("plugin process %d still exists after Collect: %v", pid, err)
		}
	}
	t.Logf("plugin logs:\n%s", logs.String())
	return items, took, err
}

func TestPluginSysctl(t *testing.T) {
	dir := pluginBins(t)
	root := t.TempDir()
	writeFile(t, root, "/proc/sys/net/ipv4/ip_forward", "1\n")
	writeFile(t, root, "/proc/sys/kernel/randomize_va_space", "2\n")
	items, _, err := runPlugin(t, config.Plugin{Path: filepath.Join(dir, "sysctl")}, root)
	if err != nil {
		t.Fatal(err)
	}
	checkItems(t, items)
	var got []string
	for _, it := range items {
		got = append(got, it.GetKey()+"="+it.GetExtension().GetAttributes()["value"])
		if Owner(inventory.RefOf(it)) != "plugin:sysctl" {
			t.Errorf("Owner(%s) = %q", inventory.RefOf(it), Owner(inventory.RefOf(it)))
		}
	}
	diffSets(t, "items", []string{"sysctl:sysctl:kernel.randomize_va_space=2", "sysctl:sysctl:net.ipv4.ip_forward=1"}, lines(strings.Join(got, "\n")))
}

// TestPluginInSet runs plugins beside the built-in collectors: a good one's
// items arrive, a crashing one is a CollectorError of its own, and the
// others' items are all there.
func TestPluginInSet(t *testing.T) {
	dir := pluginBins(t)
	root := t.TempDir()
	writeFile(t, root, "/etc/group", "root:x:0:\n")
	writeFile(t, root, "/proc/sys/net/ipv4/ip_forward", "0\n")
	cfg := Config{Root: root, Plugins: []config.Plugin{
		{Path: filepath.Join(dir, "sysctl")},
		{Path: misbehaving(t, "crash"), Timeout: 5 * time.Second},
	}}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	var disabled []string
	for _, r := range registry() {
		if r.name != "groups" {
			disabled = append(disabled, r.name)
		}
	}
	cfg.Disabled = disabled
	s := New(cfg)
	if got := strings.Join(s.Names(), " "); got != "groups plugin:sysctl plugin:misbehave-crash" {
		t.Errorf("names %q", got)
	}
	items, err := s.Collect(context.Background())
	failed := FailedCollectors(err)
	if len(failed) != 1 || !failed["plugin:misbehave-crash"] {
		t.Errorf("failed collectors %v (%v)", failed, err)
	}
	var keys []string
	for _, it := range items {
		keys = append(keys, it.GetKind()+"/"+it.GetKey())
	}
	diffSets(t, "items", []string{"ext/sysctl:sysctl:net.ipv4.ip_forward", "group/root"}, lines(strings.Join(keys, "\n")))
	if Owner(inventory.Ref{Kind: "ext", Key: "misbehave-crash:probe:root"}) != "plugin:misbehave-crash" {
		t.Error("Owner of a plugin item")
	}
	cfg.Disabled = append(cfg.Disabled, "plugin:misbehave-crash")
	if err := cfg.Validate(); err != nil {
		t.Errorf("disabling a plugin by name: %v", err)
	}
	if got := strings.Join(New(cfg).Names(), " "); got != "groups plugin:sysctl" {
		t.Errorf("names with the plugin disabled %q", got)
	}
}

func TestPluginGood(t *testing.T) {
	p := misbehaving(t, "ok")
	items, _, err := runPlugin(t, config.Plugin{Path: p}, "/some/root")
	if err != nil {
		t.Fatal(err)
	}
	checkItems(t, items)
	if len(items) != 2 || items[0].GetExtension().GetAttributes()["root"] != "/some/root" {
		t.Errorf("items %v", items)
	}
}

// TestPluginFailures: every way a plugin can fail is an error, and the
// process is gone afterwards (runPlugin checks).
func TestPluginFailures(t *testing.T) {
	for mode, want := range map[string]string{
		"crash":      "collect:",
		"panic":      "collect:",
		"error":      "cannot read",
		"garbage":    `is of kind "package"`,
		"foreign":    `claims plugin "sysctl"`,
		"undeclared": `undeclared kind "other"`,
		"badkey":     "extension item key",
		"dup":        "duplicate key",
		"wrongname":  `calls itself "someone-else"`,
	} {
		t.Run(mode, func(t *testing.T) {
			items, _, err := runPlugin(t, config.Plugin{Path: misbehaving(t, mode), Timeout: 10 * time.Second}, "/")
			if err == nil || !strings.Contains(err.Error(), want) || items != nil {
				t.Errorf("Collect = %d items, %v; want an error with %q", len(items), err, want)
			}
		})
	}
}

// TestPluginTimeouts: a plugin stuck in Collect, one slow to answer, and one
// that never completes the handshake are killed when the timeout runs out.
func TestPluginTimeouts(t *testing.T) {
	for _, mode := range []string{"hang", "slow", "nostart"} {
		t.Run(mode, func(t *testing.T) {
			timeout := 1500 * time.Millisecond
			items, took, err := runPlugin(t, config.Plugin{Path: misbehaving(t, mode), Timeout: timeout}, "/")
			if err == nil || items != nil {
				t.Fatalf("Collect = %v, %v; want a timeout error", items, err)
			}
			if took > timeout+4*time.Second {
				t.Errorf("Collect took %s with a %s timeout", took, timeout)
			}
			t.Logf("%s: %v after %s", mode, err, took)
		})
	}
}

func TestPluginMissing(t *testing.T) {
	_, _, err := runPlugin(t, config.Plugin{Path: "/nonexistent/plugin"}, "/")
	if err == nil {
		t.Error("missing executable: no error")
	}
	// Not a plugin at all: it exits without the handshake.
	_, _, err = runPlugin(t, config.Plugin{Path: "/bin/true", Name: "true"}, "/")
	if err == nil {
		t.Error("non-plugin executable: no error")
	}
}

// TestPluginNoLeak: repeated runs, failed ones included, leave no goroutines
// behind.
func TestPluginNoLeak(t *testing.T) {
	ok, crash := misbehaving(t, "ok"), misbehaving(t, "crash")
	run := func() {
		runPlugin(t, config.Plugin{Path: ok}, "/")
		runPlugin(t, config.Plugin{Path: crash}, "/")
	}
	run() // the first run starts gRPC's own long-lived goroutines
	time.Sleep(200 * time.Millisecond)
	before := runtime.NumGoroutine()
	for range 5 {
		run()
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before+2 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if after := runtime.NumGoroutine(); after > before+2 {
		t.Errorf("goroutines: %d before 10 runs, %d after", before, after)
	}
}
