package bboltstore

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/quantumlayer/qinfra/pkg/baseline"
	"github.com/quantumlayer/qinfra/server/internal/store"
)

// driftID formats a drift number as the API shows it.
func driftID(n uint64) string { return "d-" + strconv.FormatUint(n, 10) }

// driftNum parses a drift ID; ok is false for one this store never made.
func driftNum(id string) (uint64, bool) {
	s, ok := strings.CutPrefix(id, "d-")
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseUint(s, 10, 64)
	return n, err == nil && n > 0
}

var fingerprint = store.DriftFingerprint

// openEntry is a drift_open value: drift number, fingerprint (24 bytes
// so far), then the drift's type, its length a uvarint first, and its
// severity, so that CountDrift needs no doc. Values written before
// CountDrift end after the fingerprint; Open extends them once
// (indexDrift), and CountDrift decodes the doc of any still short.
func openEntry(n uint64, fp []byte, d *baseline.Deviation) []byte {
	v := make([]byte, 0, 24+1+len(d.Type)+len(d.Severity))
	v = append(append(v, u64(n)...), fp...)
	v = binary.AppendUvarint(v, uint64(len(d.Type)))
	return append(append(v, d.Type...), d.Severity...)
}

// openTypeSeverity returns the type and severity an openEntry value holds;
// ok is false for a value that holds none.
func openTypeSeverity(v []byte) (typ, sev string, ok bool) {
	if len(v) <= 24 {
		return "", "", false
	}
	l, m := binary.Uvarint(v[24:])
	if m <= 0 || l > uint64(len(v)-24-m) {
		return "", "", false
	}
	rest := v[24+m:]
	return string(rest[:l]), string(rest[l:]), true
}

// identityBaseline returns the baseline of a deviation identity
// (baseline.Deviation.Identity); ok is false when its fields cannot be
// told apart.
func identityBaseline(id []byte) (string, bool) {
	if bytes.Count(id, []byte{0}) != 3 {
		return "", false
	}
	bl, _, _ := bytes.Cut(id, []byte{0})
	return string(bl), true
}

// hostDriftDiff says whether a host's deviations differ from its open
// drift as drift_open records it, within scope (nil: all of it).
func hostDriftDiff(open *bolt.Bucket, devs []baseline.Deviation, scope *baseline.Scope) bool {
	seen := make(map[string]bool, len(devs))
	for i := range devs {
		id := devs[i].Identity()
		if seen[id] {
			continue
		}
		seen[id] = true
		var v []byte
		if open != nil {
			v = open.Get([]byte(id))
		}
		if len(v) < 24 || !bytes.Equal(v[8:24], fingerprint(&devs[i])) {
			return true
		}
	}
	if open == nil {
		return false
	}
	if scope == nil {
		return open.Stats().KeyN != len(seen)
	}
	// Every deviation given is open: the drift differs if an open one in
	// the scope was not given.
	c := open.Cursor()
	for k, _ := c.First(); k != nil; k, _ = c.Next() {
		if !seen[string(k)] && scope.ContainsIdentity(string(k)) {
			return true
		}
	}
	return false
}

