package api_test

import (
	"net/http"
	"slices"
	"strings"
	"testing"
)

// TestConfigChangedOnBaselineAndLabelChanges: agents are told to refresh
// the files they hash for their baselines when a baseline's file paths or
// selector change, when a baseline with files is deleted, and when a
// host's labels change; not for changes that cannot alter those files.
func TestConfigChangedOnBaselineAndLabelChanges(t *testing.T) {
	f := newFixture(t)
	f.addHost("h-a", "a", map[string]string{"role": "web"})
	sha := strings.Repeat("ab", 32)
	apply := func(doc string, want int) {
		t.Helper()
		f.doCT("POST", "/api/v1/baselines", f.operator, "application/yaml", doc).mustStatus(t, want)
	}
	step := func(what string, want ...string) {
		t.Helper()
		got := f.live.configCalls()
		f.live.mu.Lock()
		f.live.configs = nil
		f.live.mu.Unlock()
		if !slices.Equal(got, want) {
			t.Fatalf("%s: ConfigChanged calls %q, want %q", what, got, want)
		}
	}

	apply("name: pkgs\npackages: [{name: openssl, constraint: present}]\n", http.StatusCreated)
	step("a baseline without files")

	files := "name: web\nselector: {role: web}\nfiles: [{path: /etc/app/extra.conf, sha256: " + sha + "}]\n"
	apply(files, http.StatusCreated)
	step("a new baseline with files", "*")

	apply(files, http.StatusOK)
	step("the same document again")

	apply(strings.Replace(files, sha, strings.Repeat("cd", 32), 1), http.StatusCreated)
	step("a new hash for the same file")

	apply(strings.Replace(files, "role: web", "role: db", 1), http.StatusCreated)
	step("a new selector", "*")

	apply(strings.Replace(files, "/etc/app/extra.conf", "/etc/app/other.conf", 1), http.StatusCreated)
	step("another file", "*")

	f.do("POST", "/api/v1/hosts/h-a/labels", f.operator, map[string]any{"set": map[string]string{"role": "db"}}).mustStatus(t, http.StatusOK)
	step("a label change", "h-a")

	f.do("DELETE", "/api/v1/baselines/pkgs", f.operator, nil).mustStatus(t, http.StatusNoContent)
	step("deleting a baseline without files")
	f.do("DELETE", "/api/v1/baselines/web", f.operator, nil).mustStatus(t, http.StatusNoContent)
	step("deleting a baseline with files", "*")

	// Every stored version and deletion, and only those, tells the other
	// replicas to drop their cached baselines: 5 versions, 2 deletions.
	f.live.mu.Lock()
	n := f.live.baselineChanges
	f.live.mu.Unlock()
	if n != 7 {
		t.Fatalf("BaselinesChanged calls = %d, want 7", n)
	}
}
