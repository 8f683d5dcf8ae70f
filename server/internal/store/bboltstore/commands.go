package bboltstore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/quantumlayer/qinfra/server/internal/store"
)

// commandRecord is a command as stored: the JSON of store.Command plus its
// payload, which store.Command keeps out of its JSON.
type commandRecord struct {
	store.Command
	PayloadBytes []byte `json:"payload"`
}

func encodeCommand(c *store.Command) ([]byte, error) {
	b, err := json.Marshal(&commandRecord{Command: *c, PayloadBytes: c.Payload})
	if err != nil {
		return nil, fmt.Errorf("encode command %s: %w", c.ID, err)
	}
	return b, nil
}

func decodeCommand(b []byte) (*store.Command, error) {
	var rec commandRecord
	if err := json.Unmarshal(b, &rec); err != nil {
		return nil, fmt.Errorf("decode command: %w", err)
	}
	c := rec.Command
	c.Payload = rec.PayloadBytes
	return &c, nil
}

// getCommand reads a command in tx, returning ErrNotFound when it is absent.
func getCommand(tx *bolt.Tx, id string) (*store.Command, error) {
	v := tx.Bucket(bucketCommands).Get([]byte(id))
	if v == nil {
		return nil, store.ErrNotFound
	}
	return decodeCommand(v)
}

func putCommand(tx *bolt.Tx, c *store.Command) error {
	b, err := encodeCommand(c)
	if err != nil {
		return err
	}
	return tx.Bucket(bucketCommands).Put([]byte(c.ID), b)
}

// timeIDKey is the key of a command in a time index: the time, then the ID.
func timeIDKey(t time.Time, id string) []byte {
	return append(timeKey(t), id...)
}

// finishCommand records that c reached a final state: it leaves the
// indexes of unfinished commands.
func finishCommand(tx *bolt.Tx, c *store.Command) error {
	if err := putCommand(tx, c); err != nil {
		return err
	}
	if hb := tx.Bucket(bucketCmdUnfinished).Bucket([]byte(c.HostID)); hb != nil {
		if err := hb.Delete(timeIDKey(c.CreatedAt, c.ID)); err != nil {
			return err
		}
	}
	if !c.Deadline.IsZero() {
		return tx.Bucket(bucketCmdByDeadline).Delete(timeIDKey(c.Deadline, c.ID))
	}
	return nil
}

