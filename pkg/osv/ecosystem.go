package osv

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Distribution ecosystem names, as OSV spells them.
const (
	Debian     = "Debian"
	Ubuntu     = "Ubuntu"
	AlmaLinux  = "AlmaLinux"
	RockyLinux = "Rocky Linux"
	RedHat     = "Red Hat"
	Alpine     = "Alpine"
)

// ErrUnsupportedOS is returned by HostEcosystem for an OS whose advisories
// are not published as OSV records this package knows.
var ErrUnsupportedOS = errors.New("no OSV ecosystem for this OS")

// canonicalNames maps a lower-cased ecosystem name to its OSV spelling.
var canonicalNames = map[string]string{
	"debian":      Debian,
	"ubuntu":      Ubuntu,
	"almalinux":   AlmaLinux,
	"rocky linux": RockyLinux,
	"red hat":     RedHat,
	"alpine":      Alpine,
}

// NormalizeEcosystem returns the canonical form of an OSV ecosystem
// string: the distribution's name spelt as OSV does ("alpine:v3.19" →
// "Alpine:v3.19"), Alpine's release with its "v" ("Alpine:3.19" →
// "Alpine:v3.19"), Ubuntu's ":LTS" upper-cased, surrounding space removed.
// Ecosystems it does not know are returned trimmed but otherwise as given.
func NormalizeEcosystem(eco string) string {
	eco = strings.TrimSpace(eco)
	name, rest, hasRest := strings.Cut(eco, ":")
	canon, ok := canonicalNames[strings.ToLower(strings.TrimSpace(name))]
	if !ok {
		return eco
	}
	if !hasRest {
		return canon
	}
	switch canon {
	case Alpine:
		if rest != "" && rest[0] >= '0' && rest[0] <= '9' {
			rest = "v" + rest
		}
	case Ubuntu:
		if strings.HasSuffix(strings.ToLower(rest), ":lts") {
			rest = rest[:len(rest)-3] + "LTS"
		}
		if strings.HasPrefix(strings.ToLower(rest), "pro:") {
			rest = "Pro" + rest[3:]
		}
	}
	return canon + ":" + rest
}

// MatchKey returns the ecosystem a record's affected package is indexed
// under, which is the one HostEcosystem gives for the hosts it applies to.
// It is NormalizeEcosystem, except for Red Hat, whose ecosystems name a
// product stream and a repository ("Red Hat:enterprise_linux:9::appstream")
// while a host is only known by its product ("Red Hat:enterprise_linux:9"):
// the repository part is dropped.
func MatchKey(eco string) string {
	eco = NormalizeEcosystem(eco)
	if strings.HasPrefix(eco, RedHat+":") {
		if i := strings.Index(eco, "::"); i >= 0 {
			eco = eco[:i]
		}
	}
	return eco
}

// HostEcosystem maps a host's OS facts, the os-release ID (or gopsutil's
// platform) and version, to the OSV ecosystem whose records apply to it:
//
//	debian 12.5        → Debian:12
//	ubuntu 22.04       → Ubuntu:22.04:LTS (LTS for even years' .04 releases)
//	ubuntu 23.10       → Ubuntu:23.10
//	almalinux 9.4      → AlmaLinux:9
//	rocky 9.3          → Rocky Linux:9
//	rhel 9.4           → Red Hat:enterprise_linux:9 (compare with MatchKey)
//	alpine 3.19.1      → Alpine:v3.19
//
// Ubuntu Pro (ESM) fixes are published under "Ubuntu:Pro:22.04:LTS"; a
// host's OS facts do not say whether it is attached to Pro, so those are
// not this function's answer.
func HostEcosystem(platform, version string) (string, error) {
	p := strings.ToLower(strings.TrimSpace(platform))
	v := strings.TrimSpace(version)
	parts := strings.Split(v, ".")
	major := parts[0]
	if major == "" || !isNumber(major) {
		return "", fmt.Errorf("%w: %s %q: version is not numeric", ErrUnsupportedOS, platform, version)
	}
	switch p {
	case "debian":
		return Debian + ":" + major, nil
	case "ubuntu":
		if len(parts) < 2 || !isNumber(parts[1]) {
			return "", fmt.Errorf("%w: ubuntu %q: want YY.MM", ErrUnsupportedOS, version)
		}
		rel := major + "." + parts[1]
		year, _ := strconv.Atoi(major)
		if parts[1] == "04" && year%2 == 0 {
			return Ubuntu + ":" + rel + ":LTS", nil
		}
		return Ubuntu + ":" + rel, nil
	case "almalinux", "alma":
		return AlmaLinux + ":" + major, nil
	case "rocky", "rockylinux", "rocky linux":
		return RockyLinux + ":" + major, nil
	case "rhel", "redhat", "red hat", "red hat enterprise linux":
		return RedHat + ":enterprise_linux:" + major, nil
	case "alpine":
		if len(parts) < 2 || !isNumber(parts[1]) {
			return "", fmt.Errorf("%w: alpine %q: want 3.N", ErrUnsupportedOS, version)
		}
		return Alpine + ":v" + major + "." + parts[1], nil
	}
	return "", fmt.Errorf("%w: %s %s", ErrUnsupportedOS, platform, version)
}

func isNumber(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// Naming says which package names an ecosystem's records use.
type Naming int

// Namings.
const (
	// BinaryNames: records name the binary packages installed (AlmaLinux).
	BinaryNames Naming = iota
	// SourceNames: records name source packages, and their versions are
	// source versions (Debian and Ubuntu, matched through the dpkg Source
	// field; Alpine, through the apk origin).
	SourceNames
	// EitherNames: records may name a binary or a source RPM (Red Hat, by
	// its schema entry; Rocky Linux, whose schema entry says source RPMs).
	// Both names are looked up; an rpm binary carries its source's EVR, so
	// the binary's version is compared either way.
	EitherNames
)

// PackageNaming returns the naming an ecosystem's records follow.
func PackageNaming(eco string) Naming {
	name, _, _ := strings.Cut(eco, ":")
	switch name {
	case Debian, Ubuntu, Alpine:
		return SourceNames
	case RedHat, RockyLinux:
		return EitherNames
	}
	return BinaryNames
}
