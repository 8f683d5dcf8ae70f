package watch

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// hostRoot is a fake host root file system in a temporary directory.
type hostRoot struct {
	t   *testing.T
	dir string
}

func newHostRoot(t *testing.T) *hostRoot {
	if runtime.GOOS != "linux" {
		t.Skip("only the Linux collectors read files to watch")
	}
	r := &hostRoot{t: t, dir: t.TempDir()}
	r.write("etc/app/main.conf", "a")
	r.write("etc/passwd", "root:x:0:0::/root:/bin/sh\n")
	r.write("etc/group", "root:x:0:\n")
	r.write("var/lib/dpkg/status", "Package: a\n")
	r.mkdir("var/lib/dpkg/updates")
	r.mkdir("lib/systemd/system")
	r.write("lib/systemd/system/ssh.service", "[Unit]\n")
	return r
}

func (r *hostRoot) path(p string) string { return filepath.Join(r.dir, p) }

func (r *hostRoot) mkdir(p string) {
	r.t.Helper()
	if err := os.MkdirAll(r.path(p), 0o755); err != nil {
		r.t.Fatal(err)
	}
}

// write writes in place, as `echo >>` does.
func (r *hostRoot) write(p, content string) {
	r.t.Helper()
	r.mkdir(filepath.Dir(p))
	if err := os.WriteFile(r.path(p), []byte(content), 0o644); err != nil {
		r.t.Fatal(err)
	}
}

// replace writes a temporary file and renames it over p, as editors and
// package managers do.
func (r *hostRoot) replace(p, content string) {
	r.t.Helper()
	r.mkdir(filepath.Dir(p))
	tmp := r.path(p) + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		r.t.Fatal(err)
	}
	if err := os.Rename(tmp, r.path(p)); err != nil {
		r.t.Fatal(err)
	}
}

// logBuffer collects a logger's output.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// running is a Watcher under test.
type running struct {
	t    *testing.T
	w    *Watcher
	logs *logBuffer
	done chan struct{}
}

func config(r *hostRoot, collectors ...string) Config {
	return Config{
		Root:       r.dir,
		WatchPaths: []string{"/etc/app/*.conf", "/opt/later/conf.d/*.conf"},
		Collectors: collectors,
		Debounce:   20 * time.Millisecond,
		MaxDelay:   150 * time.Millisecond,
	}
}

func start(t *testing.T, cfg Config, wrap func(backend) backend) *running {
	t.Helper()
	return startWith(t, cfg, wrap, nil)
}

