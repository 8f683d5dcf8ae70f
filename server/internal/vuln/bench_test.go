package vuln

import (
	"archive/zip"
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/quantumlayer/qinfra/pkg/osv"
	"github.com/quantumlayer/qinfra/pkg/versioncmp"
)

// The fleet the benchmark matches: make bench-vuln.
const (
	benchHosts   = 50000
	benchImages  = 20
	benchRecords = 50000 // the real AlmaLinux set plus generated records
)

// benchFleet is a simulated fleet and an index as large as a real
// distribution's advisory database.
type benchFleet struct {
	ix          *Index
	hosts       []HostPackages
	records     int // advisories in the index
	generated   int // of which generated
	importTime  time.Duration
	indexHeapMB float64
}

// ladder is the versions a package goes through, oldest first: for a
// package of the real AlmaLinux set, the fixed versions its advisories
// name; for a generated one, a made-up series.
type ladder []string

// buildBenchFleet imports the real AlmaLinux records, generates more in
// the same shape up to nRecords and imports them through a zip archive,
// as an operator's import would, then builds nImages images of about a
// thousand packages at different patch levels and nHosts hosts drawn from
// them: each image in four variants (later patches of a few packages), and
// about one host in two hundred with a drift of its own.
func buildBenchFleet(tb testing.TB, nHosts, nImages, nRecords int) *benchFleet {
	tb.Helper()
	ctx := context.Background()
	f := &benchFleet{ix: NewIndex()}
	start := time.Now()

	ladders := map[string]ladder{}
	rep, err := osv.Import(ctx, "testdata/osv/AlmaLinux-9.zip", f.ix, func(r *osv.Record) error {
		for _, a := range r.Affected {
			if a.Package.Ecosystem != "AlmaLinux:9" {
				continue
			}
			for _, rg := range a.Ranges {
				for _, e := range rg.Events {
					if e.Fixed != "" && !slices.Contains(ladders[a.Package.Name], e.Fixed) {
						ladders[a.Package.Name] = append(ladders[a.Package.Name], e.Fixed)
					}
				}
			}
		}
		return f.ix.Add(r)
	})
	if err != nil || len(rep.Invalid) > 0 {
		tb.Fatalf("import real records: %v %v", err, rep.Invalid)
	}
	var realNames []string
	for name, l := range ladders {
		slices.SortFunc(l, versioncmp.RPM.Compare)
		realNames = append(realNames, name)
	}
	slices.Sort(realNames)

	r := rand.New(rand.NewPCG(42, 7))
	const synthNames = 20000
	synthName := func(i int) string { return fmt.Sprintf("qbench-lib%05d", i) }
	for i := range synthNames {
		h := fnv.New32a()
		h.Write([]byte(synthName(i)))
		x := h.Sum32()
		l := make(ladder, 30)
		for rel := range l {
			l[rel] = fmt.Sprintf("%d.%d.%d-%d.el9", x%7, x/7%20, x/140%9, rel+1)
		}
		ladders[synthName(i)] = l
	}

	// Generated records, written to a zip and imported from it.
	n := nRecords - f.ix.Len()
	if n > 0 {
		zipPath := filepath.Join(tb.TempDir(), "generated.zip")
		writeGenerated(tb, zipPath, n, r, realNames, synthNames, synthName, ladders)
		rep, err := osv.Import(ctx, zipPath, f.ix, f.ix.Add)
		if err != nil || len(rep.Invalid) > 0 || rep.Added != n {
			tb.Fatalf("import generated records: %v %+v", err, rep)
		}
		f.generated = n
	}
	f.records = f.ix.Len()
	f.importTime = time.Since(start)
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	f.indexHeapMB = float64(ms.HeapAlloc) / (1 << 20)

	// Images, their variants, and the hosts.
	type image struct {
		eco      string
		variants [][]Package
	}
	images := make([]image, nImages)
	for i := range images {
		age := float64(i) / float64(nImages) // 0: oldest patch level
		var base []Package
		for _, name := range pick(r, realNames, 400) {
			base = append(base, pkgAt(name, ladders[name], age, r))
		}
		for _, k := range r.Perm(synthNames)[:600] {
			name := synthName(k)
			base = append(base, pkgAt(name, ladders[name], age, r))
		}
		img := image{eco: "AlmaLinux:9", variants: [][]Package{base}}
		for v := 1; v < 4; v++ {
			variant := slices.Clone(base)
			for _, j := range r.Perm(len(variant))[:3*v] {
				variant[j].Version = newer(ladders[variant[j].Name], variant[j].Version)
			}
			img.variants = append(img.variants, variant)
		}
		images[i] = img
	}
	f.hosts = make([]HostPackages, nHosts)
	for h := range f.hosts {
		img := images[h%nImages]
		pkgs := img.variants[(h/nImages)%len(img.variants)]
		if r.IntN(200) == 0 {
			pkgs = slices.Clone(pkgs)
			j := r.IntN(len(pkgs))
			pkgs[j].Version = other(ladders[pkgs[j].Name], pkgs[j].Version)
		}
		f.hosts[h] = HostPackages{Host: "host-" + strconv.Itoa(h), Ecosystem: img.eco, Packages: pkgs}
	}
	return f
}

