package pgstore

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/quantumlayer/qinfra/server/internal/store"
)

// AppendAudit chains e to the last entry (or, when every entry was
// pruned, the last pruned one) with store.ChainAudit and appends it. The
// transaction locks the chain's head row FOR UPDATE, so appends from every
// replica form one chain. On success e holds its Seq, Time, PrevHash and
// Hash as stored; on error e is unchanged. Fields PostgreSQL's text cannot
// hold (NUL bytes, invalid UTF-8) are refused with ErrInvalid rather than
// stored altered, which would break the chain.
func (s *Store) AppendAudit(ctx context.Context, e *store.AuditEntry) error {
	entry := *e
	err := checkText("actor", e.Actor, "action", e.Action, "target", e.Target, "detail", e.Detail)
	if err == nil {
		err = s.inTx(ctx, func(tx pgx.Tx) error {
			var seq int64
			var hash []byte
			if err := tx.QueryRow(ctx, `SELECT seq, hash FROM audit_head FOR UPDATE`).Scan(&seq, &hash); err != nil {
				return fmt.Errorf("read the chain head: %w", err)
			}
			var prev *store.AuditEntry
			if seq > 0 {
				prev = &store.AuditEntry{Seq: uint64(seq), Hash: hash}
			}
			store.ChainAudit(prev, &entry)
			b := &pgx.Batch{}
			b.Queue(`INSERT INTO audit_log (seq, time, actor, action, target, detail, prev_hash, hash)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
				int64(entry.Seq), entry.Time, entry.Actor, entry.Action, entry.Target, entry.Detail, entry.PrevHash, entry.Hash)
			b.Queue(`UPDATE audit_head SET seq = $1, hash = $2`, int64(entry.Seq), entry.Hash)
			return tx.SendBatch(ctx, b).Close()
		})
	}
	if err != nil {
		return fmt.Errorf("append audit entry %s %s: %w", e.Action, e.Target, err)
	}
	*e = entry
	return nil
}

// ListAudit returns up to limit entries with Seq > after, in order; a
// limit of zero or less means no limit.
func (s *Store) ListAudit(ctx context.Context, after uint64, limit int) ([]*store.AuditEntry, error) {
	if after >= math.MaxInt64 {
		return nil, nil // seqs are bigints
	}
	var lim any // NULL: no limit
	if limit > 0 {
		lim = limit
	}
	rows, err := s.pool.Query(ctx, `SELECT seq, time, actor, action, target, detail, prev_hash, hash
		FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2`, int64(after), lim)
	if err != nil {
		return nil, fmt.Errorf("list audit entries after %d: %w", after, err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (*store.AuditEntry, error) {
		var e store.AuditEntry
		var seq int64
		if err := row.Scan(&seq, &e.Time, &e.Actor, &e.Action, &e.Target, &e.Detail, &e.PrevHash, &e.Hash); err != nil {
			return nil, err
		}
		e.Seq, e.Time = uint64(seq), e.Time.UTC()
		return &e, nil
	})
	if err != nil {
		return nil, fmt.Errorf("list audit entries after %d: %w", after, err)
	}
	return out, nil
}

// PruneAudit deletes the oldest audit entries while their Time is before
// before, and returns how many. It deletes from the start of the log
// only: an entry older than before that follows a newer one (the clock
// went back) is kept, with all after it, so what is left is one unbroken
// chain whose oldest entry's PrevHash names the last deleted entry. The
// chain's head row is not touched, so a log pruned to nothing goes on from
// the last entry rather than starting again at seq 1.
func (s *Store) PruneAudit(ctx context.Context, before time.Time) (int, error) {
	// The first entry at or after before bounds the prefix; without one,
	// every entry is older. An append committing meanwhile gets a seq
	// above every entry seen, so it is never deleted.
	tag, err := s.pool.Exec(ctx, `DELETE FROM audit_log WHERE seq < coalesce(
		(SELECT min(seq) FROM audit_log WHERE time >= $1),
		(SELECT max(seq) + 1 FROM audit_log))`, before)
	if err != nil {
		return 0, fmt.Errorf("prune audit entries before %s: %w", before.Format(time.RFC3339), err)
	}
	return int(tag.RowsAffected()), nil
}
