package vuln

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/quantumlayer/qinfra/pkg/osv"
)

// rec builds a record from a compact JSON body (id, modified added).
func rec(t *testing.T, id, modified, body string) *osv.Record {
	t.Helper()
	r, err := osv.ParseBytes([]byte(fmt.Sprintf(`{"id": %q, "modified": %q, %s}`, id, modified, body)))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func affected(eco, name string, events string, versions ...string) string {
	vs, _ := json.Marshal(versions)
	if versions == nil {
		vs = []byte("[]")
	}
	return fmt.Sprintf(`{"package": {"ecosystem": %q, "name": %q}, "ranges": [{"type": "ECOSYSTEM", "events": [%s]}], "versions": %s}`, eco, name, events, vs)
}

const t0 = "2024-01-01T00:00:00Z"

func index(t *testing.T, recs ...*osv.Record) *Index {
	t.Helper()
	ix := NewIndex()
	for _, r := range recs {
		if err := ix.Add(r); err != nil {
			t.Fatal(err)
		}
	}
	return ix
}

func ids(fs []Finding) string {
	var out []string
	for _, f := range fs {
		out = append(out, f.Package+":"+f.AdvisoryID+":"+f.FixedVersion)
	}
	return strings.Join(out, " ")
}

func TestMatchDebianBySourceVersion(t *testing.T) {
	ix := index(t,
		// util-linux is fixed in 2.38.1-5+deb12u4; bsdutils, one of its
		// binaries, carries epoch 1 that the source does not have.
		rec(t, "DSA-1", t0, `"aliases": ["CVE-2024-1"], "affected": [`+affected("Debian:12", "util-linux", `{"introduced": "0"}, {"fixed": "2.38.1-5+deb12u4"}`)+`]`),
		// bash's binNMU 5.2.15-2+b8 is source 5.2.15-2, which is fixed here.
		rec(t, "DSA-2", t0, `"affected": [`+affected("Debian:12", "bash", `{"introduced": "0"}, {"fixed": "5.2.15-2"}`)+`]`),
		// A fix in 5.2.15-3 applies to the binNMU too.
		rec(t, "DSA-3", t0, `"affected": [`+affected("Debian:12", "bash", `{"introduced": "0"}, {"fixed": "5.2.15-3"}`)+`]`),
		// Another release's record does not apply.
		rec(t, "DSA-4", t0, `"affected": [`+affected("Debian:11", "bash", `{"introduced": "0"}, {"fixed": "9"}`)+`]`),
	)
	pkgs := []Package{
		{Name: "bsdutils", Version: "1:2.38.1-5+deb12u3", SourceName: "util-linux", SourceVersion: "2.38.1-5+deb12u3", Arch: "amd64"},
		{Name: "util-linux", Version: "2.38.1-5+deb12u3", Arch: "amd64"},
		{Name: "bash", Version: "5.2.15-2+b8", SourceName: "bash", SourceVersion: "5.2.15-2", Arch: "amd64"},
	}
	got := ix.Match("Debian:12", pkgs)
	if want := "bash:DSA-3:5.2.15-3 bsdutils:DSA-1:2.38.1-5+deb12u4 util-linux:DSA-1:2.38.1-5+deb12u4"; ids(got) != want {
		t.Fatalf("findings %s\nwant     %s", ids(got), want)
	}
	f := got[1]
	if f.SourcePackage != "util-linux" || f.SourceVersion != "2.38.1-5+deb12u3" || f.InstalledVersion != "1:2.38.1-5+deb12u3" || !f.FixAvailable || !reflect.DeepEqual(f.CVEs, []string{"CVE-2024-1"}) {
		t.Fatalf("finding %+v", f)
	}
}

func TestMatchRangesAndLists(t *testing.T) {
	ix := index(t,
		rec(t, "A-1", t0, `"affected": [`+affected("AlmaLinux:9", "p", `{"introduced": "1.0-1"}, {"fixed": "1.5-1"}, {"introduced": "2.0-1"}, {"fixed": "2.3-1"}`)+`]`),
		rec(t, "A-2", t0, `"affected": [`+affected("AlmaLinux:9", "p", `{"introduced": "0"}, {"last_affected": "1.2-1"}`)+`]`),
		rec(t, "A-3", t0, `"affected": [`+affected("AlmaLinux:9", "p", `{"introduced": "0"}`)+`]`), // unfixed
		rec(t, "A-4", t0, `"affected": [{"package": {"ecosystem": "AlmaLinux:9", "name": "p"}, "versions": ["1.7-1"]}]`),
		rec(t, "A-5", t0, `"affected": [`+affected("AlmaLinux:9", "p", `{"introduced": "0"}, {"limit": "1.1-1"}`)+`]`),
		// Events out of order are sorted before evaluation.
		rec(t, "A-6", t0, `"affected": [`+affected("AlmaLinux:9", "p", `{"fixed": "1:0.9-1"}, {"introduced": "0"}`)+`]`),
	)
	for v, want := range map[string]string{
		"0.5-1":   "p:A-2: p:A-3: p:A-5: p:A-6:1:0.9-1",
		"1.0-1":   "p:A-1:1.5-1 p:A-2: p:A-3: p:A-5: p:A-6:1:0.9-1",
		"1.2-1":   "p:A-1:1.5-1 p:A-2: p:A-3: p:A-6:1:0.9-1",
		"1.5-1":   "p:A-3: p:A-6:1:0.9-1",
		"1.7-1":   "p:A-3: p:A-4: p:A-6:1:0.9-1",
		"2.1-1":   "p:A-1:2.3-1 p:A-3: p:A-6:1:0.9-1",
		"2.3-1":   "p:A-3: p:A-6:1:0.9-1",
		"1:0.1-1": "p:A-3: p:A-6:1:0.9-1",
	} {
		if got := ids(ix.Match("AlmaLinux:9", []Package{{Name: "p", Version: v}})); got != want {
			t.Errorf("%s: %s\nwant %s", v, got, want)
		}
	}
}

func TestMatchRedHatStreamsAndNames(t *testing.T) {
	ix := index(t, rec(t, "RHSA-1", t0, `"upstream": ["CVE-2024-9"], "summary": "Important: openssl update", "affected": [`+
		affected("Red Hat:enterprise_linux:9::appstream", "openssl", `{"introduced": "0"}, {"fixed": "1:3.0.7-27.el9"}`)+`,`+
		affected("Red Hat:enterprise_linux:9::baseos", "openssl", `{"introduced": "0"}, {"fixed": "1:3.0.7-27.el9"}`)+`]`))
	host, _ := osv.HostEcosystem("rhel", "9.4")
	got := ix.Match(host, []Package{
		{Name: "openssl-libs", Version: "1:3.0.7-24.el9", SourceName: "openssl", SourceVersion: "3.0.7-24.el9"},
		{Name: "openssl", Version: "1:3.0.7-27.el9", SourceName: "openssl"},
	})
	if len(got) != 1 || got[0].Package != "openssl-libs" || got[0].SourcePackage != "openssl" || got[0].FixedVersion != "1:3.0.7-27.el9" {
		t.Fatalf("findings %+v", got)
	}
	if got[0].Severity.Level != osv.LevelHigh || got[0].Severity.Rating != "Important" || !reflect.DeepEqual(got[0].CVEs, []string{"CVE-2024-9"}) {
		t.Fatalf("severity/aliases %+v", got[0])
	}
	if got := ix.Match("AlmaLinux:9", []Package{{Name: "openssl", Version: "1:3.0.7-24.el9"}}); len(got) != 0 {
		t.Fatalf("another ecosystem matched: %+v", got)
	}
}

func TestWithdrawnAndReplaced(t *testing.T) {
	ix := index(t, rec(t, "A-1", t0, `"affected": [`+affected("AlmaLinux:9", "p", `{"introduced": "0"}, {"fixed": "2-1"}`)+`]`))
	p := []Package{{Name: "p", Version: "1-1"}}
	if len(ix.Match("AlmaLinux:9", p)) != 1 {
		t.Fatal("not matched")
	}
	// A newer version of the record moves the fix.
	ix.Add(rec(t, "A-1", "2024-02-01T00:00:00Z", `"affected": [`+affected("AlmaLinux:9", "p", `{"introduced": "0"}, {"fixed": "1-1"}`)+`]`))
	if got := ix.Match("AlmaLinux:9", p); len(got) != 0 || ix.Len() != 1 {
		t.Fatalf("after update: %+v", got)
	}
	// An older one is ignored.
	ix.Add(rec(t, "A-1", t0, `"affected": [`+affected("AlmaLinux:9", "p", `{"introduced": "0"}, {"fixed": "9-1"}`)+`]`))
	if got := ix.Match("AlmaLinux:9", p); len(got) != 0 {
		t.Fatalf("older record applied: %+v", got)
	}
	ix.Add(rec(t, "A-1", "2024-03-01T00:00:00Z", `"affected": [`+affected("AlmaLinux:9", "p", `{"introduced": "0"}, {"fixed": "9-1"}`)+`]`))
	if len(ix.Match("AlmaLinux:9", p)) != 1 {
		t.Fatal("newer record not applied")
	}
	// Withdrawn: no findings, and Modified still reports it so that a
	// re-import does not bring the old one back.
	ix.Add(rec(t, "A-1", "2024-04-01T00:00:00Z", `"withdrawn": "2024-04-01T00:00:00Z", "affected": [`+affected("AlmaLinux:9", "p", `{"introduced": "0"}`)+`]`))
	if got := ix.Match("AlmaLinux:9", p); len(got) != 0 || ix.Len() != 0 {
		t.Fatalf("withdrawn record matched: %+v", got)
	}
	if m, ok := ix.Modified("A-1"); !ok || !m.Equal(time.Date(2024, 4, 1, 0, 0, 0, 0, time.UTC)) {
		t.Fatalf("Modified = %v, %v", m, ok)
	}
	ix.Add(rec(t, "A-1", "2024-03-01T00:00:00Z", `"affected": [`+affected("AlmaLinux:9", "p", `{"introduced": "0"}`)+`]`))
	if len(ix.Match("AlmaLinux:9", p)) != 0 {
		t.Fatal("an older record revived a withdrawn one")
	}
	ix.Remove("A-1")
	if _, ok := ix.Modified("A-1"); ok {
		t.Fatal("removed record still known")
	}
}

func TestMatchUnknownEcosystem(t *testing.T) {
	ix := index(t, rec(t, "G-1", t0, `"affected": [{"package": {"ecosystem": "npm", "name": "p"}, "ranges": [{"type": "SEMVER", "events": [{"introduced": "0"}]}]}]`))
	if got := ix.Match("npm", []Package{{Name: "p", Version: "1.0.0"}}); got != nil {
		t.Fatalf("findings %+v", got)
	}
	if ix.Len() != 1 {
		t.Fatalf("Len %d", ix.Len())
	}
}

func TestMatchSetsEqualsPerHost(t *testing.T) {
	ix := index(t,
		rec(t, "A-1", t0, `"affected": [`+affected("AlmaLinux:9", "p", `{"introduced": "0"}, {"fixed": "2-1"}`)+`]`),
		rec(t, "D-1", t0, `"affected": [`+affected("Debian:12", "src", `{"introduced": "0"}, {"fixed": "2-1"}`)+`]`),
	)
	imageA := []Package{{Name: "p", Version: "1-1"}, {Name: "q", Version: "1-1"}}
	imageB := []Package{{Name: "p", Version: "3-1"}}
	debian := []Package{{Name: "bin", Version: "1-1+b1", SourceName: "src", SourceVersion: "1-1"}}
	hosts := []HostPackages{
		{Host: "a1", Ecosystem: "AlmaLinux:9", Packages: imageA},
		{Host: "a2", Ecosystem: "AlmaLinux:9", Packages: imageA},
		{Host: "a3", Ecosystem: "AlmaLinux:9", Packages: []Package{{Name: "q", Version: "1-1"}, {Name: "p", Version: "1-1"}}}, // same set, other order
		{Host: "b1", Ecosystem: "AlmaLinux:9", Packages: imageB},
		{Host: "b2", Ecosystem: "AlmaLinux:9", SetID: "B", Packages: imageB},
		{Host: "b3", Ecosystem: "AlmaLinux:9", SetID: "B", Packages: imageB},
		{Host: "d1", Ecosystem: "Debian:12", Packages: debian},
		{Host: "x1", Ecosystem: "Windows:11", Packages: imageA},
	}
	m, err := ix.MatchSets(context.Background(), hosts)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Sets) != 5 { // A, B (hashed), B (by id), Debian, Windows
		t.Fatalf("%d sets", len(m.Sets))
	}
	total := 0
	for _, h := range hosts {
		want := ix.Match(h.Ecosystem, h.Packages)
		for i := range want {
			want[i].Host = h.Host
		}
		got := m.Host(h.Host)
		if len(got) != len(want) || (len(got) > 0 && !reflect.DeepEqual(got, want)) {
			t.Errorf("%s: %+v\nwant %+v", h.Host, got, want)
		}
		total += len(want)
	}
	n := 0
	for f := range m.All() {
		if f.Host == "" {
			t.Fatal("finding without host")
		}
		n++
	}
	if n != total || m.Count() != total || total != 4 {
		t.Fatalf("All %d, Count %d, per host %d", n, m.Count(), total)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := ix.MatchSets(ctx, hosts); err == nil {
		t.Fatal("cancelled match succeeded")
	}
}

func TestImportIntoIndex(t *testing.T) {
	ix := NewIndex()
	rep, err := osv.Import(context.Background(), "testdata/osv/AlmaLinux-9.zip", ix, ix.Add)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Added < 1700 || len(rep.Invalid) != 0 || ix.Len() != rep.Added {
		t.Fatalf("report %+v, index %d", rep, ix.Len())
	}
	rep, err = osv.Import(context.Background(), "testdata/osv/AlmaLinux-9.zip", ix, ix.Add)
	if err != nil || rep.Added+rep.Updated != 0 || rep.Unchanged != ix.Len() {
		t.Fatalf("re-import %+v, %v", rep, err)
	}
}

func TestConcurrentImportAndMatch(t *testing.T) {
	ix := NewIndex()
	hosts := []HostPackages{{Host: "h", Ecosystem: "AlmaLinux:9", Packages: []Package{{Name: "p", Version: "1-1"}}}}
	var recs []*osv.Record
	for i := range 200 {
		recs = append(recs, rec(t, fmt.Sprintf("A-%d", i%20), fmt.Sprintf("2024-01-01T00:00:%02dZ", i%60),
			`"affected": [`+affected("AlmaLinux:9", "p", `{"introduced": "0"}, {"fixed": "2-1"}`)+`]`))
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i, r := range recs {
			ix.Add(r)
			if i%7 == 0 {
				ix.Remove(fmt.Sprintf("A-%d", i%20))
			}
		}
	}()
	for range 50 {
		m, err := ix.MatchSets(context.Background(), hosts)
		if err != nil {
			t.Fatal(err)
		}
		for f := range m.All() {
			if f.AdvisoryID == "" {
				t.Fatal("empty finding")
			}
		}
		_ = ix.Match("AlmaLinux:9", hosts[0].Packages)
	}
	<-done
}