// CreateCommand stores c in state pending, with no attempt or result, and
// sets c.State. It returns ErrInvalid for an empty ID, ErrNotFound for an
// unknown host and ErrConflict when the ID exists.
func (s *Store) CreateCommand(ctx context.Context, c *store.Command) error {
	if c == nil || c.ID == "" {
		return fmt.Errorf("create command: %w: empty command ID", store.ErrInvalid)
	}
	rec := store.Command{
		ID: c.ID, HostID: c.HostID, Kind: c.Kind, Payload: c.Payload,
		CreatedAt: c.CreatedAt, CreatedBy: c.CreatedBy, Deadline: c.Deadline,
		State: store.CommandPending,
	}
	err := s.update(ctx, func(tx *bolt.Tx) error {
		if !hostExists(tx, rec.HostID) {
			return fmt.Errorf("host %s: %w", rec.HostID, store.ErrNotFound)
		}
		if tx.Bucket(bucketCommands).Get([]byte(rec.ID)) != nil {
			return store.ErrConflict
		}
		if err := putCommand(tx, &rec); err != nil {
			return err
		}
		key := timeIDKey(rec.CreatedAt, rec.ID)
		for _, index := range [][]byte{bucketCmdByHost, bucketCmdUnfinished} {
			hb, err := tx.Bucket(index).CreateBucketIfNotExists([]byte(rec.HostID))
			if err != nil {
				return err
			}
			if err := hb.Put(key, nil); err != nil {
				return err
			}
		}
		if !rec.Deadline.IsZero() {
			return tx.Bucket(bucketCmdByDeadline).Put(timeIDKey(rec.Deadline, rec.ID), nil)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("create command %s: %w", c.ID, err)
	}
	c.State = rec.State
	return nil
}

// GetCommand returns the command, or an error wrapping ErrNotFound.
func (s *Store) GetCommand(ctx context.Context, id string) (*store.Command, error) {
	var c *store.Command
	err := s.view(ctx, func(tx *bolt.Tx) error {
		var err error
		c, err = getCommand(tx, id)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("get command %s: %w", id, err)
	}
	return c, nil
}

// hostCommands returns the commands of a host's index bucket, in the
// index's order (newest first if reverse), at most limit (limit <= 0:
// all). It returns ErrNotFound for an unknown host.
func (s *Store) hostCommands(ctx context.Context, index []byte, hostID string, reverse bool, limit int) ([]*store.Command, error) {
	var out []*store.Command
	err := s.view(ctx, func(tx *bolt.Tx) error {
		if !hostExists(tx, hostID) {
			return store.ErrNotFound
		}
		hb := tx.Bucket(index).Bucket([]byte(hostID))
		if hb == nil {
			return nil
		}
		c := hb.Cursor()
		first, next := c.First, c.Next
		if reverse {
			first, next = c.Last, c.Prev
		}
		for k, _ := first(); k != nil && (limit <= 0 || len(out) < limit); k, _ = next() {
			cmd, err := getCommand(tx, string(k[8:]))
			if err != nil {
				return fmt.Errorf("indexed command %s: %w", k[8:], err)
			}
			out = append(out, cmd)
		}
		return nil
	})
	return out, err
}

// ListCommands returns the host's commands, newest first (by CreatedAt,
// then ID), at most limit (limit <= 0: all). It returns ErrNotFound for an
// unknown host.
func (s *Store) ListCommands(ctx context.Context, hostID string, limit int) ([]*store.Command, error) {
	out, err := s.hostCommands(ctx, bucketCmdByHost, hostID, true, limit)
	if err != nil {
		return nil, fmt.Errorf("list commands of host %s: %w", hostID, err)
	}
	return out, nil
}

// UnfinishedCommands returns the host's pending and sent commands, oldest
// first (by CreatedAt, then ID). It returns ErrNotFound for an unknown
// host.
func (s *Store) UnfinishedCommands(ctx context.Context, hostID string) ([]*store.Command, error) {
	out, err := s.hostCommands(ctx, bucketCmdUnfinished, hostID, false, 0)
	if err != nil {
		return nil, fmt.Errorf("list unfinished commands of host %s: %w", hostID, err)
	}
	return out, nil
}

// errUnchanged rolls back a transaction that has nothing to write.
var errUnchanged = errors.New("unchanged")

// MarkCommandSent moves a pending or sent command to sent at at, counting
// an attempt; a finished command is left alone. It returns ErrNotFound for
// an unknown ID.
func (s *Store) MarkCommandSent(ctx context.Context, id string, at time.Time) error {
	err := s.update(ctx, func(tx *bolt.Tx) error {
		c, err := getCommand(tx, id)
		if err != nil {
			return err
		}
		if store.CommandFinished(c.State) {
			return errUnchanged
		}
		c.State = store.CommandSent
		c.SentAt = at
		c.Attempts++
		return putCommand(tx, c)
	})
	if err != nil && !errors.Is(err, errUnchanged) {
		return fmt.Errorf("mark command %s sent: %w", id, err)
	}
	return nil
}

// ApplyCommandResult records u as store.Commands documents, consuming its
// seq on the host's stream as ApplyInventory does, in one transaction. A
// result that starts a new spool scope is recorded, and the stream then
// needs a full inventory, as after any new scope. FinishedAt defaults to
// ReceivedAt. It returns ErrInvalid, consuming no seq, for an empty
// command ID or a status other than succeeded, failed or refused.
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
	var outcome store.Outcome
	var notFound bool
	err := s.batch(ctx, func(tx *bolt.Tx) error {
		outcome, notFound = 0, false
		st, newScope, err := consumeSeq(tx, u.HostID, u.SpoolID, u.Seq)
		if err != nil {
			return err
		}
		if newScope {
			st.NeedsFull = true
		}
		if err := saveStream(tx, u.HostID, &st); err != nil {
			return err
		}
		c, err := getCommand(tx, u.CommandID)
		switch {
		case errors.Is(err, store.ErrNotFound) || err == nil && c.HostID != u.HostID:
			// The seq is consumed, nothing else changes.
			notFound = true
			return nil
		case err != nil:
			return err
		case store.CommandFinished(c.State):
			outcome = store.Duplicate
			return nil
		}
		c.State, c.ExitCode, c.Output, c.Error = u.Status, u.ExitCode, u.Output, u.Error
		c.FinishedAt = u.FinishedAt
		if c.FinishedAt.IsZero() {
			c.FinishedAt = u.ReceivedAt
		}
		outcome = store.Applied
		return finishCommand(tx, c)
	})
	switch {
	case errors.Is(err, errDuplicate):
		return store.Duplicate, nil
	case err != nil:
		return 0, fmt.Errorf("apply command result seq %d for host %s: %w", u.Seq, u.HostID, err)
	case notFound:
		return 0, fmt.Errorf("apply command result seq %d for host %s: command %s: %w", u.Seq, u.HostID, u.CommandID, store.ErrNotFound)
	}
	return outcome, nil
}

// ExpireCommands moves the unfinished commands whose deadline is before
// now to expired, finished at now, and returns how many. It walks the
// deadline index only.
func (s *Store) ExpireCommands(ctx context.Context, now time.Time) (int, error) {
	n := 0
	err := s.update(ctx, func(tx *bolt.Tx) error {
		n = 0
		end := timeKey(now)
		var ids []string
		c := tx.Bucket(bucketCmdByDeadline).Cursor()
		for k, _ := c.First(); k != nil && bytes.Compare(k[:8], end) < 0; k, _ = c.Next() {
			ids = append(ids, string(k[8:]))
		}
		for _, id := range ids {
			cmd, err := getCommand(tx, id)
			if err != nil {
				return fmt.Errorf("command %s: %w", id, err)
			}
			if store.CommandFinished(cmd.State) {
				// A stale index entry: drop it.
				if err := tx.Bucket(bucketCmdByDeadline).Delete(timeIDKey(cmd.Deadline, id)); err != nil {
					return err
				}
				continue
			}
			cmd.State, cmd.FinishedAt = store.CommandExpired, now
			if err := finishCommand(tx, cmd); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("expire commands: %w", err)
	}
	return n, nil
}
