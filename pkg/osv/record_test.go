package osv

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParseRealAlmaLinux(t *testing.T) {
	f, err := os.Open(filepath.Join("testdata", "alma", "ALSA-2022-6224.json"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rec, err := Parse(f)
	if err != nil {
		t.Fatal(err)
	}
	if rec.ID != "ALSA-2022:6224" || rec.Modified.IsZero() || rec.Published.IsZero() {
		t.Fatalf("id %q modified %v published %v", rec.ID, rec.Modified, rec.Published)
	}
	if len(rec.Affected) == 0 || rec.Affected[0].Package.Ecosystem != "AlmaLinux:9" {
		t.Fatalf("affected: %+v", rec.Affected)
	}
	var openssl *Affected
	for i := range rec.Affected {
		if rec.Affected[i].Package.Name == "openssl" {
			openssl = &rec.Affected[i]
		}
	}
	if openssl == nil || openssl.Ranges[0].Events[1].Fixed != "1:3.0.1-41.el9_0" {
		t.Fatalf("openssl: %+v", openssl)
	}
	if cves := rec.CVEs(); len(cves) == 0 || !strings.HasPrefix(cves[0], "CVE-") {
		t.Fatalf("CVEs from related: %v", cves)
	}
	if as := rec.Assess(openssl); as.Rating == "" || as.Level == LevelUnknown {
		t.Fatalf("assessment from the summary prefix: %+v (summary %q)", as, rec.Summary)
	}
}

const ubuntuRecord = `{
  "schema_version": "1.6.3",
  "id": "CVE-2023-0286",
  "aliases": [],
  "related": [],
  "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:U/C:H/I:N/A:H"}],
  "published": "2023-02-07T00:00:00Z",
  "modified": "2024-08-23T16:30:36Z",
  "affected": [{
    "package": {"ecosystem": "Ubuntu:22.04:LTS", "name": "openssl",
                "purl": "pkg:deb/ubuntu/openssl@3.0.2-0ubuntu1.8?arch=src?distro=jammy"},
    "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "3.0.2-0ubuntu1.8"}]}],
    "versions": ["3.0.2-0ubuntu1", "3.0.2-0ubuntu1.7"],
    "ecosystem_specific": {"binaries": [{"libssl3": "3.0.2-0ubuntu1.8"}], "ubuntu_priority": "high"}
  }],
  "unknown_field": {"is": "ignored"}
}`

func TestParseUbuntuFormat(t *testing.T) {
	rec, err := ParseBytes([]byte(ubuntuRecord))
	if err != nil {
		t.Fatal(err)
	}
	want := time.Date(2024, 8, 23, 16, 30, 36, 0, time.UTC)
	if !rec.Modified.Equal(want) {
		t.Fatalf("modified %v", rec.Modified)
	}
	if got := rec.CVEs(); !reflect.DeepEqual(got, []string{"CVE-2023-0286"}) {
		t.Fatalf("CVEs %v", got)
	}
	as := rec.Assess(&rec.Affected[0])
	if as.Score != 7.4 || as.Level != LevelHigh || as.Rating != "high" {
		t.Fatalf("assessment %+v", as)
	}
}

func TestValidate(t *testing.T) {
	valid := `{"id": "X-1", "modified": "2024-01-01T00:00:00Z",
	  "affected": [{"package": {"ecosystem": "Debian:12", "name": "openssl"},
	    "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "3.0.11-1~deb12u1"}]}]}]}`
	if _, err := ParseBytes([]byte(valid)); err != nil {
		t.Fatalf("valid record: %v", err)
	}
	for name, tc := range map[string]struct{ json, reason string }{
		"not JSON":      {`{"id": `, "decode JSON"},
		"wrong type":    {`{"id": 1, "modified": "2024-01-01T00:00:00Z"}`, "decode JSON"},
		"two documents": {`{"id": "X", "modified": "2024-01-01T00:00:00Z"} {}`, "data after"},
		"no id":         {`{"modified": "2024-01-01T00:00:00Z"}`, "id is missing"},
		"no modified":   {`{"id": "X-1"}`, "modified is missing"},
		"bad time":      {`{"id": "X-1", "modified": "yesterday"}`, "decode JSON"},
		"no ecosystem": {`{"id": "X-1", "modified": "2024-01-01T00:00:00Z",
			"affected": [{"package": {"name": "openssl"}}]}`, "ecosystem is missing"},
		"two fields in an event": {`{"id": "X-1", "modified": "2024-01-01T00:00:00Z",
			"affected": [{"package": {"ecosystem": "Debian:12", "name": "a"},
			"ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0", "fixed": "1.0"}]}]}]}`, "exactly one"},
		"no introduced": {`{"id": "X-1", "modified": "2024-01-01T00:00:00Z",
			"affected": [{"package": {"ecosystem": "Debian:12", "name": "a"},
			"ranges": [{"type": "ECOSYSTEM", "events": [{"fixed": "1.0"}]}]}]}`, "no introduced"},
		"fixed and last_affected": {`{"id": "X-1", "modified": "2024-01-01T00:00:00Z",
			"affected": [{"package": {"ecosystem": "AlmaLinux:9", "name": "a"},
			"ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "1.0-1"}, {"last_affected": "2.0-1"}]}]}]}`, "both fixed and last_affected"},
		"bad Debian version": {`{"id": "X-1", "modified": "2024-01-01T00:00:00Z",
			"affected": [{"package": {"ecosystem": "Debian:12", "name": "a"},
			"ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "1.0-"}]}]}]}`, "revision number is empty"},
		"bad listed version": {`{"id": "X-1", "modified": "2024-01-01T00:00:00Z",
			"affected": [{"package": {"ecosystem": "Alpine:v3.19", "name": "a"}, "versions": ["1.0-x1"]}]}`, "versions[0]"},
		"unknown range type": {`{"id": "X-1", "modified": "2024-01-01T00:00:00Z",
			"affected": [{"package": {"ecosystem": "Debian:12", "name": "a"},
			"ranges": [{"type": "CALVER", "events": [{"introduced": "0"}]}]}]}`, "unknown type"},
		"bad CVSS": {`{"id": "X-1", "modified": "2024-01-01T00:00:00Z",
			"severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L"}]}`, "base metric PR is missing"},
	} {
		_, err := ParseBytes([]byte(tc.json))
		if err == nil || !strings.Contains(err.Error(), tc.reason) {
			t.Errorf("%s: error %v, want one mentioning %q", name, err, tc.reason)
		}
	}
}

func TestParseTooLarge(t *testing.T) {
	big := strings.NewReader(`{"id": "X", "details": "` + strings.Repeat("a", MaxRecordSize) + `"}`)
	if _, err := Parse(big); err != ErrTooLarge {
		t.Fatalf("error %v, want ErrTooLarge", err)
	}
}

func TestAssess(t *testing.T) {
	for name, tc := range map[string]struct {
		rec  Record
		want Assessment
	}{
		"CVSS from the record": {
			Record{Severity: []Severity{{Type: SeverityCVSSv3, Score: "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}}},
			Assessment{Score: 9.8, Vector: "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", Level: LevelCritical},
		},
		"Ubuntu priority without CVSS": {
			Record{Severity: []Severity{{Type: SeverityUbuntu, Score: "negligible"}}},
			Assessment{Rating: "negligible", Level: LevelLow},
		},
		"Red Hat family summary": {
			Record{Summary: "Moderate: expat security update"},
			Assessment{Rating: "Moderate", Level: LevelMedium},
		},
		"no rating": {
			Record{Summary: "Something: not a rating"},
			Assessment{Level: LevelUnknown},
		},
	} {
		if got := tc.rec.Assess(nil); got != tc.want {
			t.Errorf("%s: %+v, want %+v", name, got, tc.want)
		}
	}
	debian := &Affected{EcosystemSpecific: []byte(`{"urgency": "high"}`)}
	if got := (&Record{}).Assess(debian); got.Rating != "high" || got.Level != LevelHigh {
		t.Errorf("Debian urgency: %+v", got)
	}
}
