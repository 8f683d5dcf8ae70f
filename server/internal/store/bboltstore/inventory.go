package bboltstore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/quantumlayer/qinfra/pkg/inventory"
	commonv1 "github.com/quantumlayer/qinfra/proto/gen/qinfra/common/v1"
	"github.com/quantumlayer/qinfra/server/internal/store"
)

// streamRecord is a host's stream state as stored. Acc and Count are the
// inventory.Accumulator of the stored items, so a delta is checked against
// the agent's set hash in O(size of the delta).
type streamRecord struct {
	SpoolID   string    `json:"spool_id"`
	LastSeq   uint64    `json:"last_seq"`
	Acc       []byte    `json:"acc"`
	Count     uint64    `json:"count"`
	NeedsFull bool      `json:"needs_full"`
	UpdatedAt time.Time `json:"updated_at"`
	// HasSet is set by the first applied update: later ones record the
	// changes they make in the host's history.
	HasSet bool `json:"has_set"`
}

func (r *streamRecord) accumulator() inventory.Accumulator {
	a := inventory.Accumulator{Count: r.Count}
	copy(a.Acc[:], r.Acc)
	return a
}

func (r *streamRecord) setAccumulator(a inventory.Accumulator) {
	r.Acc = append(r.Acc[:0], a.Acc[:]...)
	r.Count = a.Count
}

// itemKey is the key of an item in a host's entries. Kinds contain no NUL
// byte (inventory.Validate admits only known kinds), so byte order of keys
// is order by kind, then key.
func itemKey(r inventory.Ref) []byte {
	k := make([]byte, 0, len(r.Kind)+1+len(r.Key))
	k = append(k, r.Kind...)
	k = append(k, 0)
	return append(k, r.Key...)
}

// kindOfKey returns the kind part of an item key.
func kindOfKey(k []byte) string {
	if i := bytes.IndexByte(k, 0); i >= 0 {
		return string(k[:i])
	}
	return string(k)
}

// loadStream reads a host's stream state; the zero record if it has none.
func loadStream(tx *bolt.Tx, hostID string) (st streamRecord, ok bool, err error) {
	v := tx.Bucket(bucketInventory).Get([]byte(hostID))
	if v == nil {
		return st, false, nil
	}
	if err := json.Unmarshal(v, &st); err != nil {
		return st, false, fmt.Errorf("decode stream state: %w", err)
	}
	return st, true, nil
}

func saveStream(tx *bolt.Tx, hostID string, st *streamRecord) error {
	b, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("encode stream state: %w", err)
	}
	return tx.Bucket(bucketInventory).Put([]byte(hostID), b)
}

// consumeSeq consumes seq of spool on the host's stream, which
// InventoryUpdate and CommandResultUpdate share. It returns errDuplicate
// when seq is consumed already. A spool other than the stored one starts a
// new scope: LastSeq restarts from zero. The caller saves st.
func consumeSeq(tx *bolt.Tx, hostID, spool string, seq uint64) (st streamRecord, newScope bool, err error) {
	if !hostExists(tx, hostID) {
		return st, false, store.ErrNotFound
	}
	if st, _, err = loadStream(tx, hostID); err != nil {
		return st, false, err
	}
	newScope = spool != st.SpoolID
	if newScope {
		st.SpoolID, st.LastSeq = spool, 0
	}
	if seq <= st.LastSeq {
		// Roll back: nothing changes, not even the scope, and there is
		// nothing to fsync.
		return st, false, errDuplicate
	}
	st.LastSeq = seq
	return st, newScope, nil
}

// pendingItem is one upsert, validated and encoded before the transaction
// so the write lock is held for as little as possible.
type pendingItem struct {
	ref  inventory.Ref
	key  []byte
	hash []byte // the agent's item hash
	blob []byte // blob ID
}

