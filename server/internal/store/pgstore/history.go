package pgstore

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/quantumlayer/qinfra/pkg/inventory"
	"github.com/quantumlayer/qinfra/server/internal/store"
)

// ListChanges returns the host's changes with Time >= since, oldest first
// (in the order of the updates, then of item keys), at most limit
// (limit <= 0: all).
func (s *Store) ListChanges(ctx context.Context, hostID string, since time.Time, limit int) ([]*store.ItemChange, error) {
	out, err := s.listChanges(ctx, hostID, since, limit)
	if err != nil {
		return nil, fmt.Errorf("list changes of host %s: %w", hostID, err)
	}
	return out, nil
}

func (s *Store) listChanges(ctx context.Context, hostID string, since time.Time, limit int) ([]*store.ItemChange, error) {
	hkey, err := hostKey(ctx, s.pool, hostID)
	if err != nil {
		return nil, err
	}
	var lim any // NULL: no limit
	if limit > 0 {
		lim = limit
	}
	rows, err := s.pool.Query(ctx, `SELECT c.seq, c.time, c.kind, c.key, c.op,
			c.before_hash, b.body, c.after_hash, a.body
		FROM item_changes c
		LEFT JOIN items b ON b.body_hash = c.before_hash
		LEFT JOIN items a ON a.body_hash = c.after_hash
		WHERE c.hkey = $1 AND c.time >= $2
		ORDER BY c.time, c.id
		LIMIT $3`, hkey, since, lim)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (*store.ItemChange, error) {
		ch := &store.ItemChange{HostID: hostID}
		var seq int64
		var key, beforeHash, before, afterHash, after []byte
		if err := row.Scan(&seq, &ch.Time, &ch.Kind, &key, &ch.Op, &beforeHash, &before, &afterHash, &after); err != nil {
			return nil, err
		}
		ch.Seq, ch.Time, ch.Key = uint64(seq), ch.Time.UTC(), string(key)
		r := inventory.Ref{Kind: ch.Kind, Key: ch.Key}
		var err error
		if beforeHash != nil {
			if ch.Before, err = decodeBody(r, beforeHash, before); err != nil {
				return nil, err
			}
		}
		if afterHash != nil {
			if ch.After, err = decodeBody(r, afterHash, after); err != nil {
				return nil, err
			}
		}
		return ch, nil
	})
}

// gcBatch is how many item bodies one garbage collection transaction
// examines: it holds ingest off for that long.
const gcBatch = 5000

// PruneHistory deletes the item changes with Time before before and
// returns how many, then deletes the item bodies nothing references any
// more (see collectItems). Bodies are collected here rather than on every
// update: an update never has to find out whether a body it stops using
// is used elsewhere, and a body stays stored while the history refers to
// it.
func (s *Store) PruneHistory(ctx context.Context, before time.Time) (int, error) {
	tag, err := s.pool.Exec(ctx, `DELETE FROM item_changes WHERE time < $1`, before)
	if err != nil {
		return 0, fmt.Errorf("prune history before %s: %w", before.Format(time.RFC3339), err)
	}
	n := int(tag.RowsAffected())
	bodies, err := s.collectItems(ctx)
	if err != nil {
		return n, fmt.Errorf("prune history before %s: %w", before.Format(time.RFC3339), err)
	}
	s.logger.Info("history pruned", "before", before, "changes", n, "bodies", bodies)
	return n, nil
}

// collectItems deletes the item bodies that no base and no item change
// reference (overlays hold their own bodies), and returns how many. It
// walks the bodies in hash order, gcBatch at a time; each batch is checked
// and deleted in a transaction holding the exclusive items lock, which
// waits for the transactions that may be referencing bodies (they hold the
// lock shared, see lockStream) and keeps new ones waiting until it
// commits. A body found unreferenced under that lock cannot be about to
// be referenced.
func (s *Store) collectItems(ctx context.Context) (int, error) {
	total := 0
	after := []byte{}
	for {
		rows, err := s.pool.Query(ctx, `SELECT body_hash FROM items WHERE body_hash > $1 ORDER BY body_hash LIMIT $2`, after, gcBatch)
		if err != nil {
			return total, err
		}
		batch, err := pgx.CollectRows(rows, pgx.RowTo[[]byte])
		if err != nil || len(batch) == 0 {
			return total, err
		}
		after = batch[len(batch)-1]
		var n int
		err = s.inTx(ctx, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1, $2)`, lockItemsGC, s.lockKey); err != nil {
				return err
			}
			tag, err := tx.Exec(ctx, `DELETE FROM items i
				WHERE i.body_hash = ANY($1)
				AND NOT EXISTS (SELECT 1 FROM inv_base_items b WHERE b.body_hash = i.body_hash)
				AND NOT EXISTS (SELECT 1 FROM item_changes c WHERE c.before_hash = i.body_hash)
				AND NOT EXISTS (SELECT 1 FROM item_changes c WHERE c.after_hash = i.body_hash)`, batch)
			n = int(tag.RowsAffected())
			return err
		})
		if err != nil {
			return total, fmt.Errorf("collect item bodies: %w", err)
		}
		total += n
		if len(batch) < gcBatch {
			return total, nil
		}
	}
}
