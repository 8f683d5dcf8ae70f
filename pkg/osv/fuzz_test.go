package osv

import (
	"os"
	"path/filepath"
	"testing"
)

func FuzzParseRecord(f *testing.F) {
	f.Add([]byte(ubuntuRecord))
	f.Add([]byte(`{"id": "X", "modified": "2024-01-01T00:00:00Z", "withdrawn": "2024-01-02T00:00:00Z"}`))
	f.Add([]byte(`{"id": "X", "modified": "2024-01-01T00:00:00Z", "affected": [{"package": {"ecosystem": "Alpine:v3.19", "name": "a"},
	  "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"limit": "*"}, {"last_affected": "1.0-r0"}]}]}]}`))
	if data, err := os.ReadFile(filepath.Join("testdata", "alma", "ALSA-2022-6224.json")); err == nil {
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		rec, err := ParseBytes(data)
		if err != nil {
			return
		}
		// A record that parses is usable: it validates, and every part
		// the matcher and the report read can be read.
		if err := rec.Validate(); err != nil {
			t.Fatalf("parsed record does not validate: %v", err)
		}
		_ = rec.CVEs()
		_ = rec.Assess(nil)
		for i := range rec.Affected {
			_ = rec.Assess(&rec.Affected[i])
			_ = MatchKey(rec.Affected[i].Package.Ecosystem)
		}
	})
}

func FuzzCVSS(f *testing.F) {
	for _, v := range []string{
		"CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
		"CVSS:3.0/AV:P/AC:H/PR:H/UI:R/S:C/C:L/I:N/A:N/E:F",
		"CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H/MAV:X",
		"CVSS:3.1/", "",
	} {
		f.Add(v)
	}
	f.Fuzz(func(t *testing.T, vector string) {
		v, err := ParseCVSS3(vector)
		if err != nil {
			return
		}
		s := v.BaseScore()
		if s < 0 || s > 10 || s*10 != float64(int(s*10+0.5)) {
			t.Fatalf("%q: base score %v is not in 0..10 with one decimal", vector, s)
		}
		if s2, _ := CVSS3BaseScore(vector); s2 != s {
			t.Fatalf("%q: %v then %v", vector, s, s2)
		}
	})
}
