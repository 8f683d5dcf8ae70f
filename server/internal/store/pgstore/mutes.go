package pgstore

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/quantumlayer/qinfra/server/internal/store"
)

// PutMute creates m; see store.Mutes.
func (s *Store) PutMute(ctx context.Context, m *store.Mute) error {
	if m.ID == "" || m.Vulnerability == "" {
		return fmt.Errorf("put mute: %w: ID and vulnerability are required", store.ErrInvalid)
	}
	if err := checkText("mute ID", m.ID, "host ID", m.HostID, "vulnerability", m.Vulnerability, "package", m.Package,
		"justification", m.Justification, "created by", m.CreatedBy); err != nil {
		return fmt.Errorf("put mute %s: %w", m.ID, err)
	}
	_, err := s.pool.Exec(ctx, `INSERT INTO mutes (id, host_id, vulnerability, package, justification, until, created_by, created_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
		m.ID, m.HostID, m.Vulnerability, m.Package, m.Justification, ts(m.Until), m.CreatedBy, ts(m.CreatedAt))
	if err != nil {
		if pgCode(err) == codeUniqueViolation {
			return fmt.Errorf("mute %s: %w", m.ID, store.ErrConflict)
		}
		return fmt.Errorf("put mute %s: %w", m.ID, mapErr(err))
	}
	return nil
}

// ListMutes returns every mute ordered by ID.
func (s *Store) ListMutes(ctx context.Context) ([]*store.Mute, error) {
	rows, err := s.pool.Query(ctx, `SELECT id, host_id, vulnerability, package, justification, until, created_by, created_at
		FROM mutes ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("list mutes: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (*store.Mute, error) {
		var m store.Mute
		var until, created pgtype.Timestamptz
		err := row.Scan(&m.ID, &m.HostID, &m.Vulnerability, &m.Package, &m.Justification, &until, &m.CreatedBy, &created)
		m.Until, m.CreatedAt = fromTS(until), fromTS(created)
		return &m, err
	})
	if err != nil {
		return nil, fmt.Errorf("list mutes: %w", err)
	}
	return out, nil
}

// DeleteMute deletes one mute, or returns ErrNotFound.
func (s *Store) DeleteMute(ctx context.Context, id string) error {
	tag, err := s.pool.Exec(ctx, `DELETE FROM mutes WHERE id = $1`, id)
	if err != nil {
		return fmt.Errorf("delete mute %s: %w", id, mapErr(err))
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("mute %s: %w", id, store.ErrNotFound)
	}
	return nil
}
