// Package watch tells the agent, within a fraction of a second, that
// something it inventories has changed on the host: a watched file, a
// package database, the account files or a systemd unit directory.
//
// It watches directories, never files: the parent directory of every
// configured path, the directory part of every glob, and every directory
// above them up to the host root. A file replaced by rename (how editors and
// package managers write), deleted and created again, or appearing later in
// a directory that did not exist yet is therefore seen like an in-place
// write. When a directory on the way to a watched path appears, disappears
// or is replaced, the watches are laid out again.
//
// Events are reduced to the names of the collectors whose sources changed,
// debounced, and delivered on Changes. The watcher reads no file contents:
// the collectors re-read what changed.
//
// Watching is an optimisation over the periodic scan, never a replacement:
// when inotify cannot be used (the per-user watch limit is exhausted, or any
// other error), the watcher logs one warning, marks itself degraded and
// stops, and changes are found by the next periodic scan.
package watch

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Config configures a Watcher.
type Config struct {
	// Root is the host's root file system as seen by the agent; empty means
	// "/". It is the same as collect.Config.Root.
	Root string
	// WatchPaths are the host paths and globs of the files collector; nil
	// means collect.DefaultWatchPaths, as for the collector.
	WatchPaths []string
	// Collectors names the enabled collectors. Only their sources are
	// watched: "files" (WatchPaths, and the account files that name file
	// owners), "dpkg", "rpm", "apk", "users", "groups" and "systemd". Other
	// names are ignored; an empty list watches nothing.
	Collectors []string
	// Debounce is how long the host must stay quiet after an event before
	// the change is delivered (default 100ms); MaxDelay bounds how long a
	// continuous burst of events can hold a change back (default 500ms).
	Debounce, MaxDelay time.Duration
	// Logger receives the degradation warning and debug logs; nil discards.
	Logger *slog.Logger
}

// Watcher watches the sources of the enabled collectors. Its zero value is
// not usable; call New.
type Watcher struct {
	root       string
	watchPaths []string
	collectors []string
	debounce   time.Duration
	maxDelay   time.Duration
	log        *slog.Logger
	// newBackend opens the notification backend; tests replace it to inject
	// errors such as an exhausted watch limit.
	newBackend func() (backend, error)

	changes  chan []string
	ready    chan struct{}
	setReady sync.Once
	degraded atomic.Bool
	started  atomic.Bool

	// extraMu guards extra, the literal host paths watched for the files
	// collector besides watchPaths (SetExtraPaths); extraSet tells Run they
	// changed.
	extraMu  sync.Mutex
	extra    []string
	extraSet chan struct{}

	// Owned by the goroutine in Run (set up by New before it starts).
	targets   []*target
	all       sources // every source of the targets
	b         backend
	interests map[string][]interest
	// watched holds what each watched directory was when its watch was
	// added.
	watched map[string]fs.FileInfo
}

// New returns a Watcher for cfg. It touches nothing until Run.
func New(cfg Config) *Watcher {
	w := &Watcher{
		root:       cfg.Root,
		watchPaths: cfg.WatchPaths,
		collectors: cfg.Collectors,
		debounce:   cfg.Debounce,
		maxDelay:   cfg.MaxDelay,
		log:        cfg.Logger,
		newBackend: newFSNotify,
		changes:    make(chan []string),
		ready:      make(chan struct{}),
		extraSet:   make(chan struct{}, 1),
		watched:    map[string]fs.FileInfo{},
	}
	w.retarget()
	if w.root == "" {
		w.root = "/"
	}
	if w.debounce <= 0 {
		w.debounce = 100 * time.Millisecond
	}
	if w.maxDelay <= 0 {
		w.maxDelay = 500 * time.Millisecond
	}
	w.maxDelay = max(w.maxDelay, w.debounce)
	if w.log == nil {
		w.log = slog.New(slog.DiscardHandler)
	}
	w.log = w.log.With("component", "watch")
	return w
}

