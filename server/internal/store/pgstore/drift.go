package pgstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/quantumlayer/qinfra/server/internal/store"
)

func driftID(n int64) string { return "d-" + strconv.FormatInt(n, 10) }

func driftNum(id string) (int64, bool) {
	s, ok := strings.CutPrefix(id, "d-")
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil && n > 0
}

// openDrift is an open drift row as ReplaceHostDrift compares it.
type openDrift struct {
	id          int64
	fingerprint []byte
}

// ReplaceHostDrift implements store.DriftStore. One query finds the hosts
// whose drift changed; only those are written, in one transaction, each
// under an advisory lock on its host so replicas do not race.
func (s *Store) ReplaceHostDrift(ctx context.Context, now time.Time, hosts ...store.HostDeviations) ([]store.DriftEvent, error) {
	ids := make([]string, len(hosts))
	for i, h := range hosts {
		if h.HostID == "" || !textOK(h.HostID) {
			return nil, fmt.Errorf("replace drift: %w: bad host ID", store.ErrInvalid)
		}
		ids[i] = h.HostID
	}
	open, err := s.openDrift(ctx, s.pool, ids)
	if err != nil {
		return nil, fmt.Errorf("replace drift: %w", err)
	}
	var changed []int
	for i, h := range hosts {
		if hostDriftChanged(open[h.HostID], &h) {
			changed = append(changed, i)
		}
	}
	if len(changed) == 0 {
		return nil, nil
	}
	var events []store.DriftEvent
	err = s.inTx(ctx, func(tx pgx.Tx) error {
		events = events[:0]
		for _, i := range changed {
			ev, err := replaceHostDrift(ctx, tx, now, &hosts[i])
			if err != nil {
				return fmt.Errorf("host %s: %w", hosts[i].HostID, err)
			}
			events = append(events, ev...)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("replace drift: %w", mapErr(err))
	}
	return events, nil
}

type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

func (s *Store) openDrift(ctx context.Context, q querier, hostIDs []string) (map[string]map[string]openDrift, error) {
	rows, err := q.Query(ctx, `SELECT host_id, identity, id, fingerprint FROM drift WHERE host_id = ANY($1) AND resolved_at IS NULL`, hostIDs)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]map[string]openDrift{}
	for rows.Next() {
		var host string
		var ident []byte
		var od openDrift
		if err := rows.Scan(&host, &ident, &od.id, &od.fingerprint); err != nil {
			return nil, err
		}
		if out[host] == nil {
			out[host] = map[string]openDrift{}
		}
		out[host][string(ident)] = od
	}
	return out, rows.Err()
}

// hostDriftChanged says whether h differs from the host's open drift,
// within h.Scope.
func hostDriftChanged(open map[string]openDrift, h *store.HostDeviations) bool {
	seen := make(map[string]bool, len(h.Deviations))
	for i := range h.Deviations {
		id := h.Deviations[i].Identity()
		if seen[id] {
			continue
		}
		seen[id] = true
		od, ok := open[id]
		if !ok || !bytes.Equal(od.fingerprint, store.DriftFingerprint(&h.Deviations[i])) {
			return true
		}
	}
	if h.Scope == nil {
		return len(open) != len(seen)
	}
	// Every deviation given is open: the drift differs if an open one in
	// the scope was not given.
	for id := range open {
		if !seen[id] && h.Scope.ContainsIdentity(id) {
			return true
		}
	}
	return false
}

// A drift row's doc is the drift as store.EncodeDrift writes it, the ID
// left out as the row's id gives it, or, as builds before it wrote it, the
// store.Drift's JSON; both are read (store.DecodeDrift), and a row is
// rewritten in the binary form whenever it is next written. No query looks
// inside doc: everything a query filters, sorts or counts by is a column.

// scanDoc decodes the doc of drift row n. A damaged doc is an error
// wrapping store.ErrCorruptDrift.
func scanDoc(n int64, doc []byte) (*store.Drift, error) {
	d, err := store.DecodeDrift(doc, driftID(n))
	if err != nil {
		return nil, fmt.Errorf("drift %s: %w", driftID(n), err)
	}
	return d, nil
}

// encodeDoc returns the doc of drift row n holding d.
func encodeDoc(n int64, d *store.Drift) ([]byte, error) {
	doc, err := store.EncodeDrift(d, driftID(n))
	if err != nil {
		return nil, fmt.Errorf("drift %s: %w", driftID(n), err)
	}
	return doc, nil
}

// replaceHostDrift replaces the host's open drift within h.Scope by
// h.Deviations; open drift outside the scope is not touched.
func replaceHostDrift(ctx context.Context, tx pgx.Tx, now time.Time, h *store.HostDeviations) ([]store.DriftEvent, error) {
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext('qinfra.drift:' || $1))`, h.HostID); err != nil {
		return nil, err
	}
	rows, err := tx.Query(ctx, `SELECT identity, fingerprint, id, doc FROM drift WHERE host_id = $1 AND resolved_at IS NULL ORDER BY id`, h.HostID)
	if err != nil {
		return nil, err
	}
	type cur struct {
		n  int64
		fp []byte
		d  *store.Drift
	}
	open := map[string]cur{}
	var order []string
	for rows.Next() {
		var ident, fp, doc []byte
		var n int64
		if err := rows.Scan(&ident, &fp, &n, &doc); err != nil {
			rows.Close()
			return nil, err
		}
		d, err := scanDoc(n, doc)
		if err != nil {
			rows.Close()
			return nil, err
		}
		open[string(ident)] = cur{n, fp, d}
		order = append(order, string(ident))
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	write := func(n int64, d *store.Drift, fp []byte) error {
		doc, err := encodeDoc(n, d)
		if err != nil {
			return err
		}
		var until any
		if d.Acceptance != nil {
			until = d.Acceptance.Until
		}
		_, err = tx.Exec(ctx, `UPDATE drift SET fingerprint = $2, baseline = $3, drift_type = $4, severity = $5,
			resolved_at = $6, accepted_until = $7, doc = $8 WHERE id = $1`,
			n, fp, d.Baseline, d.Type, d.Severity, ts(d.ResolvedAt), until, doc)
		return err
	}
	var events []store.DriftEvent
	seen := map[string]bool{}
	for i := range h.Deviations {
		dev := &h.Deviations[i]
		ident := dev.Identity()
		if seen[ident] {
			continue
		}
		seen[ident] = true
		if err := checkText("baseline", dev.Baseline, "rule", dev.Rule, "kind", dev.Kind, "key", dev.Key, "type", dev.Type,
			"severity", dev.Severity, "action", dev.Action, "expected", dev.Expected, "actual", dev.Actual); err != nil {
			return nil, err
		}
		fp := store.DriftFingerprint(dev)
		if c, ok := open[ident]; ok {
			if bytes.Equal(c.fp, fp) {
				continue
			}
			d := c.d
			if d.Actual != dev.Actual {
				d.Acceptance = nil
			}
			d.Deviation, d.UpdatedAt = *dev, now
			if err := write(c.n, d, fp); err != nil {
				return nil, err
			}
			events = append(events, store.DriftEvent{Op: store.DriftUpdated, Drift: d})
			continue
		}
		var n int64
		if err := tx.QueryRow(ctx, `SELECT nextval(pg_get_serial_sequence('drift', 'id'))`).Scan(&n); err != nil {
			return nil, err
		}
		d := &store.Drift{ID: driftID(n), HostID: h.HostID, Deviation: *dev, OpenedAt: now, UpdatedAt: now}
		doc, err := encodeDoc(n, d)
		if err != nil {
			return nil, err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO drift (id, host_id, identity, fingerprint, baseline, drift_type, severity, opened_at, doc)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`, n, h.HostID, []byte(ident), fp, d.Baseline, d.Type, d.Severity, now, doc); err != nil {
			return nil, err
		}
		events = append(events, store.DriftEvent{Op: store.DriftOpened, Drift: d})
	}
	for _, ident := range order {
		if seen[ident] || !h.Scope.ContainsIdentity(ident) {
			continue // given, or outside the scope: left as it is
		}
		c := open[ident]
		c.d.ResolvedAt, c.d.UpdatedAt, c.d.Acceptance = now, now, nil
		if err := write(c.n, c.d, c.fp); err != nil {
			return nil, err
		}
		events = append(events, store.DriftEvent{Op: store.DriftResolved, Drift: c.d})
	}
	return events, nil
}

