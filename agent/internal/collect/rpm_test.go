package collect

import (
	"compress/gzip"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	rpmdb "github.com/knqyf263/go-rpmdb/pkg"
	commonv1 "github.com/quantumlayer/qinfra/proto/gen/qinfra/common/v1"
	"google.golang.org/protobuf/proto"
)

// installRPMDB lays out a root whose /var/lib/rpm/Packages is the
// gzip-compressed Berkeley DB gz.
func installRPMDB(t *testing.T, gz string) string {
	t.Helper()
	in, err := os.Open(gz)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	zr, err := gzip.NewReader(in)
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	mkdir(t, root, "/var/lib/rpm")
	out, err := os.Create(filepath.Join(root, "/var/lib/rpm/Packages"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, zr); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	return root
}

// libraryLine describes a package as go-rpmdb's expected test results do.
func libraryLine(p *rpmdb.PackageInfo) string {
	srcName, srcVersion := p.Name, fmt.Sprintf("%s-%s", p.Version, p.Release)
	if p.Epoch != 0 {
		srcVersion = fmt.Sprintf("%d:%s", p.Epoch, srcVersion)
	}
	if n, v, ok := splitSourceRPM(p.SourceRpm); ok {
		srcName, srcVersion = n, v
	}
	return fmt.Sprintf("%s epoch=%d %s-%s %s src=%s/%s vendor=%q", p.Name, p.Epoch, p.Version, p.Release, p.Arch, srcName, srcVersion, p.Vendor)
}

func collectedLine(p *commonv1.Package) string {
	return fmt.Sprintf("%s epoch=%d %s-%s %s src=%s/%s vendor=%q", p.GetName(), p.GetEpoch(), p.GetUpstreamVersion(), p.GetRelease(), p.GetArch(), p.GetSourceName(), p.GetSourceVersion(), p.GetVendor())
}

// checkRPMAgainstLibrary compares the collector's packages in root with the
// list go-rpmdb's own tests expect from the same database.
func checkRPMAgainstLibrary(t *testing.T, root string, want []*rpmdb.PackageInfo) []*commonv1.Item {
	t.Helper()
	items, err := rpmCollector{}.Collect(context.Background(), HostFS{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	checkItems(t, items)
	if len(items) != len(want) {
		t.Errorf("collected %d packages, the library's test expects %d", len(items), len(want))
	}
	var wantLines, gotLines []string
	for _, p := range want {
		wantLines = append(wantLines, libraryLine(p))
	}
	// Install times are not in the library's results; they must be those of
	// a real installation, not garbage read from the wrong place.
	minTime, maxTime := time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC).Unix(), time.Date(2022, 1, 1, 0, 0, 0, 0, time.UTC).Unix()
	for _, it := range items {
		p := it.GetPackage()
		gotLines = append(gotLines, collectedLine(p))
		if p.GetName() != "gpg-pubkey" && (p.GetInstallTime() < minTime || p.GetInstallTime() > maxTime) {
			t.Errorf("%s: install time %d is implausible", it.GetKey(), p.GetInstallTime())
		}
		if p.GetManager() != "rpm" || p.GetStatus() != "installed" {
			t.Errorf("%s: manager %q status %q", it.GetKey(), p.GetManager(), p.GetStatus())
		}
	}
	diffSets(t, "packages", lines(strings.Join(wantLines, "\n")), lines(strings.Join(gotLines, "\n")))

	// Where the rpm tool is installed (Debian's reads Berkeley DB read-only),
	// it must agree too, install times and epochs as rpm prints them included.
	if _, err := exec.LookPath("rpm"); err == nil {
		dbpath, err := HostFS{Root: root}.resolve("/var/lib/rpm")
		if err != nil {
			t.Fatal(err)
		}
		out := command(t, "rpm", "--dbpath", dbpath, "--define", "_db_backend bdb_ro", "-qa",
			"--qf", `%{NAME} %{EVR} %{ARCH} %{INSTALLTIME} %{VENDOR} %{SOURCERPM}\n`)
		var got []string
		for _, it := range items {
			p := it.GetPackage()
			arch, vendor, src := p.GetArch(), p.GetVendor(), "(none)"
			if arch == "" {
				arch = "(none)"
			}
			if vendor == "" {
				vendor = "(none)"
			}
			// Only the public keys rpm imports have no source package.
			if p.GetName() != "gpg-pubkey" {
				src = p.GetSourceName() + "-" + p.GetSourceVersion() + ".src.rpm"
			}
			got = append(got, fmt.Sprintf("%s %s %s %d %s %s", p.GetName(), p.GetVersion(), arch, p.GetInstallTime(), vendor, src))
		}
		diffSets(t, "rpm -qa", lines(out), lines(strings.Join(got, "\n")))
		t.Logf("%d packages match rpm -qa", len(lines(out)))
	}
	return items
}

// linkOrCopy hard links src to dst, or copies it across file systems.
func linkOrCopy(t *testing.T, src, dst string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		t.Fatal(err)
	}
	if os.Link(src, dst) == nil {
		return
	}
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

func itemByKey(items []*commonv1.Item, key string) *commonv1.Item {
	for _, it := range items {
		if it.GetKey() == key {
			return it
		}
	}
	return nil
}

// TestRPMCentOS5 reads the CentOS 5 database shipped with go-rpmdb (copied
// into testdata with its licence).
func TestRPMCentOS5(t *testing.T) {
	root := installRPMDB(t, "testdata/rpm/centos5-plain/Packages.gz")
	items := checkRPMAgainstLibrary(t, root, rpmdb.CentOS5Plain)
	if len(items) != 110 {
		t.Errorf("collected %d packages, want 110", len(items))
	}
	// The package go-rpmdb's own test looks up in this database.
	python := itemByKey(items, "rpm:python:x86_64")
	if python == nil {
		t.Fatal("no rpm:python:x86_64")
	}
	want := &commonv1.Package{
		Manager: "rpm", Name: "python", Version: "2.4.3-56.el5", Arch: "x86_64",
		SourceName: "python", SourceVersion: "2.4.3-56.el5", Status: "installed",
		UpstreamVersion: "2.4.3", Release: "56.el5", Vendor: "CentOS",
		InstallTime: python.GetPackage().GetInstallTime(),
	}
	if !proto.Equal(python.GetPackage(), want) {
		t.Errorf("python:\n got %v\nwant %v", python.GetPackage(), want)
	}
}

// TestRPMLibraryDatabases reads every database go-rpmdb ships in its module
// and compares with the package lists its tests expect: epochs, several
// gpg-pubkeys side by side, modular packages.
func TestRPMLibraryDatabases(t *testing.T) {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/knqyf263/go-rpmdb").Output()
	if err != nil {
		t.Skipf("cannot locate the go-rpmdb module: %v", err)
	}
	dir := filepath.Join(strings.TrimSpace(string(out)), "pkg", "testdata")
	if testing.Short() {
		t.Skip("reads 200 MB of databases")
	}
	for _, tc := range []struct {
		name string
		want []*rpmdb.PackageInfo
	}{
		{"centos5-plain", rpmdb.CentOS5Plain},
		{"centos6-devtools", rpmdb.CentOS6DevTools},
		{"centos6-many", rpmdb.CentOS6Many},
		{"centos6-plain", rpmdb.CentOS6Plain},
		{"centos7-devtools", rpmdb.CentOS7DevTools},
		{"centos7-httpd24", rpmdb.CentOS7Httpd24},
		{"centos7-many", rpmdb.CentOS7Many},
		{"centos7-plain", rpmdb.CentOS7Plain},
		{"centos7-python35", rpmdb.CentOS7Python35},
		{"centos8-modularitylabel", rpmdb.CentOS8Modularitylabel},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			// /var/lib/rpm is a link, as on newer Fedora; the collector
			// follows it inside the root. The database itself is hard
			// linked or copied in: a symlink out of the root would not be
			// followed.
			symlink(t, root, "../../usr/lib/sysimage/rpm", "/var/lib/rpm")
			linkOrCopy(t, filepath.Join(dir, tc.name, "Packages"), filepath.Join(root, "/usr/lib/sysimage/rpm/Packages"))
			items := checkRPMAgainstLibrary(t, root, tc.want)
			switch tc.name {
			case "centos7-httpd24":
				// Two gpg-pubkeys: both keyed by version.
				for _, k := range []string{"rpm:gpg-pubkey::f4a80eb5-53a7ff4b", "rpm:gpg-pubkey::352c64e5-52ae6884"} {
					if itemByKey(items, k) == nil {
						t.Errorf("no item %s", k)
					}
				}
			case "centos8-modularitylabel":
				node := itemByKey(items, "rpm:nodejs:x86_64").GetPackage()
				if node.GetVersion() != "1:10.21.0-3.module_el8.2.0+391+8da3adc6" || node.GetEpoch() != 1 {
					t.Errorf("nodejs version %q epoch %d", node.GetVersion(), node.GetEpoch())
				}
			}
		})
	}
}

