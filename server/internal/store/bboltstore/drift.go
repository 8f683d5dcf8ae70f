package bboltstore

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
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

// openEntry is a drift_open value: drift number and fingerprint.
func openEntry(n uint64, fp []byte) []byte { return append(u64(n), fp...) }

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
		if len(v) != 24 || !bytes.Equal(v[8:], fingerprint(&devs[i])) {
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

type driftBkts struct{ drift, open, byHost, accepted *bolt.Bucket }

func driftBuckets(tx *bolt.Tx) (b driftBkts, err error) {
	for _, x := range []struct {
		name []byte
		dst  **bolt.Bucket
	}{{bucketDrift, &b.drift}, {bucketDriftOpen, &b.open}, {bucketDriftByHost, &b.byHost}, {bucketDriftAccepted, &b.accepted}} {
		if *x.dst, err = tx.CreateBucketIfNotExists(x.name); err != nil {
			return b, err
		}
	}
	return b, nil
}

func getDrift(b *bolt.Bucket, n uint64) (*store.Drift, error) {
	v := b.Get(u64(n))
	if v == nil {
		return nil, fmt.Errorf("drift %s: %w", driftID(n), store.ErrNotFound)
	}
	d := new(store.Drift)
	if err := json.Unmarshal(v, d); err != nil {
		return nil, fmt.Errorf("decode drift %s: %w", driftID(n), err)
	}
	return d, nil
}

func putDrift(b *bolt.Bucket, n uint64, d *store.Drift) error {
	v, err := json.Marshal(d)
	if err != nil {
		return err
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
		if len(v) == 24 {
			if bytes.Equal(v[8:], fp) {
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
			if err := open.Put([]byte(id), openEntry(n, fp)); err != nil {
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
		if err := open.Put([]byte(id), openEntry(n, fp)); err != nil {
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
		return b.accepted.Put(u64(n), nil)
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