// prepare validates and encodes u's upserts, in order, and returns them
// with their blobs by ID.
func prepare(u *store.InventoryUpdate) ([]pendingItem, map[string][]byte, error) {
	if u.Full && len(u.Removed) > 0 {
		return nil, nil, fmt.Errorf("%w: a full inventory lists %d removals", store.ErrInvalid, len(u.Removed))
	}
	items := make([]pendingItem, len(u.Upserts))
	blobs := make(map[string][]byte, len(u.Upserts))
	for i, it := range u.Upserts {
		if err := inventory.Validate(it); err != nil {
			return nil, nil, fmt.Errorf("%w: upsert %d: %w", store.ErrInvalid, i, err)
		}
		b, id, err := encodeBlob(it)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: upsert %d: marshal: %w", store.ErrInvalid, i, err)
		}
		r := inventory.RefOf(it)
		items[i] = pendingItem{ref: r, key: itemKey(r), hash: it.GetHash(), blob: id}
		blobs[string(id)] = b
	}
	return items, blobs, nil
}

// ApplyInventory applies u as store.Inventory documents, and records the
// changes it makes in the host's history (see store.ItemChange) in the
// same transaction. The host's accumulator is updated from the items u
// touches only, and so are its chunks (sets.go), so a delta costs
// O(size of the delta); a full inventory rewrites the chunks that differ.
// An update is checked in full before anything is written: a removal of
// an item that is not stored changes nothing (and so makes the set hash
// mismatch if the agent thought it was there), and a malformed item fails
// the whole update with ErrInvalid.
func (s *Store) ApplyInventory(ctx context.Context, u *store.InventoryUpdate) (store.Outcome, error) {
	if u == nil {
		return 0, fmt.Errorf("apply inventory: %w: nil update", store.ErrInvalid)
	}
	pending, blobs, err := prepare(u)
	if err != nil {
		return 0, fmt.Errorf("apply inventory seq %d for host %s: %w", u.Seq, u.HostID, err)
	}
	var outcome store.Outcome
	err = s.batch(ctx, func(tx *bolt.Tx) error {
		st, newScope, err := consumeSeq(tx, u.HostID, u.SpoolID, u.Seq)
		if err != nil {
			return err
		}
		ss := newSets(tx, s.salt, s.entries)
		ss.newBlobs = blobs
		var changes []itemChange
		switch {
		case !u.Full && (newScope || st.NeedsFull):
			st.NeedsFull = true
			outcome = store.NeedsFull
		case u.Full:
			outcome, changes, err = applyFull(ss, s.mru, &st, u, pending)
		default:
			outcome, changes, err = applyDelta(ss, s.mru, &st, u, pending)
		}
		if err != nil {
			return err
		}
		if err := recordChanges(tx, u.HostID, u.Seq, u.ReceivedAt, changes); err != nil {
			return err
		}
		return saveStream(tx, u.HostID, &st)
	})
	if errors.Is(err, errDuplicate) {
		return store.Duplicate, nil
	}
	if err != nil {
		return 0, fmt.Errorf("apply inventory seq %d for host %s: %w", u.Seq, u.HostID, err)
	}
	return outcome, nil
}

// errDuplicate rolls back the transaction of a duplicate update.
var errDuplicate = errors.New("duplicate")

// applied records in st that u was applied, leaving the items of
// accumulator acc.
func applied(st *streamRecord, u *store.InventoryUpdate, acc inventory.Accumulator) {
	st.setAccumulator(acc)
	st.NeedsFull = false
	st.UpdatedAt = u.ReceivedAt
	st.HasSet = true
}

