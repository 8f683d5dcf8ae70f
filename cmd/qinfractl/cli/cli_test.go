package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// These tests need no server; the CLI against the real API handler and
// store is tested in server/internal/api (qinfractl_test.go), the only
// place Go's internal rule lets import both.

type result struct {
	stdout, stderr string
	code           int
}

func runWith(env map[string]string, args ...string) result {
	var out, errb bytes.Buffer
	code := Run(args, &out, &errb, func(k string) string { return env[k] })
	return result{out.String(), errb.String(), code}
}

func (r result) fails(t *testing.T, stderrHas string) {
	t.Helper()
	if r.code != 1 || !strings.Contains(r.stderr, stderrHas) {
		t.Fatalf("exit %d, want 1 with %q; stderr:\n%s", r.code, stderrHas, r.stderr)
	}
}

func TestUsage(t *testing.T) {
	r := runWith(nil)
	if r.code != 1 || !strings.Contains(r.stderr, "Usage: qinfractl") {
		t.Errorf("no args: %+v", r)
	}
	for _, help := range [][]string{{"-h"}, {"--help"}, {"help"}} {
		r = runWith(nil, help...)
		if r.code != 0 || !strings.Contains(r.stderr, "Commands:") {
			t.Errorf("%v: %+v", help, r)
		}
	}
	runWith(nil, "frobnicate").fails(t, `unknown command "frobnicate"`)
	runWith(nil, "host").fails(t, "host needs one of: get, inventory, changes, revoke, label")
	runWith(nil, "host", "frob").fails(t, `unknown command "host frob"`)
	r = runWith(nil, "host", "-h")
	if r.code != 0 || !strings.Contains(r.stderr, "qinfractl host <get|inventory|changes|revoke|label>") {
		t.Errorf("host -h: %+v", r)
	}
	r = runWith(nil, "host", "inventory", "-h")
	if r.code != 0 || !strings.Contains(r.stderr, "--kind KIND") || !strings.Contains(r.stderr, "-server") {
		t.Errorf("host inventory -h: %+v", r)
	}
	r = runWith(nil, "hosts", "list", "--nope")
	if r.code != 1 || strings.Count(r.stderr, "flag provided but not defined") != 1 {
		t.Errorf("bad flag: %+v", r)
	}
	runWith(nil, "-o", "yaml", "hosts", "list").fails(t, "-o must be table or json")
	runWith(nil, "audit", "--limit", "0").fails(t, "--limit must be between")
	runWith(nil, "token", "create", "--label", "novalue").fails(t, "want key=value")
	runWith(nil, "host", "get").fails(t, "exactly one host ID")
	runWith(nil, "host", "revoke", "..").fails(t, `".." is not a host ID`)
	runWith(nil, "host", "label", ".", "a=b").fails(t, `"." is not a host ID`)

	// Help never prints a token taken from the environment or a flag.
	r = runWith(map[string]string{"QINFRA_TOKEN": "qat_secret_value"}, "--token", "qat_other", "hosts", "list", "-h")
	if strings.Contains(r.stderr, "qat_secret_value") || strings.Contains(r.stderr, "qat_other") {
		t.Error("help output leaks the token")
	}
}

func TestClientSettings(t *testing.T) {
	runWith(nil, "hosts", "list").fails(t, "no API token: pass --token or set QINFRA_TOKEN")
	env := map[string]string{"QINFRA_TOKEN": "qat_x_y"}
	runWith(env, "hosts", "list", "--server", "http://127.0.0.1:8443").fails(t, "must be an https:// URL")
	runWith(env, "hosts", "list", "--server", "::nope").fails(t, "is not a URL")
	runWith(env, "hosts", "list", "--ca-file", "/nonexistent/ca.pem").fails(t, "read CA file")
	notPEM := filepath.Join(t.TempDir(), "x.pem")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	runWith(env, "hosts", "list", "--ca-file", notPEM).fails(t, "holds no PEM certificate")
	// QINFRA_SERVER applies, and a refused connection is an error, not a hang.
	env["QINFRA_SERVER"] = "https://127.0.0.1:1"
	runWith(env, "hosts", "list").fails(t, "127.0.0.1:1")
}

func TestVersionOffline(t *testing.T) {
	r := runWith(nil, "version")
	if r.code != 0 || strings.TrimSpace(r.stdout) != "qinfractl dev" {
		t.Errorf("version: %+v", r)
	}
}

func TestParseInterspersed(t *testing.T) {
	c := &cli{stderr: &bytes.Buffer{}, g: globals{output: "table"}}
	fs := c.flagSet("x", "")
	kind := fs.String("kind", "", "")
	pos, err := parse(fs, []string{"a", "--kind", "k", "b", "-o", "json", "--", "-c", "--kind"})
	if err != nil {
		t.Fatal(err)
	}
	if *kind != "k" || c.g.output != "json" || strings.Join(pos, " ") != "a b -c --kind" {
		t.Errorf("kind %q output %q pos %q", *kind, c.g.output, pos)
	}
}

func TestRelTime(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		t    time.Time
		want string
	}{
		{time.Time{}, "never"},
		{now, "just now"},
		{now.Add(-3 * time.Second), "3s ago"},
		{now.Add(-90 * time.Second), "1m ago"},
		{now.Add(-5 * time.Hour), "5h ago"},
		{now.Add(-47 * time.Hour), "47h ago"},
		{now.Add(-72 * time.Hour), "3d ago"},
		{now.Add(59*time.Minute + 59*time.Second), "in 59m"},
	} {
		if got := relTime(tc.t, now); got != tc.want {
			t.Errorf("relTime(%v) = %q, want %q", now.Sub(tc.t), got, tc.want)
		}
	}
}

func TestItemDetail(t *testing.T) {
	var it item
	if it.detail() != "-" {
		t.Errorf("empty item detail %q", it.detail())
	}
	it.File = &struct {
		Type   string `json:"type"`
		Sha256 string `json:"sha256"`
		Mode   uint32 `json:"mode"`
		Owner  string `json:"owner"`
		Group  string `json:"group"`
		Error  string `json:"error"`
	}{Type: "missing"}
	if it.detail() != "missing" {
		t.Errorf("missing file detail %q", it.detail())
	}
	it.File.Error = "permission denied"
	if it.detail() != "error: permission denied" {
		t.Errorf("unreadable file detail %q", it.detail())
	}
}

func TestClean(t *testing.T) {
	if got := clean("a\x1b[2Jb\tc\u00e9"); got != "a\uFFFD[2Jb\uFFFDc\u00e9" {
		t.Errorf("clean = %q", got)
	}
}
