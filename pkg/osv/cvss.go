package osv

import (
	"fmt"
	"math"
	"strings"
)

// CVSS3 is a parsed CVSS v3.0 or v3.1 vector. Only the base metrics are
// kept; temporal and environmental metrics are checked and dropped.
type CVSS3 struct {
	Version                    string // "3.0" or "3.1"
	AV, AC, PR, UI, S, C, I, A byte
}

// cvss3Metrics lists, per metric, its allowed values. The base metrics
// are mandatory; the others are optional.
var cvss3Metrics = map[string]string{
	"AV": "NALP", "AC": "LH", "PR": "NLH", "UI": "NR", "S": "UC", "C": "HLN", "I": "HLN", "A": "HLN",
	"E": "XUPFH", "RL": "XOTWU", "RC": "XURC",
	"CR": "XLMH", "IR": "XLMH", "AR": "XLMH",
	"MAV": "XNALP", "MAC": "XLH", "MPR": "XNLH", "MUI": "XNR", "MS": "XUC", "MC": "XNLH", "MI": "XNLH", "MA": "XNLH",
}

var cvss3Base = []string{"AV", "AC", "PR", "UI", "S", "C", "I", "A"}

// ParseCVSS3 parses a CVSS v3 vector string such as
// "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H".
func ParseCVSS3(vector string) (CVSS3, error) {
	var v CVSS3
	rest, ok := strings.CutPrefix(vector, "CVSS:3.1/")
	if ok {
		v.Version = "3.1"
	} else if rest, ok = strings.CutPrefix(vector, "CVSS:3.0/"); ok {
		v.Version = "3.0"
	} else {
		return v, fmt.Errorf("CVSS vector %q: not CVSS:3.0 or CVSS:3.1", truncate(vector))
	}
	seen := map[string]byte{}
	for _, part := range strings.Split(rest, "/") {
		key, val, ok := strings.Cut(part, ":")
		allowed, known := cvss3Metrics[key]
		switch {
		case !ok || len(val) != 1:
			return v, fmt.Errorf("CVSS vector %q: malformed metric %q", truncate(vector), truncate(part))
		case !known:
			return v, fmt.Errorf("CVSS vector %q: unknown metric %q", truncate(vector), key)
		case !strings.Contains(allowed, val):
			return v, fmt.Errorf("CVSS vector %q: %s cannot be %q", truncate(vector), key, val)
		}
		if _, dup := seen[key]; dup {
			return v, fmt.Errorf("CVSS vector %q: %s given twice", truncate(vector), key)
		}
		seen[key] = val[0]
	}
	for _, key := range cvss3Base {
		if _, ok := seen[key]; !ok {
			return v, fmt.Errorf("CVSS vector %q: base metric %s is missing", truncate(vector), key)
		}
	}
	v.AV, v.AC, v.PR, v.UI, v.S = seen["AV"], seen["AC"], seen["PR"], seen["UI"], seen["S"]
	v.C, v.I, v.A = seen["C"], seen["I"], seen["A"]
	return v, nil
}

// The metric weights of the CVSS v3.1 specification, section 7.4.
var (
	cvssAV        = map[byte]float64{'N': 0.85, 'A': 0.62, 'L': 0.55, 'P': 0.2}
	cvssAC        = map[byte]float64{'L': 0.77, 'H': 0.44}
	cvssPR        = map[byte]float64{'N': 0.85, 'L': 0.62, 'H': 0.27}
	cvssPRChanged = map[byte]float64{'N': 0.85, 'L': 0.68, 'H': 0.5}
	cvssUI        = map[byte]float64{'N': 0.85, 'R': 0.62}
	cvssCIA       = map[byte]float64{'H': 0.56, 'L': 0.22, 'N': 0}
)

// BaseScore computes the base score with the formulas of the CVSS v3.1
// specification, section 7.1, and its Roundup of Appendix A; a v3.0 vector
// is rounded as the v3.0 specification says, up to one decimal.
func (v CVSS3) BaseScore() float64 {
	changed := v.S == 'C'
	pr := cvssPR[v.PR]
	if changed {
		pr = cvssPRChanged[v.PR]
	}
	iss := 1 - (1-cvssCIA[v.C])*(1-cvssCIA[v.I])*(1-cvssCIA[v.A])
	var impact float64
	if changed {
		impact = 7.52*(iss-0.029) - 3.25*math.Pow(iss-0.02, 15)
	} else {
		impact = 6.42 * iss
	}
	av, ac, ui := cvssAV[v.AV], cvssAC[v.AC], cvssUI[v.UI]
	exploitability := 8.22 * av * ac * pr * ui
	if impact <= 0 {
		return 0
	}
	roundup := Roundup
	if v.Version == "3.0" {
		roundup = roundup30
	}
	if changed {
		return roundup(math.Min(1.08*(impact+exploitability), 10))
	}
	return roundup(math.Min(impact+exploitability, 10))
}

// Roundup is CVSS v3.1's rounding: the smallest number with one decimal
// that is equal to or higher than x, computed on x scaled to an integer so
// that floating-point noise (4.000000000000001) does not round up.
func Roundup(x float64) float64 {
	i := int64(math.Round(x * 100000))
	if i%10000 == 0 {
		return float64(i) / 100000
	}
	return float64(i/10000+1) / 10
}

// roundup30 is CVSS v3.0's rounding, taken literally.
func roundup30(x float64) float64 { return math.Ceil(x*10) / 10 }

// Rating is the qualitative severity of a CVSS v3 score: "none", "low",
// "medium", "high" or "critical".
func Rating(score float64) string {
	switch {
	case score >= 9:
		return "critical"
	case score >= 7:
		return "high"
	case score >= 4:
		return "medium"
	case score > 0:
		return "low"
	}
	return "none"
}

// CVSS3BaseScore parses vector and returns its base score.
func CVSS3BaseScore(vector string) (float64, error) {
	v, err := ParseCVSS3(vector)
	if err != nil {
		return 0, err
	}
	return v.BaseScore(), nil
}

func truncate(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}
