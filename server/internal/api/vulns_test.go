package api_test

import (
	"archive/zip"
	"bytes"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/quantumlayer/qinfra/pkg/inventory"
	commonv1 "github.com/quantumlayer/qinfra/proto/gen/qinfra/common/v1"
)

const vulnTestdata = "../vuln/testdata/osv/debian"

// debianZip is the constructed Debian records as an OSV zip.
func debianZip(t *testing.T) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	files, _ := filepath.Glob(filepath.Join(vulnTestdata, "*.json"))
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		w, _ := zw.Create(filepath.Base(p))
		w.Write(b)
	}
	w, _ := zw.Create("broken.json")
	w.Write([]byte(`{"id": "BROKEN"}`))
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func vulnHost(f *fixture, id string, labels map[string]string) {
	f.addHost(id, id+".example.com", labels)
	it := &commonv1.Item{Kind: inventory.KindPackage, Key: "dpkg:libc6:amd64", Body: &commonv1.Item_Package{Package: &commonv1.Package{
		Manager: "dpkg", Name: "libc6", Version: "2.36-9+deb12u1", Arch: "amd64", SourceName: "glibc", SourceVersion: "2.36-9+deb12u1", Status: "installed"}}}
	if err := inventory.Seal(it); err != nil {
		f.t.Fatal(err)
	}
	putInventory(f.t, f.st, id, []*commonv1.Item{it})
}

func TestVulnDBImportAndFindings(t *testing.T) {
	f := newFixture(t)
	vulnHost(f, "web-1", map[string]string{"internet-facing": "true"})

	// Only admins import; only zip and JSON are accepted.
	f.doCT("POST", "/api/v1/vulndb/import", f.operator, "application/zip", debianZip(t)).mustStatus(t, http.StatusForbidden)
	f.doCT("POST", "/api/v1/vulndb/import", f.admin, "text/plain", "x").mustStatus(t, http.StatusUnsupportedMediaType)

	var rep struct {
		Files, Added, Updated, Unchanged, Withdrawn int
		Invalid                                     []struct{ Path, Reason string }
	}
	f.doCT("POST", "/api/v1/vulndb/import", f.admin, "application/zip", debianZip(t)).mustStatus(t, http.StatusOK).json(t, &rep)
	if rep.Files != 10 || rep.Added != 9 || len(rep.Invalid) != 1 || rep.Invalid[0].Path != "upload.zip!broken.json" || rep.Invalid[0].Reason == "" {
		t.Fatalf("import report %+v, want 10 files, 9 added, broken.json invalid with a reason", rep)
	}
	// A JSON array re-import: unchanged.
	raw, _ := os.ReadFile(filepath.Join(vulnTestdata, "DSA-5514-1.json"))
	f.doCT("POST", "/api/v1/vulndb/import", f.admin, "application/json", "["+string(raw)+"]").mustStatus(t, http.StatusOK).json(t, &rep)
	if rep.Files != 1 || rep.Unchanged != 1 {
		t.Fatalf("array re-import %+v, want 1 file unchanged", rep)
	}
	var state struct{ Count, Indexed int }
	f.do("GET", "/api/v1/vulndb", f.viewer, nil).mustStatus(t, http.StatusOK).json(t, &state)
	if state.Count != 9 || state.Indexed == 0 {
		t.Fatalf("vulndb state %+v, want 9 advisories", state)
	}

	var host struct {
		Ecosystem string
		RiskScore float64 `json:"risk_score"`
		Findings  []struct {
			AdvisoryID   string `json:"advisory_id"`
			FixedVersion string `json:"fixed_version"`
			Muted        bool
		}
	}
	f.do("GET", "/api/v1/hosts/web-1/vulnerabilities", f.viewer, nil).mustStatus(t, http.StatusOK).json(t, &host)
	found := false
	for _, x := range host.Findings {
		found = found || (x.AdvisoryID == "DSA-5514-1" && x.FixedVersion == "2.36-9+deb12u3" && !x.Muted)
	}
	if host.Ecosystem != "Debian:12" || !found || host.RiskScore <= 0 {
		t.Fatalf("host findings %+v, want DSA-5514-1 fixed in 2.36-9+deb12u3", host)
	}
	f.do("GET", "/api/v1/hosts/nope/vulnerabilities", f.viewer, nil).mustStatus(t, http.StatusNotFound)

	var scan struct {
		Found int `json:"vulnerabilities_found"`
		Time  string
		Vulns []struct {
			CVE, Severity, Description string
			FixVersion                 string `json:"fix_version"`
		} `json:"vulnerabilities"`
	}
	r := f.do("GET", "/api/v1/hosts/web-1/scan", f.viewer, nil).mustStatus(t, http.StatusOK)
	r.json(t, &scan)
	if !strings.Contains(string(r.body), `"scan_time"`) || scan.Found != len(scan.Vulns) || scan.Found == 0 {
		t.Fatalf("scan = %s", r.body)
	}
	var cve4911 bool
	for _, v := range scan.Vulns {
		cve4911 = cve4911 || (v.CVE == "CVE-2023-4911" && v.FixVersion == "2.36-9+deb12u3" && v.Description != "")
	}
	if !cve4911 {
		t.Fatalf("scan lacks CVE-2023-4911 with fix 2.36-9+deb12u3: %s", r.body)
	}

	var fleet struct {
		Vulnerabilities []struct {
			ID            string
			AffectedHosts int  `json:"affected_hosts"`
			FixAvailable  bool `json:"fix_available"`
		}
	}
	f.do("GET", "/api/v1/vulnerabilities?cve=CVE-2023-4911", f.viewer, nil).mustStatus(t, http.StatusOK).json(t, &fleet)
	if len(fleet.Vulnerabilities) != 1 || fleet.Vulnerabilities[0].AffectedHosts != 1 || !fleet.Vulnerabilities[0].FixAvailable {
		t.Fatalf("fleet by CVE = %+v", fleet)
	}
	f.do("GET", "/api/v1/vulnerabilities?severity=bad", f.viewer, nil).mustStatus(t, http.StatusBadRequest)
}

