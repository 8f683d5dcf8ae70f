package bboltstore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

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

// itemKey is the key of an item in a host's items bucket. Kinds contain no
// NUL byte (inventory.Validate admits only known kinds), so byte order of
// keys is order by kind, then key.
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

// hostInventory returns the host's inventory bucket, nil if it has sent
// nothing yet.
func hostInventory(tx *bolt.Tx, hostID string) *bolt.Bucket {
	return tx.Bucket(bucketInventory).Bucket([]byte(hostID))
}

// loadStream reads a host's stream state; the zero record if it has none.
func loadStream(hb *bolt.Bucket) (streamRecord, error) {
	var st streamRecord
	if hb == nil {
		return st, nil
	}
	v := hb.Get(keyStreamState)
	if v == nil {
		return st, nil
	}
	if err := json.Unmarshal(v, &st); err != nil {
		return st, fmt.Errorf("decode stream state: %w", err)
	}
	return st, nil
}

func saveStream(hb *bolt.Bucket, st *streamRecord) error {
	b, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("encode stream state: %w", err)
	}
	return hb.Put(keyStreamState, b)
}

// pendingItem is one upsert, validated and marshalled before the
// transaction so the write lock is held for as little as possible.
type pendingItem struct {
	ref   inventory.Ref
	key   []byte
	hash  []byte
	value []byte
}

// prepare validates and marshals u's upserts, in order.
func prepare(u *store.InventoryUpdate) ([]pendingItem, error) {
	if u.Full && len(u.Removed) > 0 {
		return nil, fmt.Errorf("%w: a full inventory lists %d removals", store.ErrInvalid, len(u.Removed))
	}
	items := make([]pendingItem, len(u.Upserts))
	for i, it := range u.Upserts {
		if err := inventory.Validate(it); err != nil {
			return nil, fmt.Errorf("%w: upsert %d: %w", store.ErrInvalid, i, err)
		}
		b, err := proto.Marshal(it)
		if err != nil {
			return nil, fmt.Errorf("%w: upsert %d: marshal: %w", store.ErrInvalid, i, err)
		}
		r := inventory.RefOf(it)
		items[i] = pendingItem{ref: r, key: itemKey(r), hash: it.GetHash(), value: b}
	}
	return items, nil
}

