package collect

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
)

const (
	unitEnableable = "[Unit]\nDescription=%s\n[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=multi-user.target\n"
	unitStatic     = "[Unit]\nDescription=static one\n[Service]\nExecStart=/bin/true\n"
)

// unitRoot lays out a root exercising each branch of systemd's unit file
// state logic, the way package managers and administrators leave them.
func unitRoot(t *testing.T, mergedUsr bool) string {
	t.Helper()
	root := t.TempDir()
	const (
		etc = "/etc/systemd/system"
		run = "/run/systemd/system"
		usr = "/usr/lib/systemd/system"
	)
	if mergedUsr {
		symlink(t, root, "usr/lib", "/lib")
	} else {
		// A split-usr host with the same unit in both: /lib wins.
		writeFile(t, root, "/lib/systemd/system/split.service", fmt.Sprintf(unitEnableable, "in /lib"))
		writeFile(t, root, usr+"/split.service", unitStatic)
	}
	unit := func(dir, name, content string) { writeFile(t, root, dir+"/"+name, content) }
	enableable := func(name string) { unit(usr, name, fmt.Sprintf(unitEnableable, name)) }

	// Enabled in /etc, in /run, and only by a vendor .wants link.
	enableable("enabled.service")
	symlink(t, root, "/lib/systemd/system/enabled.service", etc+"/multi-user.target.wants/enabled.service")
	enableable("runtime.service")
	symlink(t, root, usr+"/runtime.service", run+"/multi-user.target.wants/runtime.service")
	enableable("vendorwants.service")
	symlink(t, root, "../vendorwants.service", usr+"/multi-user.target.wants/vendorwants.service")
	enableable("disabled.service")
	enableable("required.service")
	symlink(t, root, usr+"/required.service", etc+"/basic.target.requires/required.service")

	// Static units; a unit with only Also=; one enabled by a drop-in.
	unit(usr, "static.service", unitStatic)
	unit(usr, "also.service", "[Service]\nExecStart=/bin/true\n[Install]\nAlso=static.service\n")
	unit(usr, "dropin.service", unitStatic)
	unit(etc, "dropin.service.d/install.conf", "[Install]\nWantedBy=multi-user.target\n")
	unit(usr, "maskeddropin.service", unitStatic)
	unit(usr, "maskeddropin.service.d/install.conf", "[Install]\nWantedBy=multi-user.target\n")
	symlink(t, root, "/dev/null", etc+"/maskeddropin.service.d/install.conf")
	// A real root has /dev/null; systemctl 252 reports a unit whose drop-in
	// is masked as bad when the root lacks it.
	writeFile(t, root, "/dev/null", "")

	// Masked: by /dev/null in /etc and /run, by an empty file, by a link to
	// an empty file.
	enableable("masked.service")
	symlink(t, root, "/dev/null", etc+"/masked.service")
	unit(usr, "masked.timer", "[Timer]\nOnCalendar=daily\n[Install]\nWantedBy=timers.target\n")
	symlink(t, root, "/dev/null", run+"/masked.timer")
	unit(usr, "empty.service", "")
	unit("/opt", "empty.service", "")
	symlink(t, root, "/opt/empty.service", etc+"/toempty.service")

	// Aliases: vendor and administrator ones, with Alias= in [Install].
	unit(usr, "aliased.service", "[Service]\nExecStart=/bin/true\n[Install]\nAlias=other-name.service\n")
	symlink(t, root, usr+"/aliased.service", etc+"/other-name.service")
	unit(usr, "notyet.service", "[Service]\nExecStart=/bin/true\n[Install]\nAlias=notyet-alias.service\n")
	symlink(t, root, "notyet.service", usr+"/vendor-alias.service")
	symlink(t, root, usr+"/static.service", etc+"/static-alias.service")
	symlink(t, root, "vendor-alias.service", usr+"/chained-alias.service")

	// Templates: with DefaultInstance, without, an instance file, one only
	// instantiated from a vendor directory.
	unit(usr, "getty@.service", "[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=multi-user.target\nDefaultInstance=tty1\n")
	symlink(t, root, usr+"/getty@.service", etc+"/multi-user.target.wants/getty@tty1.service")
	symlink(t, root, "getty@.service", usr+"/autovt@.service")
	enableable("worker@.service")
	symlink(t, root, usr+"/worker@.service", etc+"/multi-user.target.wants/worker@1.service")
	enableable("plain@.service")
	enableable("inst@.service")
	symlink(t, root, "inst@.service", usr+"/inst@one.service")
	symlink(t, root, usr+"/inst@.service", etc+"/multi-user.target.wants/inst@one.service")
	symlink(t, root, "inst@.service", usr+"/inst@two.service")

	// Linked unit files, broken links, invalid aliases.
	unit("/opt/app", "linked.service", fmt.Sprintf(unitEnableable, "linked"))
	symlink(t, root, "/opt/app/linked.service", etc+"/linked.service")
	unit("/opt/app", "renamed.service", fmt.Sprintf(unitEnableable, "renamed"))
	symlink(t, root, "/opt/app/renamed.service", etc+"/linked-other-name.service")
	symlink(t, root, "/opt/app/missing.service", etc+"/dangling.service")
	symlink(t, root, usr+"/enabled.service", etc+"/enabled-alias.service")
	enableable("selfalias.service")
	symlink(t, root, usr+"/selfalias.service", etc+"/selfalias.service")
	symlink(t, root, usr+"/enabled.service", etc+"/enabled.service.bak.socket")
	symlink(t, root, usr+"/enabled.service", etc+"/wrongtype.socket")
	symlink(t, root, usr+"/static.service", usr+"/tmpl-to-plain@.service")
	symlink(t, root, usr+"/nonexistent.service", etc+"/alias-to-nothing.service")
	// A link to a unit that exists on the real machine but not under the
	// root: it must not be found.
	symlink(t, root, "/usr/lib/systemd/system/systemd-journald.service", etc+"/outside.service")
	symlink(t, root, "../../../../../../../usr/lib/systemd/system/systemd-journald.service", etc+"/outside-rel.service")
	symlink(t, root, "loop-b.service", etc+"/loop-a.service")
	symlink(t, root, "loop-a.service", etc+"/loop-b.service")

	// An /etc override of a vendor unit; a same-name link into the search
	// path; a unit directory in place of a file.
	enableable("override.service")
	unit(etc, "override.service", unitStatic)
	symlink(t, root, usr+"/disabled.service", etc+"/disabled.service")
	mkdir(t, root, etc+"/dir.service")

	// Sockets and timers.
	unit(usr, "app.socket", "[Socket]\nListenStream=80\n[Install]\nWantedBy=sockets.target\n")
	symlink(t, root, usr+"/app.socket", etc+"/sockets.target.wants/app.socket")
	unit(usr, "idle.socket", "[Socket]\nListenStream=81\n[Install]\nWantedBy=sockets.target\n")
	unit(usr, "daily.timer", "[Timer]\nOnCalendar=daily\n[Install]\nWantedBy=timers.target\n")
	symlink(t, root, usr+"/daily.timer", etc+"/timers.target.wants/daily.timer")
	unit(usr, "static.timer", "[Timer]\nOnCalendar=daily\n")

	// The other search directories, and units of types not reported.
	unit("/run/systemd/generator", "generated.service", unitStatic)
	unit("/run/systemd/generator.late", "late.service", unitStatic)
	unit("/run/systemd/transient", "transient.service", unitStatic)
	unit("/etc/systemd/system.control", "control.service", unitStatic)
	unit("/usr/local/lib/systemd/system", "local.service", fmt.Sprintf(unitEnableable, "local"))
	unit(usr, "multi-user.target", "[Unit]\nDescription=Multi-User\n")
	unit(usr, "home.mount", "[Mount]\nWhat=/dev/sda\nWhere=/home\n")
	unit(usr, "not a unit", "x")
	return root
}

