//go:build linux

package collect

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// rpmSpec describes a test package for rpmbuild: no files, so it installs
// anywhere.
type rpmSpec struct {
	name, epoch, version, release, arch, vendor string
}

// buildRPM builds the package with rpmbuild under dir and returns its path.
func buildRPM(t *testing.T, dir string, s rpmSpec) string {
	t.Helper()
	var spec strings.Builder
	fmt.Fprintf(&spec, "Name: %s\nVersion: %s\nRelease: %s\nSummary: qinfra test package\nLicense: MIT\nBuildArch: %s\n", s.name, s.version, s.release, s.arch)
	if s.epoch != "" {
		fmt.Fprintf(&spec, "Epoch: %s\n", s.epoch)
	}
	if s.vendor != "" {
		fmt.Fprintf(&spec, "Vendor: %s\n", s.vendor)
	}
	spec.WriteString("%description\nA package without files for qinfra's tests.\n%files\n")
	specFile := filepath.Join(dir, s.name+"-"+s.version+".spec")
	if err := os.WriteFile(specFile, []byte(spec.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	top := filepath.Join(dir, "top")
	command(t, "rpmbuild", "-bb", "--quiet", "--define", "_topdir "+top, specFile)
	rpm := filepath.Join(top, "RPMS", s.arch, fmt.Sprintf("%s-%s-%s.%s.rpm", s.name, s.version, s.release, s.arch))
	if _, err := os.Stat(rpm); err != nil {
		t.Fatal(err)
	}
	return rpm
}

// rpmRoot installs test packages into a fresh rpm database under a new root
// with Debian's rpm, which writes the SQLite format. It always passes --root:
// with --dbpath alone Debian's rpm writes into the real /.
func rpmRoot(t *testing.T, dbpath string, specs ...rpmSpec) string {
	t.Helper()
	for _, tool := range []string{"rpm", "rpmbuild"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed", tool)
		}
	}
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	mkdir(t, root, dbpath)
	command(t, "rpm", "--root", root, "--dbpath", dbpath, "--initdb")
	for _, s := range specs {
		pkg := buildRPM(t, dir, s)
		command(t, "rpm", "--root", root, "--dbpath", dbpath, "-i", "--justdb", "--nodeps", "--noscripts", pkg)
	}
	if _, err := os.Stat(filepath.Join(root, dbpath, "rpmdb.sqlite")); err != nil {
		t.Skipf("this rpm does not write the SQLite format: %v", err)
	}
	return root
}

var rpmTestSpecs = []rpmSpec{
	{name: "alpha", version: "1.0", release: "1", arch: "noarch", vendor: "Qinfra Test"},
	{name: "beta", epoch: "2", version: "3.4.5", release: "6.el9", arch: "noarch"},
	{name: "gamma", version: "0.9", release: "0.rc1", arch: "x86_64"},
	// Installed twice side by side, as kernels are.
	{name: "gamma", version: "1.0", release: "1", arch: "x86_64"},
}

// TestRPMSQLiteMatchesRPM installs packages with rpm into SQLite databases at
// both places rpm keeps them and compares the collector with rpm -qa.
func TestRPMSQLiteMatchesRPM(t *testing.T) {
	for _, dbpath := range rpmDBDirs {
		t.Run(dbpath, func(t *testing.T) {
			root := rpmRoot(t, dbpath, rpmTestSpecs...)
			db := filepath.Join(root, dbpath, "rpmdb.sqlite")
			before, err := os.ReadFile(db)
			if err != nil {
				t.Fatal(err)
			}
			items, err := rpmCollector{}.Collect(context.Background(), HostFS{Root: root})
			if err != nil {
				t.Fatal(err)
			}
			checkItems(t, items)
			var got, keys []string
			for _, it := range items {
				p := it.GetPackage()
				keys = append(keys, it.GetKey())
				vendor := p.GetVendor()
				if vendor == "" {
					vendor = "(none)"
				}
				got = append(got, fmt.Sprintf("%s %d:%s-%s %s %s %s %d %s %s-%s.src.rpm", p.GetName(), p.GetEpoch(), p.GetUpstreamVersion(),
					p.GetRelease(), p.GetArch(), p.GetVersion(), vendor, p.GetInstallTime(), p.GetStatus(), p.GetSourceName(), p.GetSourceVersion()))
			}
			out := command(t, "rpm", "--root", root, "--dbpath", dbpath, "-qa", "--qf",
				`%{NAME} %{EPOCHNUM}:%{VERSION}-%{RELEASE} %{ARCH} %{EVR} %{VENDOR} %{INSTALLTIME} installed %{SOURCERPM}\n`)
			diffSets(t, "rpm -qa", lines(out), lines(strings.Join(got, "\n")))
			diffSets(t, "keys", []string{
				"rpm:alpha:noarch", "rpm:beta:noarch", "rpm:gamma:x86_64:0.9-0.rc1", "rpm:gamma:x86_64:1.0-1",
			}, lines(strings.Join(keys, "\n")))

			after, err := os.ReadFile(db)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(before, after) {
				t.Error("reading changed the database")
			}
			// Read as immutable, as from a read-only mount, it is the same.
			imm, err := querySQLiteRPM(context.Background(), db, true)
			if err != nil || len(imm) != len(items) {
				t.Errorf("immutable read: %d packages, %v", len(imm), err)
			}
		})
	}
}

// TestRPMSQLiteNewerFormatWins: after a conversion rpm leaves the old
// Packages file behind; the SQLite database is the one in use.
func TestRPMSQLiteNewerFormatWins(t *testing.T) {
	root := rpmRoot(t, "/var/lib/rpm", rpmTestSpecs[0])
	writeFile(t, root, "/var/lib/rpm/Packages", "stale Berkeley DB")
	items, err := rpmCollector{}.Collect(context.Background(), HostFS{Root: root})
	if err != nil || len(items) != 1 || items[0].GetKey() != "rpm:alpha:noarch" {
		t.Errorf("Collect = %v, %v", items, err)
	}
}

func TestRPMSQLiteDamaged(t *testing.T) {
	ctx := context.Background()
	for name, content := range map[string]string{
		"not sqlite": "this is not a database at all, just text",
		"truncated":  sqliteMagic + strings.Repeat("\x00", 84),
	} {
		root := t.TempDir()
		writeFile(t, root, "/var/lib/rpm/rpmdb.sqlite", content)
		items, err := rpmCollector{}.Collect(ctx, HostFS{Root: root})
		if err == nil || len(items) != 0 {
			t.Errorf("%s: Collect = %d items, %v; want an error", name, len(items), err)
		}
	}

	// An SQLite database without rpm's table, and one whose blob is not a
	// header.
	if _, err := exec.LookPath("sqlite3"); err != nil {
		t.Skip("sqlite3 not installed")
	}
	for name, sql := range map[string]string{
		"no table": "CREATE TABLE other (x);",
		"bad blob": "CREATE TABLE Packages (hnum INTEGER PRIMARY KEY AUTOINCREMENT, blob BLOB NOT NULL); INSERT INTO Packages (blob) VALUES (x'0000000100000000');",
	} {
		root := t.TempDir()
		mkdir(t, root, "/var/lib/rpm")
		command(t, "sqlite3", filepath.Join(root, "/var/lib/rpm/rpmdb.sqlite"), sql)
		if _, err := (rpmCollector{}).Collect(ctx, HostFS{Root: root}); err == nil {
			t.Errorf("%s: no error", name)
		}
	}

	// A FIFO in place of the database is refused, not opened.
	root := t.TempDir()
	mkdir(t, root, "/var/lib/rpm")
	if err := syscall.Mkfifo(filepath.Join(root, "/var/lib/rpm/rpmdb.sqlite"), 0o600); err != nil {
		t.Skip(err)
	}
	if _, err := (rpmCollector{}).Collect(ctx, HostFS{Root: root}); err == nil {
		t.Error("FIFO: no error")
	}
}

func TestSQLiteDSN(t *testing.T) {
	got := sqliteDSN("/host/var/lib/rpm/odd?#%name", true)
	want := "file:/host/var/lib/rpm/odd%3F%23%25name?_pragma=busy_timeout%2810000%29&_pragma=query_only%281%29&immutable=1&mode=ro"
	if got != want {
		t.Errorf("dsn %q, want %q", got, want)
	}
}
