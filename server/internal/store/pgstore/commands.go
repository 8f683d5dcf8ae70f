package pgstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/quantumlayer/qinfra/server/internal/store"
)

const commandColumns = `c.id, h.id, c.kind, c.payload, c.created_at, c.created_by, c.deadline, c.state,
	c.sent_at, c.attempts, c.finished_at, c.exit_code, c.output, c.error`

const commandFrom = ` FROM commands c JOIN hosts h ON h.hkey = c.hkey `

func scanCommand(row pgx.Row) (*store.Command, error) {
	var c store.Command
	var created, deadline, sent, finished pgtype.Timestamptz
	var attempts int64
	var output, errText []byte
	if err := row.Scan(&c.ID, &c.HostID, &c.Kind, &c.Payload, &created, &c.CreatedBy, &deadline, &c.State,
		&sent, &attempts, &finished, &c.ExitCode, &output, &errText); err != nil {
		return nil, err
	}
	c.CreatedAt, c.Deadline, c.SentAt, c.FinishedAt = fromTS(created), fromTS(deadline), fromTS(sent), fromTS(finished)
	c.Attempts, c.Output, c.Error = int(attempts), string(output), string(errText)
	return &c, nil
}

func collectCommands(rows pgx.Rows, err error) ([]*store.Command, error) {
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (*store.Command, error) { return scanCommand(row) })
}

// CreateCommand stores c in state pending, with no attempt or result,
// and sets c.State. It returns ErrInvalid for an empty ID, ErrNotFound for
// an unknown host and ErrConflict when the ID exists.
func (s *Store) CreateCommand(ctx context.Context, c *store.Command) error {
	if c == nil || c.ID == "" {
		return fmt.Errorf("create command: %w: empty ID", store.ErrInvalid)
	}
	err := checkText("command ID", c.ID, "kind", c.Kind, "created by", c.CreatedBy)
	if err == nil {
		err = s.inTx(ctx, func(tx pgx.Tx) error {
			hkey, err := hostKey(ctx, tx, c.HostID)
			if err != nil {
				return fmt.Errorf("host %s: %w", c.HostID, err)
			}
			payload := c.Payload
			if payload == nil {
				payload = []byte{}
			}
			tag, err := tx.Exec(ctx, `INSERT INTO commands (id, hkey, kind, payload, created_at, created_by,
					deadline, state, attempts, exit_code, output, error)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 0, 0, '', '')
				ON CONFLICT (id) DO NOTHING`,
				c.ID, hkey, c.Kind, payload, ts(c.CreatedAt), c.CreatedBy, ts(c.Deadline), store.CommandPending)
			if err != nil {
				return mapErr(err)
			}
			if tag.RowsAffected() == 0 {
				return store.ErrConflict
			}
			return nil
		})
	}
	if err != nil {
		return fmt.Errorf("create command %s: %w", c.ID, err)
	}
	c.State = store.CommandPending
	return nil
}

// GetCommand returns the command, or an error wrapping ErrNotFound.
func (s *Store) GetCommand(ctx context.Context, id string) (*store.Command, error) {
	var c *store.Command
	err := store.ErrNotFound
	if textOK(id) {
		c, err = scanCommand(s.pool.QueryRow(ctx, `SELECT `+commandColumns+commandFrom+`WHERE c.id = $1`, id))
		if errors.Is(err, pgx.ErrNoRows) {
			err = store.ErrNotFound
		}
	}
	if err != nil {
		return nil, fmt.Errorf("get command %s: %w", id, err)
	}
	return c, nil
}

// ListCommands returns the host's commands, newest first (by creation
// time, then ID), at most limit (limit <= 0: all). It returns ErrNotFound
// for an unknown host.
func (s *Store) ListCommands(ctx context.Context, hostID string, limit int) ([]*store.Command, error) {
	var lim any // NULL: no limit
	if limit > 0 {
		lim = limit
	}
	hkey, err := hostKey(ctx, s.pool, hostID)
	var out []*store.Command
	if err == nil {
		out, err = collectCommands(s.pool.Query(ctx, `SELECT `+commandColumns+commandFrom+`
			WHERE c.hkey = $1 ORDER BY c.created_at DESC NULLS LAST, c.id DESC LIMIT $2`, hkey, lim))
	}
	if err != nil {
		return nil, fmt.Errorf("list commands of host %s: %w", hostID, err)
	}
	return out, nil
}

// UnfinishedCommands returns the host's pending and sent commands, oldest
// first (by creation time, then ID). It returns ErrNotFound for an
// unknown host.
func (s *Store) UnfinishedCommands(ctx context.Context, hostID string) ([]*store.Command, error) {
	hkey, err := hostKey(ctx, s.pool, hostID)
	var out []*store.Command
	if err == nil {
		out, err = collectCommands(s.pool.Query(ctx, `SELECT `+commandColumns+commandFrom+`
			WHERE c.hkey = $1 AND c.state IN ('pending', 'sent')
			ORDER BY c.created_at NULLS FIRST, c.id`, hkey))
	}
	if err != nil {
		return nil, fmt.Errorf("list unfinished commands of host %s: %w", hostID, err)
	}
	return out, nil
}

