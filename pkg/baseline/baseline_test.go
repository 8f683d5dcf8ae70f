package baseline

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/quantumlayer/qinfra/pkg/inventory"
	commonv1 "github.com/quantumlayer/qinfra/proto/gen/qinfra/common/v1"
)

const webYAML = `
name: ubuntu-22.04-web
description: web tier
priority: 10
selector: {role: web}
metadata: {os: Ubuntu 22.04.4 LTS, platform: ubuntu, image: ami-123}
policy:
  configuration: {severity: high, action: alert}
packages:
  - {name: openssl, constraint: minimum, version: 3.0.2-0ubuntu1.15}
  - {name: nginx, arch: amd64, constraint: exact, version: 1.18.0-6ubuntu14.4}
  - {name: telnetd, constraint: forbidden}
  - {name: curl, constraint: present}
files:
  - {path: /etc/nginx/nginx.conf, sha256: ` + sumA + `, mode: "0644", owner: root, group: root}
users:
  allowed: [root, daemon, www-data]
  forbidden: [guest]
  uid0_only_root: true
  no_empty_passwords: true
services:
  - {name: nginx, state: enabled}
  - {name: telnet.socket, state: absent}
  - {name: cups, state: disabled}
`

const (
	sumA = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	sumB = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
)

func TestParseYAMLAndJSON(t *testing.T) {
	b, err := Parse([]byte(webYAML))
	if err != nil {
		t.Fatal(err)
	}
	if b.Name != "ubuntu-22.04-web" || b.Priority != 10 || len(b.Packages) != 4 || b.Users == nil || !b.Users.UID0OnlyRoot || b.Metadata.Image != "ami-123" {
		t.Fatalf("parsed %+v", b)
	}
	if p := b.PolicyFor(TypeConfiguration); p.Severity != SeverityHigh {
		t.Errorf("policy override lost: %+v", p)
	}
	if p := b.PolicyFor(TypeServices); p != (Policy{SeverityCritical, "isolate"}) {
		t.Errorf("default services policy = %+v", p)
	}
	// JSON round trip.
	j, err := jsonOf(b)
	if err != nil {
		t.Fatal(err)
	}
	b2, err := Parse(j)
	if err != nil {
		t.Fatalf("parse JSON %s: %v", j, err)
	}
	if !SameContent(b, b2) {
		t.Fatal("JSON round trip changed the document")
	}
	y, _ := b.YAML()
	b3, err := Parse(y)
	if err != nil || !SameContent(b, b3) {
		t.Fatalf("YAML round trip: %v", err)
	}
}

func TestParseRejects(t *testing.T) {
	for name, doc := range map[string]string{
		"unknown yaml field":  "name: x\npackages:\n  - {name: a, constraint: present, versoin: 1}\n",
		"unknown json field":  `{"name":"x","selektor":{}}`,
		"bad name":            "name: Web Servers\n",
		"exact no version":    "name: x\npackages: [{name: a, constraint: exact}]\n",
		"forbidden version":   "name: x\npackages: [{name: a, constraint: forbidden, version: '1'}]\n",
		"bad constraint":      "name: x\npackages: [{name: a, constraint: newest}]\n",
		"duplicate package":   "name: x\npackages: [{name: a, constraint: present}, {name: a, constraint: forbidden}]\n",
		"relative path":       "name: x\nfiles: [{path: etc/x, mode: '0644'}]\n",
		"file without checks": "name: x\nfiles: [{path: /etc/x}]\n",
		"bad sha":             "name: x\nfiles: [{path: /etc/x, sha256: abc}]\n",
		"bad mode":            "name: x\nfiles: [{path: /etc/x, mode: '0999'}]\n",
		"bad state":           "name: x\nservices: [{name: a, state: on}]\n",
		"bad severity":        "name: x\npolicy: {version: {severity: urgent, action: alert}}\n",
		"bad type":            "name: x\npolicy: {vibes: {severity: low, action: alert}}\n",
		"allowed+forbidden":   "name: x\nusers: {allowed: [a], forbidden: [a]}\n",
		"two documents":       "name: x\n---\nname: y\n",
		"empty":               "  \n",
	} {
		if _, err := Parse([]byte(doc)); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: err = %v, want ErrInvalid", name, err)
		}
	}
}

