package bboltstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/quantumlayer/qinfra/server/internal/store"
)

func decodeAudit(k, v []byte) (*store.AuditEntry, error) {
	var e store.AuditEntry
	if err := json.Unmarshal(v, &e); err != nil {
		return nil, fmt.Errorf("decode audit entry %d: %w", binary.BigEndian.Uint64(k), err)
	}
	return &e, nil
}

// AppendAudit chains e to the last entry (or, when every entry was pruned,
// the last pruned) with store.ChainAudit and appends it, in one transaction, so concurrent appends still form one chain. On
// success e holds its Seq, Time, PrevHash and Hash as stored; on error e is
// unchanged.
func (s *Store) AppendAudit(ctx context.Context, e *store.AuditEntry) error {
	entry := *e
	err := s.update(ctx, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketAudit)
		b.FillPercent = appendFill // keyed by a growing sequence
		var prev *store.AuditEntry
		k, v := b.Cursor().Last()
		if k == nil {
			// A log pruned to nothing goes on from its last entry.
			k, v = u64(0), tx.Bucket(bucketMeta).Get(keyAuditPruned)
		}
		if v != nil {
			var err error
			if prev, err = decodeAudit(k, v); err != nil {
				return fmt.Errorf("read last entry: %w", err)
			}
		}
		store.ChainAudit(prev, &entry)
		v, err := json.Marshal(&entry)
		if err != nil {
			return fmt.Errorf("encode: %w", err)
		}
		return b.Put(u64(entry.Seq), v)
	})
	if err != nil {
		return fmt.Errorf("append audit entry %s %s: %w", e.Action, e.Target, err)
	}
	*e = entry
	return nil
}

// ListAudit returns up to limit entries with Seq > after, in order; a
// limit of zero or less means no limit.
func (s *Store) ListAudit(ctx context.Context, after uint64, limit int) ([]*store.AuditEntry, error) {
	if after == math.MaxUint64 {
		return nil, nil
	}
	var out []*store.AuditEntry
	err := s.view(ctx, func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketAudit).Cursor()
		for k, v := c.Seek(u64(after + 1)); k != nil && (limit <= 0 || len(out) < limit); k, v = c.Next() {
			e, err := decodeAudit(k, v)
			if err != nil {
				return err
			}
			out = append(out, e)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list audit entries after %d: %w", after, err)
	}
	return out, nil
}

// PruneAudit deletes the oldest audit entries while their Time is before
// before, and returns how many, also when it fails part way. It deletes
// from the start of the log only: an entry older than before that follows
// a newer one (the clock went back) is kept, with all after it, so what is
// left is one unbroken chain whose oldest entry's PrevHash names the last
// deleted entry. That entry is kept in the meta bucket, so a log pruned to
// nothing goes on from it rather than starting again at seq 1. Each
// transaction deletes pruneBatch entries at most.
func (s *Store) PruneAudit(ctx context.Context, before time.Time) (int, error) {
	total := 0
	for {
		n := 0
		err := s.update(ctx, func(tx *bolt.Tx) error {
			n = 0
			b := tx.Bucket(bucketAudit)
			var keys [][]byte
			var last []byte
			c := b.Cursor()
			for k, v := c.First(); k != nil && len(keys) < pruneBatch; k, v = c.Next() {
				e, err := decodeAudit(k, v)
				if err != nil {
					return err
				}
				if !e.Time.Before(before) {
					break
				}
				keys = append(keys, bytes.Clone(k))
				last = v
			}
			if len(keys) == 0 {
				return nil
			}
			if err := tx.Bucket(bucketMeta).Put(keyAuditPruned, bytes.Clone(last)); err != nil {
				return err
			}
			for _, k := range keys {
				if err := b.Delete(k); err != nil {
					return err
				}
			}
			n = len(keys)
			return nil
		})
		if err != nil {
			return total, fmt.Errorf("prune audit entries before %s: %w", before.Format(time.RFC3339), err)
		}
		total += n
		if n < pruneBatch {
			return total, nil
		}
	}
}