// ReplaceHostDrift implements store.DriftStore. A read transaction first
// finds the hosts whose drift changed; only those are written.
func (s *Store) ReplaceHostDrift(ctx context.Context, now time.Time, hosts ...store.HostDeviations) ([]store.DriftEvent, error) {
	var changed []int
	err := s.view(ctx, func(tx *bolt.Tx) error {
		root := tx.Bucket(bucketDriftOpen)
		for i, h := range hosts {
			var open *bolt.Bucket
			if root != nil {
				open = root.Bucket([]byte(h.HostID))
			}
			if hostDriftDiff(open, h.Deviations, h.Scope) {
				changed = append(changed, i)
			}
		}
		return nil
	})
	if err != nil || len(changed) == 0 {
		return nil, err
	}
	var events []store.DriftEvent
	err = s.update(ctx, func(tx *bolt.Tx) error {
		events = events[:0]
		b, err := driftBuckets(tx)
		if err != nil {
			return err
		}
		for _, i := range changed {
			ev, err := replaceHost(b, now, &hosts[i])
			if err != nil {
				return fmt.Errorf("host %s: %w", hosts[i].HostID, err)
			}
			events = append(events, ev...)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("replace drift: %w", err)
	}
	return events, nil
}

type driftBkts struct{ drift, open, byHost, accepted, resolved *bolt.Bucket }

// driftBuckets creates the drift buckets as needed and returns them, the
// drift and its resolution index set to split pages at appendFill.
func driftBuckets(tx *bolt.Tx) (b driftBkts, err error) {
	for _, x := range []struct {
		name []byte
		dst  **bolt.Bucket
	}{
		{bucketDrift, &b.drift}, {bucketDriftOpen, &b.open}, {bucketDriftByHost, &b.byHost},
		{bucketDriftAccepted, &b.accepted}, {bucketDriftResolved, &b.resolved},
	} {
		if *x.dst, err = tx.CreateBucketIfNotExists(x.name); err != nil {
			return b, err
		}
	}
	// Drift numbers come from NextSequence, resolution times from the
	// clock: both grow.
	b.drift.FillPercent, b.resolved.FillPercent = appendFill, appendFill
	return b, nil
}

// resolvedKey is a drift_resolved key: resolution time, drift number.
func resolvedKey(at time.Time, n uint64) []byte { return append(timeKey(at), u64(n)...) }

func getDrift(b *bolt.Bucket, n uint64) (*store.Drift, error) {
	v := b.Get(u64(n))
	if v == nil {
		return nil, fmt.Errorf("drift %s: %w", driftID(n), store.ErrNotFound)
	}
	return decodeDrift(n, v)
}

// decodeDrift decodes the value of drift n (store.DecodeDrift). A damaged
// value is an error wrapping ErrCorrupt (and store.ErrCorruptDrift).
func decodeDrift(n uint64, v []byte) (*store.Drift, error) {
	d, err := store.DecodeDrift(v, driftID(n))
	if err != nil {
		return nil, fmt.Errorf("decode drift %s: %w: %w", driftID(n), ErrCorrupt, err)
	}
	return d, nil
}

// putDrift writes drift n in the binary form (store.EncodeDrift, the ID
// left out when the key gives it), whatever form it was read from.
func putDrift(b *bolt.Bucket, n uint64, d *store.Drift) error {
	v, err := store.EncodeDrift(d, driftID(n))
	if err != nil {
		return fmt.Errorf("encode drift %s: %w", driftID(n), err)
	}
	return b.Put(u64(n), v)
}

// replaceHost replaces the host's open drift within h.Scope by
// h.Deviations; open drift outside the scope is not touched.
func replaceHost(b driftBkts, now time.Time, h *store.HostDeviations) ([]store.DriftEvent, error) {
	if h.HostID == "" {
		return nil, fmt.Errorf("%w: empty host ID", store.ErrInvalid)
	}
	open, err := b.open.CreateBucketIfNotExists([]byte(h.HostID))
	if err != nil {
		return nil, err
	}
	byHost, err := b.byHost.CreateBucketIfNotExists([]byte(h.HostID))
	if err != nil {
		return nil, err
	}
	byHost.FillPercent = appendFill // drift numbers grow
	var events []store.DriftEvent
	seen := make(map[string]bool, len(h.Deviations))
	for i := range h.Deviations {
		dev := &h.Deviations[i]
		id := dev.Identity()
		if seen[id] {
			continue
		}
		seen[id] = true
		fp := fingerprint(dev)
		v := open.Get([]byte(id))
		if len(v) >= 24 {
			if bytes.Equal(v[8:24], fp) {
				continue
			}
			n := binary.BigEndian.Uint64(v[:8])
			d, err := getDrift(b.drift, n)
			if err != nil {
				return nil, err
			}
			if d.Actual != dev.Actual && d.Acceptance != nil {
				d.Acceptance = nil
				if err := b.accepted.Delete(u64(n)); err != nil {
					return nil, err
				}
			}
			d.Deviation, d.UpdatedAt = *dev, now
			if err := putDrift(b.drift, n, d); err != nil {
				return nil, err
			}
			if err := open.Put([]byte(id), openEntry(n, fp, dev)); err != nil {
				return nil, err
			}
			events = append(events, store.DriftEvent{Op: store.DriftUpdated, Drift: d})
			continue
		}
		n, err := b.drift.NextSequence()
		if err != nil {
			return nil, err
		}
		d := &store.Drift{ID: driftID(n), HostID: h.HostID, Deviation: *dev, OpenedAt: now, UpdatedAt: now}
		if err := putDrift(b.drift, n, d); err != nil {
			return nil, err
		}
		if err := open.Put([]byte(id), openEntry(n, fp, dev)); err != nil {
			return nil, err
		}
		if err := byHost.Put(u64(n), nil); err != nil {
			return nil, err
		}
		events = append(events, store.DriftEvent{Op: store.DriftOpened, Drift: d})
	}
	var gone [][]byte
	c := open.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if !seen[string(k)] && h.Scope.ContainsIdentity(string(k)) {
			gone = append(gone, bytes.Clone(k))
			n := binary.BigEndian.Uint64(v[:8])
			d, err := getDrift(b.drift, n)
			if err != nil {
				return nil, err
			}
			d.ResolvedAt, d.UpdatedAt = now, now
			if err := putDrift(b.drift, n, d); err != nil {
				return nil, err
			}
			if err := b.accepted.Delete(u64(n)); err != nil {
				return nil, err
			}
			if err := b.resolved.Put(resolvedKey(now, n), []byte(h.HostID)); err != nil {
				return nil, err
			}
			events = append(events, store.DriftEvent{Op: store.DriftResolved, Drift: d})
		}
	}
	for _, k := range gone {
		if err := open.Delete(k); err != nil {
			return nil, err
		}
	}
	return events, nil
}

// GetDrift implements store.DriftStore.
func (s *Store) GetDrift(ctx context.Context, id string) (*store.Drift, error) {
	n, ok := driftNum(id)
	if !ok {
		return nil, fmt.Errorf("drift %q: %w", id, store.ErrNotFound)
	}
	var d *store.Drift
	err := s.view(ctx, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketDrift)
		if b == nil {
			return fmt.Errorf("drift %s: %w", id, store.ErrNotFound)
		}
		var err error
		d, err = getDrift(b, n)
		return err
	})
	return d, err
}