func TestRPMDamagedNewerFormats(t *testing.T) {
	for _, p := range []string{"/var/lib/rpm/Packages.db", "/usr/lib/sysimage/rpm/Packages.db"} {
		root := t.TempDir()
		writeFile(t, root, p, "SQLite format 3\x00")
		items, err := rpmCollector{}.Collect(context.Background(), HostFS{Root: root})
		if err == nil || len(items) != 0 {
			t.Errorf("%s: Collect = %d items, %v; want an error", p, len(items), err)
		}
	}
}

func TestRPMAbsentAndDamaged(t *testing.T) {
	items, err := rpmCollector{}.Collect(context.Background(), HostFS{Root: t.TempDir()})
	if err != nil || len(items) != 0 {
		t.Errorf("no database: Collect = %v, %v; want nothing", items, err)
	}
	root := t.TempDir()
	writeFile(t, root, "/var/lib/rpm/Packages", strings.Repeat("not a database", 100))
	if _, err := (rpmCollector{}).Collect(context.Background(), HostFS{Root: root}); err == nil {
		t.Error("damaged database: no error")
	}
}

// rpmHeaderEntry is one index entry for buildRPMHeader.
type rpmHeaderEntry struct {
	tag, typ uint32
	value    any // string or uint32
}

// buildRPMHeader encodes a header blob as rpm stores it in its database.
func buildRPMHeader(entries []rpmHeaderEntry) []byte {
	var index, data []byte
	for _, e := range entries {
		var off = len(data)
		switch v := e.value.(type) {
		case string:
			data = append(data, v...)
			data = append(data, 0)
		case uint32:
			for len(data)%4 != 0 {
				data = append(data, 0)
			}
			off = len(data)
			data = binary.BigEndian.AppendUint32(data, v)
		}
		index = binary.BigEndian.AppendUint32(index, e.tag)
		index = binary.BigEndian.AppendUint32(index, e.typ)
		index = binary.BigEndian.AppendUint32(index, uint32(off))
		index = binary.BigEndian.AppendUint32(index, 1)
	}
	b := binary.BigEndian.AppendUint32(nil, uint32(len(entries)))
	b = binary.BigEndian.AppendUint32(b, uint32(len(data)))
	return append(append(b, index...), data...)
}

