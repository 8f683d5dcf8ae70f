package pgstore

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/quantumlayer/qinfra/server/internal/store"
)

// insertToken runs an INSERT of a token, mapping a taken ID or hash to
// ErrConflict.
func (s *Store) insertToken(ctx context.Context, sql string, args ...any) error {
	if _, err := s.pool.Exec(ctx, sql, args...); err != nil {
		if pgCode(err) == codeUniqueViolation {
			return fmt.Errorf("token ID or hash: %w", store.ErrConflict)
		}
		return mapErr(err)
	}
	return nil
}

// CreateEnrollmentToken stores t, or returns ErrConflict when its ID or
// hash exists.
func (s *Store) CreateEnrollmentToken(ctx context.Context, t *store.EnrollmentToken) error {
	if t.ID == "" || len(t.Hash) == 0 {
		return fmt.Errorf("create enrollment token: %w: empty ID or hash", store.ErrInvalid)
	}
	err := checkText("token ID", t.ID, "description", t.Description, "created by", t.CreatedBy)
	if err == nil {
		err = checkLabels("labels", t.Labels)
	}
	if err == nil {
		err = s.insertToken(ctx, `INSERT INTO enrollment_tokens
			(id, hash, description, labels, uses_allowed, used, expires_at, created_at, created_by)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
			t.ID, t.Hash, t.Description, labelsArg(t.Labels), t.UsesAllowed, t.Used,
			ts(t.ExpiresAt), ts(t.CreatedAt), t.CreatedBy)
	}
	if err != nil {
		return fmt.Errorf("create enrollment token %s: %w", t.ID, err)
	}
	return nil
}

// ListEnrollmentTokens returns all enrollment tokens ordered by creation
// time, then ID.
func (s *Store) ListEnrollmentTokens(ctx context.Context) ([]*store.EnrollmentToken, error) {
	rows, err := s.pool.Query(ctx, `SELECT id, hash, description, labels, uses_allowed, used,
		expires_at, created_at, created_by
		FROM enrollment_tokens ORDER BY created_at NULLS FIRST, id`)
	if err != nil {
		return nil, fmt.Errorf("list enrollment tokens: %w", err)
	}
	toks, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (*store.EnrollmentToken, error) {
		var t store.EnrollmentToken
		var allowed, used int64
		var expires, created pgtype.Timestamptz
		if err := row.Scan(&t.ID, &t.Hash, &t.Description, &t.Labels, &allowed, &used,
			&expires, &created, &t.CreatedBy); err != nil {
			return nil, err
		}
		t.UsesAllowed, t.Used = int(allowed), int(used)
		t.ExpiresAt, t.CreatedAt = fromTS(expires), fromTS(created)
		return &t, nil
	})
	if err != nil {
		return nil, fmt.Errorf("list enrollment tokens: %w", err)
	}
	return toks, nil
}

// CreateAPIToken stores t, or returns ErrConflict when its ID or hash
// exists.
func (s *Store) CreateAPIToken(ctx context.Context, t *store.APIToken) error {
	if t.ID == "" || len(t.Hash) == 0 {
		return fmt.Errorf("create API token: %w: empty ID or hash", store.ErrInvalid)
	}
	err := checkText("token ID", t.ID, "name", t.Name, "role", t.Role)
	if err == nil {
		err = s.insertToken(ctx, `INSERT INTO api_tokens (id, hash, name, role, created_at)
			VALUES ($1, $2, $3, $4, $5)`, t.ID, t.Hash, t.Name, t.Role, ts(t.CreatedAt))
	}
	if err != nil {
		return fmt.Errorf("create API token %s: %w", t.ID, err)
	}
	return nil
}

// GetAPITokenByHash returns the API token whose secret hashes to hash, or
// an error wrapping ErrNotFound.
func (s *Store) GetAPITokenByHash(ctx context.Context, hash []byte) (*store.APIToken, error) {
	if len(hash) == 0 {
		return nil, fmt.Errorf("get API token by hash: %w", store.ErrNotFound)
	}
	var t store.APIToken
	var created pgtype.Timestamptz
	err := s.pool.QueryRow(ctx, `SELECT id, hash, name, role, created_at FROM api_tokens WHERE hash = $1`, hash).
		Scan(&t.ID, &t.Hash, &t.Name, &t.Role, &created)
	if errors.Is(err, pgx.ErrNoRows) {
		err = store.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("get API token by hash: %w", err)
	}
	t.CreatedAt = fromTS(created)
	return &t, nil
}
