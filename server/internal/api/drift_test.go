package api_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/quantumlayer/qinfra/pkg/baseline"
	"github.com/quantumlayer/qinfra/server/internal/store"
)

// Baselines and drift through qinfractl: apply a YAML baseline by hand,
// see the drift of the hosts it selects, accept one, re-label a host out of
// the selector, delete the baseline.
func TestCLIBaselineAndDrift(t *testing.T) {
	e := newCLIEnv(t)
	e.addHost("h-web", "web-1", map[string]string{"role": "web", "env": "prod"}, time.Now())
	e.addInventory("h-web", cliSample())
	e.addHost("h-db", "db-1", map[string]string{"role": "db", "env": "prod"}, time.Now())
	e.addInventory("h-db", cliSample())

	doc := `name: web
selector: {role: web}
metadata: {image: debian-12-web-v3}
packages:
  - {name: openssl, constraint: minimum, version: 3.0.13-1~deb12u1}
  - {name: telnetd, constraint: forbidden}
files:
  - {path: /etc/ssh/sshd_config, mode: "0600"}
  - {path: /etc/app/unwatched.conf, owner: root}
services:
  - {name: ssh, state: enabled}
`
	f := filepath.Join(t.TempDir(), "web.yaml")
	if err := os.WriteFile(f, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	e.run(e.viewer, "baseline", "apply", "-f", f).fails(t, "")
	if out := e.run(e.operator, "baseline", "apply", "-f", f).ok(t).stdout; !strings.Contains(out, "baseline web version 1 stored") {
		t.Fatalf("apply: %s", out)
	}
	if out := e.run(e.operator, "baseline", "apply", "-f", f).ok(t).stdout; !strings.Contains(out, "unchanged (version 1)") {
		t.Fatalf("re-apply: %s", out)
	}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte("name: web\npackages: [{name: a, constraint: present, verison: 1}]\n"), 0o600)
	e.run(e.operator, "baseline", "apply", "-f", bad).fails(t, "verison")

	// The web host drifts (openssl too old, sshd_config 0644); db is not
	// selected. The file its agent does not report is not drift but
	// listed as not checked.
	var hd struct {
		Drift []struct {
			ID, Rule, Key, Expected, Actual, Status, Severity string
			Type                                              string `json:"drift_type"`
		} `json:"drift"`
		Unverified []struct{ Baseline, Path string } `json:"unverified"`
	}
	if err := json.Unmarshal([]byte(e.run(e.viewer, "-o", "json", "drift", "host", "h-web").ok(t).stdout), &hd); err != nil {
		t.Fatal(err)
	}
	if len(hd.Drift) != 2 {
		t.Fatalf("web drift: %+v", hd.Drift)
	}
	if len(hd.Unverified) != 1 || hd.Unverified[0].Path != "/etc/app/unwatched.conf" || hd.Unverified[0].Baseline != "web" {
		t.Fatalf("unverified: %+v", hd.Unverified)
	}
	if out := e.run(e.viewer, "drift", "host", "h-web").ok(t).stdout; !regexp.MustCompile(`(?m)^Not checked: .*\n(BASELINE\s+PATH\n)web\s+/etc/app/unwatched\.conf$`).MatchString(out) {
		t.Fatalf("drift host does not list the unchecked file:\n%s", out)
	}
	var modeID string
	for _, d := range hd.Drift {
		switch d.Rule {
		case "package.minimum":
			if d.Expected != ">= 3.0.13-1~deb12u1" || d.Actual != "3.0.11-1~deb12u2" || d.Type != "version" || d.Severity != "high" {
				t.Errorf("openssl drift: %+v", d)
			}
		case "file.mode":
			modeID = d.ID
			if d.Expected != "0600" || d.Actual != "0644" || d.Type != "permissions" {
				t.Errorf("mode drift: %+v", d)
			}
		default:
			t.Errorf("unexpected drift %+v", d)
		}
	}
	if out := e.run(e.viewer, "drift", "host", "h-db").ok(t).stdout; strings.Count(out, "\n") != 1 {
		t.Fatalf("db drift: %s", out)
	}
	out := e.run(e.viewer, "drift").ok(t).stdout
	if !strings.Contains(out, "1 of 2 hosts drifted (50.00%); 2 open deviations, 0 accepted") || !strings.Contains(out, "prod") {
		t.Fatalf("summary:\n%s", out)
	}
	for _, re := range []string{`(?m)^\nBY TYPE\s+OPEN$`, `(?m)^\nBY SEVERITY\s+OPEN$`, `(?m)^\nENVIRONMENT\s+HOSTS\s+DRIFTED\s+DRIFT %$`, `(?m)^prod\s+2\s+1\s+50\.00$`} {
		if !regexp.MustCompile(re).MatchString(out) || strings.ContainsRune(out, '\uFFFD') {
			t.Fatalf("summary lacks %s (or holds a replacement character):\n%s", re, out)
		}
	}

	// Accept the mode drift.
	e.run(e.operator, "drift", "accept", modeID, "--justification", "legacy tooling").fails(t, "--ttl")
	e.run(e.operator, "drift", "accept", modeID, "--justification", "legacy tooling", "--ttl", "24h").ok(t)
	if out := e.run(e.viewer, "drift", "host", "h-web").ok(t).stdout; !strings.Contains(out, "accepted") {
		t.Fatalf("accepted drift not shown:\n%s", out)
	}
	if out := e.run(e.viewer, "drift").ok(t).stdout; !strings.Contains(out, "1 open deviations, 1 accepted") {
		t.Fatalf("summary after accept:\n%s", out)
	}

	// detect answers as the product notes do.
	var det struct {
		Total   int `json:"total_nodes"`
		Drifted int `json:"drifted_nodes"`
		Details []struct {
			NodeID        string `json:"node_id"`
			DriftType     string `json:"drift_type"`
			Current       string `json:"current"`
			Expected      string `json:"expected"`
			ExpectedImage string `json:"expected_image"`
		} `json:"details"`
	}
	if err := json.Unmarshal([]byte(e.run(e.operator, "drift", "detect", "--selector", "env=prod").ok(t).stdout), &det); err != nil {
		t.Fatal(err)
	}
	if det.Total != 2 || det.Drifted != 1 || len(det.Details) != 1 || det.Details[0].NodeID != "h-web" || det.Details[0].ExpectedImage != "debian-12-web-v3" {
		t.Fatalf("detect: %+v", det)
	}

	// Re-labelling the host out of the selector resolves its drift.
	e.run(e.operator, "host", "label", "h-web", "role=db").ok(t)
	if out := e.run(e.viewer, "drift", "host", "h-web").ok(t).stdout; strings.Count(out, "\n") != 1 {
		t.Fatalf("drift after relabel:\n%s", out)
	}
	if out := e.run(e.viewer, "drift", "host", "h-web", "--all").ok(t).stdout; strings.Count(out, "resolved") != 2 {
		t.Fatalf("history after relabel:\n%s", out)
	}

	if out := e.run(e.viewer, "baseline", "get", "web").ok(t).stdout; !strings.Contains(out, "version: 1") || !strings.Contains(out, "telnetd") {
		t.Fatalf("get:\n%s", out)
	}
	if out := e.run(e.viewer, "baseline", "list").ok(t).stdout; !strings.Contains(out, "web") {
		t.Fatalf("list:\n%s", out)
	}
	e.run(e.operator, "baseline", "delete", "web").ok(t)
	e.run(e.operator, "baseline", "delete", "web").fails(t, "not found")
	audit := e.run(e.admin, "audit").ok(t).stdout
	for _, a := range []string{"baseline.apply", "drift.accept", "baseline.delete"} {
		if !strings.Contains(audit, a) {
			t.Errorf("audit lacks %s:\n%s", a, audit)
		}
	}
}