func TestVulnMutes(t *testing.T) {
	f := newFixture(t)
	vulnHost(f, "web-1", nil)
	f.doCT("POST", "/api/v1/vulndb/import", f.admin, "application/zip", debianZip(t)).mustStatus(t, http.StatusOK)

	f.do("POST", "/api/v1/vulnerabilities/mutes", f.viewer, map[string]any{"vulnerability": "CVE-2023-4911", "justification": "x", "ttl": "1h"}).
		mustStatus(t, http.StatusForbidden)
	for _, bad := range []map[string]any{
		{"vulnerability": "CVE-2023-4911", "ttl": "1h"},                                   // no justification
		{"vulnerability": "CVE-2023-4911", "justification": "x"},                          // no expiry
		{"vulnerability": "CVE-2023-4911", "justification": "x", "ttl": "9000h"},          // too long
		{"vulnerability": "CVE-2023-4911", "justification": "x", "ttl": "1h", "bogus": 1}, // unknown field
	} {
		f.do("POST", "/api/v1/vulnerabilities/mutes", f.operator, bad).mustStatus(t, http.StatusBadRequest)
	}
	f.do("POST", "/api/v1/vulnerabilities/mutes", f.operator, map[string]any{"host_id": "nope", "vulnerability": "CVE-2023-4911", "justification": "x", "ttl": "1h"}).
		mustStatus(t, http.StatusNotFound)

	var m struct{ ID, Vulnerability, CreatedBy string }
	f.do("POST", "/api/v1/vulnerabilities/mutes", f.operator, map[string]any{
		"host_id": "web-1", "vulnerability": "CVE-2023-4911", "justification": "glibc tunables not reachable", "ttl": "720h",
	}).mustStatus(t, http.StatusCreated).json(t, &m)
	if m.ID == "" || m.Vulnerability != "CVE-2023-4911" {
		t.Fatalf("mute = %+v", m)
	}
	var host struct {
		Muted    int
		Findings []struct {
			AdvisoryID string `json:"advisory_id"`
			Muted      bool
			MuteID     string `json:"mute_id"`
		}
	}
	f.do("GET", "/api/v1/hosts/web-1/vulnerabilities", f.viewer, nil).mustStatus(t, http.StatusOK).json(t, &host)
	muted := false
	for _, x := range host.Findings {
		muted = muted || (x.AdvisoryID == "DSA-5514-1" && x.Muted && x.MuteID == m.ID)
	}
	if !muted || host.Muted == 0 {
		t.Fatalf("DSA-5514-1 not muted: %+v", host)
	}
	var list struct{ Mutes []struct{ ID string } }
	f.do("GET", "/api/v1/vulnerabilities/mutes", f.viewer, nil).mustStatus(t, http.StatusOK).json(t, &list)
	if len(list.Mutes) != 1 || list.Mutes[0].ID != m.ID {
		t.Fatalf("mutes = %+v", list)
	}
	f.do("DELETE", "/api/v1/vulnerabilities/mutes/"+m.ID, f.operator, nil).mustStatus(t, http.StatusOK)
	f.do("DELETE", "/api/v1/vulnerabilities/mutes/"+m.ID, f.operator, nil).mustStatus(t, http.StatusNotFound)

	var actions []string
	for _, e := range f.auditEntries() {
		actions = append(actions, e.Action+" "+e.Target)
	}
	want := fmt.Sprint([]string{"vulndb.import vulndb", "vulnerability.mute " + m.ID, "vulnerability.unmute " + m.ID})
	if got := fmt.Sprint(actions); !strings.Contains(got, strings.Trim(want, "[]")) {
		t.Fatalf("audit actions %v, want to contain %v", actions, want)
	}
}

func TestQinfractlVulns(t *testing.T) {
	e := newCLIEnv(t)
	f := &fixture{t: t, st: e.st}
	vulnHost(f, "web-1", nil)

	// A directory of records, zipped on the fly by the CLI.
	r := e.run(e.admin, "vulndb", "import", vulnTestdata)
	if r.code != 0 || !strings.Contains(r.stdout, "9 files, 9 added") {
		t.Fatalf("vulndb import: code %d\nstdout %s\nstderr %s", r.code, r.stdout, r.stderr)
	}
	// One file: unchanged.
	if r = e.run(e.admin, "vulndb", "import", filepath.Join(vulnTestdata, "DSA-5514-1.json")); r.code != 0 || !strings.Contains(r.stdout, "1 unchanged") {
		t.Fatalf("vulndb import of one file: code %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = e.run(e.viewer, "vulns", "--host", "web-1")
	if r.code != 0 || !strings.Contains(r.stdout, "DSA-5514-1") || !strings.Contains(r.stdout, "2.36-9+deb12u3") {
		t.Fatalf("vulns --host: code %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if r = e.run(e.viewer, "vulns", "--cve", "CVE-2023-4911"); r.code != 0 || !strings.Contains(r.stdout, "CVE-2023-4911") {
		t.Fatalf("vulns --cve: code %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if r = e.run(e.operator, "vulns", "mute", "--cve", "CVE-2023-4911", "--host", "web-1", "--justification", "not reachable", "--until", "720h"); r.code != 0 {
		t.Fatalf("vulns mute: code %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = e.run(e.viewer, "vulns", "--host", "web-1", "--cve", "CVE-2023-4911")
	if r.code != 0 || !strings.Contains(r.stdout, "yes") {
		t.Fatalf("vulns --host after mute: code %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}
