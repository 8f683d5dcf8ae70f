package osv

import (
	"errors"
	"testing"
)

func TestHostEcosystem(t *testing.T) {
	for _, tc := range []struct{ platform, version, want string }{
		{"debian", "12", "Debian:12"},
		{"debian", "12.5", "Debian:12"},
		{"ubuntu", "22.04", "Ubuntu:22.04:LTS"},
		{"ubuntu", "24.04", "Ubuntu:24.04:LTS"},
		{"ubuntu", "20.04.6", "Ubuntu:20.04:LTS"},
		{"ubuntu", "23.10", "Ubuntu:23.10"},
		{"ubuntu", "23.04", "Ubuntu:23.04"}, // odd year: not LTS
		{"almalinux", "9.4", "AlmaLinux:9"},
		{"almalinux", "8.10", "AlmaLinux:8"},
		{"rocky", "9.3", "Rocky Linux:9"},
		{"rhel", "9.4", "Red Hat:enterprise_linux:9"},
		{"redhat", "8.9", "Red Hat:enterprise_linux:8"},
		{"alpine", "3.19.1", "Alpine:v3.19"},
		{"Ubuntu", " 22.04 ", "Ubuntu:22.04:LTS"},
	} {
		got, err := HostEcosystem(tc.platform, tc.version)
		if err != nil || got != tc.want {
			t.Errorf("HostEcosystem(%q, %q) = %q, %v; want %q", tc.platform, tc.version, got, err, tc.want)
		}
	}
	for _, tc := range [][2]string{{"windows", "10"}, {"debian", ""}, {"debian", "bookworm/sid"}, {"ubuntu", "22"}, {"alpine", "edge"}, {"centos", "7"}} {
		if got, err := HostEcosystem(tc[0], tc[1]); !errors.Is(err, ErrUnsupportedOS) {
			t.Errorf("HostEcosystem(%q, %q) = %q, %v; want ErrUnsupportedOS", tc[0], tc[1], got, err)
		}
	}
}

func TestNormalizeAndMatchKey(t *testing.T) {
	for in, want := range map[string]string{
		"Debian:12":                             "Debian:12",
		"debian:12":                             "Debian:12",
		"alpine:3.19":                           "Alpine:v3.19",
		"Alpine:v3.19":                          "Alpine:v3.19",
		"ubuntu:22.04:lts":                      "Ubuntu:22.04:LTS",
		"Ubuntu:pro:18.04:LTS":                  "Ubuntu:Pro:18.04:LTS",
		" AlmaLinux:9 ":                         "AlmaLinux:9",
		"rocky linux:9":                         "Rocky Linux:9",
		"npm":                                   "npm",
		"Red Hat:enterprise_linux:9::appstream": "Red Hat:enterprise_linux:9::appstream",
	} {
		if got := NormalizeEcosystem(in); got != want {
			t.Errorf("NormalizeEcosystem(%q) = %q, want %q", in, got, want)
		}
	}
	for in, want := range map[string]string{
		"Red Hat:enterprise_linux:9::appstream": "Red Hat:enterprise_linux:9",
		"Red Hat:enterprise_linux:9::baseos":    "Red Hat:enterprise_linux:9",
		"Red Hat:rhel_eus:9.2::appstream":       "Red Hat:rhel_eus:9.2",
		"AlmaLinux:9":                           "AlmaLinux:9",
	} {
		if got := MatchKey(in); got != want {
			t.Errorf("MatchKey(%q) = %q, want %q", in, got, want)
		}
	}
	// Whatever HostEcosystem answers is its own match key.
	host, _ := HostEcosystem("rhel", "9.4")
	if MatchKey(host) != MatchKey("Red Hat:enterprise_linux:9::baseos") {
		t.Errorf("a RHEL 9 host does not meet RHEL 9 BaseOS records")
	}
}

func TestPackageNaming(t *testing.T) {
	for eco, want := range map[string]Naming{
		"Debian:12": SourceNames, "Ubuntu:Pro:22.04:LTS": SourceNames, "Alpine:v3.19": SourceNames,
		"AlmaLinux:9": BinaryNames, "Red Hat:enterprise_linux:9": EitherNames, "Rocky Linux:9": EitherNames,
	} {
		if got := PackageNaming(eco); got != want {
			t.Errorf("PackageNaming(%q) = %v, want %v", eco, got, want)
		}
	}
}