func seal(it *commonv1.Item) *commonv1.Item {
	if err := inventory.Seal(it); err != nil {
		panic(err)
	}
	return it
}

func pkgItem(name, version, arch string) *commonv1.Item {
	return seal(&commonv1.Item{Kind: inventory.KindPackage, Key: "dpkg:" + name + ":" + arch, Body: &commonv1.Item_Package{Package: &commonv1.Package{
		Manager: "dpkg", Name: name, Version: version, Arch: arch, Status: "installed"}}})
}

func fileItem(path, sum string, mode uint32, owner string) *commonv1.Item {
	return seal(&commonv1.Item{Kind: inventory.KindFile, Key: path, Body: &commonv1.Item_File{File: &commonv1.File{
		Path: path, Type: "file", Sha256: sum, Mode: mode, Owner: owner, Group: "root"}}})
}

func userItem(name string, uid uint32, pw string) *commonv1.Item {
	return seal(&commonv1.Item{Kind: inventory.KindUser, Key: name, Body: &commonv1.Item_User{User: &commonv1.User{Name: name, Uid: uid, PasswordState: pw}}})
}

func serviceItem(name, state string) *commonv1.Item {
	return seal(&commonv1.Item{Kind: inventory.KindService, Key: name, Body: &commonv1.Item_Service{Service: &commonv1.Service{Manager: "systemd", Name: name, UnitFileState: state}}})
}

// compliant is a host that satisfies webYAML.
func compliant() []*commonv1.Item {
	return []*commonv1.Item{
		pkgItem("openssl", "3.0.2-0ubuntu1.16", "amd64"), // newer than the minimum
		pkgItem("nginx", "1.18.0-6ubuntu14.4", "amd64"),
		pkgItem("nginx", "1.0", "i386"), // other arch: not constrained
		pkgItem("curl", "7.81.0-1", "amd64"),
		fileItem("/etc/nginx/nginx.conf", sumA, 0o644, "root"),
		userItem("root", 0, "locked"), userItem("daemon", 1, "locked"), userItem("www-data", 33, "locked"),
		serviceItem("nginx.service", "enabled"), serviceItem("cups.service", "masked"),
	}
}

func rules(ds []Deviation) []string {
	var out []string
	for _, d := range ds {
		out = append(out, d.Rule+" "+d.Key+": want "+d.Expected+", have "+d.Actual+" ["+d.Type+"/"+d.Severity+"/"+d.Action+"]")
	}
	slices.Sort(out)
	return out
}