// The drift summary counts in the store (CountDrift) unless asked for the
// list; both answer the same counts.
func TestDriftSummaryCounts(t *testing.T) {
	f := newFixture(t)
	f.addHost("h1", "web-1", map[string]string{"env": "prod"})
	f.addHost("h2", "web-2", map[string]string{"env": "prod"})
	f.addHost("h3", "db-1", map[string]string{"env": "dev"})
	dev := func(bl, key, sev string) baseline.Deviation {
		return baseline.Deviation{Baseline: bl, BaselineVersion: 1, Type: baseline.TypeVersion, Severity: sev, Action: "alert",
			Kind: "package", Key: key, Rule: baseline.RulePackageMinimum, Expected: ">= 2", Actual: "1"}
	}
	ctx := t.Context()
	if _, err := f.st.ReplaceHostDrift(ctx, testNow.Add(-time.Hour),
		store.HostDeviations{HostID: "h1", Deviations: []baseline.Deviation{dev("web", "openssl", "high"), dev("web", "curl", "low")}},
		store.HostDeviations{HostID: "h2", Deviations: []baseline.Deviation{dev("web", "openssl", "high")}},
		store.HostDeviations{HostID: "h3", Deviations: []baseline.Deviation{dev("db", "openssl", "critical")}},
	); err != nil {
		t.Fatal(err)
	}
	ds, err := f.st.ListDrift(ctx, store.DriftFilter{HostID: "h2"})
	if err != nil || len(ds) != 1 {
		t.Fatalf("ListDrift(h2) = %v, %v", ds, err)
	}
	if _, err := f.st.AcceptDrift(ctx, ds[0].ID, store.Acceptance{Justification: "j", Until: testNow.Add(time.Hour), By: "ops", At: testNow}); err != nil {
		t.Fatal(err)
	}
	type summary struct {
		Total      int            `json:"total_hosts"`
		Drifted    int            `json:"drifted_hosts"`
		Percentage float64        `json:"drift_percentage"`
		Open       int            `json:"open"`
		Accepted   int            `json:"accepted"`
		ByType     map[string]int `json:"by_type"`
		BySeverity map[string]int `json:"by_severity"`
		ByBaseline map[string]int `json:"by_baseline"`
		ByEnv      map[string]struct {
			Hosts, Drifted int
		} `json:"by_environment"`
		Drift []json.RawMessage `json:"drift"`
	}
	get := func(q string) summary {
		t.Helper()
		var s summary
		f.do("GET", "/api/v1/drift"+q, f.viewer, nil).mustStatus(t, 200).json(t, &s)
		return s
	}
	all := get("")
	if all.Total != 3 || all.Drifted != 2 || all.Open != 3 || all.Accepted != 1 || all.ByBaseline["web"] != 2 ||
		all.BySeverity["critical"] != 1 || all.ByEnv["prod"].Hosts != 2 || all.ByEnv["prod"].Drifted != 1 || all.Drift != nil {
		t.Fatalf("summary = %+v", all)
	}
	for _, q := range []string{"", "?baseline=web", "?severity=high", "?type=version&baseline=db", "?baseline=nope"} {
		counted := get(q)
		sep := "?"
		if q != "" {
			sep = "&"
		}
		listed := get(q + sep + "list=true")
		if len(listed.Drift) != listed.Open+listed.Accepted {
			t.Errorf("%s: %d drifts listed, %d counted", q, len(listed.Drift), listed.Open+listed.Accepted)
		}
		listed.Drift = nil
		if a, b := fmt.Sprintf("%+v", counted), fmt.Sprintf("%+v", listed); a != b {
			t.Errorf("%s: counted %s, listed %s", q, a, b)
		}
	}
}
