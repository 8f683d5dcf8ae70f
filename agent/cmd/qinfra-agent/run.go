package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"sync"
	"syscall"

	"github.com/quantumlayer/qinfra/agent/internal/collect"
	"github.com/quantumlayer/qinfra/agent/internal/config"
	"github.com/quantumlayer/qinfra/agent/internal/identity"
	"github.com/quantumlayer/qinfra/agent/internal/runner"
	"github.com/quantumlayer/qinfra/agent/internal/spool"
	"github.com/quantumlayer/qinfra/agent/internal/watch"
	"github.com/quantumlayer/qinfra/pkg/version"

	commonv1 "github.com/quantumlayer/qinfra/proto/gen/qinfra/common/v1"
)

func cmdRun(args []string, stdout, stderr io.Writer) error {
	cfg := config.Default()
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var servers listFlag
	fs.Var(&servers, "server", "server gRPC address (repeatable; default: the one enrolled with)")
	fs.DurationVar(&cfg.ScanInterval, "scan-interval", cfg.ScanInterval, "how often to rescan the host")
	fs.StringVar(&cfg.LogLevel, "log-level", cfg.LogLevel, "debug, info, warn or error")
	if err := loadConfig(fs, args, &cfg); err != nil {
		return err
	}
	if len(servers) > 0 {
		cfg.Servers = servers
	}
	if len(cfg.Servers) == 0 {
		cfg.Servers = readServers(cfg.StateDir)
	}
	if len(cfg.Servers) == 0 {
		return errors.New("no server: pass --server, set servers in the config file, or enroll first")
	}
	log := newLogger(stderr, cfg.LogLevel)
	// The live heap between scans is 1-2 MiB, below the 4 MiB the runtime
	// lets a heap reach at the default GOGC=100 before collecting: half of
	// that keeps idle RSS about 1.5 MiB lower (make bench-agent) for a few
	// more short collections per scan. GOGC in the environment wins.
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(50)
	}

	files := identity.Files{Dir: cfg.StateDir}
	id, err := identity.Load(files)
	if err != nil {
		return err
	}
	sp, err := spool.Open(files.SpoolPath(), spool.Options{MaxBytes: cfg.SpoolMaxBytes, Logger: log})
	if err != nil {
		return fmt.Errorf("open spool %s: %w (move it aside to start afresh; unsent changes are then resent as a full inventory)", files.SpoolPath(), err)
	}
	defer sp.Close()

	collectors := runner.NewCollectors(collect.Config{
		Root:       cfg.HostRoot,
		WatchPaths: cfg.WatchPaths,
		Disabled:   cfg.DisabledCollectors,
		Plugins:    cfg.Plugins,
	})
	scanner := &factsScanner{inner: collectors}
	// Live changes: the sources of the enabled collectors are watched, and
	// what changes is rescanned at once.
	watcher := watch.New(watch.Config{
		Root:       cfg.HostRoot,
		WatchPaths: cfg.WatchPaths,
		Collectors: collectors.Names(),
		Logger:     log,
	})
	r := runner.New(runner.Options{
		Servers:           cfg.Servers,
		ServerName:        cfg.ServerName,
		Identity:          id,
		Spool:             sp,
		Scanner:           scanner,
		ScanInterval:      cfg.ScanInterval,
		HeartbeatInterval: cfg.HeartbeatInterval,
		MaxMessageSize:    cfg.MaxMessageSize,
		AllowScripts:      cfg.AllowScripts,
		// The files the host's baselines check are reported and watched
		// too, unless the configuration refuses it.
		AcceptBaselinePaths: cfg.AcceptBaselinePaths,
		AgentVersion:        version.Version,
		Facts:               scanner.Facts,
		Logger:              log,
		Watcher:             watcher,
	})
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log.Info("agent starting", "host", id.HostID, "servers", cfg.Servers, "host_root", cfg.HostRoot, "version", version.Version)
	return r.Run(ctx)
}

// factsScanner remembers the OS facts of the last scan for Hello.
type factsScanner struct {
	inner runner.PartialScanner
	mu    sync.Mutex
	facts *commonv1.OSFacts
}

func (f *factsScanner) Collect(ctx context.Context) ([]*commonv1.Item, error) {
	items, err := f.inner.Collect(ctx)
	f.remember(items)
	return items, err
}

func (f *factsScanner) CollectOnly(ctx context.Context, collectors []string) ([]*commonv1.Item, error) {
	items, err := f.inner.CollectOnly(ctx, collectors)
	f.remember(items)
	return items, err
}

// SetExtraPaths passes the baseline paths on to the collectors.
func (f *factsScanner) SetExtraPaths(paths []string) bool {
	s, ok := f.inner.(runner.ExtraPathSetter)
	return ok && s.SetExtraPaths(paths)
}

func (f *factsScanner) remember(items []*commonv1.Item) {
	for _, it := range items {
		if o := it.GetOs(); o != nil {
			f.mu.Lock()
			f.facts = o
			f.mu.Unlock()
		}
	}
}

func (f *factsScanner) Facts() *commonv1.OSFacts {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.facts
}
