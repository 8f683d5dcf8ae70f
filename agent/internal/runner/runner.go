// Package runner is the agent's main loop: it scans the host on an
// interval, spools every inventory change durably, and keeps one mTLS
// stream to a server over which it sends what the server has not yet
// acknowledged.
package runner

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/quantumlayer/qinfra/agent/internal/collect"
	"github.com/quantumlayer/qinfra/agent/internal/identity"
	"github.com/quantumlayer/qinfra/agent/internal/spool"
	"github.com/quantumlayer/qinfra/pkg/inventory"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	agentv1 "github.com/quantumlayer/qinfra/proto/gen/qinfra/agent/v1"
	commonv1 "github.com/quantumlayer/qinfra/proto/gen/qinfra/common/v1"
)

// Scanner produces the host's whole inventory; collect.Set is one.
type Scanner interface {
	Collect(ctx context.Context) ([]*commonv1.Item, error)
}

// Options configure a Runner.
type Options struct {
	// Servers are gRPC addresses tried in turn.
	Servers []string
	// ServerName overrides the name verified in the server certificate.
	ServerName string
	Identity   *identity.Identity
	Spool      *spool.Spool
	Scanner    Scanner
	// ScanInterval is how often the host is rescanned (default 60s); the
	// server may change it.
	ScanInterval      time.Duration
	HeartbeatInterval time.Duration
	// MaxMessageSize bounds every message in both directions; an inventory
	// larger than it is refused locally rather than spooled.
	MaxMessageSize int
	// AllowScripts lets the server run arbitrary scripts. Off by default.
	AllowScripts bool
	// AcceptBaselinePaths lets the server add the files the host's
	// baselines check to those the Scanner reports and the Watcher watches
	// (ConfigUpdate.baseline_paths; see applyBaselinePaths). The agent's
	// configuration turns it on by default (accept_baseline_paths).
	AcceptBaselinePaths bool
	AgentVersion        string
	// Facts returns the OS facts sent in Hello.
	Facts  func() *commonv1.OSFacts
	Logger *slog.Logger
	// MinBackoff and MaxBackoff bound the reconnect delay.
	MinBackoff, MaxBackoff time.Duration
	// Watcher, when set, reports changes on the host as they happen; the
	// collectors they concern are rescanned at once (watch.go), besides
	// the periodic scan.
	Watcher Watcher
}

// Runner is a running agent.
type Runner struct {
	o   Options
	log *slog.Logger

	// scanMu serialises scans with resets of the last-sent set, so a
	// resync can never interleave with the diff it invalidates.
	scanMu sync.Mutex
	wake   chan struct{}
	scanCh chan struct{}

	mu           sync.Mutex
	scanInterval time.Duration
	connected    bool
	lastScanErr  error

	// changeScans bounds scanLoop's scans for a watcher's changes.
	changeScans changeLimiter

	// cfgMu serialises changes of the baseline paths: baselinePaths, the
	// valid ones applied last, and refusedPaths, how many were refused
	// last (without AcceptBaselinePaths), for logging changes only.
	cfgMu         sync.Mutex
	baselinePaths []string
	refusedPaths  int
}

// New returns a Runner.
func New(o Options) *Runner {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.ScanInterval <= 0 {
		o.ScanInterval = 60 * time.Second
	}
	if o.HeartbeatInterval <= 0 {
		o.HeartbeatInterval = 30 * time.Second
	}
	if o.MaxMessageSize <= 0 {
		o.MaxMessageSize = 16 << 20
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = 500 * time.Millisecond
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 60 * time.Second
	}
	if o.Facts == nil {
		o.Facts = func() *commonv1.OSFacts { return nil }
	}
	return &Runner{
		o:            o,
		log:          o.Logger.With("component", "runner"),
		wake:         make(chan struct{}, 1),
		scanCh:       make(chan struct{}, 1),
		scanInterval: o.ScanInterval,
	}
}

// ScanNow asks for a scan as soon as possible.
func (r *Runner) ScanNow() {
	select {
	case r.scanCh <- struct{}{}:
	default:
	}
}

func (r *Runner) notify() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// Connected reports whether a stream is up.
func (r *Runner) Connected() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.connected
}

// Run scans and streams until ctx ends. Scanning goes on while no server
// is reachable, so changes made during an outage are spooled and
// delivered once a server is back.
func (r *Runner) Run(ctx context.Context) error {
	if len(r.o.Servers) == 0 {
		return errors.New("no server address configured")
	}
	var wg sync.WaitGroup
	// The baseline paths of the last run are reported from the first scan
	// on, or they would look removed until the server sends them again.
	r.loadBaselinePaths()
	// Watches go in place before the first scan, so no change falls
	// between the two.
	r.startWatch(ctx, &wg)
	// One scan before the first connection, so Hello carries this host's
	// facts and the first stream starts with an inventory to send.
	if err := r.Scan(ctx); err != nil {
		r.log.Warn("initial scan failed", "err", err)
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		r.scanLoop(ctx)
	}()
	r.connectLoop(ctx)
	wg.Wait()
	return nil
}