// GetDrift implements store.DriftStore.
func (s *Store) GetDrift(ctx context.Context, id string) (*store.Drift, error) {
	n, ok := driftNum(id)
	if !ok {
		return nil, fmt.Errorf("drift %q: %w", id, store.ErrNotFound)
	}
	var doc []byte
	err := s.pool.QueryRow(ctx, `SELECT doc FROM drift WHERE id = $1`, n).Scan(&doc)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("drift %s: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("get drift %s: %w", id, err)
	}
	d, err := scanDoc(n, doc)
	if err != nil {
		return nil, fmt.Errorf("get drift: %w", err)
	}
	return d, nil
}

// ListDrift implements store.DriftStore.
func (s *Store) ListDrift(ctx context.Context, f store.DriftFilter) ([]*store.Drift, error) {
	if err := checkText("host ID", f.HostID, "baseline", f.Baseline, "type", f.Type, "severity", f.Severity); err != nil {
		return nil, nil
	}
	rows, err := s.pool.Query(ctx, `SELECT id, doc FROM drift
		WHERE ($1 = '' OR host_id = $1) AND ($2 = '' OR baseline = $2) AND ($3 = '' OR drift_type = $3)
		  AND ($4 = '' OR severity = $4) AND ($5 OR resolved_at IS NULL)
		ORDER BY host_id, opened_at, id`, f.HostID, f.Baseline, f.Type, f.Severity, f.All)
	if err != nil {
		return nil, fmt.Errorf("list drift: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (*store.Drift, error) {
		var n int64
		var doc []byte
		if err := row.Scan(&n, &doc); err != nil {
			return nil, err
		}
		return scanDoc(n, doc)
	})
	if err != nil {
		return nil, fmt.Errorf("list drift: %w", err)
	}
	return out, nil
}