func TestEvaluate(t *testing.T) {
	b, err := Parse([]byte(webYAML))
	if err != nil {
		t.Fatal(err)
	}
	if ds := Evaluate([]*Baseline{b}, compliant(), nil); len(ds) != 0 {
		t.Fatalf("compliant host drifts:\n%s", strings.Join(rules(ds), "\n"))
	}
	drifted := []*commonv1.Item{
		pkgItem("openssl", "3.0.2-0ubuntu1.10", "amd64"),  // below minimum
		pkgItem("nginx", "1:1.18.0-6ubuntu14.4", "amd64"), // epoch differs
		pkgItem("telnetd", "0.17-44", "amd64"),            // forbidden
		// curl missing
		fileItem("/etc/nginx/nginx.conf", sumB, 0o666, "www-data"),
		userItem("root", 0, "locked"), userItem("daemon", 1, "empty"), userItem("toor", 0, "set"), userItem("guest", 1001, "set"),
		serviceItem("nginx.service", "disabled"), serviceItem("telnet.socket", "enabled"), serviceItem("cups.service", "enabled"),
	}
	got := rules(Evaluate([]*Baseline{b}, drifted, nil))
	want := []string{
		"file.mode /etc/nginx/nginx.conf: want 0644, have 0666 [permissions/high/auto-fix]",
		"file.owner /etc/nginx/nginx.conf: want root, have www-data [permissions/high/auto-fix]",
		"file.sha256 /etc/nginx/nginx.conf: want " + sumA + ", have " + sumB + " [configuration/high/alert]",
		"package.exact nginx:amd64: want = 1.18.0-6ubuntu14.4, have 1:1.18.0-6ubuntu14.4 [version/high/auto-patch]",
		"package.forbidden telnetd: want not installed, have installed 0.17-44 [version/high/auto-patch]",
		"package.minimum openssl: want >= 3.0.2-0ubuntu1.15, have 3.0.2-0ubuntu1.10 [version/high/auto-patch]",
		"package.present curl: want installed, have not installed [version/high/auto-patch]",
		"service.state cups: want disabled, have enabled [services/critical/isolate]",
		"service.state nginx: want enabled, have disabled [services/critical/isolate]",
		"service.state telnet.socket: want absent, have enabled [services/critical/isolate]",
		"user.allowed guest: want not in the allowed set, have present (uid 1001) [users/critical/alert+block]",
		"user.allowed toor: want not in the allowed set, have present (uid 0) [users/critical/alert+block]",
		"user.empty_password daemon: want password set or locked, have empty password [users/critical/alert+block]",
		"user.forbidden guest: want absent, have present (uid 1001) [users/critical/alert+block]",
		"user.uid0 toor: want uid 0 only for root, have uid 0 [users/critical/alert+block]",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("deviations:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestEvaluatePrecedence(t *testing.T) {
	base := &Baseline{Name: "base", Version: 3,
		Packages: []PackageRule{{Name: "openssl", Constraint: ConstraintMinimum, Version: "3.0"}, {Name: "vim", Constraint: ConstraintPresent}},
		Users:    &UserRules{Forbidden: []string{"guest"}, Allowed: []string{"root"}}}
	web := &Baseline{Name: "web", Priority: 10, Version: 1,
		Packages: []PackageRule{{Name: "openssl", Constraint: ConstraintExact, Version: "3.1"}},
		Users:    &UserRules{Allowed: []string{"root", "www-data"}}}
	items := []*commonv1.Item{pkgItem("openssl", "3.2", "amd64"), userItem("root", 0, "locked"), userItem("www-data", 33, "locked"), userItem("guest", 9, "set")}
	ds := Evaluate([]*Baseline{base, web}, items, nil)
	var got []string
	for _, d := range ds {
		got = append(got, d.Baseline+" "+d.Rule+" "+d.Key)
	}
	// web governs openssl and the allowed set; base still governs vim and
	// the forbidden list.
	want := []string{"web package.exact openssl", "web user.allowed guest", "base package.present vim", "base user.forbidden guest"}
	if !slices.Equal(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
	if ds[2].BaselineVersion != 3 {
		t.Errorf("baseline version = %d", ds[2].BaselineVersion)
	}
	// Equal priorities: the smaller name wins.
	web.Priority = 0
	ds = Evaluate([]*Baseline{web, base}, items, nil)
	// base now governs openssl (3.2 >= 3.0: no drift) and the allowed set.
	for _, d := range ds {
		if d.Baseline == "web" {
			t.Fatalf("tie: web still governs %+v", d)
		}
	}
	if len(ds) != 4 {
		t.Fatalf("tie: %d deviations, want vim, www-data, guest twice: %+v", len(ds), ds)
	}
}

func TestCaptureRoundTrip(t *testing.T) {
	items := append(compliant(), seal(&commonv1.Item{Kind: inventory.KindOS, Key: "host", Body: &commonv1.Item_Os{Os: &commonv1.OSFacts{
		Platform: "ubuntu", PlatformVersion: "22.04", PrettyName: "Ubuntu 22.04.4 LTS"}}}),
		serviceItem("systemd-journald.service", "static"))
	b := Capture(items, CaptureOptions{Name: "golden", HostID: "h1", Image: "img-1"})
	if err := b.Validate(); err != nil {
		t.Fatal(err)
	}
	if len(b.Packages) != 4 || len(b.Files) != 1 || len(b.Services) != 2 || b.Users == nil || len(b.Users.Allowed) != 3 {
		t.Fatalf("captured %+v", b)
	}
	if b.Metadata.Platform != "ubuntu" || b.Metadata.CapturedFrom != "h1" || b.Metadata.Image != "img-1" {
		t.Errorf("metadata %+v", b.Metadata)
	}
	if ds := Evaluate([]*Baseline{b}, items, nil); len(ds) != 0 {
		t.Fatalf("reference host drifts from its own capture:\n%s", strings.Join(rules(ds), "\n"))
	}
	minb := Capture(items, CaptureOptions{Name: "golden", Kinds: []string{inventory.KindPackage}, MinimumVersions: true})
	if len(minb.Files) != 0 || minb.Users != nil || minb.Packages[0].Constraint != ConstraintMinimum {
		t.Fatalf("packages-only minimum capture: %+v", minb)
	}
	upgraded := []*commonv1.Item{pkgItem("openssl", "3.0.3", "amd64"), pkgItem("nginx", "1.18.0-6ubuntu14.5", "amd64"), pkgItem("nginx", "1.0", "i386"), pkgItem("curl", "7.81.0-1", "amd64")}
	if ds := Evaluate([]*Baseline{minb}, upgraded, nil); len(ds) != 0 {
		t.Fatalf("upgrades drift from a minimum capture: %v", rules(ds))
	}
}

func TestScopeOfRefsTouches(t *testing.T) {
	b, _ := Parse([]byte(webYAML))
	bs := []*Baseline{b}
	for _, tc := range []struct {
		ref  inventory.Ref
		want bool
	}{
		{inventory.Ref{Kind: inventory.KindPackage, Key: "dpkg:openssl:amd64"}, true},
		{inventory.Ref{Kind: inventory.KindPackage, Key: "dpkg:zsh:amd64"}, false},
		{inventory.Ref{Kind: inventory.KindPackage, Key: "rpm:openssl:x86_64:3.0.7"}, true},
		// inventory.Validate refuses a package key without a manager.
		{inventory.Ref{Kind: inventory.KindPackage, Key: "garbage"}, false},
		{inventory.Ref{Kind: inventory.KindFile, Key: "/etc/nginx/nginx.conf"}, true},
		{inventory.Ref{Kind: inventory.KindFile, Key: "/etc/other"}, false},
		{inventory.Ref{Kind: inventory.KindService, Key: "nginx.service"}, true},
		{inventory.Ref{Kind: inventory.KindService, Key: "ssh.service"}, false},
		{inventory.Ref{Kind: inventory.KindUser, Key: "anyone"}, true},
		{inventory.Ref{Kind: inventory.KindPort, Key: "tcp/0.0.0.0:22"}, false},
	} {
		if got := ScopeOfRefs([]inventory.Ref{tc.ref}).Touches(bs); got != tc.want {
			t.Errorf("ScopeOfRefs(%s).Touches = %v, want %v", tc.ref, got, tc.want)
		}
	}
}

func TestMatches(t *testing.T) {
	b := &Baseline{Name: "x", Selector: map[string]string{"role": "web", "env": "prod"}}
	if !b.Matches(map[string]string{"role": "web", "env": "prod", "dc": "1"}) || b.Matches(map[string]string{"role": "web"}) {
		t.Fatal("selector")
	}
	if !(&Baseline{Name: "all"}).Matches(nil) {
		t.Fatal("empty selector must match every host")
	}
}

func jsonOf(b *Baseline) ([]byte, error) { return json.Marshal(b) }

// TestFileNotReported: a file the agent reports missing is absent drift; a
// file it does not report at all is not checked, and Unverified lists it
// under the governing baseline.
func TestFileNotReported(t *testing.T) {
	web := &Baseline{Name: "web", Priority: 10, Files: []FileRule{{Path: "/etc/a", Sha256: sumA}, {Path: "/etc/b", Mode: "0644"}}}
	base := &Baseline{Name: "base", Files: []FileRule{{Path: "/etc/b", Owner: "root"}, {Path: "/etc/c", Owner: "root"}}}
	items := []*commonv1.Item{
		{Kind: inventory.KindFile, Key: "/etc/a", Body: &commonv1.Item_File{File: &commonv1.File{Path: "/etc/a", Type: "missing"}}},
	}
	ds := Evaluate([]*Baseline{web, base}, items, nil)
	if len(ds) != 1 || ds[0].Key != "/etc/a" || ds[0].Rule != RuleFilePresent || ds[0].Actual != Absent {
		t.Fatalf("deviations = %+v, want only /etc/a absent", ds)
	}
	got := Unverified([]*Baseline{base, web}, items)
	want := []UnverifiedRule{{Baseline: "web", Path: "/etc/b"}, {Baseline: "base", Path: "/etc/c"}}
	if !slices.Equal(got, want) {
		t.Fatalf("Unverified = %+v, want %+v", got, want)
	}
}