// applyFull replaces the host's items with pending if their set hash is
// u.SetHash. As in inventory.SetOf, a later item replaces an earlier one
// with the same ref. Unless the host had no item set yet, it returns the
// difference from the stored set. The host's base is chosen anew
// (sets.chooseBase).
func applyFull(ss *sets, mru *baseMRU, st *streamRecord, u *store.InventoryUpdate, pending []pendingItem) (store.Outcome, []itemChange, error) {
	last := make(map[inventory.Ref]int, len(pending))
	for i, p := range pending {
		last[p.ref] = i
	}
	entries := make([]entry, 0, len(last))
	var acc inventory.Accumulator
	for i, p := range pending {
		if last[p.ref] != i {
			continue
		}
		acc.Add(p.ref, p.hash)
		entries = append(entries, entry{key: p.key, blob: p.blob})
	}
	if !bytes.Equal(acc.Sum(), u.SetHash) {
		st.NeedsFull = true
		return store.HashMismatch, nil, nil
	}
	slices.SortFunc(entries, func(a, b entry) int { return bytes.Compare(a.key, b.key) })
	host := []byte(u.HostID)
	old, err := ss.loadHost(host)
	if err != nil {
		return 0, nil, err
	}
	var changes []itemChange
	if st.HasSet {
		before, err := ss.hostEntries(&old)
		if err != nil {
			return 0, nil, err
		}
		diffs, _ := diffEntries(before, entries, -1)
		if changes, err = ss.changes(diffs); err != nil {
			return 0, nil, err
		}
	}
	base, ov, err := ss.chooseBase(host, &old, entries, mru.list(), overlayLimit(len(entries)))
	if err != nil {
		return 0, nil, err
	}
	if err := ss.putHost(host, &old, base, ov); err != nil {
		return 0, nil, err
	}
	mru.touch(base.id, u.HostID)
	applied(st, u, acc)
	return store.Applied, changes, nil
}

// changes returns the item changes of diffs.
func (s *sets) changes(diffs []entryDiff) ([]itemChange, error) {
	var out []itemChange
	for _, d := range diffs {
		ch, err := s.change(d.key, d.before, d.after)
		if err != nil {
			return nil, err
		}
		if ch != nil {
			out = append(out, *ch)
		}
	}
	return out, nil
}

// applyDelta applies removals, then upserts (as inventory.Set.Apply does),
// if the resulting set hash is u.SetHash, and returns the changes made.
// The result is computed first on the touched keys, so a mismatch leaves
// the items as they were; then the host's overlay is rewritten, which
// costs O(size of the delta + overlay). An overlay grown past
// overlayLimit rebases the host (sets.chooseBase, asking for an overlay of
// at most half the limit so the next deltas do not rebase again at once).
func applyDelta(ss *sets, mru *baseMRU, st *streamRecord, u *store.InventoryUpdate, pending []pendingItem) (store.Outcome, []itemChange, error) {
	host := []byte(u.HostID)
	hs, err := ss.loadHost(host)
	if err != nil {
		return 0, nil, err
	}
	d := newDeltaState(ss, &hs)
	acc := st.accumulator()
	for _, r := range u.Removed {
		if strings.IndexByte(r.Kind, 0) >= 0 {
			continue // no stored kind contains NUL: r names nothing
		}
		key := itemKey(r)
		old, err := d.current(key)
		if err != nil {
			return 0, nil, err
		}
		if old.blob == nil {
			continue // removing what is not there changes nothing
		}
		acc.Remove(r, old.hash)
		d.set(key, overlayValue{})
	}
	for _, p := range pending {
		old, err := d.current(p.key)
		if err != nil {
			return 0, nil, err
		}
		if old.blob != nil {
			acc.Remove(p.ref, old.hash)
		}
		acc.Add(p.ref, p.hash)
		d.set(p.key, overlayValue{blob: p.blob, hash: p.hash})
	}
	if !bytes.Equal(acc.Sum(), u.SetHash) {
		st.NeedsFull = true
		return store.HashMismatch, nil, nil
	}
	// Only a first full inventory is exempt: a delta is a change even
	// when it is the first update applied (which an empty spool ID
	// allows).
	changes, err := d.changes()
	if err != nil {
		return 0, nil, err
	}
	ov, err := d.newOverlay()
	if err != nil {
		return 0, nil, err
	}
	base := baseSpec{id: hs.base}
	if limit := overlayLimit(int(acc.Count)); len(ov) > limit {
		next := hostSet{base: hs.base, index: hs.index, overlay: ov}
		entries, err := ss.hostEntries(&next)
		if err != nil {
			return 0, nil, err
		}
		if base, ov, err = ss.chooseBase(host, &hs, entries, mru.list(), limit/2); err != nil {
			return 0, nil, err
		}
	}
	if err := ss.putHost(host, &hs, base, ov); err != nil {
		return 0, nil, err
	}
	mru.touch(base.id, u.HostID)
	applied(st, u, acc)
	return store.Applied, changes, nil
}

