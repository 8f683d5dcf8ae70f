package versioncmp

import (
	"errors"
	"testing"
)

type cmpCase struct {
	a, b string
	want int
}

func checkCases(t *testing.T, c Comparer, cases []cmpCase) {
	t.Helper()
	for _, tc := range cases {
		if got := c.Compare(tc.a, tc.b); got != tc.want {
			t.Errorf("Compare(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
		if got := c.Compare(tc.b, tc.a); got != -tc.want {
			t.Errorf("Compare(%q, %q) = %d, want %d", tc.b, tc.a, got, -tc.want)
		}
	}
}

func TestDpkgCompare(t *testing.T) {
	checkCases(t, Dpkg, []cmpCase{
		{"1.0", "1.0", 0},
		{"1.0", "1.1", -1},
		{"1.0~rc1", "1.0", -1},    // tilde sorts before the end
		{"1.0~~", "1.0~~a", -1},   // policy's own example
		{"1.0~~a", "1.0~", -1},    // ...
		{"1.0~", "1.0", -1},       // ...
		{"1.0", "1.0a", -1},       // ...
		{"1.0+b1", "1.0", 1},      // plus sorts after the end
		{"1.0a", "1.0+", -1},      // letters before non-letters
		{"1:0.9", "2.0", 1},       // epoch wins
		{"0:1.0", "1.0", 0},       // epoch 0 is no epoch
		{"1.0-1", "1.0-1+b1", -1}, // binNMU
		{"2.36-9+deb12u3", "2.36-9+deb12u14", -1},
		{"3.0.11-1~deb12u2", "3.0.11-1", -1},
		{"1.01", "1.1", 0}, // leading zeros
		{"1.99999999999999999999", "1.99999999999999999998", 1},
		{"1.0-1-1", "1.0-1", 1}, // the revision follows the last hyphen
		{"", "0", -1},           // no version sorts first, as in dpkg
		{" 1.0", "1.0", 0},      // surrounding blanks are trimmed
	})
}

func TestDpkgValid(t *testing.T) {
	for _, v := range []string{"1.0", "1:2.66-4+deb12u2+b2", "0~20150106.5c2d456b-2", "1.0-1-1", "-0:1", "1.0~rc1+b2", "1:2:3"} {
		if err := Dpkg.Valid(v); err != nil {
			t.Errorf("Valid(%q) = %v", v, err)
		}
	}
	for _, v := range []string{"", " ", "a1", "1.0-", "1:", ":1", "1_0", "1 0", "-1:1", "1.0-a_b", "2147483648:1", "x:1"} {
		if err := Dpkg.Valid(v); err == nil {
			t.Errorf("Valid(%q) = nil, want an error", v)
		}
	}
}

func TestRPMCompare(t *testing.T) {
	checkCases(t, RPM, []cmpCase{
		{"1.0", "1.0", 0},
		{"1.0", "2.0", -1},
		{"2.0.1a", "2.0.1", 1},
		{"5.5p1", "5.5p10", -1},
		{"10xyz", "10.1xyz", -1},
		{"xyz.4", "8", -1},
		{"6.0.rc1", "6.0", 1},
		{"10.0001", "10.1", 0},
		{"2_0", "2.0", 0},
		{"1.0~rc1", "1.0", -1},
		{"1.0~rc1~git123", "1.0~rc1", -1},
		{"1.0^", "1.0", 1},
		{"1.0^git1", "1.01", -1},
		{"1.0^20160101^git1", "1.0^20160102", -1},
		{"1.0~rc1^git1", "1.0~rc1", 1},
		{"1.0^git1~pre", "1.0^git1", -1},
		{"1:1.0", "2.0", 1},
		{"0:1.0-1", "1.0-1", 0},
		{"00:1.0", "1.0", 0},
		{"1.0", "1.0-1", -1}, // no release sorts before any release
		{"1.0-", "1.0", 1},   // ...and an empty one after none
		{"1:3.0.1-41.el9_0", "1:3.0.7-24.el9", -1},
		{"2.34-100.el9_4.2", "2.34-100.el9_4.10", -1},
		{"1.0-1-2", "1.0-1.5", 1}, // the release follows the last hyphen
		{"a:1", "1", -1},          // not an epoch: compared as a version
		{"", "0", -1},
	})
}

func TestRPMValid(t *testing.T) {
	for _, v := range []string{"1.0", "1:3.0.1-41.el9_0", "1.0^git1", "0:1-1", "12:4.4.2-17.b1.el9"} {
		if err := RPM.Valid(v); err != nil {
			t.Errorf("Valid(%q) = %v", v, err)
		}
	}
	for _, v := range []string{"", "1.0 ", "1:", "1.0-", "a:1", "-1"} {
		if err := RPM.Valid(v); err == nil {
			t.Errorf("Valid(%q) = nil, want an error", v)
		}
	}
}

// TestAPKCompare checks the ordering rules of apk-tools' version.c. There
// is no apk binary on Debian to use as an oracle; these vectors were
// written from the C code's rules and each one's reason is given.
func TestAPKCompare(t *testing.T) {
	checkCases(t, APK, []cmpCase{
		{"1.0", "1.0", 0},
		{"1.0", "1.1", -1},
		{"1.0", "1.0.1", -1},          // more components is newer
		{"1.10", "1.9", 1},            // components are numbers
		{"1.01", "1.1", -1},           // a leading zero after a dot sorts lower
		{"1.001", "1.01", -1},         // ...more zeros lower still
		{"1.0a", "1.0", 1},            // a letter after the digits is newer
		{"1.0a", "1.0b", -1},          // letters compare by value
		{"1.1_alpha", "1.1", -1},      // pre-release suffixes are older
		{"1.0_alpha", "1.0_beta", -1}, // alpha < beta
		{"1.0_beta", "1.0_pre", -1},   // beta < pre
		{"1.0_pre", "1.0_rc", -1},     // pre < rc
		{"1.1_rc", "1.1", -1},         // rc < release
		// apk-tools 2.x quirk, kept: after a component that is exactly
		// zero, a suffix is read as more version, so "1.0_rc" > "1.0".
		// apk-tools 3 (Alpine 3.23 on) orders these the other way.
		{"1.0_rc", "1.0", 1},
		{"1.0_rc2", "1.0_rc10", -1},    // suffix numbers are numbers
		{"1.0", "1.0_cvs", -1},         // post-release suffixes are newer
		{"1.0_cvs", "1.0_svn", -1},     // cvs < svn
		{"1.0_svn", "1.0_git", -1},     // svn < git
		{"1.0_git", "1.0_hg", -1},      // git < hg
		{"1.0_hg", "1.0_p", -1},        // hg < p
		{"1.0_p1", "1.0_p2", -1},       //
		{"1.0-r0", "1.0-r1", -1},       // package revisions
		{"1.0-r10", "1.0-r9", 1},       // ...are numbers
		{"1.0", "1.0-r0", -1},          // a revision makes it newer
		{"1.0_rc1-r5", "1.0-r0", -1},   // the suffix decides before the revision
		{"1.2.3_p1-r0", "1.2.3-r9", 1}, //
		{"3.0.12-r4", "3.0.12-r10", -1},
		{"2.34", "0.1.0_alpha", 1},
		{"0.13_beta5", "0.9.12", 1},
		{"1.0bc", "1.0", 1}, // invalid trailing letters still sort after
		{"1.36.1-r5", "1.36.1-r15", -1},
	})
}

func TestAPKValid(t *testing.T) {
	for _, v := range []string{"1.0", "1.0-r0", "1.2.3_rc1-r2", "1.0a", "1.0_p1_git20230101-r3", "0.1.0_alpha"} {
		if err := APK.Valid(v); err != nil {
			t.Errorf("Valid(%q) = %v", v, err)
		}
	}
	for _, v := range []string{"", "1.0bc", "1.0-x1", "1.0_foo", "1.0-r1.2", "1.0-"} {
		if err := APK.Valid(v); err == nil {
			t.Errorf("Valid(%q) = nil, want an error", v)
		}
	}
}

func TestForEcosystem(t *testing.T) {
	for eco, want := range map[string]Comparer{
		"Debian:12":                             Dpkg,
		"Debian":                                Dpkg,
		"Ubuntu:22.04:LTS":                      Dpkg,
		"Ubuntu:Pro:18.04:LTS":                  Dpkg,
		"AlmaLinux:9":                           RPM,
		"Rocky Linux:9":                         RPM,
		"Red Hat:enterprise_linux:9::appstream": RPM,
		"Alpine:v3.19":                          APK,
	} {
		got, err := ForEcosystem(eco)
		if err != nil || got != want {
			t.Errorf("ForEcosystem(%q) = %T, %v", eco, got, err)
		}
	}
	for _, eco := range []string{"", "npm", "debian:12", "PyPI"} {
		if _, err := ForEcosystem(eco); !errors.Is(err, ErrUnknownEcosystem) {
			t.Errorf("ForEcosystem(%q) error = %v, want ErrUnknownEcosystem", eco, err)
		}
	}
}
