package collect

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/quantumlayer/qinfra/pkg/inventory"
	commonv1 "github.com/quantumlayer/qinfra/proto/gen/qinfra/common/v1"
	"google.golang.org/protobuf/proto"
)

// writeFile creates the host file p under root with its directories.
func writeFile(t testing.TB, root, p, content string) {
	t.Helper()
	full := filepath.Join(root, p)
	if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// symlink creates the host symlink p → target under root.
func symlink(t testing.TB, root, target, p string) {
	t.Helper()
	full := filepath.Join(root, p)
	if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, full); err != nil {
		t.Fatal(err)
	}
}

// mkdir creates the host directory p under root.
func mkdir(t testing.TB, root, p string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(root, p), 0o755); err != nil {
		t.Fatal(err)
	}
}

// command runs a tool the test compares against, skipping the test where
// the tool is not installed.
func command(t testing.TB, name string, args ...string) string {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		t.Skipf("%s not installed", name)
	}
	var stderr bytes.Buffer
	cmd := exec.Command(name, args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, stderr.String())
	}
	return string(out)
}

// lines returns the non-empty lines of s, sorted.
func lines(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if l != "" {
			out = append(out, l)
		}
	}
	slices.Sort(out)
	return out
}

// diffSets reports the lines only in want and only in got.
func diffSets(t testing.TB, what string, want, got []string) {
	t.Helper()
	w := map[string]bool{}
	for _, l := range want {
		w[l] = true
	}
	g := map[string]bool{}
	for _, l := range got {
		g[l] = true
	}
	var missing, extra []string
	for _, l := range want {
		if !g[l] {
			missing = append(missing, l)
		}
	}
	for _, l := range got {
		if !w[l] {
			extra = append(extra, l)
		}
	}
	if len(missing) > 0 || len(extra) > 0 || len(want) != len(got) {
		t.Errorf("%s: %d expected, %d collected\nmissing:\n  %s\nunexpected:\n  %s", what,
			len(want), len(got), strings.Join(missing, "\n  "), strings.Join(extra, "\n  "))
	}
}

// checkItems checks what every collector promises of its items: valid,
// sealed with the hash of their body, unique keys.
func checkItems(t testing.TB, items []*commonv1.Item) {
	t.Helper()
	seen := map[inventory.Ref]bool{}
	for _, it := range items {
		if err := inventory.Validate(it); err != nil {
			t.Errorf("invalid item: %v", err)
		}
		c := proto.Clone(it).(*commonv1.Item)
		if err := inventory.Seal(c); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(c.GetHash(), it.GetHash()) {
			t.Errorf("item %s/%s is not sealed with its body's hash", it.GetKind(), it.GetKey())
		}
		if seen[inventory.RefOf(it)] {
			t.Errorf("duplicate item %s", inventory.RefOf(it))
		}
		seen[inventory.RefOf(it)] = true
	}
}
