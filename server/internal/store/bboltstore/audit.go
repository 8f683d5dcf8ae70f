package bboltstore

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"

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

// AppendAudit chains e to the last entry with store.ChainAudit and appends
// it, in one transaction, so concurrent appends still form one chain. On
// success e holds its Seq, Time, PrevHash and Hash as stored; on error e is
// unchanged.
func (s *Store) AppendAudit(ctx context.Context, e *store.AuditEntry) error {
	entry := *e
	err := s.update(ctx, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketAudit)
		var prev *store.AuditEntry
		if k, v := b.Cursor().Last(); k != nil {
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
