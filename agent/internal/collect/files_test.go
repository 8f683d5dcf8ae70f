//go:build unix

package collect

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	commonv1 "github.com/quantumlayer/qinfra/proto/gen/qinfra/common/v1"
	"google.golang.org/protobuf/proto"
)

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// filesRoot lays out a root with one watched path of each kind.
func filesRoot(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	writeFile(t, root, "/etc/passwd", "root:x:0:0:root:/root:/bin/bash\nalice:x:1000:1000::/home/alice:/bin/sh\n")
	writeFile(t, root, "/etc/group", "root:x:0:\nstaff:x:50:alice\n")
	writeFile(t, root, "/etc/app.conf", "key = value\n")
	writeFile(t, root, "/etc/empty", "")
	writeFile(t, root, "/etc/shadow", "root:$6$salt$hash:19000::::::\n")
	writeFile(t, root, "/etc/secret.key", "private\n")
	writeFile(t, root, "/etc/cron.d/b-job", "* * * * * root true\n")
	writeFile(t, root, "/etc/cron.d/a-job", "0 * * * * root true\n")
	writeFile(t, root, "/real/ssh/sshd_config", "PermitRootLogin no\n")
	symlink(t, root, "/real/ssh", "/etc/ssh")
	symlink(t, root, "app.conf", "/etc/link")
	symlink(t, root, "/../../../../../etc", "/etc/up")
	mkdir(t, root, "/etc/conf.d")
	if err := syscall.Mkfifo(filepath.Join(root, "/etc/fifo"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(filepath.Join(root, "/etc/app.conf"), 1000, 50); err != nil && os.Geteuid() == 0 {
		t.Fatal(err)
	}
	mtime := time.Date(2024, 5, 6, 7, 8, 9, 123456789, time.UTC)
	if err := os.Chtimes(filepath.Join(root, "/etc/app.conf"), mtime, mtime); err != nil {
		t.Fatal(err)
	}
	return root
}

func collectFiles(t *testing.T, cfg Config, root string) (map[string]*commonv1.File, error) {
	t.Helper()
	items, err := newFilesCollector(cfg).Collect(context.Background(), HostFS{Root: root})
	checkItems(t, items)
	files := map[string]*commonv1.File{}
	for _, it := range items {
		if it.GetKey() != it.GetFile().GetPath() {
			t.Errorf("key %q for path %q", it.GetKey(), it.GetFile().GetPath())
		}
		files[it.GetKey()] = it.GetFile()
	}
	return files, err
}

func TestFilesCollector(t *testing.T) {
	root := filesRoot(t)
	cfg := Config{
		WatchPaths: []string{
			"/etc/app.conf", "/etc/empty", "/etc/link", "/etc/conf.d", "/etc/fifo", "/etc/missing",
			"/etc/shadow", "/etc/secret.key", "/etc/cron.d/*", "/etc/nothing/*", "/etc/ssh/sshd_config",
			"/etc/up/hostname", "etc/app.conf", "/etc/../etc/cron.d/a-job",
		},
		MetadataOnly: []string{"/etc/secret*"},
	}
	done := make(chan struct{})
	var files map[string]*commonv1.File
	var err error
	go func() {
		defer close(done)
		files, err = collectFiles(t, cfg, root)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("collection blocked (on the FIFO?)")
	}
	if err != nil {
		t.Fatal(err)
	}

	var keys []string
	for k := range files {
		keys = append(keys, k)
	}
	diffSets(t, "paths", lines(`/etc/app.conf
/etc/empty
/etc/link
/etc/conf.d
/etc/fifo
/etc/missing
/etc/shadow
/etc/secret.key
/etc/cron.d/a-job
/etc/cron.d/b-job
/etc/ssh/sshd_config
/etc/up/hostname`), lines(strings.Join(keys, "\n")))

	app := files["/etc/app.conf"]
	want := &commonv1.File{
		Path: "/etc/app.conf", Type: "file", Sha256: sha256Hex([]byte("key = value\n")),
		Mode: 0o100644, Size: 12, MtimeUnixNano: time.Date(2024, 5, 6, 7, 8, 9, 123456789, time.UTC).UnixNano(),
	}
	if os.Geteuid() == 0 {
		want.Uid, want.Gid, want.Owner, want.Group = 1000, 50, "alice", "staff"
	} else {
		want.Uid, want.Gid = app.GetUid(), app.GetGid()
	}
	if !proto.Equal(app, want) {
		t.Errorf("app.conf:\n got %v\nwant %v", app, want)
	}
	sums := command(t, "sha256sum", filepath.Join(root, "/etc/app.conf"), filepath.Join(root, "/etc/empty"), filepath.Join(root, "/real/ssh/sshd_config"))
	for _, l := range lines(sums) {
		sum, name, _ := strings.Cut(l, "  ")
		p := strings.TrimPrefix(name, root)
		if p == "/real/ssh/sshd_config" {
			p = "/etc/ssh/sshd_config"
		}
		if files[p].GetSha256() != sum {
			t.Errorf("%s: sha256 %s, sha256sum says %s", p, files[p].GetSha256(), sum)
		}
	}

	for p, check := range map[string]func(f *commonv1.File) bool{
		"/etc/empty": func(f *commonv1.File) bool { return f.Type == "file" && f.Sha256 == sha256Hex(nil) && f.Size == 0 },
		"/etc/link": func(f *commonv1.File) bool {
			return f.Type == "symlink" && f.LinkTarget == "app.conf" && f.Sha256 == "" && f.Mode == 0o120777
		},
		"/etc/conf.d": func(f *commonv1.File) bool { return f.Type == "dir" && f.Sha256 == "" && f.Mode == 0o40755 },
		"/etc/fifo":   func(f *commonv1.File) bool { return f.Type == "other" && f.Sha256 == "" && f.Mode == 0o10600 },
		"/etc/missing": func(f *commonv1.File) bool {
			return proto.Equal(f, &commonv1.File{Path: "/etc/missing", Type: "missing"})
		},
		"/etc/shadow":     func(f *commonv1.File) bool { return f.Type == "file" && f.Sha256 == "" && f.Size > 0 && f.Error == "" },
		"/etc/secret.key": func(f *commonv1.File) bool { return f.Type == "file" && f.Sha256 == "" && f.Size == 8 },
		// A directory link leading up and out of the root stays inside it:
		// the fake root has no /etc/hostname, whatever the machine has.
		"/etc/up/hostname": func(f *commonv1.File) bool { return f.Type == "missing" },
		"/etc/ssh/sshd_config": func(f *commonv1.File) bool {
			return f.Type == "file" && f.Sha256 == sha256Hex([]byte("PermitRootLogin no\n"))
		},
	} {
		if f := files[p]; !check(f) {
			t.Errorf("%s: %v", p, f)
		}
	}
}

func TestFilesDefaults(t *testing.T) {
	root := filesRoot(t)
	files, err := collectFiles(t, Config{}, root)
	if err != nil {
		t.Fatal(err)
	}
	// Plain default paths always appear, globs only with matches.
	for _, p := range []string{"/etc/ssh/sshd_config", "/etc/sudoers", "/etc/passwd", "/etc/group", "/etc/shadow", "/etc/crontab", "/etc/cron.d/a-job", "/etc/cron.d/b-job"} {
		if files[p] == nil {
			t.Errorf("no item for %s", p)
		}
	}
	if len(files) != 8 {
		t.Errorf("got %d files, want 8", len(files))
	}
	if files["/etc/sudoers"].GetType() != "missing" || files["/etc/shadow"].GetSha256() != "" {
		t.Errorf("sudoers %v, shadow %v", files["/etc/sudoers"], files["/etc/shadow"])
	}
	// The secret files stay unhashed even when configuration forgets them.
	files, _ = collectFiles(t, Config{WatchPaths: []string{"/etc/shadow"}, MetadataOnly: []string{}}, root)
	if files["/etc/shadow"].GetSha256() != "" {
		t.Error("/etc/shadow hashed")
	}
}

func TestFilesErrors(t *testing.T) {
	root := filesRoot(t)
	big := strings.Repeat("0123456789abcdef", 3<<16) // 3 MiB: several buffer reads
	writeFile(t, root, "/etc/big", big)

	c := newFilesCollector(Config{WatchPaths: []string{"/etc/big", "/etc/app.conf", "/etc/[", "/etc/cron.d/*"}, MaxHashBytes: 1 << 20})
	items, err := c.Collect(context.Background(), HostFS{Root: root})
	if err == nil || !strings.Contains(err.Error(), "/etc/[") {
		t.Errorf("bad pattern: error %v", err)
	}
	if len(items) != 4 {
		t.Fatalf("a bad pattern lost the other paths: %d items", len(items))
	}
	f := itemByKey(items, "/etc/big").GetFile()
	if f.GetSha256() != "" || !strings.Contains(f.GetError(), "too large to hash") || f.GetSize() != int64(len(big)) {
		t.Errorf("big file over the cap: %v", f)
	}

	c = newFilesCollector(Config{WatchPaths: []string{"/etc/big"}})
	items, err = c.Collect(context.Background(), HostFS{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	if got := itemByKey(items, "/etc/big").GetFile().GetSha256(); got != sha256Hex([]byte(big)) {
		t.Errorf("big file: sha256 %s", got)
	}

	// Root reads every file, so an unreadable one is simulated.
	c = newFilesCollector(Config{WatchPaths: []string{"/etc/app.conf"}})
	c.openFile = func(string) (*os.File, error) { return nil, os.ErrPermission }
	items, err = c.Collect(context.Background(), HostFS{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	f = items[0].GetFile()
	if f.GetError() == "" || f.GetSha256() != "" || f.GetType() != "file" || f.GetSize() != 12 || f.GetMode() != 0o100644 {
		t.Errorf("unreadable file: %v", f)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := newFilesCollector(Config{}).Collect(ctx, HostFS{Root: root}); !errors.Is(err, context.Canceled) {
		t.Errorf("canceled: %v", err)
	}
}

func TestGlobInsideRoot(t *testing.T) {
	root := filesRoot(t)
	h := HostFS{Root: root}
	for pattern, want := range map[string]string{
		"/etc/cron.d/*":      "/etc/cron.d/a-job /etc/cron.d/b-job",
		"/etc/*/a-job":       "/etc/cron.d/a-job",
		"/etc/ssh/*":         "/etc/ssh/sshd_config",
		"/etc/up/cron.?/a-*": "/etc/up/cron.d/a-job",
		"/nothing/*":         "",
		"/etc/app.conf/*":    "",
	} {
		got, err := h.glob(pattern)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Join(got, " ") != want {
			t.Errorf("glob(%q) = %q, want %q", pattern, got, want)
		}
	}
	if _, err := h.glob("/etc/[a"); err == nil {
		t.Error("bad pattern: no error")
	}
}

func TestUnixMode(t *testing.T) {
	for _, p := range []string{"/etc/app.conf", "/etc/conf.d", "/etc/link", "/etc/fifo"} {
		root := filesRoot(t)
		full := filepath.Join(root, p)
		fi, err := os.Lstat(full)
		if err != nil {
			t.Fatal(err)
		}
		var st syscall.Stat_t
		if err := syscall.Lstat(full, &st); err != nil {
			t.Fatal(err)
		}
		if got := unixMode(fi.Mode()); got != uint32(st.Mode) {
			t.Errorf("%s: unixMode %o, st_mode %o", p, got, st.Mode)
		}
	}
	if got := unixMode(os.ModeSetuid | os.ModeSetgid | os.ModeSticky | 0o755); got != 0o107755 {
		t.Errorf("set-id bits: %o", got)
	}
}
