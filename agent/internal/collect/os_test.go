package collect

import (
	"context"
	"os"
	"strings"
	"testing"
)

const osReleaseSample = `PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
NAME='Debian GNU/Linux'
VERSION_ID="12"
# comment
VERSION_CODENAME=bookworm
ID=debian
ID_LIKE=
QUOTED="a \"quoted\" \$word and \\ backslash"
MIXED=abc"def ghi"'jkl'
not an assignment
1BAD=x
 SPACED = value
`

func TestParseOSRelease(t *testing.T) {
	got, err := parseOSRelease(strings.NewReader(osReleaseSample))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"PRETTY_NAME":      "Debian GNU/Linux 12 (bookworm)",
		"NAME":             "Debian GNU/Linux",
		"VERSION_ID":       "12",
		"VERSION_CODENAME": "bookworm",
		"ID":               "debian",
		"ID_LIKE":          "",
		"QUOTED":           `a "quoted" $word and \ backslash`,
		"MIXED":            "abcdef ghijkl",
		"SPACED":           "value",
	}
	if len(got) != len(want) {
		t.Errorf("got %d keys, want %d: %q", len(got), len(want), got)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
}

func TestPlatformFamily(t *testing.T) {
	for _, tc := range [][3]string{
		{"debian", "", "debian"},
		{"ubuntu", "debian", "debian"},
		{"pop", "ubuntu debian", "debian"},
		{"rocky", "rhel centos fedora", "rhel"},
		{"fedora", "", "fedora"},
		{"amzn", "centos rhel fedora", "rhel"},
		{"opensuse-leap", "suse opensuse", "suse"},
		{"alpine", "", "alpine"},
		{"nixos", "", ""},
	} {
		if got := platformFamily(tc[0], tc[1]); got != tc[2] {
			t.Errorf("platformFamily(%q, %q) = %q, want %q", tc[0], tc[1], got, tc[2])
		}
	}
}

// TestOSCollectorRoot checks the facts of this machine against its own
// os-release and hostname.
func TestOSCollectorRoot(t *testing.T) {
	items, err := osCollector{}.Collect(context.Background(), HostFS{Root: "/"})
	if err != nil {
		t.Fatal(err)
	}
	checkItems(t, items)
	if len(items) != 1 || items[0].GetKey() != "host" {
		t.Fatalf("items %v", items)
	}
	facts := items[0].GetOs()
	rel, err := readOSRelease(HostFS{Root: "/"})
	if err != nil {
		t.Fatal(err)
	}
	if rel["ID"] == "" || facts.GetPlatform() != rel["ID"] || facts.GetPlatformVersion() != rel["VERSION_ID"] || facts.GetPrettyName() != rel["PRETTY_NAME"] {
		t.Errorf("facts %v do not match os-release %v", facts, rel)
	}
	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	if facts.GetHostname() != host {
		t.Errorf("hostname %q, want %q", facts.GetHostname(), host)
	}
	if facts.GetOs() != "linux" || facts.GetKernelVersion() == "" || facts.GetKernelArch() == "" || facts.GetBootTime() == 0 {
		t.Errorf("kernel facts missing: %v", facts)
	}
	if b, err := os.ReadFile("/etc/machine-id"); err == nil && facts.GetMachineId() != strings.TrimSpace(string(b)) {
		t.Errorf("machine id %q", facts.GetMachineId())
	}
}

// TestOSCollectorHostRoot reads a mounted host's files, not the machine's.
func TestOSCollectorHostRoot(t *testing.T) {
	root := t.TempDir()
	writeFile(t, root, "/usr/lib/os-release", "ID=almalinux\nID_LIKE=\"rhel centos fedora\"\nVERSION_ID=\"9.4\"\nPRETTY_NAME=\"AlmaLinux 9.4 (Seafoam Ocelot)\"\n")
	symlink(t, root, "../usr/lib/os-release", "/etc/os-release")
	writeFile(t, root, "/etc/hostname", "# set by the installer\nnode-17.example.com\n")
	writeFile(t, root, "/etc/machine-id", "0123456789abcdef0123456789abcdef\n")
	items, err := osCollector{}.Collect(context.Background(), HostFS{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	f := items[0].GetOs()
	if f.GetPlatform() != "almalinux" || f.GetPlatformFamily() != "rhel" || f.GetPlatformVersion() != "9.4" ||
		f.GetPrettyName() != "AlmaLinux 9.4 (Seafoam Ocelot)" || f.GetVersionCodename() != "" ||
		f.GetHostname() != "node-17.example.com" || f.GetMachineId() != "0123456789abcdef0123456789abcdef" {
		t.Errorf("facts %v", f)
	}
}

func FuzzParseOSRelease(f *testing.F) {
	f.Add(osReleaseSample)
	f.Add(`A="unterminated` + "\n" + `B='x\'` + "\nC=\\\n")
	f.Fuzz(func(t *testing.T, s string) {
		m, err := parseOSRelease(strings.NewReader(s))
		if err != nil {
			return
		}
		for k := range m {
			if !isEnvName(k) {
				t.Fatalf("key %q", k)
			}
		}
	})
}