// SetExtraPaths replaces the literal host paths (never globs) watched for
// the files collector besides Config.WatchPaths, as for
// collect.Set.SetExtraPaths; nothing is watched for them unless "files" is
// among Config.Collectors. Safe to call at any time, before or while Run
// runs: the watches are laid out anew in Run's goroutine, after which the
// files collector's change is delivered, so a scan then misses no change
// to the new paths.
func (w *Watcher) SetExtraPaths(paths []string) {
	w.extraMu.Lock()
	w.extra = slices.Clone(paths)
	w.extraMu.Unlock()
	select {
	case w.extraSet <- struct{}{}:
	default:
	}
}

// retarget computes the targets from the configuration and the current
// extra paths.
func (w *Watcher) retarget() {
	w.extraMu.Lock()
	extra := w.extra
	w.extraMu.Unlock()
	w.targets = targets(w.watchPaths, w.collectors, extra)
	w.all = 0
	for _, t := range w.targets {
		w.all |= t.src
	}
}

// Changes delivers, for each debounced burst of events, the names of the
// collectors whose sources changed, in a fixed order. While nobody receives,
// further changes are merged into the next delivery, so a slow consumer
// never makes the watcher fall behind.
func (w *Watcher) Changes() <-chan []string { return w.changes }

// Ready is closed once the watches are in place, so a scan started after it
// misses no change, or once watching has given up or Run has ended.
func (w *Watcher) Ready() <-chan struct{} { return w.ready }

// Degraded reports whether watching has given up, leaving changes to the
// periodic scan.
func (w *Watcher) Degraded() bool { return w.degraded.Load() }

// Run watches until ctx ends or watching fails. A failure is logged once
// and marks the watcher degraded; Run then returns, and Changes delivers
// nothing more. Run must be called once.
func (w *Watcher) Run(ctx context.Context) {
	defer w.setReady.Do(func() { close(w.ready) })
	if !w.started.CompareAndSwap(false, true) {
		panic("watch: Run called twice")
	}
	// Take in extra paths set between New and Run.
	select {
	case <-w.extraSet:
		w.retarget()
	default:
	}
	// Nothing to watch is ready at once; extra paths may give it something
	// later.
	for len(w.targets) == 0 {
		w.setReady.Do(func() { close(w.ready) })
		select {
		case <-ctx.Done():
			return
		case <-w.extraSet:
			w.retarget()
		}
	}
	b, err := w.newBackend()
	if err != nil {
		w.degrade(err)
		return
	}
	w.b = b
	defer b.Close()
	if err := w.sync(); err != nil {
		w.degrade(err)
		return
	}
	w.setReady.Do(func() { close(w.ready) })
	w.log.Info("watching for live changes", "dirs", len(w.interests), "root", w.root)
	w.loop(ctx)
}

// loop turns events into debounced deliveries until ctx ends or the backend
// fails.
func (w *Watcher) loop(ctx context.Context) {
	var (
		pending  sources   // seen, still within the debounce window
		resync   bool      // the watches must be laid out again first
		first    time.Time // first event of the pending burst
		events   int       // events in the pending burst, for the log
		ready    sources   // debounced, waiting for the consumer
		deadline = time.NewTimer(time.Hour)
	)
	deadline.Stop()
	defer deadline.Stop()
	arm := func() {
		now := time.Now()
		if first.IsZero() {
			first = now
		}
		deadline.Reset(max(0, min(w.debounce, first.Add(w.maxDelay).Sub(now))))
	}
	for {
		var out chan<- []string
		if ready != 0 {
			out = w.changes
		}
		select {
		case <-ctx.Done():
			return
		case out <- ready.names():
			ready = 0
		case <-w.extraSet:
			w.retarget()
			if err := w.sync(); err != nil {
				w.degrade(err)
				w.deliverNow(ctx, ready|pending)
				return
			}
			w.log.Debug("extra paths watched", "dirs", len(w.interests))
			// What the new paths are changed from is not known here:
			// have the files rescanned now that their watches are in
			// place.
			if w.all&srcFiles != 0 {
				pending |= srcFiles
				events++
				arm()
			}
		case ev, ok := <-w.b.Events():
			if !ok {
				w.degrade(errors.New("event stream closed"))
				return
			}
			s, rs := w.classify(ev)
			if s == 0 && !rs {
				continue
			}
			pending |= s
			resync = resync || rs
			events++
			arm()
		case err, ok := <-w.b.Errors():
			if ok && errors.Is(err, errOverflow) {
				// Events were lost: anything may have changed.
				w.log.Warn("inotify queue overflowed; rescanning every watched source", "err", err)
				pending |= w.all
				resync = true
				events++
				arm()
				continue
			}
			if !ok {
				err = errors.New("error stream closed")
			}
			w.degrade(err)
			w.deliverNow(ctx, ready|pending)
			return
		case <-deadline.C:
			if resync {
				if err := w.sync(); err != nil {
					w.degrade(err)
					w.deliverNow(ctx, ready|pending)
					return
				}
				resync = false
			}
			w.log.Debug("host changed", "collectors", pending.names(), "events", events, "after", time.Since(first).Round(time.Millisecond))
			ready |= pending
			pending, events, first = 0, 0, time.Time{}
		}
	}
}

