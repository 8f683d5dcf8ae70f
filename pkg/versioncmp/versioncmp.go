// Package versioncmp orders package versions exactly as the distributions'
// own package managers do: dpkg for Debian and Ubuntu, rpm's rpmvercmp for
// the Red Hat family and SUSE, and apk-tools for Alpine.
//
// Each ordering is a direct port of the C code the package manager runs:
// dpkg 1.21's lib/dpkg/version.c and parsehelp.c, rpm 4.18's
// rpmio/rpmvercmp.c and rpmio/rpmver.c, apk-tools 2.x's src/version.c. The
// dpkg and rpm ports are tested against the real dpkg and rpm binaries on
// more than ten thousand version pairs each (oracle_test.go), with zero
// disagreements required.
//
// Why not a library: the Go libraries for these orderings were run through
// the same oracle. github.com/knqyf263/go-rpm-version (the one Trivy uses)
// disagreed with rpm on 560 of 30,000 pairs: it splits the release at the
// first '-' instead of the last ("1.0-1-2" vs "1.0.1"), treats a missing
// release like an empty one ("1.0" vs "1.0-"), and reads "a:1" as epoch 0
// instead of a version. github.com/knqyf263/go-deb-version disagreed with
// dpkg on numbers longer than 19 digits (it parses them into an int64 and
// saturates) and cannot compare versions dpkg compares with a warning.
// github.com/knqyf263/go-apk-version wraps on long numbers and refuses
// versions apk-tools accepts ("1.0_"). None of the three has a tagged
// release. The ports here are some 700 lines with comments, kept honest by
// the oracle.
package versioncmp

import (
	"errors"
	"fmt"
	"strings"
)

// A Comparer orders the versions of one package manager.
type Comparer interface {
	// Compare returns -1, 0 or +1 as a sorts before, equal to or after b.
	// It is total: every pair of strings has an answer, the one the package
	// manager gives where it gives one.
	Compare(a, b string) int
	// Valid reports why v is not a well-formed version, or nil.
	Valid(v string) error
}

// The comparers, one per version scheme.
var (
	Dpkg Comparer = dpkg{}
	RPM  Comparer = rpm{}
	APK  Comparer = apk{}
)

// ErrUnknownEcosystem is returned by ForEcosystem for an ecosystem whose
// version scheme this package does not know.
var ErrUnknownEcosystem = errors.New("unknown ecosystem")

// schemes maps the OSV ecosystem name (the part before the first ':') to
// the version scheme its distribution uses.
var schemes = map[string]Comparer{
	"Debian":      Dpkg,
	"Ubuntu":      Dpkg,
	"AlmaLinux":   RPM,
	"Rocky Linux": RPM,
	"Red Hat":     RPM,
	"openSUSE":    RPM,
	"SUSE":        RPM,
	"Mageia":      RPM,
	"openEuler":   RPM,
	"Photon OS":   RPM,
	"Alpine":      APK,
	"Wolfi":       APK,
	"Chainguard":  APK,
}

// ForEcosystem returns the Comparer for an OSV ecosystem string such as
// "Debian:12", "Ubuntu:Pro:22.04:LTS", "AlmaLinux:9",
// "Red Hat:enterprise_linux:9::appstream" or "Alpine:v3.19".
func ForEcosystem(eco string) (Comparer, error) {
	name, _, _ := strings.Cut(eco, ":")
	if c, ok := schemes[name]; ok {
		return c, nil
	}
	return nil, fmt.Errorf("%w %q", ErrUnknownEcosystem, eco)
}

func sign(n int) int {
	switch {
	case n < 0:
		return -1
	case n > 0:
		return 1
	}
	return 0
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }
func isAlpha(c byte) bool { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }
func isLower(c byte) bool { return 'a' <= c && c <= 'z' }
