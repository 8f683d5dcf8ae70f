package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/quantumlayer/qinfra/pkg/inventory"
)

func TestCollectRoot(t *testing.T) {
	root := t.TempDir()
	for p, v := range map[string]string{
		"net/ipv4/ip_forward":       "1\n",
		"kernel/randomize_va_space": "2\n",
		"kernel/yama/ptrace_scope":  "1\n",
		"fs/suid_dumpable":          "0\n",
	} {
		full := filepath.Join(root, "proc/sys", p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	items, err := sysctlCollector{}.Collect(context.Background(), root)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, it := range items {
		if err := inventory.Seal(it); err != nil {
			t.Fatal(err)
		}
		if err := inventory.Validate(it); err != nil {
			t.Error(err)
		}
		got[it.GetKey()] = it.GetExtension().GetAttributes()["value"]
	}
	want := map[string]string{
		"sysctl:sysctl:net.ipv4.ip_forward":       "1",
		"sysctl:sysctl:kernel.randomize_va_space": "2",
		"sysctl:sysctl:kernel.yama.ptrace_scope":  "1",
		"sysctl:sysctl:fs.suid_dumpable":          "0",
	}
	if len(got) != len(want) {
		t.Errorf("got %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
}

// TestMatchesSysctl compares the plugin on this machine with sysctl(8).
func TestMatchesSysctl(t *testing.T) {
	sysctl, err := exec.LookPath("sysctl")
	if err != nil {
		t.Skip("sysctl not installed")
	}
	items, err := sysctlCollector{}.Collect(context.Background(), "/")
	if err != nil {
		t.Fatal(err)
	}
	if len(items) == 0 {
		t.Fatal("no parameters read from /proc/sys")
	}
	for _, it := range items {
		e := it.GetExtension()
		out, err := exec.Command(sysctl, "-n", e.GetKey()).Output()
		if err != nil {
			t.Errorf("sysctl -n %s: %v", e.GetKey(), err)
			continue
		}
		if want := strings.Join(strings.Fields(string(out)), " "); e.GetAttributes()["value"] != want {
			t.Errorf("%s = %q, sysctl says %q", e.GetKey(), e.GetAttributes()["value"], want)
		}
	}
	t.Logf("%d parameters match sysctl", len(items))
}