// deliverNow hands over the changes seen before watching failed; they are
// real and should not wait for the periodic scan.
func (w *Watcher) deliverNow(ctx context.Context, s sources) {
	if s == 0 {
		return
	}
	select {
	case w.changes <- s.names():
	case <-ctx.Done():
	}
}

// degrade gives watching up, once, with one warning.
func (w *Watcher) degrade(err error) {
	if !w.degraded.CompareAndSwap(false, true) {
		return
	}
	msg := "live change detection is off; changes are found by the periodic scan only"
	if errors.Is(err, syscall.ENOSPC) {
		w.log.Warn(msg, "err", err, "hint", "the inotify watch limit is exhausted: raise fs.inotify.max_user_watches")
		return
	}
	if errors.Is(err, syscall.EMFILE) {
		w.log.Warn(msg, "err", err, "hint", "the inotify instance limit is exhausted: raise fs.inotify.max_user_instances")
		return
	}
	w.log.Warn(msg, "err", err)
}

// sync lays the watches out afresh: it computes the directories the targets
// need as the host is now, adds the missing watches, removes the stale
// ones, and replaces the interests events are classified by. A directory
// that vanished in between is not an error: its parent's watch reports the
// removal, which leads to another sync.
func (w *Watcher) sync() error {
	want := map[string][]interest{}
	for _, t := range w.targets {
		w.walk(want, t, "/", 0)
	}
	have := map[string]bool{}
	for _, p := range w.b.WatchList() {
		have[p] = true
	}
	for p := range have {
		_, wanted := want[p]
		now, err := os.Stat(p)
		// A directory replaced since it was watched (removed while a
		// process kept it open, so its watch outlived it) is watched
		// again under its path.
		if replaced := err != nil || w.watched[p] == nil || !os.SameFile(w.watched[p], now); !wanted || replaced {
			// The watch may be gone already with its directory.
			_ = w.b.Remove(p)
			delete(have, p)
			delete(w.watched, p)
		}
	}
	dirs := make([]string, 0, len(want))
	for p := range want {
		if !have[p] {
			dirs = append(dirs, p)
		}
	}
	slices.Sort(dirs)
	for _, p := range dirs {
		fi, err := os.Stat(p)
		if err == nil {
			err = w.b.Add(p)
		}
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
				delete(want, p)
				continue
			}
			return err
		}
		w.watched[p] = fi
	}
	w.interests = want
	return nil
}

// classify returns the sources an event concerns, and whether the watches
// must be laid out again because a directory on the way to a target may
// have appeared, gone or been replaced.
func (w *Watcher) classify(ev event) (s sources, resync bool) {
	dir, name := filepath.Dir(ev.name), filepath.Base(ev.name)
	structural := ev.structural
	for _, in := range w.interests[dir] {
		t, n := in.t, len(in.t.comps)
		switch {
		case in.i == n:
			// Inside a directory the target names: its entries make its
			// mtime, so only entries coming and going count.
			if structural {
				s |= t.src
			}
		case !match(t.comps[in.i], name):
		case in.i == n-1:
			if t.skips(name) {
				continue
			}
			s |= t.src
			if structural && t.inside {
				resync = true
			}
		case structural:
			s |= t.src
			resync = true
		}
	}
	return s, resync
}
