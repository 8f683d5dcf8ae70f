// Package collect gathers a host's inventory: packages, local users and
// groups, service units, watched files, OS facts, listening ports, running
// executables, and the items of collector plugins.
//
// Every collector reads the host through a HostFS, so the same code inventories
// the machine it runs on (Root "/") or a host whose root file system is mounted
// elsewhere, as in a Kubernetes DaemonSet (Root "/host"). Collectors read
// files, the host's /proc included, so the result depends on the root and is
// reproducible in tests from a fake root. Two exceptions ask a running
// program: the systemd collector adds the units' active states where the
// root's systemd runs and is reachable over D-Bus, and plugins run out of
// process.
package collect

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/quantumlayer/qinfra/agent/internal/config"
	"github.com/quantumlayer/qinfra/pkg/inventory"
	commonv1 "github.com/quantumlayer/qinfra/proto/gen/qinfra/common/v1"
)

// HostFS roots every host path; Root "/" normally, "/host" in a Kubernetes
// DaemonSet.
type HostFS struct{ Root string }

// Path returns the path under which the host path p is found from this
// process: p joined to Root. It does not resolve symbolic links; collectors
// that must not leave the root resolve them with the root in mind.
func (h HostFS) Path(p string) string {
	root := h.Root
	if root == "" {
		root = "/"
	}
	return filepath.Join(root, p)
}

// Collector gathers one part of the inventory.
type Collector interface {
	// Name is the collector's name in Config.Disabled: "dpkg", "rpm",
	// "apk", "users", "groups", "systemd", "files", "os", "ports",
	// "processes", "plugin:<name>" on Linux; see registry.
	Name() string
	// Collect returns sealed items. A collector whose data source is absent
	// (no dpkg database on an RPM host) returns no items and no error.
	Collect(ctx context.Context, fs HostFS) ([]*commonv1.Item, error)
}

// Config selects and configures the collectors.
type Config struct {
	// Root is the host's root file system as seen by the agent; empty means "/".
	Root string
	// WatchPaths are the absolute host paths and globs the files collector
	// reports; nil means DefaultWatchPaths. Disable the "files" collector to
	// watch nothing.
	WatchPaths []string
	// MetadataOnly are host paths or globs whose content is never hashed, in
	// addition to the secret files that never are (DefaultMetadataOnly).
	MetadataOnly []string
	// MaxHashBytes caps the size of a file the files collector hashes; a larger
	// file is reported with its metadata and an error. Zero means
	// DefaultMaxHashBytes.
	MaxHashBytes int64
	// Disabled names collectors not to run.
	Disabled []string
	// Plugins are collector plugins run after the built-in collectors, each
	// as the collector "plugin:<name>".
	Plugins []config.Plugin
	// Logger receives debug logs of each run; nil discards them.
	Logger *slog.Logger
}

// DefaultMaxHashBytes is the default of Config.MaxHashBytes.
const DefaultMaxHashBytes = 64 << 20

// DefaultWatchPaths returns the files watched when Config.WatchPaths is nil:
// the configuration that decides who may log in and what runs as root.
func DefaultWatchPaths() []string {
	return []string{
		"/etc/ssh/sshd_config",
		"/etc/sudoers",
		"/etc/sudoers.d/*",
		"/etc/passwd",
		"/etc/group",
		"/etc/shadow",
		"/etc/crontab",
		"/etc/cron.d/*",
		"/etc/pam.d/*",
	}
}

// DefaultMetadataOnly returns the paths whose content is never hashed,
// whatever the configuration says: a hash of a password file lets anyone who
// reads the inventory test guesses of a password offline.
func DefaultMetadataOnly() []string {
	return []string{"/etc/shadow", "/etc/gshadow", "/etc/shadow-", "/etc/gshadow-"}
}

