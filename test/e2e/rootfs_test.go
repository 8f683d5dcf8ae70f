package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeRoot lays out a small host filesystem that the agent reads through
// --host-root: dpkg database, accounts, systemd units, watched files.
type fakeRoot struct {
	t    *testing.T
	dir  string
	pkgs []string // dpkg status stanzas
}

func newFakeRoot(t *testing.T) *fakeRoot {
	t.Helper()
	r := &fakeRoot{t: t, dir: t.TempDir()}
	r.write("etc/os-release", "ID=debian\nVERSION_ID=\"12\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nVERSION_CODENAME=bookworm\n")
	r.write("etc/hostname", "fake-node-1\n")
	r.write("etc/machine-id", "0123456789abcdef0123456789abcdef\n")
	r.write("etc/passwd", "root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\nalice:x:1000:1000:Alice,,,:/home/alice:/bin/bash\n")
	r.write("etc/group", "root:x:0:\ndaemon:x:1:\nsudo:x:27:alice\nalice:x:1000:\n")
	r.write("etc/shadow", "root:*:19000:0:99999:7:::\ndaemon:*:19000:0:99999:7:::\nalice:$y$j9T$abc$def:19000:0:99999:7:::\n")
	r.write("etc/app/main.conf", "listen = 80\n")
	r.write("lib/systemd/system/ssh.service", "[Unit]\nDescription=OpenSSH\n[Service]\nExecStart=/usr/sbin/sshd -D\n[Install]\nWantedBy=multi-user.target\n")
	r.write("lib/systemd/system/cron.service", "[Unit]\nDescription=cron\n[Service]\nExecStart=/usr/sbin/cron -f\n[Install]\nWantedBy=multi-user.target\n")
	r.symlink("/lib/systemd/system/ssh.service", "etc/systemd/system/multi-user.target.wants/ssh.service")
	r.addPackage("base-files", "12.4+deb12u5", "amd64", "")
	r.addPackage("libc6", "2.36-9+deb12u7", "amd64", "glibc")
	r.addPackage("openssl", "3.0.13-1~deb12u1", "amd64", "")
	return r
}

func (r *fakeRoot) path(p string) string { return filepath.Join(r.dir, p) }

func (r *fakeRoot) write(p, content string) {
	r.t.Helper()
	full := r.path(p)
	if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
		r.t.Fatal(err)
	}
	// Write to a temp file and rename, as package managers and editors do,
	// so a concurrent scan never reads a half-written file.
	tmp := full + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		r.t.Fatal(err)
	}
	if err := os.Rename(tmp, full); err != nil {
		r.t.Fatal(err)
	}
}

func (r *fakeRoot) symlink(target, p string) {
	r.t.Helper()
	full := r.path(p)
	os.MkdirAll(filepath.Dir(full), 0o755)
	if err := os.Symlink(target, full); err != nil {
		r.t.Fatal(err)
	}
}

func (r *fakeRoot) addPackage(name, version, arch, source string) {
	st := fmt.Sprintf("Package: %s\nStatus: install ok installed\nPriority: optional\nArchitecture: %s\nVersion: %s\n", name, arch, version)
	if source != "" {
		st += "Source: " + source + "\n"
	}
	st += "Description: " + name + "\n"
	r.pkgs = append(r.pkgs, st)
	r.write("var/lib/dpkg/status", strings.Join(r.pkgs, "\n"))
}

func (r *fakeRoot) addUser(name string, uid int) {
	r.t.Helper()
	b, _ := os.ReadFile(r.path("etc/passwd"))
	r.write("etc/passwd", string(b)+fmt.Sprintf("%s:x:%d:%d::/home/%s:/bin/sh\n", name, uid, uid, name))
}