// overlayValue is an item key's value during a delta; a nil blob means
// absent.
type overlayValue struct {
	blob []byte
	hash []byte // the item hash
}

// deltaState is a delta being applied to a host's stored inventory.
type deltaState struct {
	ss *sets
	hs *hostSet
	// stored is the host's stored overlay by key, nil for a tombstone.
	stored map[string][]byte
	// touched holds the touched keys' values after the changes so far,
	// before their values before the delta.
	touched, before map[string]overlayValue
}

func newDeltaState(ss *sets, hs *hostSet) *deltaState {
	stored := make(map[string][]byte, len(hs.overlay))
	for _, e := range hs.overlay {
		stored[string(e.key)] = e.blob
	}
	return &deltaState{ss: ss, hs: hs, stored: stored,
		touched: map[string]overlayValue{}, before: map[string]overlayValue{}}
}

// value returns key's stored value: the overlay's if it has one, else the
// base's.
func (d *deltaState) value(key []byte) (overlayValue, error) {
	blob, ok := d.stored[string(key)]
	if !ok {
		var err error
		if blob, err = d.ss.baseValue(d.hs.index, key); err != nil {
			return overlayValue{}, err
		}
	}
	if blob == nil {
		return overlayValue{}, nil
	}
	b, err := d.ss.blob(blob)
	if err != nil {
		return overlayValue{}, err
	}
	hash, err := itemHash(b)
	if err != nil {
		return overlayValue{}, fmt.Errorf("item %q: %w", key, err)
	}
	return overlayValue{blob: blob, hash: hash}, nil
}

// current returns key's value after the changes so far.
func (d *deltaState) current(key []byte) (overlayValue, error) {
	if v, ok := d.touched[string(key)]; ok {
		return v, nil
	}
	v, err := d.value(key)
	if err != nil {
		return v, err
	}
	d.before[string(key)] = v
	return v, nil
}

func (d *deltaState) set(key []byte, v overlayValue) { d.touched[string(key)] = v }

// changes returns the net changes of the touched keys, in key order.
func (d *deltaState) changes() ([]itemChange, error) {
	var out []itemChange
	for _, k := range slices.Sorted(maps.Keys(d.touched)) {
		ch, err := d.ss.change([]byte(k), d.before[k].blob, d.touched[k].blob)
		if err != nil {
			return nil, err
		}
		if ch != nil {
			out = append(out, *ch)
		}
	}
	return out, nil
}

// newOverlay returns the host's overlay after the delta: a touched key
// whose value is the base's leaves it, one whose value differs from the
// base's (a removal of the base's item included) is in it.
func (d *deltaState) newOverlay() ([]ovEntry, error) {
	m := maps.Clone(d.stored)
	for k, v := range d.touched {
		b, err := d.ss.baseValue(d.hs.index, []byte(k))
		if err != nil {
			return nil, err
		}
		if bytes.Equal(v.blob, b) {
			delete(m, k)
		} else {
			m[k] = v.blob
		}
	}
	ov := make([]ovEntry, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		ov = append(ov, ovEntry{key: []byte(k), blob: m[k]})
	}
	return ov, nil
}

// change returns the change of the item at key from blob before to blob
// after (nil: absent), nil if there is none.
func (s *sets) change(key, before, after []byte) (*itemChange, error) {
	if bytes.Equal(before, after) {
		return nil, nil
	}
	ch := &itemChange{key: key}
	switch {
	case before == nil:
		ch.op = store.ChangeAdded
	case after == nil:
		ch.op = store.ChangeRemoved
	default:
		ch.op = store.ChangeChanged
	}
	for _, b := range []struct {
		id  []byte
		dst *[]byte
	}{{before, &ch.before}, {after, &ch.after}} {
		if b.id == nil {
			continue
		}
		v, err := s.blob(b.id)
		if err != nil {
			return nil, err
		}
		// The blob may be deleted later in the transaction.
		*b.dst = bytes.Clone(v)
	}
	return ch, nil
}

