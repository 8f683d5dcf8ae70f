package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestLoadOverridesDefaults(t *testing.T) {
	p := filepath.Join(t.TempDir(), "agent.yaml")
	if err := os.WriteFile(p, []byte("servers: [a:1, b:2]\nscan_interval: 15s\nallow_scripts: true\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := Default()
	if err := c.Load(p); err != nil {
		t.Fatal(err)
	}
	if len(c.Servers) != 2 || c.ScanInterval != 15*time.Second || !c.AllowScripts || c.StateDir != "/var/lib/qinfra-agent" {
		t.Fatalf("unexpected config %+v", c)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestLoadRejectsUnknownKeys(t *testing.T) {
	p := filepath.Join(t.TempDir(), "agent.yaml")
	if err := os.WriteFile(p, []byte("allow_script: true\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := Default()
	err := c.Load(p)
	if err == nil || !strings.Contains(err.Error(), "allow_script") {
		t.Fatalf("want an error naming the unknown key, got %v", err)
	}
}

func TestValidate(t *testing.T) {
	c := Default()
	c.ScanInterval = time.Millisecond
	if err := c.Validate(); err == nil {
		t.Fatal("a 1ms scan interval must be refused")
	}
	c = Default()
	c.LogLevel = "loud"
	if err := c.Validate(); err == nil {
		t.Fatal("an unknown log level must be refused")
	}
}

func FuzzLoad(f *testing.F) {
	f.Add([]byte("servers: [a:1]\n"))
	f.Add([]byte("scan_interval: 1h\nwatch_paths: [/etc/*]\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		p := filepath.Join(t.TempDir(), "c.yaml")
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		c := Default()
		if err := c.Load(p); err == nil {
			_ = c.Validate()
		}
	})
}

func TestPlugins(t *testing.T) {
	p := filepath.Join(t.TempDir(), "agent.yaml")
	yml := "plugins:\n  - path: /usr/lib/qinfra/plugins/sysctl\n    timeout: 3s\n  - path: /opt/x/Check.exe\n    name: check\n"
	if err := os.WriteFile(p, []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}
	c := Default()
	if err := c.Load(p); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if len(c.Plugins) != 2 || c.Plugins[0].PluginName() != "sysctl" || c.Plugins[0].PluginTimeout() != 3*time.Second ||
		c.Plugins[1].PluginName() != "check" || c.Plugins[1].PluginTimeout() != DefaultPluginTimeout {
		t.Fatalf("plugins %+v", c.Plugins)
	}

	// Unknown keys inside a plugin are refused too.
	if err := os.WriteFile(p, []byte("plugins:\n  - path: /x\n    timout: 3s\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c = Default()
	if err := c.Load(p); err == nil || !strings.Contains(err.Error(), "timout") {
		t.Errorf("unknown plugin key: %v", err)
	}

	for name, plugins := range map[string][]Plugin{
		"relative path": {{Path: "plugins/sysctl"}},
		"bad name":      {{Path: "/opt/My Plugin"}},
		"duplicate":     {{Path: "/a/sysctl"}, {Path: "/b/sysctl"}},
		"negative":      {{Path: "/a/sysctl", Timeout: -time.Second}},
	} {
		c := Default()
		c.Plugins = plugins
		if err := c.Validate(); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

// TestAcceptBaselinePaths: on unless the file turns it off.
func TestAcceptBaselinePaths(t *testing.T) {
	if !Default().AcceptBaselinePaths {
		t.Fatal("accept_baseline_paths must default to true")
	}
	p := filepath.Join(t.TempDir(), "agent.yaml")
	if err := os.WriteFile(p, []byte("scan_interval: 30s\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := Default()
	if err := c.Load(p); err != nil || !c.AcceptBaselinePaths {
		t.Fatalf("a file without the key: %v, %v", c.AcceptBaselinePaths, err)
	}
	if err := os.WriteFile(p, []byte("accept_baseline_paths: false\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := c.Load(p); err != nil || c.AcceptBaselinePaths {
		t.Fatalf("accept_baseline_paths: false: %v, %v", c.AcceptBaselinePaths, err)
	}
}
