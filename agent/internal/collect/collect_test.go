//go:build linux

package collect

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	commonv1 "github.com/quantumlayer/qinfra/proto/gen/qinfra/common/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

var update = flag.Bool("update", false, "rewrite testdata/golden from the collectors' output")

// hostRoot lays out a small host: an OS, dpkg packages, accounts, units and
// watched files, with fixed times so that the inventory is reproducible.
func hostRoot(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to give files a fixed owner")
	}
	root := t.TempDir()
	writeFile(t, root, "/etc/os-release", "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\nVERSION_ID=\"12\"\nVERSION_CODENAME=bookworm\n")
	writeFile(t, root, "/etc/hostname", "web-1\n")
	writeFile(t, root, "/etc/machine-id", "5f0e8d6f2c3a4b1e9d7c6b5a49382716\n")
	writeFile(t, root, "/var/lib/dpkg/status", `Package: openssh-server
Status: install ok installed
Maintainer: Debian OpenSSH Maintainers <debian-ssh@lists.debian.org>
Architecture: amd64
Source: openssh
Version: 1:9.2p1-2+deb12u3
Description: secure shell (SSH) server

Package: libc6
Status: install ok installed
Maintainer: GNU Libc Maintainers <debian-glibc@lists.debian.org>
Architecture: amd64
Multi-Arch: same
Source: glibc
Version: 2.36-9+deb12u10
Description: GNU C Library: Shared libraries

Package: telnetd
Status: deinstall ok config-files
Maintainer: Nobody <nobody@example.com>
Architecture: amd64
Source: inetutils (2:2.4-2)
Version: 2:2.4-2+deb12u1
Description: telnet server
`)
	writeFile(t, root, "/etc/passwd", "root:x:0:0:root:/root:/bin/bash\nsshd:x:100:65534::/run/sshd:/usr/sbin/nologin\ndeploy:x:1000:1000:Deploy,,,:/home/deploy:/bin/bash\n")
	writeFile(t, root, "/etc/shadow", "root:$y$j9T$salt$hash:19000:0:99999:7:::\nsshd:!:19000::::::\ndeploy::19000:0:99999:7:::\n")
	writeFile(t, root, "/etc/group", "root:x:0:\nsudo:x:27:deploy\nnogroup:x:65534:\ndeploy:x:1000:\n")
	symlink(t, root, "usr/lib", "/lib")
	writeFile(t, root, "/usr/lib/systemd/system/ssh.service", "[Unit]\nDescription=OpenBSD Secure Shell server\n[Service]\nExecStart=/usr/sbin/sshd -D\n[Install]\nWantedBy=multi-user.target\nAlias=sshd.service\n")
	writeFile(t, root, "/usr/lib/systemd/system/ssh.socket", "[Unit]\nDescription=OpenBSD Secure Shell server socket\n[Socket]\nListenStream=22\n[Install]\nWantedBy=sockets.target\n")
	writeFile(t, root, "/usr/lib/systemd/system/logrotate.timer", "[Unit]\nDescription=Daily rotation of log files\n[Timer]\nOnCalendar=daily\n[Install]\nWantedBy=timers.target\n")
	writeFile(t, root, "/usr/lib/systemd/system/logrotate.service", "[Unit]\nDescription=Rotate log files\n[Service]\nType=oneshot\n")
	writeFile(t, root, "/usr/lib/systemd/system/multi-user.target", "[Unit]\nDescription=Multi-User System\n")
	symlink(t, root, "/lib/systemd/system/ssh.service", "/etc/systemd/system/multi-user.target.wants/ssh.service")
	symlink(t, root, "/lib/systemd/system/ssh.service", "/etc/systemd/system/sshd.service")
	symlink(t, root, "/dev/null", "/etc/systemd/system/telnetd.service")
	writeFile(t, root, "/etc/ssh/sshd_config", "PermitRootLogin no\nPasswordAuthentication no\n")
	writeFile(t, root, "/etc/sudoers", "root ALL=(ALL:ALL) ALL\n%sudo ALL=(ALL:ALL) ALL\n")
	writeFile(t, root, "/etc/sudoers.d/deploy", "deploy ALL=(ALL) NOPASSWD: /usr/bin/systemctl restart app\n")
	writeFile(t, root, "/etc/cron.d/backup", "0 3 * * * root /usr/local/bin/backup\n")
	writeFile(t, root, "/etc/pam.d/sshd", "@include common-auth\n")
	symlink(t, root, "sshd", "/etc/pam.d/ssh-alias")
	if err := os.Chmod(filepath.Join(root, "/etc/sudoers"), 0o440); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(root, "/etc/shadow"), 0o640); err != nil {
		t.Fatal(err)
	}
	mtime := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, p := range []string{"/etc/ssh/sshd_config", "/etc/sudoers", "/etc/sudoers.d/deploy", "/etc/cron.d/backup", "/etc/pam.d/sshd", "/etc/passwd", "/etc/group", "/etc/shadow"} {
		if err := os.Chtimes(filepath.Join(root, p), mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// normalize clears what depends on the machine running the test (its
// kernel, the links' creation time) so the rest can be compared exactly.
func normalize(t *testing.T, items []*commonv1.Item) []*commonv1.Item {
	t.Helper()
	var out []*commonv1.Item
	for _, it := range items {
		it = proto.Clone(it).(*commonv1.Item)
		it.Hash = nil
		if f := it.GetOs(); f != nil {
			if f.KernelVersion == "" || f.KernelArch == "" || f.BootTime == 0 {
				t.Errorf("kernel facts missing: %v", f)
			}
			f.KernelVersion, f.KernelArch, f.BootTime, f.VirtualizationSystem, f.VirtualizationRole = "", "", 0, "", ""
		}
		if f := it.GetFile(); f != nil && f.Type == "symlink" {
			f.MtimeUnixNano = 0
		}
		out = append(out, it)
	}
	return out
}

func toJSON(t *testing.T, items []*commonv1.Item) []byte {
	t.Helper()
	var list []json.RawMessage
	for _, it := range items {
		b, err := protojson.Marshal(it)
		if err != nil {
			t.Fatal(err)
		}
		list = append(list, b)
	}
	// protojson varies its spacing on purpose; re-encoding makes it stable.
	b, err := json.MarshalIndent(list, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return append(b, '\n')
}

// TestCollectHostRoot runs every collector on a fake host root and compares
// the inventory with testdata/golden/hostroot.json: nothing of the machine
// running the test may appear in it.
func TestCollectHostRoot(t *testing.T) {
	root := hostRoot(t)
	items, err := New(Config{Root: root}).Collect(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	checkItems(t, items)
	if !slices.IsSortedFunc(items, func(a, b *commonv1.Item) int {
		return strings.Compare(a.GetKind()+"\x00"+a.GetKey(), b.GetKind()+"\x00"+b.GetKey())
	}) {
		t.Error("items are not sorted by kind and key")
	}
	got := toJSON(t, normalize(t, items))
	golden := filepath.Join("testdata", "golden", "hostroot.json")
	if *update {
		if err := os.MkdirAll(filepath.Dir(golden), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("inventory differs from %s (run with -update to accept):\n%s", golden, lineDiff(string(want), string(got)))
	}
}

// lineDiff lists lines of want missing from got and lines of got not in want.
func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b strings.Builder
	for _, l := range w {
		if !slices.Contains(g, l) {
			b.WriteString("- " + l + "\n")
		}
	}
	for _, l := range g {
		if !slices.Contains(w, l) {
			b.WriteString("+ " + l + "\n")
		}
	}
	return b.String()
}

func TestCollectKeepsOthersOnError(t *testing.T) {
	root := hostRoot(t)
	writeFile(t, root, "/var/lib/dpkg/status", "Package: broken\nthis line is not a field\n")
	items, err := New(Config{Root: root}).Collect(context.Background())
	var ce *CollectorError
	if !errors.As(err, &ce) || ce.Collector != "dpkg" {
		t.Fatalf("error %v, want a dpkg CollectorError", err)
	}
	kinds := map[string]int{}
	for _, it := range items {
		kinds[it.GetKind()]++
	}
	if kinds["package"] != 0 || kinds["user"] != 3 || kinds["group"] != 4 || kinds["os"] != 1 || kinds["service"] == 0 || kinds["file"] == 0 {
		t.Errorf("items by kind: %v", kinds)
	}
}

func TestSetDisabledAndNames(t *testing.T) {
	s := New(Config{Disabled: []string{"rpm", "apk", "files", "ports", "processes"}})
	if got := strings.Join(s.Names(), " "); got != "os dpkg users groups systemd" {
		t.Errorf("names %q", got)
	}
	root := hostRoot(t)
	items, err := New(Config{Root: root, Disabled: []string{"os", "dpkg", "rpm", "apk", "users", "systemd", "files", "ports", "processes"}}).Collect(context.Background())
	if err != nil || len(items) != 4 {
		t.Errorf("groups only: %d items, %v", len(items), err)
	}
}

func TestConfigValidate(t *testing.T) {
	if err := (Config{}).Validate(); err != nil {
		t.Errorf("zero config: %v", err)
	}
	if err := (Config{WatchPaths: DefaultWatchPaths(), Disabled: []string{"rpm"}}).Validate(); err != nil {
		t.Errorf("defaults: %v", err)
	}
	err := Config{WatchPaths: []string{"etc/x", "/etc/[x"}, MetadataOnly: []string{"["}, Disabled: []string{"nope"}, MaxHashBytes: -1}.Validate()
	for _, want := range []string{"etc/x", "/etc/[x", "metadata-only", "nope", "negative"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not mention %q", err, want)
		}
	}
}

// fakeCollector returns fixed items, for testing the set itself.
type fakeCollector struct {
	name  string
	items []*commonv1.Item
	err   error
}

func (f fakeCollector) Name() string { return f.name }
func (f fakeCollector) Collect(context.Context, HostFS) ([]*commonv1.Item, error) {
	return f.items, f.err
}

func TestSetRejectsBadItems(t *testing.T) {
	good, err := sealed("user", "alice", &commonv1.User{Name: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	unsealed := &commonv1.Item{Kind: "user", Key: "bob", Body: &commonv1.Item_User{User: &commonv1.User{Name: "bob"}}}
	s := &Set{collectors: []Collector{
		fakeCollector{name: "a", items: []*commonv1.Item{good, unsealed}},
		fakeCollector{name: "b", items: []*commonv1.Item{good}, err: errors.New("boom")},
	}}
	s.log = New(Config{}).log
	items, err := s.Collect(context.Background())
	if len(items) != 1 || items[0] != good {
		t.Errorf("items %v", items)
	}
	for _, want := range []string{"collect a: item user/bob", "collect b: duplicate item user/alice", "collect b: boom"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not mention %q", err, want)
		}
	}
}

func TestHostFSPath(t *testing.T) {
	for _, tc := range [][3]string{
		{"", "/etc/passwd", "/etc/passwd"},
		{"/", "/etc/passwd", "/etc/passwd"},
		{"/host", "/etc/passwd", "/host/etc/passwd"},
		{"/host/", "etc/../etc/passwd", "/host/etc/passwd"},
	} {
		if got := (HostFS{Root: tc[0]}).Path(tc[1]); got != tc[2] {
			t.Errorf("HostFS{%q}.Path(%q) = %q, want %q", tc[0], tc[1], got, tc[2])
		}
	}
}

func TestChaseStaysInRoot(t *testing.T) {
	root := t.TempDir()
	writeFile(t, root, "/etc/real", "x")
	symlink(t, root, "/etc/real", "/abs")
	symlink(t, root, "../../../../etc/real", "/etc/rel")
	symlink(t, root, "/", "/etc/toroot")
	symlink(t, root, "loop2", "/etc/loop1")
	symlink(t, root, "loop1", "/etc/loop2")
	h := HostFS{Root: root}
	for p, want := range map[string]string{
		"/abs":                   "/etc/real",
		"/etc/rel":               "/etc/real",
		"/etc/toroot/etc/real":   "/etc/real",
		"/etc/toroot/../../etc":  "/etc",
		"/etc/toroot/etc/../abs": "/etc/real",
	} {
		got, exists, err := h.chase(p, true, false)
		if err != nil || !exists || got != want {
			t.Errorf("chase(%q) = %q, %v, %v; want %q", p, got, exists, err, want)
		}
	}
	if got, _, _ := h.chase("/abs", false, false); got != "/abs" {
		t.Errorf("chase without following the last link = %q", got)
	}
	if got, exists, err := h.chase("/etc/toroot/nope/x", true, true); err != nil || exists || got != "/nope/x" {
		t.Errorf("missing path: %q %v %v", got, exists, err)
	}
	if _, _, err := h.chase("/etc/loop1", true, false); err == nil {
		t.Error("symlink loop: no error")
	}
	if _, err := h.open("/etc/toroot"); err == nil {
		t.Error("opened a directory as a file")
	}
}
