package vulnsvc

import (
	"crypto/sha256"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/quantumlayer/qinfra/pkg/inventory"
	commonv1 "github.com/quantumlayer/qinfra/proto/gen/qinfra/common/v1"
	"github.com/quantumlayer/qinfra/server/internal/store"
	"github.com/quantumlayer/qinfra/server/internal/store/bboltstore"
)

// testdata is the vuln package's real OSV records.
const testdata = "../vuln/testdata/osv"

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func openStore(t *testing.T, dir string) *bboltstore.Store {
	t.Helper()
	st, err := bboltstore.Open(filepath.Join(dir, "qinfra.db"), bboltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func newService(st Store) *Service {
	return New(st, Options{Now: func() time.Time { return t0 }})
}

func dpkgItem(name, version, source, sourceVersion, status string) *commonv1.Item {
	it := &commonv1.Item{Kind: inventory.KindPackage, Key: "dpkg:" + name + ":amd64",
		Body: &commonv1.Item_Package{Package: &commonv1.Package{Manager: "dpkg", Name: name, Version: version,
			Arch: "amd64", SourceName: source, SourceVersion: sourceVersion, Status: status}}}
	if err := inventory.Seal(it); err != nil {
		panic(err)
	}
	return it
}

func portItem(process, addr string, port uint32) *commonv1.Item {
	it := &commonv1.Item{Kind: inventory.KindPort, Key: "tcp/" + addr + ":" + string(rune('0'+port%10)),
		Body: &commonv1.Item_Port{Port: &commonv1.ListeningPort{Protocol: "tcp", Address: addr, Port: port, Process: process}}}
	if err := inventory.Seal(it); err != nil {
		panic(err)
	}
	return it
}

var seq uint64

// addHost enrolls a Debian 12 host with labels and items.
func addHost(t *testing.T, st store.Store, id string, labels map[string]string, items ...*commonv1.Item) {
	t.Helper()
	ctx := t.Context()
	secret := sha256.Sum256([]byte("tok-" + id))
	tok := &store.EnrollmentToken{ID: "tok-" + id, Hash: secret[:], UsesAllowed: 1, ExpiresAt: t0.Add(time.Hour), CreatedAt: t0, Labels: labels}
	if err := st.CreateEnrollmentToken(ctx, tok); err != nil {
		t.Fatal(err)
	}
	if err := st.EnrollHost(ctx, secret[:], t0, &store.Host{ID: id, Hostname: id, EnrolledAt: t0}); err != nil {
		t.Fatal(err)
	}
	if err := st.UpdateHost(ctx, id, func(h *store.Host) error {
		h.Facts = &commonv1.OSFacts{Os: "linux", Platform: "debian", PlatformVersion: "12.5"}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	setItems(t, st, id, items...)
}

func setItems(t *testing.T, st store.Store, id string, items ...*commonv1.Item) {
	t.Helper()
	seq++
	u := &store.InventoryUpdate{HostID: id, SpoolID: "s", Seq: seq, Full: true, Upserts: items,
		SetHash: inventory.SetOf(items).Hash(), CollectedAt: t0, ReceivedAt: t0}
	if out, err := st.ApplyInventory(t.Context(), u); err != nil || out != store.Applied {
		t.Fatalf("ApplyInventory: %v, %v", out, err)
	}
}

func importPath(t *testing.T, s *Service, path string) (rep struct{ files, added, updated, unchanged, withdrawn, invalid int }) {
	t.Helper()
	r, err := s.Import(t.Context(), path, nil)
	if err != nil {
		t.Fatalf("Import(%s): %v", path, err)
	}
	rep.files, rep.added, rep.updated, rep.unchanged, rep.withdrawn, rep.invalid = r.Files, r.Added, r.Updated, r.Unchanged, r.Withdrawn, len(r.Invalid)
	return rep
}

func findingFor(rep *HostReport, advisory string) *Finding {
	for i := range rep.Findings {
		if rep.Findings[i].AdvisoryID == advisory {
			return &rep.Findings[i]
		}
	}
	return nil
}

func hostReport(t *testing.T, s *Service, id string) *HostReport {
	t.Helper()
	rep, err := s.Host(t.Context(), id)
	if err != nil {
		t.Fatalf("Host(%s): %v", id, err)
	}
	return rep
}

// glibcVulnerable is a libc6 affected by DSA-5514-1 (fixed in
// 2.36-9+deb12u3), which names the source package glibc.
var glibcVulnerable = dpkgItem("libc6", "2.36-9+deb12u1", "glibc", "2.36-9+deb12u1", "installed")

func TestImportMatchPersist(t *testing.T) {
	dir := t.TempDir()
	st := openStore(t, dir)
	s := newService(st)
	addHost(t, st, "web-1", map[string]string{"internet-facing": "true"},
		glibcVulnerable,
		dpkgItem("curl-old", "7.88.1-10", "curl", "7.88.1-10", "config-files"), // not installed: no finding
		portItem("sshd", "0.0.0.0", 22))

	got := importPath(t, s, filepath.Join(testdata, "debian"))
	if got.files != 9 || got.added != 9 || got.invalid != 0 {
		t.Fatalf("first import: %+v, want 9 files, 9 added", got)
	}
	rep := hostReport(t, s, "web-1")
	if rep.Ecosystem != "Debian:12" || rep.Packages != 1 {
		t.Fatalf("report: ecosystem %q, %d packages; want Debian:12, 1 (config-files left out)", rep.Ecosystem, rep.Packages)
	}
	f := findingFor(rep, "DSA-5514-1")
	if f == nil || f.FixedVersion != "2.36-9+deb12u3" || !f.FixAvailable || f.SourcePackage != "glibc" || f.Muted {
		t.Fatalf("DSA-5514-1 finding = %+v, want open, fixed in 2.36-9+deb12u3 through source glibc", f)
	}
	if rep.Open == 0 || rep.RiskScore <= 0 || rep.RiskScore > 100 {
		t.Fatalf("open %d, risk %v; want findings and a score in (0, 100]", rep.Open, rep.RiskScore)
	}
	if want := Score(f.Severity) * InternetFacingFactor; f.Weight != want {
		t.Fatalf("weight %v, want %v (internet-facing)", f.Weight, want)
	}

	// Re-import: nothing changes, nothing is re-matched.
	matched := s.matched
	if got := importPath(t, s, filepath.Join(testdata, "debian")); got.unchanged != 9 || got.added+got.updated != 0 {
		t.Fatalf("re-import: %+v, want 9 unchanged", got)
	}
	if s.matched != matched {
		t.Fatalf("re-import re-matched %d packages, want none", s.matched-matched)
	}

	// A restarted replica loads the database from the store.
	s2 := newService(st)
	if err := s2.Sync(t.Context()); err != nil {
		t.Fatal(err)
	}
	if s2.Len() != s.Len() || s2.Len() == 0 {
		t.Fatalf("restarted index holds %d advisories, want %d", s2.Len(), s.Len())
	}
	if rep2 := hostReport(t, s2, "web-1"); len(rep2.Findings) != len(rep.Findings) || rep2.RiskScore != rep.RiskScore {
		t.Fatalf("restarted: %d findings risk %v, want %d risk %v", len(rep2.Findings), rep2.RiskScore, len(rep.Findings), rep.RiskScore)
	}
}

func TestWithdrawnAndInvalid(t *testing.T) {
	st := openStore(t, t.TempDir())
	s := newService(st)
	addHost(t, st, "h", nil, glibcVulnerable)
	importPath(t, s, filepath.Join(testdata, "debian", "DSA-5514-1.json"))
	if findingFor(hostReport(t, s, "h"), "DSA-5514-1") == nil {
		t.Fatal("no DSA-5514-1 finding after import")
	}
	// A newer, withdrawn version of the record, and a broken file.
	src := t.TempDir()
	raw, err := os.ReadFile(filepath.Join(testdata, "debian", "DSA-5514-1.json"))
	if err != nil {
		t.Fatal(err)
	}
	withdrawn := strings.Replace(string(raw), `"id"`, `"withdrawn": "2030-01-01T00:00:00Z", "id"`, 1)
	withdrawn = replaceModified(t, withdrawn, "2030-01-01T00:00:00Z")
	if err := os.WriteFile(filepath.Join(src, "a.json"), []byte(withdrawn), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "b.json"), []byte(`{"id": "X"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	got := importPath(t, s, src)
	if got.updated != 1 || got.withdrawn != 1 || got.invalid != 1 {
		t.Fatalf("import: %+v, want 1 updated and withdrawn, 1 invalid", got)
	}
	if f := findingFor(hostReport(t, s, "h"), "DSA-5514-1"); f != nil {
		t.Fatalf("withdrawn advisory still found: %+v", f)
	}
	state, err := s.State(t.Context())
	if err != nil || state.Count != 1 || state.Withdrawn != 1 {
		t.Fatalf("State = %+v, %v; want 1 advisory, withdrawn", state, err)
	}
}

func replaceModified(t *testing.T, rec, modified string) string {
	t.Helper()
	i := strings.Index(rec, `"modified"`)
	if i < 0 {
		t.Fatal("no modified field")
	}
	j := i + strings.Index(rec[i:], ",")
	return rec[:i] + `"modified": "` + modified + `"` + rec[j:]
}

func TestIncrementalAndShared(t *testing.T) {
	st := openStore(t, t.TempDir())
	s := newService(st)
	other := dpkgItem("bash", "5.2.15-2+b2", "bash", "5.2.15-2", "installed")
	addHost(t, st, "a", nil, glibcVulnerable, other)
	addHost(t, st, "b", nil, glibcVulnerable, other)
	importPath(t, s, filepath.Join(testdata, "debian"))

	hostReport(t, s, "a")
	n := s.matched
	hostReport(t, s, "b")
	if s.matched != n {
		t.Fatalf("host b, same package set as a, matched %d packages again", s.matched-n)
	}
	// b upgrades glibc: only that package is matched.
	setItems(t, st, "b", dpkgItem("libc6", "2.36-9+deb12u3", "glibc", "2.36-9+deb12u3", "installed"), other)
	rep := hostReport(t, s, "b")
	if s.matched != n+1 {
		t.Fatalf("after one package changed, %d packages matched, want 1", s.matched-n)
	}
	if findingFor(rep, "DSA-5514-1") != nil {
		t.Fatal("fixed glibc still has DSA-5514-1")
	}
	if findingFor(hostReport(t, s, "a"), "DSA-5514-1") == nil {
		t.Fatal("host a lost its finding")
	}
	// A database update naming glibc re-matches the glibc packages only:
	// one per distinct set (a's and b's).
	n = s.matched
	src := t.TempDir()
	raw, _ := os.ReadFile(filepath.Join(testdata, "debian", "DSA-5514-1.json"))
	if err := os.WriteFile(filepath.Join(src, "r.json"), []byte(replaceModified(t, string(raw), "2031-01-01T00:00:00Z")), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := importPath(t, s, src); got.updated != 1 {
		t.Fatalf("import: %+v, want 1 updated", got)
	}
	if s.matched != n+2 {
		t.Fatalf("update of a glibc advisory matched %d packages, want 2", s.matched-n)
	}
}

func TestMutesAndFleet(t *testing.T) {
	st := openStore(t, t.TempDir())
	s := newService(st)
	addHost(t, st, "a", nil, glibcVulnerable)
	addHost(t, st, "b", map[string]string{"internet-facing": "true"}, glibcVulnerable)
	addHost(t, st, "c", nil)
	importPath(t, s, filepath.Join(testdata, "debian"))

	if err := st.PutMute(t.Context(), &store.Mute{ID: "m", HostID: "a", Vulnerability: "CVE-2023-4911",
		Justification: "not exploitable here", Until: t0.Add(time.Hour), CreatedAt: t0}); err != nil {
		t.Fatal(err)
	}
	// An expired mute changes nothing.
	if err := st.PutMute(t.Context(), &store.Mute{ID: "old", Vulnerability: "CVE-2023-4911",
		Justification: "x", Until: t0, CreatedAt: t0}); err != nil {
		t.Fatal(err)
	}
	ra := hostReport(t, s, "a")
	f := findingFor(ra, "DSA-5514-1")
	if f == nil || !f.Muted || f.MuteID != "m" || f.Weight != 0 {
		t.Fatalf("a: finding %+v, want muted by m", f)
	}
	rb := hostReport(t, s, "b")
	if f := findingFor(rb, "DSA-5514-1"); f == nil || f.Muted {
		t.Fatalf("b: finding %+v, want open", f)
	}
	fleet, err := s.Fleet(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if fleet.Hosts != 3 || fleet.Scored != 3 || fleet.MaxRiskScore != rb.RiskScore {
		t.Fatalf("fleet: %d hosts, %d scored, max %v; want 3, 3, %v", fleet.Hosts, fleet.Scored, fleet.MaxRiskScore, rb.RiskScore)
	}
	var v *Vulnerability
	for i := range fleet.Vulnerabilities {
		if fleet.Vulnerabilities[i].ID == "CVE-2023-4911" {
			v = &fleet.Vulnerabilities[i]
		}
	}
	if v == nil || v.AffectedHosts != 1 || v.MutedHosts != 1 || !v.FixAvailable || v.FixableHosts != 1 {
		t.Fatalf("CVE-2023-4911: %+v, want 1 affected (b), 1 muted (a), fix available", v)
	}
}

func TestRiskScore(t *testing.T) {
	for _, c := range []struct{ sum, want float64 }{{0, 0}, {50, 63.2}, {1e6, 100}} {
		if got := RiskScore(c.sum); got != c.want {
			t.Errorf("RiskScore(%v) = %v, want %v", c.sum, got, c.want)
		}
	}
}
