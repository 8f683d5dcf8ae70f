package runner

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/quantumlayer/qinfra/agent/internal/collect"
	"github.com/quantumlayer/qinfra/pkg/inventory"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	agentv1 "github.com/quantumlayer/qinfra/proto/gen/qinfra/agent/v1"
	commonv1 "github.com/quantumlayer/qinfra/proto/gen/qinfra/common/v1"
)

// Watcher reports changes on the host as they happen; watch.Watcher is one.
type Watcher interface {
	// Run watches until ctx ends or watching gives up.
	Run(ctx context.Context)
	// Ready is closed once a scan started afterwards can miss no change.
	Ready() <-chan struct{}
	// Changes delivers the names of the collectors whose sources changed.
	Changes() <-chan []string
}

// PartialScanner is a Scanner that can also run only some collectors;
// Collectors is one.
type PartialScanner interface {
	Scanner
	// CollectOnly runs the named collectors and returns their items, with
	// errors as Scanner.Collect returns them.
	CollectOnly(ctx context.Context, collectors []string) ([]*commonv1.Item, error)
}

// Scans for changes are bounded to maxChangeScans in any changeScanWindow,
// whatever the watcher reports: a host rewriting a watched file without
// pause costs the agent a bounded share of a core, while an isolated change
// never waits.
const (
	maxChangeScans   = 5
	changeScanWindow = time.Second
)

// changeLimiter holds the start times of the last maxChangeScans scans for
// changes, oldest at next.
type changeLimiter struct {
	starts [maxChangeScans]time.Time
	next   int
}

// wait waits until another scan fits in the window, then records its start.
// It reports false if ctx ended first.
func (l *changeLimiter) wait(ctx context.Context) bool {
	if oldest := l.starts[l.next]; !oldest.IsZero() {
		if d := changeScanWindow - time.Since(oldest); d > 0 {
			t := time.NewTimer(d)
			defer t.Stop()
			select {
			case <-ctx.Done():
				return false
			case <-t.C:
			}
		}
	}
	l.starts[l.next] = time.Now()
	l.next = (l.next + 1) % maxChangeScans
	return true
}

// readyTimeout bounds how long the first scan waits for the watches.
const readyTimeout = 10 * time.Second

// startWatch starts the watcher, if any, and waits until it is ready, so
// that the first scan is not followed by changes nobody sees.
func (r *Runner) startWatch(ctx context.Context, wg *sync.WaitGroup) {
	w := r.o.Watcher
	if w == nil {
		return
	}
	wg.Go(func() { w.Run(ctx) })
	select {
	case <-w.Ready():
	case <-ctx.Done():
	case <-time.After(readyTimeout):
		r.log.Warn("watches not in place yet; scanning anyway", "waited", readyTimeout)
	}
}

// watchChanges is the channel of the watcher's changes; nil, which never
// delivers, without a watcher.
func (r *Runner) watchChanges() <-chan []string {
	if r.o.Watcher == nil {
		return nil
	}
	return r.o.Watcher.Changes()
}

// scanChanged rescans after the watcher reported changes to the sources
// of collectors, waiting first if too many such scans were recent.
func (r *Runner) scanChanged(ctx context.Context, collectors []string) {
	if !r.changeScans.wait(ctx) {
		return
	}
	start := time.Now()
	err := r.ScanOnly(ctx, collectors)
	if err != nil && ctx.Err() == nil {
		r.log.Warn("scan after a change failed", "collectors", collectors, "err", err)
		return
	}
	r.log.Debug("scanned after a change", "collectors", collectors, "duration", time.Since(start).Round(time.Microsecond))
}