func pick(r *rand.Rand, names []string, n int) []string {
	n = min(n, len(names))
	out := make([]string, 0, n)
	for _, i := range r.Perm(len(names))[:n] {
		out = append(out, names[i])
	}
	return out
}

// pkgAt is package name installed at the version its ladder had at age
// (0..1), give or take.
func pkgAt(name string, l ladder, age float64, r *rand.Rand) Package {
	i := int(age*float64(len(l))) + r.IntN(3) - 1
	i = max(0, min(i, len(l)-1))
	return Package{Name: name, Version: l[i], SourceName: name, Arch: "x86_64"}
}

func newer(l ladder, v string) string {
	i := slices.Index(l, v)
	return l[min(i+2, len(l)-1)]
}

// other is another step of the ladder than v: the next, or the previous
// at the top.
func other(l ladder, v string) string {
	i := slices.Index(l, v)
	if i+1 < len(l) {
		return l[i+1]
	}
	return l[max(i-1, 0)]
}

// writeGenerated writes n advisories shaped like AlmaLinux's: one to four
// packages each, the fix a step of the package's ladder, some unfixed,
// some with a CVSS vector, CVEs in related.
func writeGenerated(tb testing.TB, path string, n int, r *rand.Rand, realNames []string, synthNames int, synthName func(int) string, ladders map[string]ladder) {
	tb.Helper()
	out, err := os.Create(path)
	if err != nil {
		tb.Fatal(err)
	}
	zw := zip.NewWriter(out)
	ratings := []string{"Low", "Moderate", "Important", "Critical"}
	vectors := []string{
		"CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
		"CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:H/A:H",
		"CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:U/C:H/I:N/A:N",
	}
	type event map[string]string
	for i := range n {
		rec := map[string]any{
			"id":        fmt.Sprintf("QBENCH-2025:%05d", i),
			"modified":  "2025-06-01T00:00:00Z",
			"published": "2025-05-01T00:00:00Z",
			"summary":   ratings[r.IntN(len(ratings))] + ": generated security update",
			"related":   []string{fmt.Sprintf("CVE-2025-%d", 100000+i)},
		}
		if r.IntN(3) == 0 {
			rec["severity"] = []map[string]string{{"type": "CVSS_V3", "score": vectors[r.IntN(len(vectors))]}}
		}
		var affected []map[string]any
		for range 1 + r.IntN(4) {
			var name string
			if r.IntN(10) < 3 {
				name = realNames[r.IntN(len(realNames))]
			} else {
				name = synthName(r.IntN(synthNames))
			}
			l := ladders[name]
			k := r.IntN(len(l))
			events := []event{{"introduced": "0"}}
			switch x := r.IntN(20); {
			case x < 2: // unfixed
			case x < 3 && k >= 3:
				events = []event{{"introduced": l[k-3]}, {"fixed": l[k]}}
			default:
				events = append(events, event{"fixed": l[k]})
			}
			affected = append(affected, map[string]any{
				"package": map[string]string{"ecosystem": "AlmaLinux:9", "name": name},
				"ranges":  []map[string]any{{"type": "ECOSYSTEM", "events": events}},
			})
		}
		rec["affected"] = affected
		w, err := zw.Create(rec["id"].(string) + ".json")
		if err != nil {
			tb.Fatal(err)
		}
		if err := json.NewEncoder(w).Encode(rec); err != nil {
			tb.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		tb.Fatal(err)
	}
	if err := out.Close(); err != nil {
		tb.Fatal(err)
	}
}

// BenchmarkMatchFleet matches 50,000 hosts drawn from 20 images against
// about 50,000 advisories (make bench-vuln). "match" is the whole match:
// grouping the hosts into distinct package sets, looking up every distinct
// package version once, and building each set's findings. "fanout" then
// walks every host's findings, one Finding value per host and advisory
// and package, as a consumer that wants them per host would.
func BenchmarkMatchFleet(b *testing.B) {
	f := buildBenchFleet(b, benchHosts, benchImages, benchRecords)
	b.Logf("index: %d advisories (%d real, %d generated), imported in %v, heap %.0f MiB",
		f.records, f.records-f.generated, f.generated, f.importTime.Round(time.Millisecond), f.indexHeapMB)
	ctx := context.Background()
	var m *FleetMatch
	b.Run("match", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var err error
			if m, err = f.ix.MatchSets(ctx, f.hosts); err != nil {
				b.Fatal(err)
			}
			for _, s := range m.Sets {
				if len(s.Findings()) != s.Len() {
					b.Fatal("set findings")
				}
			}
		}
		b.ReportMetric(float64(len(f.hosts)), "hosts")
		b.ReportMetric(float64(f.records), "advisories")
		b.ReportMetric(float64(len(m.Sets)), "sets")
		b.ReportMetric(f.importTime.Seconds(), "import-s")
		b.ReportMetric(f.indexHeapMB, "index-MiB")
	})
	b.Run("fanout", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			n := 0
			for range m.All() {
				n++
			}
			if n != m.Count() {
				b.Fatalf("%d findings, Count %d", n, m.Count())
			}
		}
		b.ReportMetric(float64(m.Count()), "host-findings")
	})
}

