package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"regexp"
	"testing"
	"time"
)

// A baseline checks a file the agent's configuration does not watch: the
// server tells the agent, which hashes and watches it from then on, so the
// rule is checked rather than showing the file as absent. With the periodic
// scan an hour away, only the rescan on the configuration change and the
// live watch can deliver the file and its changes. A change shows as
// file.sha256 drift with the expected and actual hashes and resolves when
// reverted; deleting the baseline stops the agent reporting the file.
func TestBaselinePathsWatched(t *testing.T) {
	const (
		extra    = "/etc/app/extra.conf"
		original = "mode = strict\n"
		changed  = "mode = lax\n"
	)
	sha := func(s string) string { sum := sha256.Sum256([]byte(s)); return hex.EncodeToString(sum[:]) }

	s := newServer(t)
	root := newFakeRoot(t)
	root.write("etc/app/extra.conf", original)
	a := enrollAgent(t, s, root.dir, "")
	cfg, err := os.ReadFile(a.config)
	if err != nil {
		t.Fatal(err)
	}
	cfg = regexp.MustCompile(`(?m)^watch_paths: .*$`).ReplaceAll(cfg, []byte("watch_paths: [/etc/app/main.conf, /etc/passwd]"))
	if err := os.WriteFile(a.config, cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	start(t, "qinfra-agent", "run", "--config", a.config, "--log-level", "debug", "--scan-interval", "1h")
	waitInSync(t, s, a, 20*time.Second)
	if _, ok := s.serverItems(a.hostID)["file/"+extra]; ok {
		t.Fatalf("%s is reported before any baseline names it", extra)
	}

	baseline := map[string]any{
		"name":     "extra-conf",
		"selector": map[string]string{"env": "e2e"},
		"files":    []map[string]any{{"path": extra, "sha256": sha(original)}},
	}
	if code := s.apiJSON("POST", "/api/v1/baselines", baseline, nil); code != 201 {
		t.Fatalf("apply baseline: %d", code)
	}
	// The file arrives with its hash, and no drift stays open for it.
	waitFor(t, 15*time.Second, extra+" reported and not drifting", func() bool {
		return fileSHA(s, a.hostID, extra) == sha(original) && len(s.hostDrift(a.hostID, false)) == 0
	})
	// The baseline is checked when it is applied, before the agent has
	// rescanned: the file is then not reported at all, which is "not
	// checked", not "absent", so no drift was ever opened for it.
	for _, d := range s.hostDrift(a.hostID, true) {
		t.Errorf("drift on record before any change: %s %s expected %q actual %q, %s", d.Rule, d.Key, d.Expected, d.Actual, d.Status)
	}

	root.write("etc/app/extra.conf", changed)
	var open []driftLine
	waitFor(t, 15*time.Second, "file.sha256 drift", func() bool {
		open = s.hostDrift(a.hostID, false)
		return len(open) == 1
	})
	if d := open[0]; d.Rule != "file.sha256" || d.Key != extra || d.Expected != sha(original) || d.Actual != sha(changed) ||
		d.Type != "configuration" || d.Baseline != "extra-conf" || d.Status != "open" {
		t.Fatalf("unexpected drift %+v", d)
	}

	root.write("etc/app/extra.conf", original)
	waitFor(t, 15*time.Second, "drift resolved", func() bool { return len(s.hostDrift(a.hostID, false)) == 0 })
	resolved := false
	for _, d := range s.hostDrift(a.hostID, true) {
		if d.Rule == "file.sha256" && d.Key == extra {
			resolved = d.Status == "resolved" && d.ResolvedAt != ""
		}
	}
	if !resolved {
		t.Fatalf("the sha256 drift is not on record as resolved: %+v", s.hostDrift(a.hostID, true))
	}

	// Without the baseline the agent goes back to its own watch paths.
	if code := s.apiJSON("DELETE", "/api/v1/baselines/extra-conf", nil, nil); code != 204 {
		t.Fatalf("delete baseline: %d", code)
	}
	waitFor(t, 15*time.Second, extra+" no longer reported", func() bool {
		_, ok := s.serverItems(a.hostID)["file/"+extra]
		return !ok
	})
}

// Across replicas: the agent's stream is on replica 1, the operator works
// on replica 0. A baseline selecting role=web names a file the agent does
// not watch; labelling the host role=web on replica 0 reaches the agent
// over the cluster bus, and the file arrives without drift; removing the
// label makes the agent drop it again.
func TestBaselinePathsAcrossReplicas(t *testing.T) {
	const extra = "/etc/app/extra.conf"
	s, reps := startReplicas(t, 2)

	root := newFakeRoot(t)
	root.write("etc/app/extra.conf", "mode = strict\n")
	a := enrollAgent(t, s, root.dir, "servers: ["+reps[1].grpc+"]\n")
	cfg, err := os.ReadFile(a.config)
	if err != nil {
		t.Fatal(err)
	}
	cfg = regexp.MustCompile(`(?m)^watch_paths: .*$`).ReplaceAll(cfg, []byte("watch_paths: [/etc/app/main.conf]"))
	if err := os.WriteFile(a.config, cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	start(t, "qinfra-agent", "run", "--config", a.config, "--log-level", "debug", "--scan-interval", "1h")
	waitInSync(t, s, a, 30*time.Second)

	sum := sha256.Sum256([]byte("mode = strict\n"))
	baseline := map[string]any{
		"name":     "web-extra",
		"selector": map[string]string{"role": "web"},
		"files":    []map[string]any{{"path": extra, "sha256": hex.EncodeToString(sum[:])}},
	}
	if code := s.apiJSON("POST", "/api/v1/baselines", baseline, nil); code != 201 {
		t.Fatalf("apply baseline: %d", code)
	}
	// The baseline does not select the host: its agent is not asked for
	// the file (a push to it may be in flight: give it time to arrive).
	time.Sleep(time.Second)
	if _, ok := s.serverItems(a.hostID)["file/"+extra]; ok {
		t.Fatalf("%s reported for a baseline that does not select the host", extra)
	}

	label := func(body map[string]any) {
		t.Helper()
		if code := s.apiJSON("POST", "/api/v1/hosts/"+a.hostID+"/labels", body, nil); code != 200 {
			t.Fatalf("label host: %d", code)
		}
	}
	label(map[string]any{"set": map[string]string{"role": "web"}})
	waitFor(t, 15*time.Second, extra+" reported through replica 1 and not drifting", func() bool {
		return fileSHA(s, a.hostID, extra) == hex.EncodeToString(sum[:]) && len(s.hostDrift(a.hostID, false)) == 0
	})
	label(map[string]any{"remove": []string{"role"}})
	waitFor(t, 15*time.Second, extra+" no longer reported", func() bool {
		_, ok := s.serverItems(a.hostID)["file/"+extra]
		return !ok
	})
}