// startWith is start, calling before (if set) on the Watcher before Run.
func startWith(t *testing.T, cfg Config, wrap func(backend) backend, before func(*Watcher)) *running {
	t.Helper()
	logs := &logBuffer{}
	cfg.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	w := New(cfg)
	if before != nil {
		before(w)
	}
	if wrap != nil {
		w.newBackend = func() (backend, error) {
			b, err := newFSNotify()
			if err != nil {
				return nil, err
			}
			return wrap(b), nil
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	rw := &running{t: t, w: w, logs: logs, done: make(chan struct{})}
	go func() {
		defer close(rw.done)
		w.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-rw.done
		if t.Failed() {
			t.Logf("watcher log:\n%s", logs)
		}
	})
	select {
	case <-w.Ready():
	case <-time.After(5 * time.Second):
		t.Fatal("watcher not ready")
	}
	return rw
}

// expect waits for the next delivery and checks it names want.
func (rw *running) expect(want ...string) {
	rw.t.Helper()
	select {
	case got := <-rw.w.Changes():
		if !slices.Equal(got, want) {
			rw.t.Fatalf("delivered %v, want %v", got, want)
		}
	case <-time.After(5 * time.Second):
		rw.t.Fatalf("no change delivered; want %v", want)
	}
}

// expectNone checks that nothing is delivered for a while.
func (rw *running) expectNone() {
	rw.t.Helper()
	select {
	case got := <-rw.w.Changes():
		rw.t.Fatalf("unexpected delivery %v", got)
	case <-time.After(300 * time.Millisecond):
	}
}

func TestWatchedFileWrittenInPlaceAndReplaced(t *testing.T) {
	r := newHostRoot(t)
	rw := start(t, config(r, "files"), nil)
	r.write("etc/app/main.conf", "b")
	rw.expect("files")
	r.replace("etc/app/main.conf", "c")
	rw.expect("files")
	r.write("etc/app/new.conf", "n")
	rw.expect("files")
	if err := os.Remove(r.path("etc/app/new.conf")); err != nil {
		t.Fatal(err)
	}
	rw.expect("files")
	if err := os.Chmod(r.path("etc/app/main.conf"), 0o600); err != nil {
		t.Fatal(err)
	}
	rw.expect("files")
}

func TestUnwatchedNamesAreIgnored(t *testing.T) {
	r := newHostRoot(t)
	rw := start(t, config(r, "files", "dpkg"), nil)
	r.write("etc/app/main.conf.swp", "x")
	r.write("etc/other", "x")
	r.write("var/lib/dpkg/lock", "")
	r.write("var/lib/dpkg/updates/tmp.i", "x")
	r.write("var/lib/dpkg/info/a.list", "x")
	rw.expectNone()
}

func TestDirectoryCreatedLater(t *testing.T) {
	r := newHostRoot(t)
	rw := start(t, config(r, "files"), nil)
	// /opt does not exist: the root is watched for it.
	r.write("opt/later/conf.d/x.conf", "1")
	rw.expect("files")
	// The new directories are watched now.
	r.write("opt/later/conf.d/x.conf", "2")
	rw.expect("files")
	r.replace("opt/later/conf.d/y.conf", "1")
	rw.expect("files")
}

func TestDirectoryReplaced(t *testing.T) {
	r := newHostRoot(t)
	rw := start(t, config(r, "files"), nil)
	if err := os.Rename(r.path("etc/app"), r.path("etc/app.old")); err != nil {
		t.Fatal(err)
	}
	r.write("etc/app/main.conf", "new")
	rw.expect("files")
	// The watch follows the path, not the moved-away directory.
	r.write("etc/app.old/main.conf", "old")
	rw.expectNone()
	r.write("etc/app/main.conf", "newer")
	rw.expect("files")
}

func TestDirectoryRemovedWhileOpenAndCreatedAgain(t *testing.T) {
	r := newHostRoot(t)
	rw := start(t, config(r, "files"), nil)
	// A process holding the directory open keeps its inode, and the
	// watch on it, alive after the removal.
	d, err := os.Open(r.path("etc/app"))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if err := os.RemoveAll(r.path("etc/app")); err != nil {
		t.Fatal(err)
	}
	r.write("etc/app/main.conf", "again")
	rw.expect("files")
	r.write("etc/app/main.conf", "and again")
	rw.expect("files")
}

func TestSymlinkedDirectoryResolvedInsideRoot(t *testing.T) {
	r := newHostRoot(t)
	if err := os.RemoveAll(r.path("etc/app")); err != nil {
		t.Fatal(err)
	}
	r.write("srv/app/main.conf", "a")
	// An absolute target means the host's /srv, not this machine's.
	if err := os.Symlink("/srv/app", r.path("etc/app")); err != nil {
		t.Fatal(err)
	}
	rw := start(t, config(r, "files"), nil)
	r.write("srv/app/main.conf", "b")
	rw.expect("files")
}

func TestPackageDatabases(t *testing.T) {
	r := newHostRoot(t)
	rw := start(t, config(r, "dpkg", "rpm", "apk"), nil)
	r.replace("var/lib/dpkg/status", "Package: b\n")
	rw.expect("dpkg")
	r.write("var/lib/dpkg/updates/0001", "Package: c\n")
	rw.expect("dpkg")
	r.write("var/lib/rpm/Packages", "x")
	rw.expect("rpm")
	r.write("var/lib/rpm/.rpm.lock", "")
	r.write("var/lib/rpm/__db.001", "")
	rw.expectNone()
	r.write("lib/apk/db/installed", "P:musl\n")
	rw.expect("apk")
}

func TestAccountFiles(t *testing.T) {
	r := newHostRoot(t)
	rw := start(t, config(r, "files", "users", "groups"), nil)
	r.replace("etc/passwd", "root:x:0:0::/root:/bin/sh\nbob:x:1000:1000::/home/bob:/bin/sh\n")
	// Files name their owners from /etc/passwd.
	rw.expect("files", "users")
	r.write("etc/shadow", "bob:*:1::::::\n")
	rw.expect("users")
	r.replace("etc/group", "root:x:0:\nbob:x:1000:\n")
	rw.expect("files", "groups")
}

func TestSystemdUnitsAndLinks(t *testing.T) {
	r := newHostRoot(t)
	rw := start(t, config(r, "systemd"), nil)
	r.write("lib/systemd/system/cron.service", "[Unit]\n")
	rw.expect("systemd")
	// Enabling creates a .wants directory and a link in it.
	r.mkdir("etc/systemd/system/multi-user.target.wants")
	rw.expect("systemd")
	if err := os.Symlink("/lib/systemd/system/cron.service", r.path("etc/systemd/system/multi-user.target.wants/cron.service")); err != nil {
		t.Fatal(err)
	}
	rw.expect("systemd")
	r.write("etc/systemd/system/cron.service.d/override.conf", "[Service]\n")
	rw.expect("systemd")
}

func TestBurstIsDebounced(t *testing.T) {
	r := newHostRoot(t)
	cfg := config(r, "files")
	cfg.Debounce, cfg.MaxDelay = 100*time.Millisecond, 400*time.Millisecond
	rw := start(t, cfg, nil)
	// Writes every 10ms for 1.2s: the quiet window never passes, so only
	// the max delay releases deliveries.
	deliveries := 0
	stop := time.After(1200 * time.Millisecond)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	firstAt := time.Duration(0)
	begin := time.Now()
loop:
	for i := 0; ; i++ {
		select {
		case <-stop:
			break loop
		case <-tick.C:
			r.write("etc/app/main.conf", fmt.Sprint(i))
		case <-rw.w.Changes():
			if deliveries == 0 {
				firstAt = time.Since(begin)
			}
			deliveries++
		}
	}
	if deliveries < 2 || deliveries > 4 {
		t.Errorf("%d deliveries during a 1.2s burst with a 400ms max delay, want 2 to 4", deliveries)
	}
	if firstAt > time.Second {
		t.Errorf("first delivery after %s, want about 400ms", firstAt)
	}
	rw.expect("files")
	rw.expectNone()
}

func TestUnconsumedChangesMerge(t *testing.T) {
	r := newHostRoot(t)
	rw := start(t, config(r, "files", "dpkg", "users"), nil)
	r.write("etc/app/main.conf", "b")
	time.Sleep(200 * time.Millisecond)
	r.replace("var/lib/dpkg/status", "Package: b\n")
	time.Sleep(200 * time.Millisecond)
	rw.expect("files", "dpkg")
	rw.expectNone()
}

// faulty wraps a real backend and fails as a test says.
type faulty struct {
	backend
	mu       sync.Mutex
	addsLeft int // Add fails with ENOSPC once this reaches 0; -1 never
	errs     chan error
}

func (f *faulty) Add(dir string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.addsLeft == 0 {
		return fmt.Errorf("add watch %s: %w", dir, syscall.ENOSPC)
	}
	if f.addsLeft > 0 {
		f.addsLeft--
	}
	return f.backend.Add(dir)
}

func (f *faulty) Errors() <-chan error { return f.errs }

func (rw *running) waitDone() {
	rw.t.Helper()
	select {
	case <-rw.done:
	case <-time.After(5 * time.Second):
		rw.t.Fatal("Run did not return after watching failed")
	}
}

func (rw *running) warnings() int { return strings.Count(rw.logs.String(), "level=WARN") }

func TestWatchLimitAtStartDegrades(t *testing.T) {
	r := newHostRoot(t)
	f := &faulty{addsLeft: 2, errs: make(chan error)}
	rw := start(t, config(r, "files", "dpkg", "systemd"), func(b backend) backend { f.backend = b; return f })
	rw.waitDone()
	if !rw.w.Degraded() {
		t.Fatal("not degraded after ENOSPC")
	}
	if n := rw.warnings(); n != 1 || !strings.Contains(rw.logs.String(), "max_user_watches") {
		t.Fatalf("want one warning naming the limit, got %d:\n%s", n, rw.logs)
	}
}

func TestWatchLimitLaterDegradesAndDeliversWhatItSaw(t *testing.T) {
	r := newHostRoot(t)
	f := &faulty{addsLeft: -1, errs: make(chan error)}
	rw := start(t, config(r, "files"), func(b backend) backend { f.backend = b; return f })
	f.mu.Lock()
	f.addsLeft = 0
	f.mu.Unlock()
	// A new directory needs a watch, which fails: the change itself is
	// still delivered, then watching stops.
	r.write("opt/later/conf.d/x.conf", "1")
	rw.expect("files")
	rw.waitDone()
	if !rw.w.Degraded() || rw.warnings() != 1 {
		t.Fatalf("degraded=%v, %d warnings:\n%s", rw.w.Degraded(), rw.warnings(), rw.logs)
	}
}

func TestBackendErrorDegrades(t *testing.T) {
	r := newHostRoot(t)
	f := &faulty{addsLeft: -1, errs: make(chan error)}
	rw := start(t, config(r, "files"), func(b backend) backend { f.backend = b; return f })
	f.errs <- errors.New("read inotify: input/output error")
	rw.waitDone()
	if !rw.w.Degraded() || rw.warnings() != 1 {
		t.Fatalf("degraded=%v, %d warnings:\n%s", rw.w.Degraded(), rw.warnings(), rw.logs)
	}
}

func TestOverflowRescansEverything(t *testing.T) {
	r := newHostRoot(t)
	f := &faulty{addsLeft: -1, errs: make(chan error)}
	rw := start(t, config(r, "files", "users", "systemd"), func(b backend) backend { f.backend = b; return f })
	f.errs <- errOverflow
	rw.expect("files", "users", "systemd")
	if rw.w.Degraded() {
		t.Fatal("an overflow must not end watching")
	}
	r.write("etc/app/main.conf", "b")
	rw.expect("files")
}

func TestNothingToWatch(t *testing.T) {
	r := newHostRoot(t)
	rw := start(t, config(r, "os"), func(b backend) backend {
		t.Error("a backend was opened with nothing to watch")
		return b
	})
	rw.expectNone()
}

func TestWatchedDirectories(t *testing.T) {
	r := newHostRoot(t)
	r.mkdir("lib/systemd/system/multi-user.target.wants")
	w := New(config(r, "files", "dpkg", "systemd"))
	b := &listBackend{}
	w.b = b
	if err := w.sync(); err != nil {
		t.Fatal(err)
	}
	// Every directory on the way down is watched, so a replaced ancestor
	// is seen; what does not exist yet is waited for in its nearest
	// existing ancestor.
	for _, d := range []string{"", "etc", "etc/app", "var", "var/lib", "var/lib/dpkg", "lib", "lib/systemd", "lib/systemd/system", "lib/systemd/system/multi-user.target.wants"} {
		if !slices.Contains(b.dirs, r.path(d)) {
			t.Errorf("/%s not watched; watched: %v", d, b.dirs)
		}
	}
	for _, d := range []string{"opt", "run", "usr"} {
		if slices.Contains(b.dirs, r.path(d)) {
			t.Errorf("missing /%s is watched", d)
		}
	}
}

// listBackend records watches without watching.
type listBackend struct{ dirs []string }

func (b *listBackend) Add(dir string) error {
	if _, err := os.Stat(dir); err != nil {
		return err
	}
	b.dirs = append(b.dirs, dir)
	return nil
}
func (b *listBackend) Remove(dir string) error {
	b.dirs = slices.DeleteFunc(b.dirs, func(d string) bool { return d == dir })
	return nil
}
func (b *listBackend) WatchList() []string  { return slices.Clone(b.dirs) }
func (b *listBackend) Events() <-chan event { return nil }
func (b *listBackend) Errors() <-chan error { return nil }
func (b *listBackend) Close() error         { return nil }