// MarkCommandSent moves a pending or sent command to sent at at, counting
// an attempt. A finished command is left alone; an unknown one is
// ErrNotFound.
func (s *Store) MarkCommandSent(ctx context.Context, id string, at time.Time) error {
	err := store.ErrNotFound
	if textOK(id) {
		var state string
		err = s.pool.QueryRow(ctx, `WITH u AS (
				UPDATE commands SET state = 'sent', sent_at = $2, attempts = attempts + 1
				WHERE id = $1 AND state IN ('pending', 'sent')
				RETURNING state
			)
			SELECT state FROM u UNION ALL SELECT state FROM commands WHERE id = $1
			LIMIT 1`, id, ts(at)).Scan(&state)
		if errors.Is(err, pgx.ErrNoRows) {
			err = store.ErrNotFound
		}
	}
	if err != nil {
		return fmt.Errorf("mark command %s sent: %w", id, err)
	}
	return nil
}

// ApplyCommandResult records u's result on its command, in a transaction
// holding the host's stream row like ApplyInventory, so a (host, spool,
// seq) is consumed once whichever message carries it. A result that starts
// a new spool scope is recorded, and the stream then needs a full
// inventory, as after any new scope. A result for a finished command
// consumes the seq and returns Duplicate; one for an unknown command, or
// another host's, consumes the seq and returns ErrNotFound. FinishedAt
// defaults to ReceivedAt. It returns ErrInvalid, consuming no seq, for an
// empty command ID or a status other than succeeded, failed or refused.
func (s *Store) ApplyCommandResult(ctx context.Context, u *store.CommandResultUpdate) (store.Outcome, error) {
	if u == nil {
		return 0, fmt.Errorf("apply command result: %w: nil update", store.ErrInvalid)
	}
	switch {
	case u.CommandID == "":
		return 0, fmt.Errorf("apply command result seq %d for host %s: %w: empty command ID", u.Seq, u.HostID, store.ErrInvalid)
	case u.Status != store.CommandSucceeded && u.Status != store.CommandFailed && u.Status != store.CommandRefused:
		return 0, fmt.Errorf("apply command result seq %d for host %s: %w: status %q", u.Seq, u.HostID, store.ErrInvalid, u.Status)
	}
	finished := u.FinishedAt
	if finished.IsZero() {
		finished = u.ReceivedAt
	}
	// The command's row is locked and read in the stream lock's round
	// trip, if it is the host's: another host's command is not even locked.
	var state string
	var found bool
	read := &lockedRead{
		sql: `SELECT state FROM commands
			WHERE id = $1 AND hkey = (SELECT hkey FROM hosts WHERE id = $2) FOR UPDATE`,
		args: []any{u.CommandID, u.HostID},
		scan: func(rows pgx.Rows) error {
			found = false
			_, err := pgx.ForEachRow(rows, []any{&state}, func() error {
				found = true
				return nil
			})
			return err
		},
	}
	if !textOK(u.CommandID) {
		read = nil // names no command
	}
	var outcome store.Outcome
	var unknown bool
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		st, err := s.lockStream(ctx, tx, u.HostID, false, read)
		if err != nil {
			return err
		}
		newScope, ok := st.consume(u.SpoolID, u.Seq)
		if !ok {
			return errDuplicate
		}
		if newScope {
			// As for a delta: the new scope's inventory starts with a
			// full one.
			st.needsFull = true
		}
		b := &pgx.Batch{}
		queueSaveStream(b, &st)
		switch {
		case !found:
			// The seq is consumed, nothing else changes.
			unknown = true
		case store.CommandFinished(state):
			outcome = store.Duplicate
		default:
			outcome = store.Applied
			b.Queue(`UPDATE commands SET state = $2, finished_at = $3, exit_code = $4, output = $5, error = $6
				WHERE id = $1`, u.CommandID, u.Status, ts(finished), u.ExitCode, []byte(u.Output), []byte(u.Error))
		}
		return tx.SendBatch(ctx, b).Close()
	})
	switch {
	case errors.Is(err, errDuplicate):
		return store.Duplicate, nil
	case err != nil:
		return 0, fmt.Errorf("apply command result seq %d for host %s: %w", u.Seq, u.HostID, err)
	case unknown:
		return 0, fmt.Errorf("apply command result seq %d for host %s: command %s: %w", u.Seq, u.HostID, u.CommandID, store.ErrNotFound)
	}
	return outcome, nil
}

// ExpireCommands moves unfinished commands whose deadline is before now
// to expired, finished at now, and returns how many.
func (s *Store) ExpireCommands(ctx context.Context, now time.Time) (int, error) {
	tag, err := s.pool.Exec(ctx, `UPDATE commands SET state = 'expired', finished_at = $1
		WHERE state IN ('pending', 'sent') AND deadline IS NOT NULL AND deadline < $1`, now)
	if err != nil {
		return 0, fmt.Errorf("expire commands: %w", err)
	}
	return int(tag.RowsAffected()), nil
}
