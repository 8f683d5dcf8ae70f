package e2e

import (
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

// removePackage takes a package out of the fake dpkg database.
func (r *fakeRoot) removePackage(name string) {
	r.pkgs = slices.DeleteFunc(r.pkgs, func(st string) bool { return strings.HasPrefix(st, "Package: "+name+"\n") })
	r.write("var/lib/dpkg/status", strings.Join(r.pkgs, "\n"))
}

type driftLine struct {
	ID         string `json:"id"`
	Baseline   string `json:"baseline"`
	Version    int    `json:"baseline_version"`
	Type       string `json:"drift_type"`
	Severity   string `json:"severity"`
	Action     string `json:"action"`
	Rule       string `json:"rule"`
	Key        string `json:"key"`
	Expected   string `json:"expected"`
	Actual     string `json:"actual"`
	Status     string `json:"status"`
	ResolvedAt string `json:"resolved_at"`
}

func (s *server) hostDrift(hostID string, all bool) []driftLine {
	s.t.Helper()
	var r struct {
		Drift []driftLine `json:"drift"`
	}
	path := "/api/v1/hosts/" + hostID + "/drift"
	if all {
		path += "?all=true"
	}
	if code := s.apiJSON("GET", path, nil, &r); code != 200 {
		s.t.Fatalf("GET %s: %d", path, code)
	}
	return r.Drift
}

// Capture a baseline from a host under a test host root, forbid a
// package, then change the host four ways: each drift appears through the
// API with expected and actual (adding the user also changes the watched
// /etc/passwd), and each resolves when reverted.
func TestDriftLifecycle(t *testing.T) {
	s := newServer(t)
	root := newFakeRoot(t)
	a := enrollAgent(t, s, root.dir, "")
	a.run(t)
	waitInSync(t, s, a, 20*time.Second)

	var put struct {
		Created  bool `json:"created"`
		Baseline struct {
			Name     string `json:"name"`
			Version  int    `json:"version"`
			Packages []map[string]any
		} `json:"baseline"`
	}
	if code := s.apiJSON("POST", "/api/v1/baselines/capture", map[string]any{
		"host_id": a.hostID, "name": "debian-12-golden", "selector": map[string]string{"env": "e2e"}, "image": "debian-12-v1",
	}, &put); code != 201 || put.Baseline.Version != 1 || len(put.Baseline.Packages) != 3 {
		t.Fatalf("capture: %d %+v", code, put)
	}
	// Version 2 forbids telnetd: a new immutable version.
	var doc map[string]any
	if code := s.apiJSON("GET", "/api/v1/baselines/debian-12-golden", nil, &doc); code != 200 {
		t.Fatalf("get baseline: %d", code)
	}
	delete(doc, "version")
	delete(doc, "created_at")
	delete(doc, "created_by")
	doc["packages"] = append(doc["packages"].([]any), map[string]any{"name": "telnetd", "constraint": "forbidden"})
	if code := s.apiJSON("POST", "/api/v1/baselines", doc, &put); code != 201 || put.Baseline.Version != 2 {
		t.Fatalf("apply v2: %d %+v", code, put)
	}
	if d := s.hostDrift(a.hostID, false); len(d) != 0 {
		t.Fatalf("reference host drifts from its own capture: %+v", d)
	}

	passwd, _ := os.ReadFile(root.path("etc/passwd"))
	root.write("etc/app/main.conf", "listen = 8080\n")
	root.addUser("mallory", 1001)
	root.symlink("/lib/systemd/system/cron.service", "etc/systemd/system/multi-user.target.wants/cron.service")
	root.addPackage("telnetd", "0.17+2.4-2", "amd64", "inetutils")

	want := map[string]string{ // rule key → drift type
		"file.sha256 /etc/app/main.conf": "configuration",
		"file.sha256 /etc/passwd":        "configuration", // watched too
		"user.allowed mallory":           "users",
		"service.state cron.service":     "services",
		"package.forbidden telnetd":      "version",
	}
	var open []driftLine
	waitFor(t, 30*time.Second, "five drifts", func() bool {
		open = s.hostDrift(a.hostID, false)
		if len(open) > len(want) {
			t.Fatalf("too much drift: %+v", open)
		}
		return len(open) == len(want)
	})
	sev := map[string]string{"configuration": "medium", "users": "critical", "services": "critical", "version": "high"}
	var userDrift string
	for _, d := range open {
		typ, ok := want[d.Rule+" "+d.Key]
		if !ok || d.Type != typ || d.Severity != sev[typ] || d.Expected == "" || d.Actual == "" || d.Status != "open" || d.Baseline != "debian-12-golden" {
			t.Errorf("unexpected drift %+v", d)
		}
		if d.Rule == "user.allowed" {
			userDrift = d.ID
		}
		t.Logf("drift: %s %s %s: expected %q, actual %q (%s/%s)", d.Type, d.Rule, d.Key, d.Expected, d.Actual, d.Severity, d.Action)
	}

	// The product notes' detect answer.
	var det struct {
		Total   int `json:"total_nodes"`
		Drifted int `json:"drifted_nodes"`
		Details []struct {
			NodeID, DriftType, Severity, Current, Expected, ExpectedImage string
		} `json:"details"`
	}
	if code := s.apiJSON("POST", "/api/v1/drift/detect", map[string]any{"selector": map[string]string{"env": "e2e"}}, &det); code != 200 ||
		det.Total != 1 || det.Drifted != 1 || len(det.Details) != len(want) {
		t.Fatalf("detect: %d %+v", code, det)
	}
	// Fleet summary.
	var sum struct {
		Drifted int                       `json:"drifted_hosts"`
		ByType  map[string]int            `json:"by_type"`
		ByEnv   map[string]map[string]any `json:"by_environment"`
	}
	if code := s.apiJSON("GET", "/api/v1/drift", nil, &sum); code != 200 || sum.Drifted != 1 || sum.ByType["users"] != 1 || sum.ByEnv["e2e"]["drift_percentage"] != 100.0 {
		t.Fatalf("summary: %d %+v", code, sum)
	}

	// Accept the user drift for an hour: shown accepted, audited.
	var acc driftLine
	if code := s.apiJSON("POST", "/api/v1/drift/"+userDrift+"/accept", map[string]any{"justification": "contractor, ticket OPS-1", "ttl": "1h"}, &acc); code != 200 || acc.Status != "accepted" {
		t.Fatalf("accept: %d %+v", code, acc)
	}
	var audit struct {
		Entries []struct{ Action string } `json:"entries"`
	}
	s.apiJSON("GET", "/api/v1/audit", nil, &audit)
	var actions []string
	for _, e := range audit.Entries {
		actions = append(actions, e.Action)
	}
	for _, act := range []string{"baseline.capture", "baseline.apply", "drift.accept"} {
		if !slices.Contains(actions, act) {
			t.Errorf("audit log lacks %s: %v", act, actions)
		}
	}

	// Revert everything: every drift resolves.
	root.write("etc/app/main.conf", "listen = 80\n")
	root.write("etc/passwd", string(passwd))
	if err := os.Remove(root.path("etc/systemd/system/multi-user.target.wants/cron.service")); err != nil {
		t.Fatal(err)
	}
	root.removePackage("telnetd")
	waitFor(t, 30*time.Second, "drift resolved", func() bool { return len(s.hostDrift(a.hostID, false)) == 0 })
	hist := s.hostDrift(a.hostID, true)
	if len(hist) != len(want) {
		t.Fatalf("history: %+v", hist)
	}
	for _, d := range hist {
		if d.Status != "resolved" || d.ResolvedAt == "" {
			t.Errorf("not resolved: %+v", d)
		}
	}
}