func (r *Runner) scanLoop(ctx context.Context) {
	changes := r.watchChanges()
	for {
		r.mu.Lock()
		interval := r.scanInterval
		r.mu.Unlock()
		t := time.NewTimer(interval)
	wait:
		for {
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
				break wait
			case <-r.scanCh:
				t.Stop()
				break wait
			case collectors := <-changes:
				// Rescanning what changed leaves the periodic scan's
				// timer running.
				r.scanChanged(ctx, collectors)
			}
		}
		if err := r.Scan(ctx); err != nil && ctx.Err() == nil {
			r.log.Warn("scan failed", "err", err)
		}
	}
}

// Scan collects the inventory once and spools a full snapshot (when the
// server holds nothing of ours) or the delta since the last one sent.
func (r *Runner) Scan(ctx context.Context) error {
	items, err := r.o.Scanner.Collect(ctx)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	// A failed collector's items are missing, not removed: its part of the
	// last sent set is carried over unchanged, so one broken source (an
	// unreadable database) neither blocks every other change nor reports
	// its packages as uninstalled.
	failed := collect.FailedCollectors(err)
	if err != nil && len(failed) == 0 {
		return fmt.Errorf("collect: %w", err)
	}
	r.mu.Lock()
	r.lastScanErr = err
	r.mu.Unlock()
	if err != nil {
		r.log.Warn("some collectors failed; their last reported items are kept", "err", err)
	}
	r.scanMu.Lock()
	defer r.scanMu.Unlock()
	prev, perr := r.o.Spool.LastSet()
	if perr != nil {
		return fmt.Errorf("read last sent set: %w", perr)
	}
	next := inventory.SetOf(items)
	var keep inventory.Set
	if len(failed) > 0 {
		keep = inventory.Set{}
		for ref, h := range prev {
			if failed[collect.Owner(ref)] {
				if _, ok := next[ref]; !ok {
					keep[ref] = h
					next[ref] = h
				}
			}
		}
	}
	inv := &agentv1.Inventory{SetHash: next.Hash(), CollectedAt: timestamppb.Now()}
	if len(prev) == 0 {
		inv.Full = true
		inv.Items = items
	} else {
		d := inventory.Diff(prev, items)
		d.Removed = slices.DeleteFunc(d.Removed, func(ref inventory.Ref) bool { _, kept := keep[ref]; return kept })
		if d.Empty() {
			return nil
		}
		inv.Items = d.Upserts
		for _, ref := range d.Removed {
			inv.Removed = append(inv.Removed, &commonv1.ItemRef{Kind: ref.Kind, Key: ref.Key})
		}
	}
	msg := &agentv1.ConnectRequest{Msg: &agentv1.ConnectRequest_Inventory{Inventory: inv}}
	// Leave room for the sequence number and dropped count stamped later.
	if size := proto.Size(msg) + 64; size > r.o.MaxMessageSize {
		return fmt.Errorf("inventory of %d items is %d bytes, above the %d-byte message limit", len(inv.Items), size, r.o.MaxMessageSize)
	}
	seq, err := r.o.Spool.AppendInventory(msg, next)
	if err != nil {
		return fmt.Errorf("spool inventory: %w", err)
	}
	r.log.Info("inventory spooled", "seq", seq, "full", inv.Full, "items", len(inv.Items), "removed", len(inv.Removed))
	r.notify()
	return nil
}

// resetSet forgets what was sent so the next scan is a full snapshot.
func (r *Runner) resetSet() {
	r.scanMu.Lock()
	defer r.scanMu.Unlock()
	if err := r.o.Spool.ResetSet(); err != nil {
		r.log.Error("reset last sent set", "err", err)
	}
	r.ScanNow()
}

func (r *Runner) connectLoop(ctx context.Context) {
	backoff := r.o.MinBackoff
	for i := 0; ctx.Err() == nil; i++ {
		addr := r.o.Servers[i%len(r.o.Servers)]
		start := time.Now()
		err := r.session(ctx, addr)
		r.mu.Lock()
		r.connected = false
		r.mu.Unlock()
		if ctx.Err() != nil {
			return
		}
		// A stream that lived a while was healthy: start backing off anew.
		if time.Since(start) > time.Minute {
			backoff = r.o.MinBackoff
		}
		// Full jitter spreads a fleet's reconnects after a server restart.
		d := time.Duration(rand.Int64N(int64(backoff))) + r.o.MinBackoff/2
		r.log.Warn("stream ended; reconnecting", "server", addr, "err", err, "in", d.Round(time.Millisecond))
		select {
		case <-ctx.Done():
			return
		case <-time.After(d):
		}
		backoff = min(backoff*2, r.o.MaxBackoff)
	}
}
