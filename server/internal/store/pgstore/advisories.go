package pgstore

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/quantumlayer/qinfra/server/internal/store"
)

// PutAdvisories stores recs under one new revision; see store.Advisories.
// The advisory_state row is locked for the transaction, so concurrent
// imports (from several replicas) take revisions one after the other.
func (s *Store) PutAdvisories(ctx context.Context, recs []store.StoredAdvisory, now time.Time) error {
	for i := range recs {
		a := &recs[i]
		switch {
		case a.ID == "":
			return fmt.Errorf("put advisories: %w: advisory %d has no ID", store.ErrInvalid, i)
		case a.Modified.IsZero():
			return fmt.Errorf("put advisories: %w: advisory %s has no modified time", store.ErrInvalid, a.ID)
		case !json.Valid(a.Raw):
			return fmt.Errorf("put advisories: %w: advisory %s is not valid JSON", store.ErrInvalid, a.ID)
		}
		fields := []string{"advisory ID", a.ID}
		for _, v := range append(append([]string(nil), a.Ecosystems...), a.Packages...) {
			fields = append(fields, "ecosystem or package of "+a.ID, v)
		}
		if err := checkText(fields...); err != nil {
			return fmt.Errorf("put advisories: %w", err)
		}
	}
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		var rev int64
		if err := tx.QueryRow(ctx, `SELECT revision FROM advisory_state FOR UPDATE`).Scan(&rev); err != nil {
			return err
		}
		rev++
		var b pgx.Batch
		for _, a := range recs {
			b.Queue(`INSERT INTO advisories (id, modified, withdrawn, ecosystems, packages, record, revision)
				VALUES ($1, $2, $3, $4, $5, $6, $7)
				ON CONFLICT (id) DO UPDATE SET modified = EXCLUDED.modified, withdrawn = EXCLUDED.withdrawn,
					ecosystems = EXCLUDED.ecosystems, packages = EXCLUDED.packages,
					record = EXCLUDED.record, revision = EXCLUDED.revision
				WHERE advisories.modified <= EXCLUDED.modified`,
				a.ID, a.Modified, a.Withdrawn, nonNil(a.Ecosystems), nonNil(a.Packages), a.Raw, rev)
		}
		br := tx.SendBatch(ctx, &b)
		changed := false
		for range recs {
			tag, err := br.Exec()
			if err != nil {
				br.Close()
				return mapErr(err)
			}
			changed = changed || tag.RowsAffected() > 0
		}
		if err := br.Close(); err != nil {
			return err
		}
		if !changed {
			return nil
		}
		_, err := tx.Exec(ctx, `UPDATE advisory_state SET revision = $1, updated_at = $2`, rev, now.UTC())
		return err
	})
	if err != nil {
		return fmt.Errorf("put advisories: %w", err)
	}
	return nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// AdvisoriesSince calls fn for the advisories put after revision after,
// reading them in pages so that no transaction stays open while fn runs.
func (s *Store) AdvisoriesSince(ctx context.Context, after uint64, fn func(store.StoredAdvisory) error) error {
	const page = 1000
	lastRev, lastID := int64(after), "\uffff" // (after, max) excludes revision after itself
	for {
		rows, err := s.pool.Query(ctx, `SELECT id, modified, withdrawn, ecosystems, packages, record, revision
			FROM advisories WHERE (revision, id) > ($1, $2) ORDER BY revision, id LIMIT $3`, lastRev, lastID, page)
		if err != nil {
			return fmt.Errorf("list advisories: %w", err)
		}
		list, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.StoredAdvisory, error) {
			var a store.StoredAdvisory
			var rev int64
			err := row.Scan(&a.ID, &a.Modified, &a.Withdrawn, &a.Ecosystems, &a.Packages, &a.Raw, &rev)
			a.Modified = a.Modified.UTC()
			a.Revision = uint64(rev)
			return a, err
		})
		if err != nil {
			return fmt.Errorf("list advisories: %w", err)
		}
		for _, a := range list {
			if err := fn(a); err != nil {
				return err
			}
		}
		if len(list) < page {
			return nil
		}
		last := list[len(list)-1]
		lastRev, lastID = int64(last.Revision), last.ID
	}
}

// GetAdvisoryState returns the summary of the stored advisories.
func (s *Store) GetAdvisoryState(ctx context.Context) (store.AdvisoryState, error) {
	var st store.AdvisoryState
	var rev int64
	var updated pgtype.Timestamptz
	err := s.pool.QueryRow(ctx, `SELECT (SELECT revision FROM advisory_state), (SELECT updated_at FROM advisory_state),
		count(*), count(*) FILTER (WHERE withdrawn) FROM advisories`).Scan(&rev, &updated, &st.Count, &st.Withdrawn)
	if err != nil {
		return st, fmt.Errorf("advisory state: %w", err)
	}
	st.Revision, st.UpdatedAt = uint64(rev), fromTS(updated)
	return st, nil
}
