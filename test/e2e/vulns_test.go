package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// debianRecord is an OSV record in Debian's format (source package, fixed
// version per release), constructed for this test around the fake root's
// openssl version.
const debianRecord = `{
  "schema_version": "1.7.0",
  "id": "DEBIAN-CVE-2099-0001",
  "published": "2026-01-01T00:00:00Z",
  "modified": "2026-01-02T00:00:00Z",
  "upstream": ["CVE-2099-0001"],
  "summary": "constructed test advisory",
  "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}],
  "affected": [{
    "package": {"name": "openssl", "ecosystem": "Debian:12"},
    "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "3.0.15-1~deb12u1"}]}]
  }]
}`

type hostVulns struct {
	Open     int `json:"open"`
	Muted    int `json:"muted"`
	Findings []struct {
		Package          string `json:"package"`
		InstalledVersion string `json:"installed_version"`
		FixedVersion     string `json:"fixed_version"`
		AdvisoryID       string `json:"advisory_id"`
		Muted            bool   `json:"muted"`
	} `json:"findings"`
}

// An advisory imported with qinfractl is matched against a real agent's
// dpkg inventory, can be muted, and disappears once the package is
// upgraded on the host.
func TestVulnerabilityLifecycle(t *testing.T) {
	s := newServer(t)
	root := newFakeRoot(t)
	a := enrollAgent(t, s, root.dir, "")
	a.run(t)
	waitInSync(t, s, a, 20*time.Second)

	rec := filepath.Join(t.TempDir(), "DEBIAN-CVE-2099-0001.json")
	if err := os.WriteFile(rec, []byte(debianRecord), 0o644); err != nil {
		t.Fatal(err)
	}
	cli := []string{"--server", "https://" + s.api, "--token", s.token, "--ca-file", s.dir + "/ca.crt"}
	out := run(t, "qinfractl", append(cli, "vulndb", "import", rec)...)
	if !strings.Contains(out, "1") {
		t.Fatalf("import output: %s", out)
	}

	var v hostVulns
	waitFor(t, 20*time.Second, "the finding", func() bool {
		s.apiJSON("GET", "/api/v1/hosts/"+a.hostID+"/vulnerabilities", nil, &v)
		return v.Open == 1
	})
	f := v.Findings[0]
	if f.Package != "openssl" || f.InstalledVersion != "3.0.13-1~deb12u1" || f.FixedVersion != "3.0.15-1~deb12u1" || f.AdvisoryID != "DEBIAN-CVE-2099-0001" {
		t.Fatalf("finding: %+v", f)
	}

	run(t, "qinfractl", append(cli, "vulns", "mute", "--cve", "CVE-2099-0001", "--host", a.hostID,
		"--justification", "compensating control: not reachable", "--until", "24h")...)
	s.apiJSON("GET", "/api/v1/hosts/"+a.hostID+"/vulnerabilities", nil, &v)
	if v.Open != 0 || v.Muted != 1 || !v.Findings[0].Muted {
		t.Fatalf("after mute: %+v", v)
	}

	// The host is patched: the next scan sends the new version and the
	// finding is gone.
	root.pkgs = nil
	root.addPackage("base-files", "12.4+deb12u5", "amd64", "")
	root.addPackage("libc6", "2.36-9+deb12u7", "amd64", "glibc")
	root.addPackage("openssl", "3.0.15-1~deb12u1", "amd64", "")
	waitFor(t, 20*time.Second, "the finding to go", func() bool {
		s.apiJSON("GET", "/api/v1/hosts/"+a.hostID+"/vulnerabilities", nil, &v)
		return v.Open == 0 && v.Muted == 0 && len(v.Findings) == 0
	})
}
