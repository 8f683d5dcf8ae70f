package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// liveBound is how long a change may take to reach the server in these
// tests. The target is well under a second; the bound is generous because
// this checks that changes arrive, not how fast: timing belongs in
// benchmarks, not in tests run on loaded machines.
const liveBound = 10 * time.Second

// Live changes: with the periodic scan an hour away, only the watcher can
// deliver a change. A watched file rewritten in place and by rename, a file
// in a directory created after the agent started, and a package added to
// the dpkg database all reach the server's API.
func TestLiveChanges(t *testing.T) {
	s := newServer(t)
	root := newFakeRoot(t)
	a := enrollAgent(t, s, root.dir, "")
	// Watch a directory that does not exist yet, too.
	cfg, err := os.ReadFile(a.config)
	if err != nil {
		t.Fatal(err)
	}
	watch := regexp.MustCompile(`(?m)^watch_paths: .*$`)
	cfg = watch.ReplaceAll(cfg, []byte("watch_paths: [/etc/app/*.conf, /etc/passwd, /opt/later/conf.d/*.conf]"))
	if err := os.WriteFile(a.config, cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	agent := start(t, "qinfra-agent", "run", "--config", a.config, "--log-level", "debug", "--scan-interval", "1h")
	waitInSync(t, s, a, 20*time.Second)

	const changes = 50
	var lat []time.Duration
	for i := range changes {
		content := fmt.Sprintf("listen = %d\n", 10000+i)
		begin := time.Now()
		if i%2 == 0 {
			root.write("etc/app/main.conf", content)
		} else if err := os.WriteFile(root.path("etc/app/main.conf"), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		waitFileSHA(t, s, a.hostID, "/etc/app/main.conf", content)
		lat = append(lat, time.Since(begin))
		// Isolated changes: the agent bounds rescans to five a second,
		// which back-to-back changes would measure instead.
		time.Sleep(150 * time.Millisecond)
	}
	slices.Sort(lat)
	t.Logf("watched file change → visible in the server API, %d changes (rename and in place alternating): p50 %s, p99 %s, max %s",
		changes, lat[changes/2-1].Round(time.Millisecond), lat[(changes*99+99)/100-1].Round(time.Millisecond), lat[changes-1].Round(time.Millisecond))

	// A directory created after the agent started.
	begin := time.Now()
	root.write("opt/later/conf.d/x.conf", "x = 1\n")
	waitFileSHA(t, s, a.hostID, "/opt/later/conf.d/x.conf", "x = 1\n")
	t.Logf("file in a directory created later: %s", time.Since(begin).Round(time.Millisecond))

	// A package installed: dpkg's status file replaced by rename.
	begin = time.Now()
	root.addPackage("curl", "7.88.1-10+deb12u5", "amd64", "")
	waitFor(t, liveBound, "the new package on the server", func() bool {
		_, ok := s.serverItems(a.hostID)["package/dpkg:curl:amd64"]
		return ok
	})
	t.Logf("package added to the dpkg status: %s", time.Since(begin).Round(time.Millisecond))

	waitInSync(t, s, a, liveBound)
	if n := len(regexp.MustCompile(`"inventory spooled".* full=true`).FindAllString(agent.output(), -1)); n != 1 {
		t.Errorf("%d full inventories; every change must go as a delta", n)
	}
	if !strings.Contains(agent.output(), "collectors=[dpkg]") {
		t.Errorf("the package change did not rescan dpkg alone:\n%s", agent.output())
	}
}

// waitFileSHA waits until the server holds the file item at path with the
// SHA-256 of content.
func waitFileSHA(t *testing.T, s *server, hostID, path, content string) {
	t.Helper()
	sum := sha256.Sum256([]byte(content))
	want := hex.EncodeToString(sum[:])
	var got string
	deadline := time.Now().Add(liveBound)
	for {
		if got = fileSHA(s, hostID, path); got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s the server has %s with sha256 %q, want %s", liveBound, path, got, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// fileSHA returns the sha256 the server holds for the file item at path.
func fileSHA(s *server, hostID, path string) string {
	s.t.Helper()
	var r struct {
		Items []struct {
			Key  string `json:"key"`
			File struct {
				Sha256 string `json:"sha256"`
			} `json:"file"`
		} `json:"items"`
	}
	if code := s.apiJSON("GET", "/api/v1/hosts/"+hostID+"/inventory?kind=file&q="+url.QueryEscape(path), nil, &r); code != 200 {
		s.t.Fatalf("inventory: %d", code)
	}
	for _, it := range r.Items {
		if it.Key == path {
			return it.File.Sha256
		}
	}
	return ""
}