// CountDrift implements store.DriftStore with one GROUP BY over the drift
// table's columns: no document is read.
func (s *Store) CountDrift(ctx context.Context, f store.DriftFilter, now time.Time) ([]store.DriftCount, error) {
	if err := checkText("host ID", f.HostID, "baseline", f.Baseline, "type", f.Type, "severity", f.Severity); err != nil {
		return nil, nil
	}
	rows, err := s.pool.Query(ctx, `SELECT host_id, baseline, drift_type, severity, coalesce(accepted_until > $6, false), count(*)
		FROM drift
		WHERE ($1 = '' OR host_id = $1) AND ($2 = '' OR baseline = $2) AND ($3 = '' OR drift_type = $3)
		  AND ($4 = '' OR severity = $4) AND ($5 OR resolved_at IS NULL)
		GROUP BY 1, 2, 3, 4, 5
		ORDER BY 1, 2, 3, 4, 5`, f.HostID, f.Baseline, f.Type, f.Severity, f.All, now)
	if err != nil {
		return nil, fmt.Errorf("count drift: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.DriftCount, error) {
		var c store.DriftCount
		err := row.Scan(&c.HostID, &c.Baseline, &c.Type, &c.Severity, &c.Accepted, &c.Count)
		return c, err
	})
	if err != nil {
		return nil, fmt.Errorf("count drift: %w", err)
	}
	return out, nil
}

// AcceptDrift implements store.DriftStore.
func (s *Store) AcceptDrift(ctx context.Context, id string, a store.Acceptance) (*store.Drift, error) {
	n, ok := driftNum(id)
	if !ok {
		return nil, fmt.Errorf("accept drift %q: %w", id, store.ErrNotFound)
	}
	if err := checkText("justification", a.Justification, "by", a.By); err != nil {
		return nil, fmt.Errorf("accept drift %s: %w", id, err)
	}
	var d *store.Drift
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		var doc []byte
		err := tx.QueryRow(ctx, `SELECT doc FROM drift WHERE id = $1 FOR UPDATE`, n).Scan(&doc)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("drift %s: %w", id, store.ErrNotFound)
		}
		if err != nil {
			return err
		}
		if d, err = scanDoc(n, doc); err != nil {
			return err
		}
		if !d.Open() {
			return fmt.Errorf("drift %s is resolved: %w", id, store.ErrInvalid)
		}
		d.Acceptance = &a
		if doc, err = encodeDoc(n, d); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `UPDATE drift SET accepted_until = $2, doc = $3 WHERE id = $1`, n, a.Until, doc)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("accept drift: %w", err)
	}
	return d, nil
}

// ExpireDriftAcceptances implements store.DriftStore.
func (s *Store) ExpireDriftAcceptances(ctx context.Context, now time.Time) ([]*store.Drift, error) {
	var out []*store.Drift
	err := s.inTx(ctx, func(tx pgx.Tx) error {
		out = out[:0]
		rows, err := tx.Query(ctx, `SELECT id, doc FROM drift WHERE accepted_until <= $1 ORDER BY id FOR UPDATE`, now)
		if err != nil {
			return err
		}
		type row struct {
			n int64
			d *store.Drift
		}
		rs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (row, error) {
			var n int64
			var doc []byte
			if err := r.Scan(&n, &doc); err != nil {
				return row{}, err
			}
			d, err := scanDoc(n, doc)
			return row{n, d}, err
		})
		if err != nil {
			return err
		}
		for _, r := range rs {
			d := r.d
			d.Acceptance = nil
			doc, err := encodeDoc(r.n, d)
			if err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `UPDATE drift SET accepted_until = NULL, doc = $2 WHERE id = $1`, r.n, doc); err != nil {
				return err
			}
			out = append(out, d)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("expire drift acceptances: %w", err)
	}
	return out, nil
}

// pruneDriftBatch is how many rows one PruneDrift statement deletes at
// most, each statement its own transaction, so a large backlog is not one
// huge transaction. Tests lower it.
var pruneDriftBatch = 10_000

// PruneDrift implements store.DriftStore. Resolved drift never changes
// again (AcceptDrift refuses it, ReplaceHostDrift touches open drift
// only), so the batches need no lock.
func (s *Store) PruneDrift(ctx context.Context, resolvedBefore time.Time) (int, error) {
	total := 0
	for {
		// id = ANY(ARRAY(...)) rather than id IN (...): the planner may
		// answer IN with a hash join over a scan of the whole table.
		tag, err := s.pool.Exec(ctx, `DELETE FROM drift WHERE id = ANY(ARRAY(
			SELECT id FROM drift WHERE resolved_at < $1 ORDER BY resolved_at LIMIT $2))`, resolvedBefore, pruneDriftBatch)
		if err != nil {
			return total, fmt.Errorf("prune drift resolved before %s: %w", resolvedBefore.Format(time.RFC3339), err)
		}
		n := int(tag.RowsAffected())
		total += n
		if n < pruneDriftBatch {
			return total, nil
		}
	}
}