// systemctlStates runs systemctl list-unit-files on root and returns
// "name state" lines for the reported unit types.
func systemctlStates(t *testing.T, root string) []string {
	out := command(t, "systemctl", "list-unit-files", "--root="+root, "--no-legend", "--no-pager", "--type=service,socket,timer")
	var states []string
	for _, l := range lines(out) {
		f := strings.Fields(l)
		if len(f) >= 2 {
			states = append(states, f[0]+" "+f[1])
		}
	}
	return lines(strings.Join(states, "\n"))
}

func collectUnits(t *testing.T, root string) map[string]string {
	t.Helper()
	items, err := systemdCollector{}.Collect(context.Background(), HostFS{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	checkItems(t, items)
	got := map[string]string{}
	for _, it := range items {
		s := it.GetService()
		if it.GetKey() != s.GetName() || s.GetManager() != "systemd" || s.GetActiveState() != "" {
			t.Errorf("item %s: %v", it.GetKey(), s)
		}
		got[s.GetName()] = s.GetUnitFileState()
	}
	return got
}

func stateLines(m map[string]string) []string {
	var out []string
	for n, s := range m {
		out = append(out, n+" "+s)
	}
	return lines(strings.Join(out, "\n"))
}

// expectedUnitStates is what systemctl 252 reports for unitRoot(merged).
var expectedUnitStates = map[string]string{
	"alias-to-nothing.service":   "bad",
	"aliased.service":            "enabled",
	"also.service":               "indirect",
	"app.socket":                 "enabled",
	"autovt@.service":            "alias",
	"chained-alias.service":      "alias",
	"control.service":            "static",
	"daily.timer":                "enabled",
	"dangling.service":           "bad",
	"disabled.service":           "bad",
	"dropin.service":             "disabled",
	"empty.service":              "masked",
	"enabled-alias.service":      "alias",
	"enabled.service.bak.socket": "bad",
	"selfalias.service":          "bad",
	"enabled.service":            "enabled",
	"generated.service":          "generated",
	"getty@.service":             "enabled",
	"idle.socket":                "disabled",
	"inst@.service":              "indirect",
	"inst@one.service":           "enabled",
	"inst@two.service":           "static",
	"late.service":               "generated",
	"linked-other-name.service":  "alias",
	"linked.service":             "linked",
	"local.service":              "disabled",
	"loop-a.service":             "bad",
	"loop-b.service":             "bad",
	"masked.service":             "masked",
	"masked.timer":               "masked-runtime",
	"maskeddropin.service":       "static",
	"notyet.service":             "disabled",
	"other-name.service":         "alias",
	"outside-rel.service":        "bad",
	"outside.service":            "bad",
	"override.service":           "static",
	"plain@.service":             "disabled",
	"required.service":           "enabled",
	"runtime.service":            "enabled-runtime",
	"static-alias.service":       "alias",
	"static.service":             "indirect",
	"static.timer":               "static",
	"tmpl-to-plain@.service":     "bad",
	"toempty.service":            "masked",
	"transient.service":          "transient",
	"vendor-alias.service":       "alias",
	"vendorwants.service":        "disabled",
	"worker@.service":            "indirect",
	"wrongtype.socket":           "bad",
}

func TestSystemdFakeRoot(t *testing.T) {
	root := unitRoot(t, true)
	got := collectUnits(t, root)
	diffSets(t, "unit states", stateLines(expectedUnitStates), stateLines(got))
	// Where systemctl is installed, it agrees on the same root.
	if _, err := os.Stat("/usr/bin/systemctl"); err == nil {
		diffSets(t, "systemctl list-unit-files", systemctlStates(t, root), stateLines(got))
	}
}

func TestSystemdSplitUsr(t *testing.T) {
	root := unitRoot(t, false)
	got := collectUnits(t, root)
	if got["split.service"] != "disabled" {
		t.Errorf("split.service: %q, want the /lib unit (disabled)", got["split.service"])
	}
	if _, err := os.Stat("/usr/bin/systemctl"); err == nil {
		diffSets(t, "systemctl list-unit-files", systemctlStates(t, root), stateLines(got))
	}
}

func TestSystemdItemFields(t *testing.T) {
	root := unitRoot(t, true)
	items, err := systemdCollector{}.Collect(context.Background(), HostFS{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]string{
		"enabled.service":    "/lib/systemd/system/enabled.service enabled enabled.service",
		"linked.service":     "/etc/systemd/system/linked.service linked linked",
		"other-name.service": "/etc/systemd/system/other-name.service alias ",
		"masked.service":     "/etc/systemd/system/masked.service masked ",
		"static.timer":       "/lib/systemd/system/static.timer static ",
	} {
		s := itemByKey(items, key).GetService()
		if got := s.GetPath() + " " + s.GetUnitFileState() + " " + s.GetDescription(); got != want {
			t.Errorf("%s: %q, want %q", key, got, want)
		}
	}
	for _, it := range items {
		if !reportedUnitType(it.GetKey()) {
			t.Errorf("unexpected unit type: %s", it.GetKey())
		}
	}
}

// TestSystemdMatchesSystemctl compares the service units of this machine
// with systemctl's view of its root.
func TestSystemdMatchesSystemctl(t *testing.T) {
	if _, err := os.Stat("/usr/lib/systemd/system"); err != nil {
		t.Skip("no systemd units on this machine")
	}
	want := systemctlStates(t, "/")
	got := collectUnits(t, "/")
	diffSets(t, "systemctl list-unit-files --root=/", want, stateLines(got))
	t.Logf("%d units match systemctl", len(want))
}

func TestSystemdAbsent(t *testing.T) {
	items, err := systemdCollector{}.Collect(context.Background(), HostFS{Root: t.TempDir()})
	if err != nil || len(items) != 0 {
		t.Errorf("Collect = %v, %v; want nothing", items, err)
	}
}

func TestParseUnitFile(t *testing.T) {
	const src = `# comment
[Unit]
Description=first
Description=My \
  service
; another comment
[Install]
WantedBy=a.target "b.target"
WantedBy=
WantedBy=c.target
RequiredBy=d.target
Alias=x.service
Also=y.service z.service
DefaultInstance=tty1
[X-Vendor]
WantedBy=ignored.target
noequals
`
	var u unitFile
	if err := parseUnitFile(strings.NewReader(src), &u, "foo@.service"); err != nil {
		t.Fatal(err)
	}
	got := fmt.Sprintf("%q %q %q %q %q %q", u.description, u.wantedBy, u.requiredBy, u.aliases, u.also, u.defaultInstance)
	want := `"My    service" ["c.target"] ["d.target"] ["x.service"] ["y.service" "z.service"] "tty1"`
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	// DefaultInstance applies to templates only, Alias= not to mounts.
	u = unitFile{}
	if err := parseUnitFile(strings.NewReader("[Install]\nDefaultInstance=a\nAlias=b.mount\n"), &u, "home.mount"); err != nil {
		t.Fatal(err)
	}
	if u.defaultInstance != "" || len(u.aliases) != 0 || u.hasRules() {
		t.Errorf("mount unit: %+v", u)
	}
}

func TestUnitNames(t *testing.T) {
	for name, kind := range map[string]int{
		"a.service":                           namePlain,
		"a@.service":                          nameTemplate,
		"a@b.service":                         nameInstance,
		"a@b@c.socket":                        nameInstance,
		"dev-sda1.device":                     namePlain,
		"x\\x2dy.mount":                       namePlain,
		"@a.service":                          0,
		"a.wants":                             0,
		"a service.service":                   0,
		".service":                            0,
		"a":                                   0,
		strings.Repeat("a", 250) + ".service": 0,
	} {
		if got := unitNameKind(name); got != kind {
			t.Errorf("unitNameKind(%q) = %d, want %d", name, got, kind)
		}
	}
	if tmpl, _ := unitTemplate("getty@tty1.service"); tmpl != "getty@.service" {
		t.Errorf("template %q", tmpl)
	}
	if i := unitInstance("getty@tty1.service"); i != "tty1" {
		t.Errorf("instance %q", i)
	}
	if n, _ := unitReplaceInstance("getty@.service", "tty2"); n != "getty@tty2.service" {
		t.Errorf("replace %q", n)
	}
	for src, ok := range map[[2]string]bool{
		{"a.service", "b.service"}:     true,
		{"a.service", "a.service"}:     false,
		{"a@x.service", "b@.service"}:  true,
		{"a@x.service", "b@x.service"}: true,
		{"a@x.service", "b@y.service"}: false,
		{"a@.service", "b.service"}:    false,
		{"a.service", "b.socket"}:      false,
		{"a.mount", "b.mount"}:         false,
	} {
		if err := validateAlias(src[0], src[1]); (err == nil) != ok {
			t.Errorf("validateAlias(%q, %q) = %v", src[0], src[1], err)
		}
	}
}

func FuzzParseUnitFile(f *testing.F) {
	f.Add("[Unit]\nDescription=x\n[Install]\nWantedBy=a.target\nAlias=b.service\n")
	f.Add("[Install]\nWantedBy=\"a b\" 'c'\\\n d\\")
	f.Add("[\n]\n[Install\nAlso=\x00\n")
	f.Fuzz(func(t *testing.T, s string) {
		var u unitFile
		if err := parseUnitFile(strings.NewReader(s), &u, "fuzz@.service"); err != nil {
			return
		}
		for _, l := range [][]string{u.aliases, u.wantedBy, u.requiredBy, u.upheldBy, u.also} {
			for _, w := range l {
				if w == "" {
					t.Fatal("empty word in a list")
				}
			}
		}
	})
}
