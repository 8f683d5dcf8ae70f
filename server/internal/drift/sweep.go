package drift

import (
	"context"
	"fmt"
	"sort"

	"github.com/quantumlayer/qinfra/server/internal/store"
)

// Sweep re-checks one part of the fleet in full — 1/parts of the hosts,
// rounded up: those whose IDs follow after in ID order, wrapping around to
// the first — and returns the ID to continue after and the drift changes
// it made. Called a few hosts at a time from
// the leader's maintenance loop, it walks the whole fleet once a period,
// so drift that incremental checks left wrong heals without an operator:
// a baseline stored whose re-check then failed, a replica that missed the
// bus event of another's baseline change. A sweep that changes anything
// therefore means an update was missed, and is logged as a warning.
func (e *Engine) Sweep(ctx context.Context, after string, parts int) (next string, changes int, err error) {
	hosts, err := e.st.ListHosts(ctx)
	if err != nil {
		return after, 0, fmt.Errorf("drift sweep: %w", err)
	}
	if len(hosts) == 0 {
		return after, 0, nil
	}
	n := (len(hosts) + max(parts, 1) - 1) / max(parts, 1)
	// ListHosts is ordered by ID.
	i := sort.Search(len(hosts), func(i int) bool { return hosts[i].ID > after })
	batch := make([]*store.Host, 0, n)
	for k := range n {
		batch = append(batch, hosts[(i+k)%len(hosts)])
	}
	bs, err := e.baselines(ctx)
	if err != nil {
		return after, 0, fmt.Errorf("drift sweep: %w", err)
	}
	events, err := e.check(ctx, batch, bs, nil)
	if err != nil {
		return after, len(events), fmt.Errorf("drift sweep: %w", err)
	}
	if len(events) > 0 {
		e.log.Warn("drift sweep corrected drift that incremental checks had missed", "changes", len(events), "hosts", len(batch))
	}
	return batch[len(batch)-1].ID, len(events), nil
}
