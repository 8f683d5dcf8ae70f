package osv

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func TestCVSS3KnownScores(t *testing.T) {
	for vector, want := range map[string]float64{
		// Scores published by NVD for these CVEs.
		"CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H": 9.8,  // CVE-2014-6271
		"CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:N/A:N": 7.5,  // CVE-2014-0160
		"CVSS:3.1/AV:N/AC:H/PR:N/UI:N/S:U/C:H/I:N/A:H": 7.4,  // CVE-2023-0286
		"CVSS:3.1/AV:L/AC:L/PR:N/UI:R/S:U/C:N/I:N/A:H": 5.5,  // CVE-2024-0727
		"CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:H/A:H": 7.8,  // CVE-2023-4911
		"CVSS:3.1/AV:N/AC:L/PR:N/UI:R/S:C/C:L/I:L/A:N": 6.1,  // a reflected XSS
		"CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H": 10.0, // scope change caps at 10
		"CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:N": 0,    // no impact
		"CVSS:3.1/AV:P/AC:H/PR:H/UI:R/S:U/C:L/I:N/A:N": 1.6,
		"CVSS:3.0/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H": 9.8,
		// Temporal and environmental metrics do not change the base score.
		"CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H/E:P/RL:O/RC:C/CR:H/MAV:L": 9.8,
	} {
		got, err := CVSS3BaseScore(vector)
		if err != nil || got != want {
			t.Errorf("%s: %v, %v; want %v", vector, got, err, want)
		}
	}
}

// TestCVSS3AllBaseVectors checks every combination of base metrics, for
// v3.0 and v3.1, against the scores another implementation
// (github.com/pandatix/go-cvss) gives, recorded in testdata.
func TestCVSS3AllBaseVectors(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("testdata", "cvss3-base-scores.txt"))
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		if strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Fields(line)
		ver, scores := fields[0], fields[1:]
		i := 0
		for _, av := range "NALP" {
			for _, ac := range "LH" {
				for _, pr := range "NLH" {
					for _, ui := range "NR" {
						for _, s := range "UC" {
							for _, c := range "HLN" {
								for _, in := range "HLN" {
									for _, a := range "HLN" {
										vec := fmt.Sprintf("CVSS:%s/AV:%c/AC:%c/PR:%c/UI:%c/S:%c/C:%c/I:%c/A:%c", ver, av, ac, pr, ui, s, c, in, a)
										want, _ := strconv.ParseFloat(scores[i], 64)
										i++
										if got, err := CVSS3BaseScore(vec); err != nil || got != want {
											t.Errorf("%s: %v, %v; want %v", vec, got, err, want)
										}
										checked++
									}
								}
							}
						}
					}
				}
			}
		}
	}
	if checked != 2*2592 {
		t.Fatalf("checked %d vectors", checked)
	}
}

func TestRoundup(t *testing.T) {
	for in, want := range map[float64]float64{
		4.0: 4.0, 4.02: 4.1, 4.000000000000001: 4.0, 4.1: 4.1, 0.01: 0.1, 9.99: 10, 7.00001: 7.1, 7.000001: 7.0,
	} {
		if got := Roundup(in); got != want {
			t.Errorf("Roundup(%v) = %v, want %v", in, got, want)
		}
	}
	// CVSS v3.0's literal rounding is what v3.1 fixed.
	if got := roundup30(4.000000000000001); got != 4.1 {
		t.Errorf("roundup30 = %v", got)
	}
}

func TestCVSS3Invalid(t *testing.T) {
	for _, v := range []string{
		"", "CVSS:2.0/AV:N", "AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
		"CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H",
		"CVSS:3.1/AV:X/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
		"CVSS:3.1/AV:N/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
		"CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H/ZZ:A",
		"CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H/",
		"CVSS:3.1/AV:NN/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
	} {
		if _, err := ParseCVSS3(v); err == nil {
			t.Errorf("ParseCVSS3(%q) accepted", v)
		}
	}
}

func TestRating(t *testing.T) {
	for score, want := range map[float64]string{0: "none", 0.1: "low", 3.9: "low", 4: "medium", 6.9: "medium", 7: "high", 8.9: "high", 9: "critical", 10: "critical"} {
		if got := Rating(score); got != want {
			t.Errorf("Rating(%v) = %q, want %q", score, got, want)
		}
	}
}