// GetStreamState returns the host's stream state: the zero StreamState if
// it has sent nothing, an error wrapping ErrNotFound if it is unknown.
func (s *Store) GetStreamState(ctx context.Context, hostID string) (store.StreamState, error) {
	var out store.StreamState
	err := s.view(ctx, func(tx *bolt.Tx) error {
		if !hostExists(tx, hostID) {
			return store.ErrNotFound
		}
		st, ok, err := loadStream(tx, hostID)
		if err != nil || !ok {
			return err
		}
		acc := st.accumulator()
		out = store.StreamState{
			SpoolID:   st.SpoolID,
			LastSeq:   st.LastSeq,
			SetHash:   acc.Sum(),
			Items:     int(acc.Count),
			NeedsFull: st.NeedsFull,
			UpdatedAt: st.UpdatedAt,
		}
		return nil
	})
	if err != nil {
		return store.StreamState{}, fmt.Errorf("get stream state of host %s: %w", hostID, err)
	}
	return out, nil
}

// ListItems returns the host's items of one kind ("" for all), ordered by
// kind then key.
func (s *Store) ListItems(ctx context.Context, hostID, kind string) ([]*commonv1.Item, error) {
	var out []*commonv1.Item
	err := s.view(ctx, func(tx *bolt.Tx) error {
		out = out[:0]
		if !hostExists(tx, hostID) {
			return store.ErrNotFound
		}
		var prefix []byte
		if kind != "" {
			prefix = append([]byte(kind), 0)
		}
		ss := newSets(tx, s.salt, s.entries)
		hs, err := ss.loadHostRead([]byte(hostID))
		if err != nil {
			return err
		}
		return ss.walkItems(&hs, prefix, s.chunks, func(key []byte, it *commonv1.Item) bool {
			if !bytes.HasPrefix(key, prefix) {
				return false
			}
			out = append(out, it)
			return true
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list %q items of host %s: %w", kind, hostID, err)
	}
	return out, nil
}

// FindItems returns the host's items of the given kinds whose keys start
// with the given prefixes, ordered by kind then key. One read transaction
// seeks each prefix's range in the host's base and overlay (after
// dropping prefixes a shorter one covers) and reads it to its end only.
func (s *Store) FindItems(ctx context.Context, hostID string, prefixes []inventory.Ref) ([]*commonv1.Item, error) {
	merged := store.MergePrefixes(prefixes)
	keys := make([][]byte, len(merged))
	for i, p := range merged {
		keys[i] = itemKey(p)
	}
	var out []*commonv1.Item
	err := s.view(ctx, func(tx *bolt.Tx) error {
		out = out[:0]
		if !hostExists(tx, hostID) {
			return store.ErrNotFound
		}
		if len(keys) == 0 {
			return nil
		}
		ss := newSets(tx, s.salt, s.entries)
		hs, err := ss.loadHostRead([]byte(hostID))
		if err != nil {
			return err
		}
		for _, p := range keys {
			err := ss.walkItems(&hs, p, s.chunks, func(key []byte, it *commonv1.Item) bool {
				if !bytes.HasPrefix(key, p) {
					return false
				}
				out = append(out, it)
				return true
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("find items of host %s: %w", hostID, err)
	}
	return out, nil
}

// CountItems returns the number of the host's items per kind.
func (s *Store) CountItems(ctx context.Context, hostID string) (map[string]int, error) {
	var counts map[string]int
	err := s.view(ctx, func(tx *bolt.Tx) error {
		counts = make(map[string]int)
		if !hostExists(tx, hostID) {
			return store.ErrNotFound
		}
		ss := newSets(tx, s.salt, s.entries)
		hs, err := ss.loadHost([]byte(hostID))
		if err != nil {
			return err
		}
		return ss.walk(&hs, nil, func(e entry) (bool, error) {
			counts[kindOfKey(e.key)]++
			return true, nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("count items of host %s: %w", hostID, err)
	}
	return counts, nil
}
