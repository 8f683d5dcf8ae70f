// Package config is the agent's configuration: defaults, a YAML file with
// unknown keys rejected, then command-line flags, in that order of
// precedence.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/quantumlayer/qinfra/pkg/inventory"
	"gopkg.in/yaml.v3"
)

// Config is the agent's whole configuration.
type Config struct {
	// Servers are the gRPC addresses (host:port) of qinfra servers; the agent
	// uses one at a time and moves on when it fails.
	Servers []string `yaml:"servers"`
	// ServerName, when set, is the name checked in the server certificate
	// instead of the host part of the address.
	ServerName string `yaml:"server_name"`
	// StateDir holds the agent's key, certificates and spool.
	StateDir string `yaml:"state_dir"`
	// HostRoot is where the host's filesystem is mounted: "/" on a host,
	// "/host" in a Kubernetes DaemonSet.
	HostRoot string `yaml:"host_root"`
	// ScanInterval is how often the whole host is rescanned.
	ScanInterval time.Duration `yaml:"scan_interval"`
	// HeartbeatInterval is how often a heartbeat is sent on an idle stream.
	HeartbeatInterval time.Duration `yaml:"heartbeat_interval"`
	// WatchPaths are files and globs whose hashes are collected; empty means
	// the built-in defaults.
	WatchPaths []string `yaml:"watch_paths"`
	// AcceptBaselinePaths lets the server add the files the host's
	// baselines check to WatchPaths, so their rules can be checked (on by
	// default). The server only chooses which files are described, with the
	// metadata and SHA-256 reported for any watched file, never content.
	AcceptBaselinePaths bool `yaml:"accept_baseline_paths"`
	// DisabledCollectors names collectors not to run.
	DisabledCollectors []string `yaml:"disabled_collectors"`
	// AllowScripts lets the server run arbitrary scripts on this host. Off
	// unless turned on here: typed commands never need it.
	AllowScripts bool `yaml:"allow_scripts"`
	// SpoolMaxBytes bounds the on-disk queue of unacknowledged messages.
	SpoolMaxBytes int64 `yaml:"spool_max_bytes"`
	// MaxMessageSize bounds every gRPC message in both directions.
	MaxMessageSize int `yaml:"max_message_size"`
	// LogLevel is debug, info, warn or error.
	LogLevel string `yaml:"log_level"`
	// Plugins are out-of-process collectors (plugins/collector) run with
	// every scan, after the built-in ones.
	Plugins []Plugin `yaml:"plugins"`
}

// Plugin configures one collector plugin.
type Plugin struct {
	// Path is the absolute path of the plugin's executable. It runs as the
	// agent does: it must be as trusted, and as well protected, as the agent.
	Path string `yaml:"path"`
	// Name is the plugin's name, which it must report as its own and which
	// prefixes its items' keys; empty means the file name of Path without
	// ".exe".
	Name string `yaml:"name"`
	// Timeout bounds one collection: starting the plugin, asking it and
	// stopping it. A plugin still running then is killed. Zero means
	// DefaultPluginTimeout.
	Timeout time.Duration `yaml:"timeout"`
}

// DefaultPluginTimeout is the default of Plugin.Timeout.
const DefaultPluginTimeout = 10 * time.Second

// PluginName returns the plugin's name: Name, or the file name of Path.
func (p Plugin) PluginName() string {
	if p.Name != "" {
		return p.Name
	}
	return strings.TrimSuffix(filepath.Base(p.Path), ".exe")
}

// PluginTimeout returns the plugin's timeout with the default applied.
func (p Plugin) PluginTimeout() time.Duration {
	if p.Timeout == 0 {
		return DefaultPluginTimeout
	}
	return p.Timeout
}

// validatePlugins reports the first plugin setting that cannot work.
func validatePlugins(plugins []Plugin) error {
	seen := map[string]bool{}
	for i, p := range plugins {
		name := p.PluginName()
		switch {
		case !filepath.IsAbs(p.Path):
			return fmt.Errorf("plugins[%d]: path %q is not absolute", i, p.Path)
		case !inventory.ValidExtensionName(name):
			return fmt.Errorf("plugins[%d]: name %q is not lower-case letters, digits, '-' and '_' (set name)", i, name)
		case seen[name]:
			return fmt.Errorf("plugins[%d]: a second plugin named %q", i, name)
		case p.Timeout < 0:
			return fmt.Errorf("plugins[%d]: timeout %s is negative", i, p.Timeout)
		}
		seen[name] = true
	}
	return nil
}

// Default returns the built-in configuration.
func Default() Config {
	return Config{
		StateDir:            "/var/lib/qinfra-agent",
		HostRoot:            "/",
		ScanInterval:        60 * time.Second,
		HeartbeatInterval:   30 * time.Second,
		AcceptBaselinePaths: true,
		SpoolMaxBytes:       64 << 20,
		MaxMessageSize:      16 << 20,
		LogLevel:            "info",
	}
}

// Load reads a YAML file over c. Unknown keys are an error, so a typo in
// a security setting such as allow_scripts cannot pass silently.
func (c *Config) Load(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read config: %w", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("config %s: %w", path, err)
	}
	return nil
}

// Validate reports the first setting that cannot work.
func (c *Config) Validate() error {
	switch {
	case c.StateDir == "":
		return errors.New("state_dir must be set")
	case c.HostRoot == "":
		return errors.New("host_root must be set")
	case c.ScanInterval < time.Second:
		return fmt.Errorf("scan_interval %s is below 1s", c.ScanInterval)
	case c.HeartbeatInterval < time.Second:
		return fmt.Errorf("heartbeat_interval %s is below 1s", c.HeartbeatInterval)
	case c.SpoolMaxBytes < 1<<20:
		return fmt.Errorf("spool_max_bytes %d is below 1 MiB", c.SpoolMaxBytes)
	case c.MaxMessageSize < 1<<20:
		return fmt.Errorf("max_message_size %d is below 1 MiB", c.MaxMessageSize)
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("log_level %q is not one of debug, info, warn, error", c.LogLevel)
	}
	return validatePlugins(c.Plugins)
}
