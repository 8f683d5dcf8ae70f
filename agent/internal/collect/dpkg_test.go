package collect

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	commonv1 "github.com/quantumlayer/qinfra/proto/gen/qinfra/common/v1"
	"google.golang.org/protobuf/proto"
)

const dpkgSample = `Package: libc6
Status: install ok installed
Priority: optional
Section: libs
Installed-Size: 12987
Maintainer: GNU Libc Maintainers <debian-glibc@lists.debian.org>
Architecture: amd64
Multi-Arch: same
Source: glibc
Version: 2.36-9+deb12u10
Depends: libgcc-s1
Description: GNU C Library: Shared libraries
 Contains the standard libraries that are used by nearly all programs on
 the system.
 .
 This package includes shared versions of the standard C library.

Package: libc6
Status: install ok installed
Maintainer: GNU Libc Maintainers <debian-glibc@lists.debian.org>
Architecture: i386
Multi-Arch: same
Source: glibc
Version: 2.36-9+deb12u10
Description: GNU C Library: Shared libraries

Package: bsdutils
Essential: yes
Status: install ok installed
Maintainer: util-linux packagers <util-linux@packages.debian.org>
Architecture: amd64
Source: util-linux (2.38.1-5)
Version: 1:2.38.1-5+deb12u3
Description: basic utilities from 4.4BSD-Lite

Package: oldconf
Status: deinstall ok config-files
Maintainer: Nobody <nobody@example.com>
Architecture: all
Version: 0:1.0
Conffiles:
 /etc/oldconf.conf 0123456789abcdef0123456789abcdef
Description: removed but not purged

Package: purged
Status: purge ok not-installed
Architecture: amd64

Package: halfway
status: install reinstreq half-installed
maintainer: Nobody <nobody@example.com>
architecture: amd64
version: 3.0~rc1
description: interrupted
`

func TestParseDpkgStatus(t *testing.T) {
	got, err := parseDpkgStatus(strings.NewReader(dpkgSample))
	if err != nil {
		t.Fatal(err)
	}
	want := []*commonv1.Package{
		{Manager: "dpkg", Name: "libc6", Version: "2.36-9+deb12u10", Arch: "amd64", SourceName: "glibc", SourceVersion: "2.36-9+deb12u10",
			Status: "installed", UpstreamVersion: "2.36", Release: "9+deb12u10"},
		{Manager: "dpkg", Name: "libc6", Version: "2.36-9+deb12u10", Arch: "i386", SourceName: "glibc", SourceVersion: "2.36-9+deb12u10",
			Status: "installed", UpstreamVersion: "2.36", Release: "9+deb12u10"},
		{Manager: "dpkg", Name: "bsdutils", Version: "1:2.38.1-5+deb12u3", Arch: "amd64", SourceName: "util-linux", SourceVersion: "2.38.1-5",
			Status: "installed", Epoch: 1, UpstreamVersion: "2.38.1", Release: "5+deb12u3"},
		// dpkg-query prints a zero epoch as no epoch at all.
		{Manager: "dpkg", Name: "oldconf", Version: "1.0", Arch: "all", SourceName: "oldconf", SourceVersion: "1.0",
			Status: "config-files", UpstreamVersion: "1.0"},
		{Manager: "dpkg", Name: "halfway", Version: "3.0~rc1", Arch: "amd64", SourceName: "halfway", SourceVersion: "3.0~rc1",
			Status: "half-installed", UpstreamVersion: "3.0~rc1"},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d packages, want %d: %v", len(got), len(want), got)
	}
	for i := range want {
		if !proto.Equal(got[i], want[i]) {
			t.Errorf("package %d:\n got %v\nwant %v", i, got[i], want[i])
		}
	}
}

func TestSplitDebVersion(t *testing.T) {
	for _, tc := range []struct {
		in, version, upstream, revision string
		epoch                           uint32
	}{
		{"1.0", "1.0", "1.0", "", 0},
		{"1.0-1", "1.0-1", "1.0", "1", 0},
		{"2:1.0-1-2", "2:1.0-1-2", "1.0-1", "2", 2},
		{"0:5", "5", "5", "", 0},
		{" 1:2.3 ", "1:2.3", "2.3", "", 1},
		{"x:1", "x:1", "x:1", "", 0}, // malformed: kept as it is
	} {
		v, e, u, r := splitDebVersion(tc.in)
		if v != tc.version || e != tc.epoch || u != tc.upstream || r != tc.revision {
			t.Errorf("splitDebVersion(%q) = %q %d %q %q, want %q %d %q %q", tc.in, v, e, u, r, tc.version, tc.epoch, tc.upstream, tc.revision)
		}
	}
}

func TestParseDpkgStatusErrors(t *testing.T) {
	for _, in := range []string{
		"Version: 1.0\nStatus: install ok installed\n",
		" continuation first\n",
		"Package: a\nno colon here\n",
	} {
		if _, err := parseDpkgStatus(strings.NewReader(in)); err == nil {
			t.Errorf("parseDpkgStatus(%q) succeeded, want an error", in)
		}
	}
}

