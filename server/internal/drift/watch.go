package drift

import (
	"context"
	"fmt"
	"slices"
)

// MaxWatchPaths caps the files WatchPaths names for one host. The agent
// refuses longer lists, and a host whose baselines check more files than
// this has a baseline problem, not a watching one.
const MaxWatchPaths = 4096

// WatchPaths returns the files the baselines matching the host's labels
// have rules for, sorted and de-duplicated: the agent must hash them for
// those rules to be checkable, whether or not its own configuration watches
// them. Beyond MaxWatchPaths the list is truncated (the paths sorting last
// are left out) and a warning logged; their rules then show the files as
// absent unless the agent watches them itself.
func (e *Engine) WatchPaths(ctx context.Context, hostID string) ([]string, error) {
	h, err := e.st.GetHost(ctx, hostID)
	if err != nil {
		return nil, fmt.Errorf("watch paths of %s: %w", hostID, err)
	}
	// Cached: a fleet-wide push or reconnect asks once per host.
	bs, err := e.baselines(ctx)
	if err != nil {
		return nil, fmt.Errorf("watch paths of %s: %w", hostID, err)
	}
	var paths []string
	for _, b := range Matching(bs, h.Labels) {
		for _, f := range b.Files {
			paths = append(paths, f.Path)
		}
	}
	slices.Sort(paths)
	paths = slices.Compact(paths)
	if len(paths) > MaxWatchPaths {
		e.log.Warn("the host's baselines name more files than an agent watches for them; the rest are left out",
			"host", hostID, "files", len(paths), "limit", MaxWatchPaths, "first_left_out", paths[MaxWatchPaths])
		paths = paths[:MaxWatchPaths:MaxWatchPaths]
	}
	return paths, nil
}