// ListDrift implements store.DriftStore.
func (s *Store) ListDrift(ctx context.Context, f store.DriftFilter) ([]*store.Drift, error) {
	var out []*store.Drift
	err := s.view(ctx, func(tx *bolt.Tx) error {
		drift := tx.Bucket(bucketDrift)
		if drift == nil {
			return nil
		}
		add := func(n uint64) error {
			d, err := getDrift(drift, n)
			if err != nil {
				return err
			}
			if (f.Baseline == "" || d.Baseline == f.Baseline) && (f.Type == "" || d.Type == f.Type) &&
				(f.Severity == "" || d.Severity == f.Severity) && (f.HostID == "" || d.HostID == f.HostID) {
				out = append(out, d)
			}
			return nil
		}
		if f.All {
			if f.HostID != "" {
				hb := bucketIn(tx, bucketDriftByHost, f.HostID)
				if hb == nil {
					return nil
				}
				return hb.ForEach(func(k, _ []byte) error { return add(binary.BigEndian.Uint64(k)) })
			}
			return drift.ForEach(func(k, _ []byte) error { return add(binary.BigEndian.Uint64(k)) })
		}
		eachHost := func(hb *bolt.Bucket) error {
			return hb.ForEach(func(_, v []byte) error { return add(binary.BigEndian.Uint64(v[:8])) })
		}
		if f.HostID != "" {
			if hb := bucketIn(tx, bucketDriftOpen, f.HostID); hb != nil {
				return eachHost(hb)
			}
			return nil
		}
		root := tx.Bucket(bucketDriftOpen)
		if root == nil {
			return nil
		}
		return root.ForEachBucket(func(k []byte) error { return eachHost(root.Bucket(k)) })
	})
	if err != nil {
		return nil, fmt.Errorf("list drift: %w", err)
	}
	slices.SortFunc(out, func(a, b *store.Drift) int {
		an, _ := driftNum(a.ID)
		bn, _ := driftNum(b.ID)
		return cmp.Or(cmp.Compare(a.HostID, b.HostID), a.OpenedAt.Compare(b.OpenedAt), cmp.Compare(an, bn))
	})
	return out, nil
}

