package store

import (
	"context"
	"time"

	commonv1 "github.com/quantumlayer/qinfra/proto/gen/qinfra/common/v1"
)

// Item change operations.
const (
	ChangeAdded   = "added"
	ChangeChanged = "changed"
	ChangeRemoved = "removed"
)

// ItemChange is one entry of a host's inventory timeline: an item added,
// changed (Before and After both set) or removed. ApplyInventory records
// them for every Applied update except a host's first full inventory,
// which is the starting point rather than a change. A later full
// inventory records the difference from the stored set.
type ItemChange struct {
	HostID string         `json:"host_id"`
	Seq    uint64         `json:"seq"`
	Time   time.Time      `json:"time"`
	Kind   string         `json:"kind"`
	Key    string         `json:"key"`
	Op     string         `json:"op"`
	Before *commonv1.Item `json:"-"`
	After  *commonv1.Item `json:"-"`
}

// History reads the inventory timeline.
type History interface {
	// ListChanges returns a host's changes with Time >= since, oldest
	// first, at most limit (limit <= 0: all). ErrNotFound for an unknown
	// host.
	ListChanges(ctx context.Context, hostID string, since time.Time, limit int) ([]*ItemChange, error)
}

// Retention prunes what is kept only for a while.
type Retention interface {
	// PruneHistory deletes item changes older than before and returns how
	// many.
	PruneHistory(ctx context.Context, before time.Time) (int, error)
	// PruneAudit deletes audit entries older than before and returns how
	// many. The chain stays verifiable from the oldest kept entry: its
	// PrevHash still names the pruned predecessor's hash.
	PruneAudit(ctx context.Context, before time.Time) (int, error)
}