// TestBenchFleetConsistent builds a smaller fleet the same way and checks
// that matching each distinct set once gives every host what matching it
// alone gives.
func TestBenchFleetConsistent(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a generated advisory database")
	}
	f := buildBenchFleet(t, 2000, 5, 3000)
	m, err := f.ix.MatchSets(context.Background(), f.hosts)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Sets) >= len(f.hosts)/4 {
		t.Fatalf("%d sets for %d hosts: sets are not shared", len(m.Sets), len(f.hosts))
	}
	if m.Count() == 0 {
		t.Fatal("no findings")
	}
	for _, i := range []int{0, 1, 7, 199, 399, 1234, 1999} {
		h := f.hosts[i]
		want := f.ix.Match(h.Ecosystem, h.Packages)
		got := m.Host(h.Host)
		if len(got) != len(want) {
			t.Fatalf("%s: %d findings, alone %d", h.Host, len(got), len(want))
		}
		for j := range got {
			got[j].Host = ""
			if !equalFinding(got[j], want[j]) {
				t.Fatalf("%s: %+v\nalone %+v", h.Host, got[j], want[j])
			}
		}
	}
	t.Logf("%d hosts, %d sets, %d advisories, %d findings", len(f.hosts), len(m.Sets), f.records, m.Count())
}

func equalFinding(a, b Finding) bool {
	return a.Package == b.Package && a.AdvisoryID == b.AdvisoryID && a.FixedVersion == b.FixedVersion &&
		a.InstalledVersion == b.InstalledVersion && a.Severity == b.Severity && slices.Equal(a.CVEs, b.CVEs)
}