// bucketIn returns the nested bucket name of the top-level bucket top, or
// nil.
func bucketIn(tx *bolt.Tx, top []byte, name string) *bolt.Bucket {
	root := tx.Bucket(top)
	if root == nil {
		return nil
	}
	return root.Bucket([]byte(name))
}

// AcceptDrift implements store.DriftStore.
func (s *Store) AcceptDrift(ctx context.Context, id string, a store.Acceptance) (*store.Drift, error) {
	n, ok := driftNum(id)
	if !ok {
		return nil, fmt.Errorf("accept drift %q: %w", id, store.ErrNotFound)
	}
	var d *store.Drift
	err := s.update(ctx, func(tx *bolt.Tx) error {
		b, err := driftBuckets(tx)
		if err != nil {
			return err
		}
		if d, err = getDrift(b.drift, n); err != nil {
			return err
		}
		if !d.Open() {
			return fmt.Errorf("drift %s is resolved: %w", id, store.ErrInvalid)
		}
		d.Acceptance = &a
		if err := putDrift(b.drift, n, d); err != nil {
			return err
		}
		// The value, Until's time key, lets CountDrift judge the
		// acceptance without the doc.
		return b.accepted.Put(u64(n), timeKey(a.Until))
	})
	if err != nil {
		return nil, fmt.Errorf("accept drift: %w", err)
	}
	return d, nil
}

