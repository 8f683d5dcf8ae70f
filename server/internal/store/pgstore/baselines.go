package pgstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/quantumlayer/qinfra/pkg/baseline"
	"github.com/quantumlayer/qinfra/server/internal/store"
)

// PutBaseline implements store.Baselines. Concurrent puts of one name are
// serialised by a transaction-scoped advisory lock.
func (s *Store) PutBaseline(ctx context.Context, b *baseline.Baseline) (created bool, err error) {
	if b == nil || b.Name == "" || !textOK(b.Name) {
		return false, fmt.Errorf("put baseline: %w: no valid name", store.ErrInvalid)
	}
	var version int
	err = s.inTx(ctx, func(tx pgx.Tx) error {
		created, version = false, 0
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext('qinfra.baseline:' || $1))`, b.Name); err != nil {
			return err
		}
		var doc []byte
		err := tx.QueryRow(ctx, `SELECT version, doc FROM baselines WHERE name = $1 ORDER BY version DESC LIMIT 1`, b.Name).Scan(&version, &doc)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
		case err != nil:
			return err
		default:
			var latest baseline.Baseline
			if err := json.Unmarshal(doc, &latest); err != nil {
				return fmt.Errorf("decode version %d: %w", version, err)
			}
			if baseline.SameContent(&latest, b) {
				return nil
			}
		}
		version++
		rec := *b
		rec.Version = version
		v, err := json.Marshal(&rec)
		if err != nil {
			return err
		}
		created = true
		_, err = tx.Exec(ctx, `INSERT INTO baselines (name, version, doc) VALUES ($1, $2, $3)`, b.Name, version, v)
		return err
	})
	if err != nil {
		return false, fmt.Errorf("put baseline %s: %w", b.Name, mapErr(err))
	}
	b.Version = version
	return created, nil
}

func scanBaselines(rows pgx.Rows) ([]*baseline.Baseline, error) {
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (*baseline.Baseline, error) {
		var doc []byte
		if err := row.Scan(&doc); err != nil {
			return nil, err
		}
		b := new(baseline.Baseline)
		return b, json.Unmarshal(doc, b)
	})
}

// GetBaseline implements store.Baselines.
func (s *Store) GetBaseline(ctx context.Context, name string, version int) (*baseline.Baseline, error) {
	if !textOK(name) {
		return nil, fmt.Errorf("baseline %q: %w", name, store.ErrNotFound)
	}
	rows, err := s.pool.Query(ctx, `SELECT doc FROM baselines WHERE name = $1 AND ($2 <= 0 OR version = $2)
		ORDER BY version DESC LIMIT 1`, name, version)
	if err != nil {
		return nil, fmt.Errorf("get baseline %s: %w", name, err)
	}
	out, err := scanBaselines(rows)
	if err != nil {
		return nil, fmt.Errorf("get baseline %s: %w", name, err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("baseline %s version %d: %w", name, version, store.ErrNotFound)
	}
	return out[0], nil
}

// ListBaselines implements store.Baselines.
func (s *Store) ListBaselines(ctx context.Context) ([]*baseline.Baseline, error) {
	rows, err := s.pool.Query(ctx, `SELECT DISTINCT ON (name) doc FROM baselines ORDER BY name, version DESC`)
	if err != nil {
		return nil, fmt.Errorf("list baselines: %w", err)
	}
	out, err := scanBaselines(rows)
	if err != nil {
		return nil, fmt.Errorf("list baselines: %w", err)
	}
	return out, nil
}

// ListBaselineVersions implements store.Baselines.
func (s *Store) ListBaselineVersions(ctx context.Context, name string) ([]*baseline.Baseline, error) {
	if !textOK(name) {
		return nil, fmt.Errorf("baseline %q: %w", name, store.ErrNotFound)
	}
	rows, err := s.pool.Query(ctx, `SELECT doc FROM baselines WHERE name = $1 ORDER BY version`, name)
	if err != nil {
		return nil, fmt.Errorf("list versions of baseline %s: %w", name, err)
	}
	out, err := scanBaselines(rows)
	if err != nil {
		return nil, fmt.Errorf("list versions of baseline %s: %w", name, err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("baseline %s: %w", name, store.ErrNotFound)
	}
	return out, nil
}

// DeleteBaseline implements store.Baselines.
func (s *Store) DeleteBaseline(ctx context.Context, name string) error {
	if !textOK(name) {
		return fmt.Errorf("baseline %q: %w", name, store.ErrNotFound)
	}
	tag, err := s.pool.Exec(ctx, `DELETE FROM baselines WHERE name = $1`, name)
	if err != nil {
		return fmt.Errorf("delete baseline %s: %w", name, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("baseline %s: %w", name, store.ErrNotFound)
	}
	return nil
}
