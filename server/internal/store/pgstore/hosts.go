package pgstore

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"google.golang.org/protobuf/proto"

	commonv1 "github.com/quantumlayer/qinfra/proto/gen/qinfra/common/v1"
	"github.com/quantumlayer/qinfra/server/internal/store"
)

const hostColumns = `id, hostname, labels, enrolled_at, last_seen, agent_version,
	facts, facts IS NOT NULL, cert_serial, cert_not_after, revoked, revoked_at`

// scanHost reads a row of hostColumns.
func scanHost(row pgx.Row) (*store.Host, error) {
	var h store.Host
	var enrolled, lastSeen, notAfter, revokedAt pgtype.Timestamptz
	var facts []byte
	var hasFacts bool
	err := row.Scan(&h.ID, &h.Hostname, &h.Labels, &enrolled, &lastSeen, &h.AgentVersion,
		&facts, &hasFacts, &h.CertSerial, &notAfter, &h.Revoked, &revokedAt)
	if err != nil {
		return nil, err
	}
	h.EnrolledAt, h.LastSeen = fromTS(enrolled), fromTS(lastSeen)
	h.CertNotAfter, h.RevokedAt = fromTS(notAfter), fromTS(revokedAt)
	if hasFacts {
		h.Facts = &commonv1.OSFacts{}
		if err := proto.Unmarshal(facts, h.Facts); err != nil {
			return nil, fmt.Errorf("decode facts of host %s: %w", h.ID, err)
		}
	}
	return &h, nil
}

// hostArgs validates h's text fields and returns its column values, in
// the order of hostColumns without the computed one: id, hostname,
// labels, enrolled_at, last_seen, agent_version, facts, cert_serial,
// cert_not_after, revoked, revoked_at.
func hostArgs(h *store.Host) ([]any, error) {
	if err := checkText("host ID", h.ID, "hostname", h.Hostname, "agent version", h.AgentVersion,
		"certificate serial", h.CertSerial); err != nil {
		return nil, err
	}
	if err := checkLabels("labels", h.Labels); err != nil {
		return nil, err
	}
	var facts []byte // NULL when there are none
	if h.Facts != nil {
		b, err := proto.Marshal(h.Facts)
		if err != nil {
			return nil, fmt.Errorf("encode facts: %w", err)
		}
		facts = append([]byte{}, b...) // empty facts, not absent ones
	}
	return []any{h.ID, h.Hostname, labelsArg(h.Labels), ts(h.EnrolledAt), ts(h.LastSeen), h.AgentVersion,
		facts, h.CertSerial, ts(h.CertNotAfter), h.Revoked, ts(h.RevokedAt)}, nil
}