// ExpireDriftAcceptances implements store.DriftStore.
func (s *Store) ExpireDriftAcceptances(ctx context.Context, now time.Time) ([]*store.Drift, error) {
	var out []*store.Drift
	err := s.update(ctx, func(tx *bolt.Tx) error {
		out = out[:0]
		acc := tx.Bucket(bucketDriftAccepted)
		if acc == nil {
			return nil
		}
		drift := tx.Bucket(bucketDrift)
		drift.FillPercent = appendFill
		var expired [][]byte
		err := acc.ForEach(func(k, _ []byte) error {
			d, err := getDrift(drift, binary.BigEndian.Uint64(k))
			if err != nil {
				return err
			}
			if d.Acceptance != nil && now.Before(d.Acceptance.Until) {
				return nil
			}
			d.Acceptance = nil
			if err := putDrift(drift, binary.BigEndian.Uint64(k), d); err != nil {
				return err
			}
			expired = append(expired, bytes.Clone(k))
			out = append(out, d)
			return nil
		})
		if err != nil {
			return err
		}
		for _, k := range expired {
			if err := acc.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("expire drift acceptances: %w", err)
	}
	return out, nil
}

// PruneDrift implements store.DriftStore. It walks drift_resolved from its
// oldest entry, so the cost is that of the drift deleted, and deletes
// pruneBatch drifts per transaction.
func (s *Store) PruneDrift(ctx context.Context, resolvedBefore time.Time) (int, error) {
	end := timeKey(resolvedBefore)
	total := 0
	for {
		n, rows := 0, 0
		err := s.update(ctx, func(tx *bolt.Tx) error {
			n, rows = 0, 0
			idx := tx.Bucket(bucketDriftResolved)
			if idx == nil {
				return nil
			}
			b, err := driftBuckets(tx)
			if err != nil {
				return err
			}
			type row struct{ key, host []byte }
			var batch []row
			c := idx.Cursor()
			for k, v := c.First(); k != nil && bytes.Compare(k, end) < 0 && len(batch) < pruneBatch; k, v = c.Next() {
				batch = append(batch, row{bytes.Clone(k), bytes.Clone(v)})
			}
			touched := map[string]*bolt.Bucket{}
			for _, r := range batch {
				if err := idx.Delete(r.key); err != nil {
					return err
				}
				if len(r.key) != 16 {
					continue // not an entry this store wrote
				}
				num := r.key[8:]
				if b.drift.Get(num) != nil {
					if err := b.drift.Delete(num); err != nil {
						return err
					}
					n++
				}
				// Resolution already left drift_accepted; an entry
				// there would be a stray.
				if err := b.accepted.Delete(num); err != nil {
					return err
				}
				if hb := b.byHost.Bucket(r.host); hb != nil {
					if err := hb.Delete(num); err != nil {
						return err
					}
					touched[string(r.host)] = hb
				}
			}
			for host, hb := range touched {
				if k, _ := hb.Cursor().First(); k == nil {
					if err := b.byHost.DeleteBucket([]byte(host)); err != nil {
						return err
					}
				}
			}
			rows = len(batch)
			return nil
		})
		total += n
		if err != nil {
			return total, fmt.Errorf("prune drift resolved before %s: %w", resolvedBefore.Format(time.RFC3339), err)
		}
		if rows < pruneBatch {
			return total, nil
		}
	}
}

// indexDrift brings the drift indexes of a file written before they
// existed up to driftIndexVersion, once: drift_resolved gets an entry for
// each resolved drift, drift_open values gain the type and severity, and
// drift_accepted values the acceptance's end. meta's keyDriftIndex records
// that it is done, and is set at once on a file with no drift. It decodes
// every drift, pruneBatch per transaction; an interrupted run starts again
// at the next Open, rewriting what it wrote as it was. Doing this once here
// rather than falling back to a scan in PruneDrift keeps PruneDrift's cost
// that of what it deletes, with no second code path kept for old files.
func indexDrift(db *bolt.DB, logger *slog.Logger) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: %v", ErrCorrupt, r)
		}
	}()
	var done bool
	err = db.View(func(tx *bolt.Tx) error {
		done = getU64(tx.Bucket(bucketMeta), keyDriftIndex) >= driftIndexVersion
		return nil
	})
	if err != nil || done {
		return err
	}
	start := time.Now()
	var after []byte // last drift key indexed
	scanned, resolved := 0, 0
	for !done {
		err := db.Update(func(tx *bolt.Tx) error {
			if tx.Bucket(bucketDrift) == nil {
				done = true
				return tx.Bucket(bucketMeta).Put(keyDriftIndex, u64(driftIndexVersion))
			}
			b, err := driftBuckets(tx)
			if err != nil {
				return err
			}
			c := b.drift.Cursor()
			k, v := c.First()
			if after != nil {
				if k, v = c.Seek(after); bytes.Equal(k, after) {
					k, v = c.Next()
				}
			}
			for i := 0; k != nil && i < pruneBatch; k, v = c.Next() {
				i++
				scanned++
				after = bytes.Clone(k)
				if len(k) != 8 {
					continue
				}
				n := binary.BigEndian.Uint64(k)
				d, err := decodeDrift(n, v)
				if err != nil {
					return err
				}
				if !d.Open() {
					if err := b.resolved.Put(resolvedKey(d.ResolvedAt, n), []byte(d.HostID)); err != nil {
						return err
					}
					resolved++
					continue
				}
				if hb := b.open.Bucket([]byte(d.HostID)); hb != nil {
					id := []byte(d.Identity())
					if ov := hb.Get(id); len(ov) == 24 && binary.BigEndian.Uint64(ov) == n {
						if err := hb.Put(id, openEntry(n, bytes.Clone(ov[8:24]), &d.Deviation)); err != nil {
							return err
						}
					}
				}
				if d.Acceptance != nil {
					if ak, _ := b.accepted.Cursor().Seek(k); bytes.Equal(ak, k) {
						if err := b.accepted.Put(k, timeKey(d.Acceptance.Until)); err != nil {
							return err
						}
					}
				}
			}
			if k == nil {
				done = true
				return tx.Bucket(bucketMeta).Put(keyDriftIndex, u64(driftIndexVersion))
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("index drift: %w", err)
		}
	}
	if scanned > 0 {
		logger.Info("drift indexed for pruning and counting", "drifts", scanned, "resolved", resolved, "took", time.Since(start))
	}
	return nil
}

// CountDrift implements store.DriftStore. Open drift is counted from
// drift_open and drift_accepted, without decoding a doc, but for entries
// an older build wrote that Open has not extended. Resolved drift (f.All)
// has no such index: it is counted from the decoded docs, as ListDrift
// reads them.
func (s *Store) CountDrift(ctx context.Context, f store.DriftFilter, now time.Time) ([]store.DriftCount, error) {
	counts := map[store.DriftCount]int{}
	add := func(host, bl, typ, sev string, accepted bool) {
		if (f.HostID == "" || host == f.HostID) && (f.Baseline == "" || bl == f.Baseline) &&
			(f.Type == "" || typ == f.Type) && (f.Severity == "" || sev == f.Severity) {
			counts[store.DriftCount{HostID: host, Baseline: bl, Type: typ, Severity: sev, Accepted: accepted}]++
		}
	}
	var err error
	if f.All {
		var ds []*store.Drift
		if ds, err = s.ListDrift(ctx, f); err == nil {
			for _, d := range ds {
				add(d.HostID, d.Baseline, d.Type, d.Severity, d.Accepted(now))
			}
		}
	} else {
		err = s.view(ctx, func(tx *bolt.Tx) error {
			root, drift := tx.Bucket(bucketDriftOpen), tx.Bucket(bucketDrift)
			if root == nil || drift == nil {
				return nil
			}
			// Acceptances are few: read them first.
			until := map[uint64][]byte{}
			if acc := tx.Bucket(bucketDriftAccepted); acc != nil {
				if err := acc.ForEach(func(k, v []byte) error {
					if len(k) == 8 {
						until[binary.BigEndian.Uint64(k)] = v
					}
					return nil
				}); err != nil {
					return err
				}
			}
			nowKey := timeKey(now)
			eachHost := func(host []byte, hb *bolt.Bucket) error {
				return hb.ForEach(func(k, v []byte) error {
					if len(v) < 8 {
						return fmt.Errorf("%w: drift_open value of %d bytes", ErrCorrupt, len(v))
					}
					n := binary.BigEndian.Uint64(v)
					typ, sev, ok := openTypeSeverity(v)
					bl, blOK := identityBaseline(k)
					u, accepted := until[n]
					// A time key the clock clamped says too little.
					untilOK := !accepted || (len(u) == 8 && !bytes.Equal(u, u64(0)) && !bytes.Equal(u, u64(math.MaxUint64)))
					if ok && blOK && untilOK {
						add(string(host), bl, typ, sev, accepted && bytes.Compare(nowKey, u) < 0)
						return nil
					}
					d, err := getDrift(drift, n)
					if err != nil {
						return err
					}
					add(d.HostID, d.Baseline, d.Type, d.Severity, d.Accepted(now))
					return nil
				})
			}
			if f.HostID != "" {
				if hb := root.Bucket([]byte(f.HostID)); hb != nil {
					return eachHost([]byte(f.HostID), hb)
				}
				return nil
			}
			return root.ForEachBucket(func(k []byte) error { return eachHost(k, root.Bucket(k)) })
		})
	}
	if err != nil {
		return nil, fmt.Errorf("count drift: %w", err)
	}
	out := make([]store.DriftCount, 0, len(counts))
	for c, n := range counts {
		c.Count = n
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b store.DriftCount) int {
		return cmp.Or(cmp.Compare(a.HostID, b.HostID), cmp.Compare(a.Baseline, b.Baseline), cmp.Compare(a.Type, b.Type),
			cmp.Compare(a.Severity, b.Severity), compareBool(a.Accepted, b.Accepted))
	})
	return out, nil
}

func compareBool(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	}
	return -1
}