// ApplyInventory applies u as store.Inventory documents. The host's
// accumulator is updated from the items u touches only, so a delta costs
// O(size of the delta); a full inventory replaces the items bucket. An
// update is checked in full before anything is written: a removal of an
// item that is not stored changes nothing (and so makes the set hash
// mismatch if the agent thought it was there), and a malformed item fails
// the whole update with ErrInvalid.
func (s *Store) ApplyInventory(ctx context.Context, u *store.InventoryUpdate) (store.Outcome, error) {
	if u == nil {
		return 0, fmt.Errorf("apply inventory: %w: nil update", store.ErrInvalid)
	}
	pending, err := prepare(u)
	if err != nil {
		return 0, fmt.Errorf("apply inventory seq %d for host %s: %w", u.Seq, u.HostID, err)
	}
	var outcome store.Outcome
	err = s.update(ctx, func(tx *bolt.Tx) error {
		if !hostExists(tx, u.HostID) {
			return store.ErrNotFound
		}
		hb := hostInventory(tx, u.HostID)
		st, err := loadStream(hb)
		if err != nil {
			return err
		}
		newScope := u.SpoolID != st.SpoolID
		if newScope {
			st.SpoolID, st.LastSeq = u.SpoolID, 0
		}
		if u.Seq <= st.LastSeq {
			// Roll back: nothing changes, not even the scope, and there
			// is nothing to fsync.
			return errDuplicate
		}
		st.LastSeq = u.Seq
		if hb == nil {
			if hb, err = tx.Bucket(bucketInventory).CreateBucket([]byte(u.HostID)); err != nil {
				return fmt.Errorf("create inventory bucket: %w", err)
			}
		}
		switch {
		case !u.Full && (newScope || st.NeedsFull):
			st.NeedsFull = true
			outcome = store.NeedsFull
		case u.Full:
			outcome, err = applyFull(hb, &st, u, pending)
		default:
			outcome, err = applyDelta(hb, &st, u, pending)
		}
		if err != nil {
			return err
		}
		return saveStream(hb, &st)
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

// applyFull replaces the host's items with pending if their set hash is
// u.SetHash. As in inventory.SetOf, a later item replaces an earlier one
// with the same ref.
func applyFull(hb *bolt.Bucket, st *streamRecord, u *store.InventoryUpdate, pending []pendingItem) (store.Outcome, error) {
	last := make(map[inventory.Ref]int, len(pending))
	for i, p := range pending {
		last[p.ref] = i
	}
	final := make([]pendingItem, 0, len(last))
	var acc inventory.Accumulator
	for i, p := range pending {
		if last[p.ref] != i {
			continue
		}
		acc.Add(p.ref, p.hash)
		final = append(final, p)
	}
	if !bytes.Equal(acc.Sum(), u.SetHash) {
		st.NeedsFull = true
		return store.HashMismatch, nil
	}
	if hb.Bucket(bucketInventoryItem) != nil {
		if err := hb.DeleteBucket(bucketInventoryItem); err != nil {
			return 0, fmt.Errorf("delete items: %w", err)
		}
	}
	items, err := hb.CreateBucket(bucketInventoryItem)
	if err != nil {
		return 0, fmt.Errorf("create items bucket: %w", err)
	}
	// Sorted keys fill bbolt's pages sequentially, and densely.
	slices.SortFunc(final, func(a, b pendingItem) int { return bytes.Compare(a.key, b.key) })
	items.FillPercent = 0.9
	for _, p := range final {
		if err := items.Put(p.key, p.value); err != nil {
			return 0, fmt.Errorf("put item %s: %w", p.ref, err)
		}
	}
	st.setAccumulator(acc)
	st.NeedsFull = false
	st.UpdatedAt = u.ReceivedAt
	return store.Applied, nil
}

// applyDelta applies removals, then upserts (as inventory.Set.Apply does),
// if the resulting set hash is u.SetHash. The result is computed first on
// an overlay of the touched keys, so a mismatch leaves the items as they
// were.
func applyDelta(hb *bolt.Bucket, st *streamRecord, u *store.InventoryUpdate, pending []pendingItem) (store.Outcome, error) {
	items, err := hb.CreateBucketIfNotExists(bucketInventoryItem)
	if err != nil {
		return 0, fmt.Errorf("create items bucket: %w", err)
	}
	// overlay maps a touched key to its new value; nil means removed.
	overlay := make(map[string][]byte, len(u.Removed)+len(pending))
	// current returns the stored hash of the item at key, after the
	// changes so far; nil if absent.
	current := func(key []byte) ([]byte, error) {
		v, touched := overlay[string(key)]
		if !touched {
			v = items.Get(key)
		}
		if v == nil {
			return nil, nil
		}
		var it commonv1.Item
		if err := proto.Unmarshal(v, &it); err != nil {
			return nil, fmt.Errorf("decode stored item %q: %w", key, err)
		}
		return it.GetHash(), nil
	}
	acc := st.accumulator()
	for _, r := range u.Removed {
		if strings.IndexByte(r.Kind, 0) >= 0 {
			continue // no stored kind contains NUL: r names nothing
		}
		key := itemKey(r)
		old, err := current(key)
		if err != nil {
			return 0, err
		}
		if old == nil {
			continue // removing what is not there changes nothing
		}
		acc.Remove(r, old)
		overlay[string(key)] = nil
	}
	for _, p := range pending {
		old, err := current(p.key)
		if err != nil {
			return 0, err
		}
		if old != nil {
			acc.Remove(p.ref, old)
		}
		acc.Add(p.ref, p.hash)
		overlay[string(p.key)] = p.value
	}
	if !bytes.Equal(acc.Sum(), u.SetHash) {
		st.NeedsFull = true
		return store.HashMismatch, nil
	}
	keys := make([]string, 0, len(overlay))
	for k := range overlay {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if v := overlay[k]; v == nil {
			err = items.Delete([]byte(k))
		} else {
			err = items.Put([]byte(k), v)
		}
		if err != nil {
			return 0, fmt.Errorf("write item %q: %w", k, err)
		}
	}
	st.setAccumulator(acc)
	st.NeedsFull = false
	st.UpdatedAt = u.ReceivedAt
	return store.Applied, nil
}

// GetStreamState returns the host's stream state: the zero StreamState if
// it has sent nothing, an error wrapping ErrNotFound if it is unknown.
func (s *Store) GetStreamState(ctx context.Context, hostID string) (store.StreamState, error) {
	var out store.StreamState
	err := s.view(ctx, func(tx *bolt.Tx) error {
		if !hostExists(tx, hostID) {
			return store.ErrNotFound
		}
		hb := hostInventory(tx, hostID)
		if hb == nil || hb.Get(keyStreamState) == nil {
			return nil
		}
		st, err := loadStream(hb)
		if err != nil {
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
		if !hostExists(tx, hostID) {
			return store.ErrNotFound
		}
		hb := hostInventory(tx, hostID)
		if hb == nil || hb.Bucket(bucketInventoryItem) == nil {
			return nil
		}
		c := hb.Bucket(bucketInventoryItem).Cursor()
		var prefix []byte
		if kind != "" {
			prefix = append([]byte(kind), 0)
		}
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			it := &commonv1.Item{}
			if err := proto.Unmarshal(v, it); err != nil {
				return fmt.Errorf("decode item %q: %w", k, err)
			}
			out = append(out, it)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list %q items of host %s: %w", kind, hostID, err)
	}
	return out, nil
}

// CountItems returns the number of the host's items per kind.
func (s *Store) CountItems(ctx context.Context, hostID string) (map[string]int, error) {
	counts := make(map[string]int)
	err := s.view(ctx, func(tx *bolt.Tx) error {
		if !hostExists(tx, hostID) {
			return store.ErrNotFound
		}
		hb := hostInventory(tx, hostID)
		if hb == nil || hb.Bucket(bucketInventoryItem) == nil {
			return nil
		}
		c := hb.Bucket(bucketInventoryItem).Cursor()
		for k, _ := c.First(); k != nil; {
			kind := kindOfKey(k)
			prefix := append([]byte(kind), 0)
			n := 0
			for ; k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
				n++
			}
			counts[kind] = n
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("count items of host %s: %w", hostID, err)
	}
	return counts, nil
}