// ScanOnly rescans the named collectors alone, keeps every other item of the
// last sent set, and spools the delta. It falls back to a full Scan when the
// Scanner cannot run single collectors, and asks for one when nothing has
// been sent yet, since only a full snapshot can answer that.
func (r *Runner) ScanOnly(ctx context.Context, collectors []string) error {
	ps, ok := r.o.Scanner.(PartialScanner)
	if !ok {
		return r.Scan(ctx)
	}
	items, err := ps.CollectOnly(ctx, collectors)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	failed := collect.FailedCollectors(err)
	if err != nil && len(failed) == 0 {
		return fmt.Errorf("collect %s: %w", strings.Join(collectors, ","), err)
	}
	if err != nil {
		r.log.Warn("some collectors failed; their last reported items are kept", "err", err)
	}
	// The items of the rescanned collectors replace theirs in the last sent
	// set; a failed collector's items are updated, never removed.
	rescanned := map[string]bool{}
	for _, c := range collectors {
		rescanned[c] = true
	}
	r.scanMu.Lock()
	defer r.scanMu.Unlock()
	prev, err := r.o.Spool.LastSet()
	if err != nil {
		return fmt.Errorf("read last sent set: %w", err)
	}
	if len(prev) == 0 {
		r.ScanNow()
		return nil
	}
	next := make(inventory.Set, len(prev))
	for ref, h := range prev {
		next[ref] = h
	}
	seen := make(map[inventory.Ref]bool, len(items))
	inv := &agentv1.Inventory{CollectedAt: timestamppb.Now()}
	for _, it := range items {
		ref := inventory.RefOf(it)
		if !rescanned[collect.Owner(ref)] {
			continue
		}
		seen[ref] = true
		if old, ok := prev[ref]; !ok || !bytes.Equal(old, it.GetHash()) {
			inv.Items = append(inv.Items, it)
			next[ref] = it.GetHash()
		}
	}
	var removed []inventory.Ref
	for ref := range prev {
		if owner := collect.Owner(ref); rescanned[owner] && !failed[owner] && !seen[ref] {
			removed = append(removed, ref)
			delete(next, ref)
		}
	}
	if len(inv.Items) == 0 && len(removed) == 0 {
		return nil
	}
	slices.SortFunc(removed, func(a, b inventory.Ref) int {
		if c := strings.Compare(a.Kind, b.Kind); c != 0 {
			return c
		}
		return strings.Compare(a.Key, b.Key)
	})
	for _, ref := range removed {
		inv.Removed = append(inv.Removed, &commonv1.ItemRef{Kind: ref.Kind, Key: ref.Key})
	}
	inv.SetHash = next.Hash()
	msg := &agentv1.ConnectRequest{Msg: &agentv1.ConnectRequest_Inventory{Inventory: inv}}
	if size := proto.Size(msg) + 64; size > r.o.MaxMessageSize {
		return fmt.Errorf("inventory of %d items is %d bytes, above the %d-byte message limit", len(inv.Items), size, r.o.MaxMessageSize)
	}
	seq, err := r.o.Spool.AppendInventory(msg, next)
	if err != nil {
		return fmt.Errorf("spool inventory: %w", err)
	}
	r.log.Info("inventory spooled", "seq", seq, "full", false, "items", len(inv.Items), "removed", len(inv.Removed), "collectors", collectors)
	r.notify()
	return nil
}

// Collectors is the Scanner of the built-in collectors, each in a Set of
// its own so that a change reruns only the collectors it concerns.
type Collectors struct {
	names []string
	sets  map[string]*collect.Set
}

// NewCollectors returns the collectors cfg enables.
func NewCollectors(cfg collect.Config) *Collectors {
	c := &Collectors{names: collect.New(cfg).Names(), sets: map[string]*collect.Set{}}
	for _, name := range c.names {
		one := cfg
		others := slices.DeleteFunc(slices.Clone(c.names), func(n string) bool { return n == name })
		one.Disabled = slices.Concat(cfg.Disabled, others)
		c.sets[name] = collect.New(one)
	}
	return c
}

// Names returns the enabled collectors' names.
func (c *Collectors) Names() []string { return slices.Clone(c.names) }

// Collect runs every collector; see collect.Set.Collect.
func (c *Collectors) Collect(ctx context.Context) ([]*commonv1.Item, error) {
	return c.CollectOnly(ctx, c.names)
}

// CollectOnly runs the named collectors concurrently and returns their items
// sorted by kind, then key, and their errors joined, each a
// *collect.CollectorError. Names of collectors not enabled are ignored.
func (c *Collectors) CollectOnly(ctx context.Context, names []string) ([]*commonv1.Item, error) {
	var run []*collect.Set
	for _, n := range c.names {
		if slices.Contains(names, n) {
			run = append(run, c.sets[n])
		}
	}
	items := make([][]*commonv1.Item, len(run))
	errs := make([]error, len(run))
	var wg sync.WaitGroup
	for i, s := range run {
		wg.Go(func() { items[i], errs[i] = s.Collect(ctx) })
	}
	wg.Wait()
	all := slices.Concat(items...)
	slices.SortFunc(all, func(a, b *commonv1.Item) int {
		if c := strings.Compare(a.GetKind(), b.GetKind()); c != 0 {
			return c
		}
		return strings.Compare(a.GetKey(), b.GetKey())
	})
	return all, errors.Join(errs...)
}