// dpkgJournal is what an interrupted dpkg run leaves in updates/: libc6:i386
// purged, halfway unpacked, and a file that is not a journal entry.
var dpkgJournal = map[string]string{
	"0001":  "Package: libc6\nStatus: purge ok not-installed\nArchitecture: i386\nMulti-Arch: same\n",
	"0010":  "Package: halfway\nStatus: install ok unpacked\nMaintainer: Nobody <nobody@example.com>\nArchitecture: amd64\nVersion: 3.0\nDescription: x\n",
	"tmp.i": "Package: junk\nStatus: install ok installed\n",
}

const dpkgQueryFormat = `${Package} ${Version} ${Architecture} ${source:Package} ${source:Version} ${db:Status-Status}\n`

func dpkgLines(items []*commonv1.Item) []string {
	var out []string
	for _, it := range items {
		p := it.GetPackage()
		out = append(out, fmt.Sprintf("%s %s %s %s %s %s", p.GetName(), p.GetVersion(), p.GetArch(), p.GetSourceName(), p.GetSourceVersion(), p.GetStatus()))
	}
	return lines(strings.Join(out, "\n"))
}

func TestDpkgCollectorUpdatesJournal(t *testing.T) {
	root := t.TempDir()
	writeFile(t, root, dpkgStatusPath, dpkgSample)
	for name, content := range dpkgJournal {
		writeFile(t, root, dpkgUpdatesPath+"/"+name, content)
	}
	items, err := dpkgCollector{}.Collect(context.Background(), HostFS{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	checkItems(t, items)
	var keys []string
	for _, it := range items {
		keys = append(keys, it.GetKey())
	}
	diffSets(t, "keys", lines("dpkg:bsdutils:amd64\ndpkg:halfway:amd64\ndpkg:libc6:amd64\ndpkg:oldconf:all"), lines(strings.Join(keys, "\n")))
	want := []string{
		"bsdutils 1:2.38.1-5+deb12u3 amd64 util-linux 2.38.1-5 installed",
		"halfway 3.0 amd64 halfway 3.0 unpacked",
		"libc6 2.36-9+deb12u10 amd64 glibc 2.36-9+deb12u10 installed",
		"oldconf 1.0 all oldconf 1.0 config-files",
	}
	got := dpkgLines(items)
	diffSets(t, "packages", want, got)

	// dpkg-query itself, run on the same database, agrees.
	if _, err := exec.LookPath("dpkg-query"); err == nil {
		out := command(t, "dpkg-query", "--admindir="+filepath.Join(root, "/var/lib/dpkg"), "-W", "-f", dpkgQueryFormat)
		diffSets(t, "dpkg-query --admindir", lines(out), got)
	}
}

func TestDpkgCollectorAbsent(t *testing.T) {
	items, err := dpkgCollector{}.Collect(context.Background(), HostFS{Root: t.TempDir()})
	if err != nil || len(items) != 0 {
		t.Fatalf("Collect on a root without dpkg = %v, %v; want nothing", items, err)
	}
}

// TestDpkgMatchesDpkgQuery compares the collector with dpkg-query on this
// machine's own database: the same packages, versions, sources and states.
func TestDpkgMatchesDpkgQuery(t *testing.T) {
	if _, err := os.Stat(dpkgStatusPath); err != nil {
		t.Skip("no dpkg database on this machine")
	}
	out := command(t, "dpkg-query", "-W", "-f", dpkgQueryFormat)
	items, err := dpkgCollector{}.Collect(context.Background(), HostFS{Root: "/"})
	if err != nil {
		t.Fatal(err)
	}
	checkItems(t, items)
	for _, it := range items {
		p := it.GetPackage()
		if it.GetKey() != "dpkg:"+p.GetName()+":"+p.GetArch() {
			t.Errorf("key %q for %s:%s", it.GetKey(), p.GetName(), p.GetArch())
		}
	}
	want := lines(out)
	if len(want) == 0 {
		t.Fatal("dpkg-query listed no packages")
	}
	diffSets(t, "packages", want, dpkgLines(items))
	t.Logf("%d packages match dpkg-query", len(want))
}

func FuzzParseDpkgStatus(f *testing.F) {
	f.Add(dpkgSample)
	f.Add("Package: a\nStatus: install ok installed\nVersion: 1:2-3\nSource: b (4:5-6)\n\n\nPackage: c\n")
	f.Add("Package: a\n \n\t\nStatus: x y\n")
	f.Add("Source: (\nPackage: x\nStatus: a b c\nVersion: :-\n")
	f.Fuzz(func(t *testing.T, s string) {
		pkgs, err := parseDpkgStatus(strings.NewReader(s))
		if err != nil {
			return
		}
		for _, p := range pkgs {
			if p.GetName() == "" || p.GetStatus() == "" || p.GetStatus() == "not-installed" {
				t.Fatalf("unexpected package %v", p)
			}
			if p.GetEpoch() != 0 && !strings.HasPrefix(p.GetVersion(), fmt.Sprint(p.GetEpoch())+":") {
				t.Fatalf("epoch %d not in version %q", p.GetEpoch(), p.GetVersion())
			}
		}
	})
}