// Validate reports configuration errors that New would otherwise only reveal
// at collection time.
func (c Config) Validate() error {
	var errs []error
	known := map[string]bool{}
	for _, r := range registry() {
		known[r.name] = true
	}
	for _, p := range c.Plugins {
		known[pluginCollectorName(p.PluginName())] = true
	}
	for _, n := range c.Disabled {
		if !known[n] {
			errs = append(errs, fmt.Errorf("disabled collector %q is unknown on this platform", n))
		}
	}
	for _, p := range c.WatchPaths {
		if !strings.HasPrefix(p, "/") {
			errs = append(errs, fmt.Errorf("watch path %q is not absolute", p))
		}
		if _, err := filepath.Match(p, ""); err != nil {
			errs = append(errs, fmt.Errorf("watch path %q: %w", p, err))
		}
	}
	for _, p := range c.MetadataOnly {
		if _, err := filepath.Match(p, ""); err != nil {
			errs = append(errs, fmt.Errorf("metadata-only path %q: %w", p, err))
		}
	}
	if c.MaxHashBytes < 0 {
		errs = append(errs, fmt.Errorf("max hash bytes %d is negative", c.MaxHashBytes))
	}
	return errors.Join(errs...)
}

// registration is one built-in collector; registry lists those of the
// platform the agent is built for.
type registration struct {
	name string
	new  func(Config) Collector
}

// Set is the registry of enabled collectors.
type Set struct {
	fs         HostFS
	collectors []Collector
	log        *slog.Logger
}

// New returns the set of built-in collectors for this platform that cfg does
// not disable. Unknown names in cfg.Disabled are ignored; Config.Validate
// reports them.
func New(cfg Config) *Set {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Set{fs: HostFS{Root: cfg.Root}, log: log.With("component", "collect")}
	if s.fs.Root == "" {
		s.fs.Root = "/"
	}
	for _, r := range registry() {
		if slices.Contains(cfg.Disabled, r.name) {
			continue
		}
		s.collectors = append(s.collectors, r.new(cfg))
	}
	for _, p := range cfg.Plugins {
		if slices.Contains(cfg.Disabled, pluginCollectorName(p.PluginName())) {
			continue
		}
		s.collectors = append(s.collectors, newPluginCollector(p, s.log))
	}
	return s
}

// SetExtraPaths has the files collector, if enabled, report the literal
// host paths besides its watch paths from its next collection on,
// replacing those of an earlier call (see filesCollector.SetExtraPaths).
// It reports whether the files collector is enabled. Safe to call while
// Collect runs.
func (s *Set) SetExtraPaths(paths []string) bool {
	set := false
	for _, c := range s.collectors {
		if fc, ok := c.(*filesCollector); ok {
			fc.SetExtraPaths(paths)
			set = true
		}
	}
	return set
}

// Names returns the names of the enabled collectors, in the order they are
// registered.
func (s *Set) Names() []string {
	names := make([]string, len(s.collectors))
	for i, c := range s.collectors {
		names[i] = c.Name()
	}
	return names
}

// CollectorError is the error of one collector in the error Set.Collect
// returns; find them with errors.As. Items of a failed collector may be
// missing, so a caller must not read their absence as removal.
type CollectorError struct {
	Collector string
	Err       error
}

func (e *CollectorError) Error() string { return "collect " + e.Collector + ": " + e.Err.Error() }

func (e *CollectorError) Unwrap() error { return e.Err }

// Collect runs every enabled collector concurrently and returns all their
// items sorted by kind, then key. One collector's failure does not lose the
// others' items: the failures are returned joined, each a *CollectorError,
// alongside every item collected.
func (s *Set) Collect(ctx context.Context) ([]*commonv1.Item, error) {
	type result struct {
		items []*commonv1.Item
		err   error
	}
	results := make([]result, len(s.collectors))
	var wg sync.WaitGroup
	for i, c := range s.collectors {
		wg.Go(func() {
			start := time.Now()
			items, err := c.Collect(ctx, s.fs)
			s.log.Debug("collected", "collector", c.Name(), "items", len(items), "duration", time.Since(start), "error", err)
			results[i] = result{items, err}
		})
	}
	wg.Wait()

	var all []*commonv1.Item
	var errs []error
	seen := map[inventory.Ref]bool{}
	for i, r := range results {
		name := s.collectors[i].Name()
		if r.err != nil {
			errs = append(errs, &CollectorError{Collector: name, Err: r.err})
		}
		for _, it := range r.items {
			if err := inventory.Validate(it); err != nil {
				errs = append(errs, &CollectorError{Collector: name, Err: err})
				continue
			}
			ref := inventory.RefOf(it)
			if seen[ref] {
				errs = append(errs, &CollectorError{Collector: name, Err: fmt.Errorf("duplicate item %s", ref)})
				continue
			}
			seen[ref] = true
			all = append(all, it)
		}
	}
	sortItems(all)
	return all, errors.Join(errs...)
}