func TestParseRPMHeader(t *testing.T) {
	blob := buildRPMHeader([]rpmHeaderEntry{
		{rpmTagName, rpmTypeString, "kernel"},
		{rpmTagVersion, rpmTypeString, "5.14.0"},
		{rpmTagRelease, rpmTypeString, "70.13.1.el9_0"},
		{rpmTagEpoch, rpmTypeInt32, uint32(0)},
		{rpmTagArch, rpmTypeString, "x86_64"},
		{rpmTagInstallTime, rpmTypeInt32, uint32(1700000000)},
		{rpmTagVendor, rpmTypeString, "Rocky Enterprise Software Foundation"},
		{rpmTagSourceRPM, rpmTypeString, "kernel-5.14.0-70.13.1.el9_0.src.rpm"},
	})
	got, err := parseRPMHeader(blob)
	if err != nil {
		t.Fatal(err)
	}
	want := &commonv1.Package{
		Manager: "rpm", Name: "kernel", Version: "0:5.14.0-70.13.1.el9_0", Arch: "x86_64",
		SourceName: "kernel", SourceVersion: "5.14.0-70.13.1.el9_0", Status: "installed",
		UpstreamVersion: "5.14.0", Release: "70.13.1.el9_0", Vendor: "Rocky Enterprise Software Foundation",
		InstallTime: 1700000000,
	}
	if !proto.Equal(got, want) {
		t.Errorf("got %v\nwant %v", got, want)
	}

	for name, bad := range map[string][]byte{
		"empty":        nil,
		"no entries":   buildRPMHeader(nil),
		"short":        blob[:len(blob)-3],
		"no name":      buildRPMHeader([]rpmHeaderEntry{{rpmTagVersion, rpmTypeString, "1"}}),
		"wrong type":   buildRPMHeader([]rpmHeaderEntry{{rpmTagName, rpmTypeInt32, uint32(1)}}),
		"epoch beyond": append(binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(nil, 1), 0), buildRPMHeader([]rpmHeaderEntry{{rpmTagEpoch, rpmTypeInt32, uint32(1)}})[8:24]...),
	} {
		if _, err := parseRPMHeader(bad); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestSplitSourceRPM(t *testing.T) {
	for in, want := range map[string]string{
		"glibc-2.12-1.212.el6.src.rpm":                          "glibc 2.12-1.212.el6",
		"python-backports-ssl_match_hostname-3.5-1.el7.src.rpm": "python-backports-ssl_match_hostname 3.5-1.el7",
		"foo-1-2.nosrc.rpm":                                     "foo 1-2",
		"":                                                      "",
		"noversion.src.rpm":                                     "",
		"a-1.src.rpm":                                           "",
	} {
		n, v, ok := splitSourceRPM(in)
		got := ""
		if ok {
			got = n + " " + v
		}
		if got != want {
			t.Errorf("splitSourceRPM(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestRPMItemKeys(t *testing.T) {
	pkgs := []*commonv1.Package{
		{Name: "kernel", Arch: "x86_64", Version: "3.10.0-1160.el7"},
		{Name: "kernel", Arch: "x86_64", Version: "3.10.0-1062.el7"},
		{Name: "glibc", Arch: "x86_64", Version: "2.17-317.el7"},
		{Name: "glibc", Arch: "i686", Version: "2.17-317.el7"},
		{Name: "dup", Arch: "noarch", Version: "1-1"},
		{Name: "dup", Arch: "noarch", Version: "1-1"},
	}
	items, err := rpmItems(pkgs)
	if err != nil {
		t.Fatal(err)
	}
	checkItems(t, items)
	var keys []string
	for _, it := range items {
		keys = append(keys, it.GetKey())
	}
	want := []string{
		"rpm:kernel:x86_64:3.10.0-1160.el7", "rpm:kernel:x86_64:3.10.0-1062.el7",
		"rpm:glibc:x86_64", "rpm:glibc:i686",
		"rpm:dup:noarch:1-1", "rpm:dup:noarch:1-1#2",
	}
	diffSets(t, "keys", lines(strings.Join(want, "\n")), lines(strings.Join(keys, "\n")))
}

func FuzzParseRPMHeader(f *testing.F) {
	f.Add(buildRPMHeader([]rpmHeaderEntry{
		{rpmTagName, rpmTypeString, "bash"},
		{rpmTagEpoch, rpmTypeInt32, uint32(2)},
		{rpmTagSourceRPM, rpmTypeString, "bash-4.2-1.src.rpm"},
	}))
	f.Add([]byte{0, 0, 0, 1, 0, 0, 0, 0})
	f.Add([]byte{0x7f, 0xff, 0xff, 0xff, 0x7f, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := parseRPMHeader(b)
		if err == nil && p.GetName() == "" {
			t.Fatal("package without a name")
		}
	})
}
