package collect

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"

	commonv1 "github.com/quantumlayer/qinfra/proto/gen/qinfra/common/v1"
	"google.golang.org/protobuf/proto"
)

// apkListLine describes a package as `apk list --installed` prints it, less
// the licence, which the inventory does not keep.
func apkListLine(p *commonv1.Package) string {
	return fmt.Sprintf("%s-%s %s {%s} [%s]", p.GetName(), p.GetVersion(), p.GetArch(), p.GetSourceName(), p.GetStatus())
}

// TestParseApkInstalled reads a database laid out as apk-tools writes it on
// Alpine 3.19 and compares with the `apk list --installed` listing of the
// same packages in testdata/apk/installed.list.
func TestParseApkInstalled(t *testing.T) {
	f, err := os.Open("testdata/apk/installed")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	pkgs, err := parseApkInstalled(f)
	if err != nil {
		t.Fatal(err)
	}
	list, err := os.ReadFile("testdata/apk/installed.list")
	if err != nil {
		t.Fatal(err)
	}
	licence := regexp.MustCompile(` \([^)]*\) `)
	var got []string
	for _, p := range pkgs {
		got = append(got, apkListLine(p))
	}
	diffSets(t, "apk list --installed", lines(licence.ReplaceAllString(string(list), " ")), lines(strings.Join(got, "\n")))

	want := &commonv1.Package{
		Manager: "apk", Name: "libcrypto3", Version: "3.1.4-r5", Arch: "x86_64",
		SourceName: "openssl", SourceVersion: "3.1.4-r5", Status: "installed",
		UpstreamVersion: "3.1.4", Release: "r5",
	}
	for _, p := range pkgs {
		if p.GetName() == want.GetName() && !proto.Equal(p, want) {
			t.Errorf("libcrypto3:\n got %v\nwant %v", p, want)
		}
	}
}

func TestParseApkInstalledEdges(t *testing.T) {
	// No trailing blank line, CRLF line ends, no origin, several blank lines.
	pkgs, err := parseApkInstalled(strings.NewReader("\n\nP:a\r\nV:1.0\r\nA:aarch64\r\n\n\n\nP:b\nV:2-r0\nA:noarch\no:bsrc\nF:usr"))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range pkgs {
		got = append(got, apkListLine(p)+" "+p.GetUpstreamVersion()+"/"+p.GetRelease())
	}
	want := []string{"a-1.0 aarch64 {a} [installed] 1.0/", "b-2-r0 noarch {bsrc} [installed] 2/r0"}
	diffSets(t, "packages", want, got)

	for name, in := range map[string]string{
		"no name":    "V:1\nA:x86_64\n",
		"no version": "P:a\nA:x86_64\n",
		"not field":  "P:a\nV:1\nthis is not a field\n",
		"long line":  "P:a\nV:1\nR:" + strings.Repeat("x", 2<<20) + "\n",
	} {
		if _, err := parseApkInstalled(strings.NewReader(in)); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestSplitApkVersion(t *testing.T) {
	for in, want := range map[string]string{
		"1.2.4_git20230717-r4": "1.2.4_git20230717 r4",
		"2024a-r0":             "2024a r0",
		"1.0":                  "1.0 ",
		"1.0-rc1":              "1.0-rc1 ",
		"-r1":                  "-r1 ",
	} {
		u, r := splitApkVersion(in)
		if got := u + " " + r; got != want {
			t.Errorf("splitApkVersion(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestApkCollectorHostRoot runs the collector through a Set on a host root,
// with the database where apk-tools 2 and 3 keep it.
func TestApkCollectorHostRoot(t *testing.T) {
	db, err := os.ReadFile("testdata/apk/installed")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range apkInstalledPaths {
		t.Run(p, func(t *testing.T) {
			root := t.TempDir()
			writeFile(t, root, p, string(db))
			var disabled []string
			for _, r := range registry() {
				if r.name != "apk" {
					disabled = append(disabled, r.name)
				}
			}
			items, err := New(Config{Root: root, Disabled: disabled}).Collect(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			checkItems(t, items)
			var keys []string
			for _, it := range items {
				keys = append(keys, it.GetKey())
			}
			want := []string{
				"apk:alpine-baselayout-data:x86_64", "apk:busybox:x86_64", "apk:libcrypto3:x86_64",
				"apk:musl:x86_64", "apk:py3-six:noarch", "apk:ssl_client:x86_64", "apk:tzdata:x86_64",
			}
			diffSets(t, "keys", want, keys)
		})
	}
	items, err := apkCollector{}.Collect(context.Background(), HostFS{Root: t.TempDir()})
	if err != nil || len(items) != 0 {
		t.Errorf("no database: %d items, %v", len(items), err)
	}
	root := t.TempDir()
	writeFile(t, root, apkInstalledPaths[0], "P:a\nV:1\nA:x86\n\nP:a\nV:2\nA:x86\n")
	items, err = apkCollector{}.Collect(context.Background(), HostFS{Root: root})
	if err != nil || len(items) != 2 || items[1].GetKey() != "apk:a:x86#2" {
		t.Errorf("damaged database: %v, %v", items, err)
	}
}

func FuzzParseApkInstalled(f *testing.F) {
	if b, err := os.ReadFile("testdata/apk/installed"); err == nil {
		f.Add(string(b))
	}
	f.Add("P:a\nV:1\n\nP:b\nV:2-r3\no:c\n")
	f.Add("P:\nV:\n")
	f.Fuzz(func(t *testing.T, s string) {
		pkgs, err := parseApkInstalled(strings.NewReader(s))
		if err != nil {
			return
		}
		for _, p := range pkgs {
			if p.GetName() == "" || p.GetVersion() == "" || p.GetSourceName() == "" {
				t.Fatalf("incomplete package %v", p)
			}
			if u, r := p.GetUpstreamVersion(), p.GetRelease(); r != "" && u+"-"+r != p.GetVersion() {
				t.Fatalf("version %q split into %q and %q", p.GetVersion(), u, r)
			}
		}
		if _, err := apkItems(pkgs); err != nil {
			t.Fatal(err)
		}
	})
}
