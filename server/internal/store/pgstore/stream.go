package pgstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/quantumlayer/qinfra/pkg/inventory"
	"github.com/quantumlayer/qinfra/server/internal/store"
)

// stream is a host's streams row.
type stream struct {
	hkey      int64
	started   bool
	spool     []byte
	lastSeq   uint64
	acc       inventory.Accumulator
	needsFull bool
	hasItems  bool
	updatedAt time.Time
}

const streamColumns = `s.hkey, s.started, s.spool_id, s.last_seq, s.acc, s.item_count, s.needs_full, s.has_items, s.updated_at`

func scanStream(row pgx.Row) (stream, error) {
	var st stream
	var lastSeq, count int64
	var acc []byte
	var updated pgtype.Timestamptz
	if err := row.Scan(&st.hkey, &st.started, &st.spool, &lastSeq, &acc, &count, &st.needsFull, &st.hasItems, &updated); err != nil {
		return st, err
	}
	st.lastSeq, st.acc.Count = uint64(lastSeq), uint64(count)
	copy(st.acc.Acc[:], acc)
	st.updatedAt = fromTS(updated)
	return st, nil
}

// consume applies the sequence rules every message of a host's stream
// follows. A spool ID other than the stored one starts a new scope (seqs
// restart from zero). It returns false, changing nothing, for a seq that
// is not above the scope's last one.
func (st *stream) consume(spool string, seq uint64) (newScope, ok bool) {
	newScope = !bytes.Equal([]byte(spool), st.spool)
	last := st.lastSeq
	if newScope {
		last = 0
	}
	if seq <= last {
		return newScope, false
	}
	st.started, st.spool, st.lastSeq = true, []byte(spool), seq
	return newScope, true
}

// lockedRead is a query sent in the round trip that locks a stream row,
// after the lock: it reads what the lock protects.
type lockedRead struct {
	sql  string
	args []any
	// scan reads the rows; it may be called more than once, each time
	// replacing what it read before.
	scan func(pgx.Rows) error
}

// lockStream locks the host's stream row FOR UPDATE and returns it, or
// ErrNotFound for an unknown host. With items, it first takes the shared
// lock that keeps PruneHistory's garbage collector from deleting item
// bodies, as every transaction that references bodies must. The reads in
// then (nil ones are skipped) run after the lock in the same round trip,
// in order.
func (s *Store) lockStream(ctx context.Context, tx pgx.Tx, hostID string, items bool, then ...*lockedRead) (stream, error) {
	if !textOK(hostID) {
		return stream{}, store.ErrNotFound
	}
	const q = `SELECT ` + streamColumns + ` FROM streams s JOIN hosts h ON h.hkey = s.hkey
		WHERE h.id = $1 FOR UPDATE OF s`
	for attempt := 0; ; attempt++ {
		b := &pgx.Batch{}
		if items {
			b.Queue(`SELECT pg_advisory_xact_lock_shared($1, $2)`, lockItemsGC, s.lockKey)
		}
		b.Queue(q, hostID)
		for _, r := range then {
			if r != nil {
				b.Queue(r.sql, r.args...)
			}
		}
		st, found, err := readLocked(tx.SendBatch(ctx, b), items, then)
		switch {
		case err != nil:
			return st, err
		case found:
			return st, nil
		case attempt > 0:
			return st, store.ErrNotFound
		}
		// EnrollHost creates the stream row with the host; create it for
		// a host that was made some other way, and try again.
		if _, err := tx.Exec(ctx, `INSERT INTO streams (hkey) SELECT hkey FROM hosts WHERE id = $1
			ON CONFLICT DO NOTHING`, hostID); err != nil {
			return st, err
		}
		items = false // already held
	}
}

// readLocked reads the results of lockStream's batch.
func readLocked(br pgx.BatchResults, items bool, then []*lockedRead) (st stream, found bool, err error) {
	defer func() {
		if cerr := br.Close(); err == nil {
			err = cerr
		}
	}()
	if items {
		if _, err := br.Exec(); err != nil {
			return st, false, err
		}
	}
	st, err = scanStream(br.QueryRow())
	switch {
	case errors.Is(err, pgx.ErrNoRows):
	case err != nil:
		return st, false, err
	default:
		found = true
	}
	for _, r := range then {
		if r == nil {
			continue
		}
		rows, err := br.Query()
		if err == nil {
			err = r.scan(rows)
		}
		if err != nil {
			return st, false, err
		}
	}
	return st, found, nil
}

// queueSaveStream queues the update of the stream row.
func queueSaveStream(b *pgx.Batch, st *stream) {
	b.Queue(`UPDATE streams SET started = $2, spool_id = $3, last_seq = $4, acc = $5, item_count = $6,
		needs_full = $7, has_items = $8, updated_at = $9 WHERE hkey = $1`,
		st.hkey, st.started, st.spool, int64(st.lastSeq), st.acc.Acc[:], int64(st.acc.Count),
		st.needsFull, st.hasItems, ts(st.updatedAt))
}

// GetStreamState returns the host's stream state: the zero StreamState if
// it has sent nothing, an error wrapping ErrNotFound if it is unknown.
func (s *Store) GetStreamState(ctx context.Context, hostID string) (store.StreamState, error) {
	st, err := s.readStream(ctx, hostID)
	if err != nil {
		return store.StreamState{}, fmt.Errorf("get stream state of host %s: %w", hostID, err)
	}
	if !st.started {
		return store.StreamState{}, nil
	}
	return store.StreamState{
		SpoolID:   string(st.spool),
		LastSeq:   st.lastSeq,
		SetHash:   st.acc.Sum(),
		Items:     int(st.acc.Count),
		NeedsFull: st.needsFull,
		UpdatedAt: st.updatedAt,
	}, nil
}

// readStream reads the host's stream row without locking it.
func (s *Store) readStream(ctx context.Context, hostID string) (stream, error) {
	if !textOK(hostID) {
		return stream{}, store.ErrNotFound
	}
	st, err := scanStream(s.pool.QueryRow(ctx, `SELECT `+streamColumns+`
		FROM streams s JOIN hosts h ON h.hkey = s.hkey WHERE h.id = $1`, hostID))
	if errors.Is(err, pgx.ErrNoRows) {
		// A host without a stream row has sent nothing.
		_, err = hostKey(ctx, s.pool, hostID)
	}
	return st, err
}