// EnrollHost consumes one use of the enrollment token whose secret hashes
// to tokenHash and creates h, in one transaction that locks the token's
// row, so concurrent enrollments never exceed its uses. The token's labels
// are copied onto h, over any h already has. A token is valid while now
// is before its ExpiresAt and Used is below UsesAllowed. On error nothing
// changes, h included.
func (s *Store) EnrollHost(ctx context.Context, tokenHash []byte, now time.Time, h *store.Host) error {
	if h == nil || h.ID == "" {
		return fmt.Errorf("enroll host: %w: empty host ID", store.ErrInvalid)
	}
	var labels map[string]string
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		var tokID string
		var tokLabels map[string]string
		var allowed, used int64
		var expires pgtype.Timestamptz
		err := tx.QueryRow(ctx, `SELECT id, labels, uses_allowed, used, expires_at
			FROM enrollment_tokens WHERE hash = $1 FOR UPDATE`, tokenHash).
			Scan(&tokID, &tokLabels, &allowed, &used, &expires)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			return fmt.Errorf("%w: unknown token", store.ErrTokenInvalid)
		case err != nil:
			return err
		case !now.Before(fromTS(expires)):
			return fmt.Errorf("%w: token %s expired at %s", store.ErrTokenInvalid, tokID, fromTS(expires).Format(time.RFC3339))
		case used >= allowed:
			return fmt.Errorf("%w: token %s used up (%d of %d uses)", store.ErrTokenInvalid, tokID, used, allowed)
		}
		labels = make(map[string]string, len(h.Labels)+len(tokLabels))
		maps.Copy(labels, h.Labels)
		maps.Copy(labels, tokLabels)
		rec := *h
		rec.Labels = labels
		args, err := hostArgs(&rec)
		if err != nil {
			return err
		}
		// The host, its stream row and the token's use, or nothing.
		var hkey int64
		err = tx.QueryRow(ctx, `
			WITH h AS (
				INSERT INTO hosts (id, hostname, labels, enrolled_at, last_seen, agent_version,
					facts, cert_serial, cert_not_after, revoked, revoked_at)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
				ON CONFLICT (id) DO NOTHING
				RETURNING hkey
			), s AS (
				INSERT INTO streams (hkey) SELECT hkey FROM h
			), t AS (
				UPDATE enrollment_tokens SET used = used + 1
				WHERE id = $12 AND EXISTS (SELECT 1 FROM h)
			)
			SELECT hkey FROM h`, append(args, tokID)...).Scan(&hkey)
		if errors.Is(err, pgx.ErrNoRows) {
			return store.ErrConflict
		}
		return mapErr(err)
	})
	if err != nil {
		return fmt.Errorf("enroll host %s: %w", h.ID, err)
	}
	h.Labels = labels
	return nil
}

// GetHost returns the host, or an error wrapping ErrNotFound.
func (s *Store) GetHost(ctx context.Context, id string) (*store.Host, error) {
	if !textOK(id) {
		return nil, fmt.Errorf("get host %q: %w", id, store.ErrNotFound)
	}
	h, err := scanHost(s.pool.QueryRow(ctx, `SELECT `+hostColumns+` FROM hosts WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		err = store.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("get host %s: %w", id, err)
	}
	return h, nil
}

// ListHosts returns all hosts ordered by ID (byte order).
func (s *Store) ListHosts(ctx context.Context) ([]*store.Host, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+hostColumns+` FROM hosts ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("list hosts: %w", err)
	}
	hosts, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (*store.Host, error) { return scanHost(row) })
	if err != nil {
		return nil, fmt.Errorf("list hosts: %w", err)
	}
	return hosts, nil
}

// fnError marks the error of an UpdateHost callback, returned unwrapped.
type fnError struct{ err error }

func (e fnError) Error() string { return e.err.Error() }

// UpdateHost reads the host with its row locked, calls fn on it and
// writes it back, in one transaction. fn's error aborts the update and is
// returned as is; fn must not change the host's ID.
func (s *Store) UpdateHost(ctx context.Context, id string, fn func(*store.Host) error) error {
	if !textOK(id) {
		return fmt.Errorf("update host %q: %w", id, store.ErrNotFound)
	}
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		h, err := scanHost(tx.QueryRow(ctx, `SELECT `+hostColumns+` FROM hosts WHERE id = $1 FOR UPDATE`, id))
		if errors.Is(err, pgx.ErrNoRows) {
			return store.ErrNotFound
		}
		if err != nil {
			return err
		}
		if err := fn(h); err != nil {
			return fnError{err}
		}
		if h.ID != id {
			return fmt.Errorf("%w: update must not change the host ID (to %q)", store.ErrInvalid, h.ID)
		}
		args, err := hostArgs(h)
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `UPDATE hosts SET hostname = $2, labels = $3, enrolled_at = $4, last_seen = $5,
			agent_version = $6, facts = $7, cert_serial = $8, cert_not_after = $9, revoked = $10, revoked_at = $11
			WHERE id = $1`, args...)
		return mapErr(err)
	})
	var fe fnError
	if errors.As(err, &fe) {
		return fe.err
	}
	if err != nil {
		return fmt.Errorf("update host %s: %w", id, err)
	}
	return nil
}
