package runner

import (
	"encoding/json"
	"fmt"
	"path"
	"slices"
	"strings"
)

// Limits on the baseline paths a server may send (ConfigUpdate.baseline_paths).
const (
	maxBaselinePaths   = 4096
	maxBaselinePathLen = 4096
)

// baselinePathsKey is where the spool keeps the baseline paths last
// applied, so that a restarted agent reports the same files from its first
// scan on instead of reporting them removed until the server's Welcome.
const baselinePathsKey = "config/baseline_paths"

// ExtraPathSetter is a Scanner whose files collector can report more paths
// at run time; Collectors is one. SetExtraPaths replaces the literal host
// paths reported besides the configured watch paths and reports whether a
// files collector is enabled to report them.
type ExtraPathSetter interface {
	SetExtraPaths(paths []string) bool
}

// extraPathWatcher is a Watcher that can watch more paths at run time;
// watch.Watcher is one.
type extraPathWatcher interface {
	SetExtraPaths(paths []string)
}

// SetExtraPaths has the files collector report the literal host paths
// besides its watch paths; see collect.Set.SetExtraPaths.
func (c *Collectors) SetExtraPaths(paths []string) bool {
	s, ok := c.sets["files"]
	if !ok {
		return false
	}
	return s.SetExtraPaths(paths)
}

// applyBaselinePaths makes the files the host's baselines check, as the
// server lists them, reported and watched besides the agent's own watch
// paths, and asks for a scan so they reach the server without waiting for
// the scan interval. raw is the complete list: an empty one clears it.
// Invalid entries are dropped with a log line; the valid ones are kept.
//
// What this lets the server do is bounded: it chooses which files the
// agent describes, never what is said about them. A baseline path is
// reported exactly as a watched file is (SHA-256, mode, owner, size, mtime;
// never content), so the server learns only what it could learn of any
// file the agent can stat; the password files stay metadata-only, symlinks
// are not followed, FIFOs and devices not opened, large files not hashed.
// An operator who wants even that off sets accept_baseline_paths: false.
func (r *Runner) applyBaselinePaths(raw []string) {
	r.cfgMu.Lock()
	defer r.cfgMu.Unlock()
	if !r.o.AcceptBaselinePaths {
		if len(raw) > 0 && len(raw) != r.refusedPaths {
			r.log.Info("not watching the files the host's baselines check (accept_baseline_paths: false); "+
				"their rules see them as absent unless watch_paths names them", "paths", len(raw))
		}
		r.refusedPaths = len(raw)
		return
	}
	paths := r.validBaselinePaths(raw)
	if slices.Equal(paths, r.baselinePaths) {
		return
	}
	r.baselinePaths = paths
	r.setBaselinePaths(paths)
	if b, err := json.Marshal(paths); err != nil {
		r.log.Error("encode baseline paths", "err", err)
	} else if err := r.o.Spool.Put(baselinePathsKey, b); err != nil {
		r.log.Error("store baseline paths", "err", err)
	}
	r.log.Info("watching the files the host's baselines check", "paths", len(paths))
	r.ScanNow()
}

// loadBaselinePaths applies the baseline paths stored by the last run, if
// any, before the first scan.
func (r *Runner) loadBaselinePaths() {
	if !r.o.AcceptBaselinePaths {
		return
	}
	b, ok, err := r.o.Spool.Get(baselinePathsKey)
	if err != nil {
		r.log.Error("load baseline paths", "err", err)
		return
	}
	if !ok {
		return
	}
	var raw []string
	if err := json.Unmarshal(b, &raw); err != nil {
		r.log.Error("stored baseline paths do not decode; waiting for the server's", "err", err)
		return
	}
	r.cfgMu.Lock()
	defer r.cfgMu.Unlock()
	r.baselinePaths = r.validBaselinePaths(raw)
	r.setBaselinePaths(r.baselinePaths)
}

// setBaselinePaths hands paths to the scanner and the watcher.
func (r *Runner) setBaselinePaths(paths []string) {
	s, ok := r.o.Scanner.(ExtraPathSetter)
	if !ok || !s.SetExtraPaths(paths) {
		if len(paths) > 0 {
			r.log.Warn("no files collector to report the files the host's baselines check", "paths", len(paths))
		}
		return
	}
	if w, ok := r.o.Watcher.(extraPathWatcher); ok {
		w.SetExtraPaths(paths)
	}
}

// validBaselinePaths returns the valid entries of raw, sorted and without
// duplicates, and logs the invalid ones: a baseline path is an absolute,
// clean slash-separated path (a literal, never a glob) of at most
// maxBaselinePathLen bytes without NUL, and at most maxBaselinePaths are
// taken.
func (r *Runner) validBaselinePaths(raw []string) []string {
	if len(raw) > maxBaselinePaths {
		r.log.Warn("the server sent more baseline paths than an agent takes; the rest are ignored",
			"paths", len(raw), "limit", maxBaselinePaths)
		raw = raw[:maxBaselinePaths]
	}
	var valid, rejected []string
	for _, p := range raw {
		if err := checkBaselinePath(p); err != nil {
			rejected = append(rejected, err.Error())
			continue
		}
		valid = append(valid, p)
	}
	if len(rejected) > 0 {
		r.log.Warn("ignoring invalid baseline paths from the server", "rejected", len(rejected),
			"examples", strings.Join(rejected[:min(len(rejected), 5)], "; "))
	}
	slices.Sort(valid)
	return slices.Compact(valid)
}

func checkBaselinePath(p string) error {
	clip := p
	if len(clip) > 80 {
		clip = clip[:80] + "..."
	}
	switch {
	case len(p) > maxBaselinePathLen:
		return fmt.Errorf("%q: longer than %d bytes", clip, maxBaselinePathLen)
	case strings.IndexByte(p, 0) >= 0:
		return fmt.Errorf("%q: contains NUL", clip)
	case !path.IsAbs(p):
		return fmt.Errorf("%q: not absolute", clip)
	case path.Clean(p) != p:
		return fmt.Errorf("%q: not clean (want %q)", clip, path.Clean(p))
	}
	return nil
}