func sortItems(items []*commonv1.Item) {
	slices.SortFunc(items, func(a, b *commonv1.Item) int {
		if c := strings.Compare(a.GetKind(), b.GetKind()); c != 0 {
			return c
		}
		return strings.Compare(a.GetKey(), b.GetKey())
	})
}

// sealed builds an item around body and seals it. Sealing only fails if the
// body cannot be marshalled, which for these generated types means a bug.
func sealed(kind, key string, body any) (*commonv1.Item, error) {
	it := &commonv1.Item{Kind: kind, Key: key}
	switch b := body.(type) {
	case *commonv1.Package:
		it.Body = &commonv1.Item_Package{Package: b}
	case *commonv1.File:
		it.Body = &commonv1.Item_File{File: b}
	case *commonv1.User:
		it.Body = &commonv1.Item_User{User: b}
	case *commonv1.Group:
		it.Body = &commonv1.Item_Group{Group: b}
	case *commonv1.Service:
		it.Body = &commonv1.Item_Service{Service: b}
	case *commonv1.OSFacts:
		it.Body = &commonv1.Item_Os{Os: b}
	case *commonv1.ListeningPort:
		it.Body = &commonv1.Item_Port{Port: b}
	case *commonv1.Process:
		it.Body = &commonv1.Item_Process{Process: b}
	default:
		return nil, fmt.Errorf("seal %s/%s: unsupported body %T", kind, key, body)
	}
	if err := inventory.Seal(it); err != nil {
		return nil, err
	}
	return it, nil
}

// readHostFile opens a host file for a parser, reporting a missing file as
// found=false rather than an error: an absent data source is not a failure.
func readHostFile[T any](h HostFS, p string, parse func(io.Reader) (T, error)) (v T, found bool, err error) {
	f, err := h.open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return v, false, nil
	}
	if err != nil {
		return v, false, err
	}
	defer f.Close()
	v, err = parse(f)
	if err != nil {
		return v, true, fmt.Errorf("parse %s: %w", p, err)
	}
	return v, true, nil
}

// Owner names the collector that reports the item r, so a caller can tell
// which items a failed collector would have reported.
func Owner(r inventory.Ref) string {
	switch r.Kind {
	case inventory.KindPackage:
		if i := strings.IndexByte(r.Key, ':'); i > 0 {
			if r.Key[:i] == "windows" {
				return "programs"
			}
			return r.Key[:i]
		}
		return ""
	case inventory.KindUser:
		return "users"
	case inventory.KindGroup:
		return "groups"
	case inventory.KindService:
		return serviceCollectorName
	case inventory.KindFile:
		return "files"
	case inventory.KindOS:
		return "os"
	case inventory.KindPort:
		return "ports"
	case inventory.KindProcess:
		return "processes"
	case inventory.KindExt:
		if i := strings.IndexByte(r.Key, ':'); i > 0 {
			return pluginCollectorName(r.Key[:i])
		}
		return ""
	}
	return ""
}

// FailedCollectors returns the names of the collectors whose errors are
// in err, as returned by Set.Collect.
func FailedCollectors(err error) map[string]bool {
	failed := map[string]bool{}
	var walk func(error)
	walk = func(e error) {
		if e == nil {
			return
		}
		if ce, ok := e.(*CollectorError); ok {
			failed[ce.Collector] = true
			return
		}
		switch u := e.(type) {
		case interface{ Unwrap() []error }:
			for _, x := range u.Unwrap() {
				walk(x)
			}
		case interface{ Unwrap() error }:
			walk(u.Unwrap())
		}
	}
	walk(err)
	return failed
}
