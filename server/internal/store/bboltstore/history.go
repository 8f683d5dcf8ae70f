package bboltstore

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/quantumlayer/qinfra/pkg/inventory"
	"github.com/quantumlayer/qinfra/server/internal/store"
)

// pruneBatch is how many rows a pruning transaction deletes at most, so a
// large backlog does not hold the write lock for long. Tests lower it.
var pruneBatch = 10_000

// itemChange is a change an update makes, before it is stored.
type itemChange struct {
	key           []byte // item key
	op            string
	before, after []byte // blobs, nil when absent
}

// changeRecord is a store.ItemChange as stored. Before and After are blobs
// (items without kind and key).
type changeRecord struct {
	Seq    uint64    `json:"seq"`
	Time   time.Time `json:"time"`
	Kind   string    `json:"kind"`
	Key    string    `json:"key"`
	Op     string    `json:"op"`
	Before []byte    `json:"before,omitempty"`
	After  []byte    `json:"after,omitempty"`
}

var (
	minKeyTime = time.Unix(0, math.MinInt64)
	maxKeyTime = time.Unix(0, math.MaxInt64)
)

// timeKey encodes t in 8 bytes whose byte order is time order: Unix
// nanoseconds with the sign bit flipped. Times outside what those hold
// (before 1678, after 2262) are clamped.
func timeKey(t time.Time) []byte {
	switch {
	case t.Before(minKeyTime):
		return u64(0)
	case t.After(maxKeyTime):
		return u64(math.MaxUint64)
	}
	return u64(uint64(t.UnixNano()) ^ 1<<63)
}

// recordChanges stores the changes update seq of a host made at time at.
// Each is keyed by time and a number from the history bucket's sequence,
// in the host's bucket and in the global time index.
func recordChanges(tx *bolt.Tx, hostID string, seq uint64, at time.Time, changes []itemChange) error {
	if len(changes) == 0 {
		return nil
	}
	history := tx.Bucket(bucketHistory)
	hb, err := history.CreateBucketIfNotExists([]byte(hostID))
	if err != nil {
		return fmt.Errorf("create history bucket: %w", err)
	}
	byTime := tx.Bucket(bucketHistoryByTime)
	// Both are keyed by the time received, which mostly grows.
	hb.FillPercent, byTime.FillPercent = appendFill, appendFill
	n := history.Sequence()
	if err := history.SetSequence(n + uint64(len(changes))); err != nil {
		return fmt.Errorf("number changes: %w", err)
	}
	tk := timeKey(at)
	host := []byte(hostID)
	for _, ch := range changes {
		n++
		kind, key, err := splitItemKey(ch.key)
		if err != nil {
			return err
		}
		v, err := json.Marshal(&changeRecord{
			Seq: seq, Time: at, Kind: kind, Key: key, Op: ch.op,
			Before: ch.before, After: ch.after,
		})
		if err != nil {
			return fmt.Errorf("encode change: %w", err)
		}
		k := append(tk[:8:8], u64(n)...)
		if err := hb.Put(k, v); err != nil {
			return fmt.Errorf("record change: %w", err)
		}
		if err := byTime.Put(k, host); err != nil {
			return fmt.Errorf("index change: %w", err)
		}
	}
	return nil
}

func decodeChange(hostID string, v []byte) (*store.ItemChange, error) {
	var rec changeRecord
	if err := json.Unmarshal(v, &rec); err != nil {
		return nil, fmt.Errorf("decode change: %w", err)
	}
	ch := &store.ItemChange{HostID: hostID, Seq: rec.Seq, Time: rec.Time, Kind: rec.Kind, Key: rec.Key, Op: rec.Op}
	key := itemKey(inventory.Ref{Kind: rec.Kind, Key: rec.Key})
	var err error
	if rec.Before != nil {
		if ch.Before, err = decodeItem(key, rec.Before); err != nil {
			return nil, err
		}
	}
	if rec.After != nil {
		if ch.After, err = decodeItem(key, rec.After); err != nil {
			return nil, err
		}
	}
	return ch, nil
}

// ListChanges returns the host's changes with Time >= since, oldest first
// (in the order of the updates, then of item keys), at most limit
// (limit <= 0: all).
func (s *Store) ListChanges(ctx context.Context, hostID string, since time.Time, limit int) ([]*store.ItemChange, error) {
	var out []*store.ItemChange
	err := s.view(ctx, func(tx *bolt.Tx) error {
		if !hostExists(tx, hostID) {
			return store.ErrNotFound
		}
		hb := tx.Bucket(bucketHistory).Bucket([]byte(hostID))
		if hb == nil {
			return nil
		}
		c := hb.Cursor()
		for k, v := c.Seek(timeKey(since)); k != nil && (limit <= 0 || len(out) < limit); k, v = c.Next() {
			ch, err := decodeChange(hostID, v)
			if err != nil {
				return fmt.Errorf("change %x: %w", k, err)
			}
			out = append(out, ch)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list changes of host %s: %w", hostID, err)
	}
	return out, nil
}

// PruneHistory deletes the item changes with Time before before, oldest
// first, walking the global time index: the cost is that of the rows
// deleted, whatever the number of hosts. It deletes pruneBatch rows per
// transaction, so a large backlog does not hold up writers, and returns
// how many it deleted, also when it fails part way.
func (s *Store) PruneHistory(ctx context.Context, before time.Time) (int, error) {
	end := timeKey(before)
	total := 0
	for {
		n := 0
		err := s.update(ctx, func(tx *bolt.Tx) error {
			n = 0
			history, byTime := tx.Bucket(bucketHistory), tx.Bucket(bucketHistoryByTime)
			type row struct{ key, host []byte }
			var rows []row
			c := byTime.Cursor()
			for k, v := c.First(); k != nil && bytes.Compare(k[:8], end) < 0 && len(rows) < pruneBatch; k, v = c.Next() {
				rows = append(rows, row{bytes.Clone(k), bytes.Clone(v)})
			}
			touched := map[string]*bolt.Bucket{}
			for _, r := range rows {
				if hb := history.Bucket(r.host); hb != nil {
					if err := hb.Delete(r.key); err != nil {
						return err
					}
					touched[string(r.host)] = hb
				}
				if err := byTime.Delete(r.key); err != nil {
					return err
				}
			}
			for host, hb := range touched {
				if k, _ := hb.Cursor().First(); k == nil {
					if err := history.DeleteBucket([]byte(host)); err != nil {
						return err
					}
				}
			}
			n = len(rows)
			return nil
		})
		if err != nil {
			return total, fmt.Errorf("prune history before %s: %w", before.Format(time.RFC3339), err)
		}
		total += n
		if n < pruneBatch {
			return total, nil
		}
	}
}
