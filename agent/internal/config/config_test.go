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
