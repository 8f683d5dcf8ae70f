package pgstore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/proto"

	"github.com/quantumlayer/qinfra/pkg/inventory"
	commonv1 "github.com/quantumlayer/qinfra/proto/gen/qinfra/common/v1"
	"github.com/quantumlayer/qinfra/server/internal/store"
)

// pendingItem is one upsert, validated and encoded before the
// transaction.
type pendingItem struct {
	ref inventory.Ref
	// hash is the agent's item hash.
	hash []byte
	// body is what encodeBody returns, bodyHash its SHA-256.
	body     []byte
	bodyHash []byte
}

// encodeBody returns the bytes stored for an item: its deterministic
// encoding without kind and key (which the host's row holds), the same
// bytes bboltstore stores as a blob. Items that differ only by key share
// one body.
func encodeBody(it *commonv1.Item) ([]byte, error) {
	// The body is shared with it, not copied: Marshal only reads it.
	return proto.MarshalOptions{Deterministic: true}.Marshal(&commonv1.Item{Hash: it.GetHash(), Body: it.Body})
}

// prepare validates and encodes u's upserts, in order.
func prepare(u *store.InventoryUpdate) ([]pendingItem, error) {
	if u.Full && len(u.Removed) > 0 {
		return nil, fmt.Errorf("%w: a full inventory lists %d removals", store.ErrInvalid, len(u.Removed))
	}
	items := make([]pendingItem, len(u.Upserts))
	for i, it := range u.Upserts {
		if err := inventory.Validate(it); err != nil {
			return nil, fmt.Errorf("%w: upsert %d: %w", store.ErrInvalid, i, err)
		}
		b, err := encodeBody(it)
		if err != nil {
			return nil, fmt.Errorf("%w: upsert %d: marshal: %w", store.ErrInvalid, i, err)
		}
		sum := sha256.Sum256(b)
		items[i] = pendingItem{ref: inventory.RefOf(it), hash: it.GetHash(), body: b, bodyHash: sum[:]}
	}
	return items, nil
}

// knownKind reports whether items of kind can be stored: a removal naming
// another kind names nothing.
func knownKind(kind string) bool { return slices.Contains(inventory.Kinds, kind) }

// ApplyInventory applies u as store.Inventory documents, in one
// transaction holding the host's stream row. The stream row keeps the
// accumulator of the stored items, so a delta reads only the items it
// touches. A full inventory is compared with the stored set and only the
// difference is written (and recorded as changes, except for the host's
// first). An update is checked in full before anything is written: a
// removal of an item that is not stored changes nothing, and a malformed
// item fails the whole update with ErrInvalid.
func (s *Store) ApplyInventory(ctx context.Context, u *store.InventoryUpdate) (store.Outcome, error) {
	if u == nil {
		return 0, fmt.Errorf("apply inventory: %w: nil update", store.ErrInvalid)
	}
	pending, err := prepare(u)
	if err != nil {
		return 0, fmt.Errorf("apply inventory seq %d for host %s: %w", u.Seq, u.HostID, err)
	}
	// What the update is compared with is read with the lock, in its
	// round trip: the host's whole set for a full inventory, the items it
	// touches for a delta.
	var set map[inventory.Ref][]byte
	var touched map[inventory.Ref]storedItem
	var read *lockedRead
	refs := touchedRefs(u, pending)
	switch {
	case u.Full:
		read = readSet(u.HostID, &set)
	case len(refs) > 0:
		read = readTouched(u.HostID, refs, &touched)
	}
	var outcome store.Outcome
	err = s.inTx(ctx, func(tx pgx.Tx) error {
		st, err := s.lockStream(ctx, tx, u.HostID, true, read)
		if err != nil {
			return err
		}
		newScope, ok := st.consume(u.SpoolID, u.Seq)
		if !ok {
			return errDuplicate
		}
		w := &pgx.Batch{}
		switch {
		case !u.Full && (newScope || st.needsFull):
			st.needsFull = true
			outcome = store.NeedsFull
		case u.Full:
			outcome, err = applyFull(ctx, tx, w, &st, u, pending, set)
		default:
			outcome, err = applyDelta(ctx, tx, w, &st, u, pending, refs, touched)
		}
		if err != nil {
			return err
		}
		queueSaveStream(w, &st)
		return tx.SendBatch(ctx, w).Close()
	})
	if errors.Is(err, errDuplicate) {
		return store.Duplicate, nil
	}
	if err != nil {
		return 0, fmt.Errorf("apply inventory seq %d for host %s: %w", u.Seq, u.HostID, err)
	}
	return outcome, nil
}

// errDuplicate rolls back the transaction of a duplicate message.
var errDuplicate = errors.New("duplicate")

// change is one item change to record.
type change struct {
	ref           inventory.Ref
	op            string
	before, after []byte // body hashes; nil when absent
}

// applyFull replaces the host's items with pending if their set hash is
// u.SetHash, writing only the difference from stored, the host's set (body
// hash by ref). As in inventory.SetOf, a later item replaces an earlier
// one with the same ref.
func applyFull(ctx context.Context, tx pgx.Tx, w *pgx.Batch, st *stream, u *store.InventoryUpdate, pending []pendingItem, stored map[inventory.Ref][]byte) (store.Outcome, error) {
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
		st.needsFull = true
		return store.HashMismatch, nil
	}
	var added, changed []pendingItem
	var changes []change
	for _, p := range final {
		old, ok := stored[p.ref]
		switch {
		case !ok:
			added = append(added, p)
			changes = append(changes, change{ref: p.ref, op: store.ChangeAdded, after: p.bodyHash})
		case !bytes.Equal(old, p.bodyHash):
			changed = append(changed, p)
			changes = append(changes, change{ref: p.ref, op: store.ChangeChanged, before: old, after: p.bodyHash})
		}
		delete(stored, p.ref)
	}
	var removed []inventory.Ref
	for r, old := range stored {
		removed = append(removed, r)
		changes = append(changes, change{ref: r, op: store.ChangeRemoved, before: old})
	}
	if err := writeBodies(ctx, tx, w, append(slices.Clip(added), changed...)); err != nil {
		return 0, err
	}
	if err := insertHostItems(ctx, tx, w, st.hkey, added); err != nil {
		return 0, err
	}
	queueUpdateHostItems(w, st.hkey, changed)
	queueDeleteHostItems(w, st.hkey, removed)
	if st.hasItems {
		// A host's first full inventory is the starting point, not a change.
		queueChanges(w, st.hkey, u, changes)
	}
	st.acc = acc
	st.needsFull, st.hasItems = false, true
	st.updatedAt = u.ReceivedAt
	return store.Applied, nil
}

// storedItem is the stored state of an item a delta touches.
type storedItem struct {
	bodyHash []byte
	hash     []byte // the agent's item hash
}

// touchedRefs returns the refs u's removals and upserts name, once each,
// leaving out removals of kinds no stored item can have.
func touchedRefs(u *store.InventoryUpdate, pending []pendingItem) []inventory.Ref {
	var refs []inventory.Ref
	seen := map[inventory.Ref]bool{}
	for _, r := range u.Removed {
		if knownKind(r.Kind) && !seen[r] {
			seen[r] = true
			refs = append(refs, r)
		}
	}
	for _, p := range pending {
		if !seen[p.ref] {
			seen[p.ref] = true
			refs = append(refs, p.ref)
		}
	}
	return refs
}

// applyDelta applies removals, then upserts (as inventory.Set.Apply does),
// if the resulting set hash is u.SetHash. stored is the stored state of
// refs, the items u touches; nothing else is read. A mismatch writes
// nothing but the stream state.
func applyDelta(ctx context.Context, tx pgx.Tx, w *pgx.Batch, st *stream, u *store.InventoryUpdate, pending []pendingItem,
	refs []inventory.Ref, stored map[inventory.Ref]storedItem) (store.Outcome, error) {
	// cur is the state after the changes so far; a nil entry is removed.
	cur := make(map[inventory.Ref]*pendingItem, len(refs))
	present := func(r inventory.Ref) ([]byte, bool) {
		if p, ok := cur[r]; ok {
			if p == nil {
				return nil, false
			}
			return p.hash, true
		}
		t, ok := stored[r]
		return t.hash, ok
	}
	acc := st.acc
	for _, r := range u.Removed {
		if !knownKind(r.Kind) {
			continue // no stored item has an unknown kind
		}
		if old, ok := present(r); ok {
			acc.Remove(r, old)
			cur[r] = nil
		}
	}
	for i := range pending {
		p := &pending[i]
		if old, ok := present(p.ref); ok {
			acc.Remove(p.ref, old)
		}
		acc.Add(p.ref, p.hash)
		cur[p.ref] = p
	}
	if !bytes.Equal(acc.Sum(), u.SetHash) {
		st.needsFull = true
		return store.HashMismatch, nil
	}
	var added, changed []pendingItem
	var removed []inventory.Ref
	var changes []change
	for _, r := range refs {
		p, ok := cur[r]
		if !ok {
			continue
		}
		old, had := stored[r]
		switch {
		case p == nil && had:
			removed = append(removed, r)
			changes = append(changes, change{ref: r, op: store.ChangeRemoved, before: old.bodyHash})
		case p == nil:
		case !had:
			added = append(added, *p)
			changes = append(changes, change{ref: r, op: store.ChangeAdded, after: p.bodyHash})
		case !bytes.Equal(old.bodyHash, p.bodyHash):
			changed = append(changed, *p)
			changes = append(changes, change{ref: r, op: store.ChangeChanged, before: old.bodyHash, after: p.bodyHash})
		}
	}
	if err := writeBodies(ctx, tx, w, append(slices.Clip(added), changed...)); err != nil {
		return 0, err
	}
	if err := insertHostItems(ctx, tx, w, st.hkey, added); err != nil {
		return 0, err
	}
	queueUpdateHostItems(w, st.hkey, changed)
	queueDeleteHostItems(w, st.hkey, removed)
	queueChanges(w, st.hkey, u, changes)
	st.acc = acc
	st.needsFull, st.hasItems = false, true
	st.updatedAt = u.ReceivedAt
	return store.Applied, nil
}

// readTouched reads into *out the stored state of the host's items named
// by refs.
func readTouched(hostID string, refs []inventory.Ref, out *map[inventory.Ref]storedItem) *lockedRead {
	kinds, keys := refColumns(refs)
	return &lockedRead{
		sql: `SELECT h.kind, h.key, h.body_hash, i.body
			FROM unnest($2::text[], $3::bytea[]) AS t(kind, key)
			JOIN host_items h ON h.hkey = (SELECT hkey FROM hosts WHERE id = $1) AND h.kind = t.kind AND h.key = t.key
			LEFT JOIN items i ON i.body_hash = h.body_hash`,
		args: []any{hostID, kinds, keys},
		scan: func(rows pgx.Rows) error {
			m := make(map[inventory.Ref]storedItem, len(refs))
			*out = m
			var r inventory.Ref
			var key, bodyHash, body []byte
			_, err := pgx.ForEachRow(rows, []any{&r.Kind, &key, &bodyHash, &body}, func() error {
				r.Key = string(key)
				it, err := decodeBody(r, bodyHash, body)
				if err != nil {
					return err
				}
				m[r] = storedItem{bodyHash: bodyHash, hash: it.GetHash()}
				return nil
			})
			if err != nil {
				return fmt.Errorf("read stored items: %w", err)
			}
			return nil
		},
	}
}

// readSet reads into *out the host's stored set: body hash by ref.
func readSet(hostID string, out *map[inventory.Ref][]byte) *lockedRead {
	return &lockedRead{
		sql:  `SELECT kind, key, body_hash FROM host_items WHERE hkey = (SELECT hkey FROM hosts WHERE id = $1)`,
		args: []any{hostID},
		scan: func(rows pgx.Rows) error {
			m := map[inventory.Ref][]byte{}
			*out = m
			var r inventory.Ref
			var key, bodyHash []byte
			_, err := pgx.ForEachRow(rows, []any{&r.Kind, &key, &bodyHash}, func() error {
				r.Key = string(key)
				m[r] = bodyHash
				return nil
			})
			if err != nil {
				return fmt.Errorf("read stored items: %w", err)
			}
			return nil
		},
	}
}

// decodeBody decodes the stored body of the item r; a missing body is an
// error.
func decodeBody(r inventory.Ref, bodyHash, body []byte) (*commonv1.Item, error) {
	if body == nil {
		return nil, fmt.Errorf("item %s: body %x is missing from the items table", r, bodyHash)
	}
	it := &commonv1.Item{}
	if err := proto.Unmarshal(body, it); err != nil {
		return nil, fmt.Errorf("item %s: decode body %x: %w", r, bodyHash, err)
	}
	it.Kind, it.Key = r.Kind, r.Key
	return it, nil
}

// ListItems returns the host's items of one kind ("" for all), ordered by
// kind then key, in byte order.
func (s *Store) ListItems(ctx context.Context, hostID, kind string) ([]*commonv1.Item, error) {
	out, err := s.listItems(ctx, hostID, kind)
	if err != nil {
		return nil, fmt.Errorf("list %q items of host %s: %w", kind, hostID, err)
	}
	return out, nil
}

func (s *Store) listItems(ctx context.Context, hostID, kind string) ([]*commonv1.Item, error) {
	hkey, err := hostKey(ctx, s.pool, hostID)
	if err != nil {
		return nil, err
	}
	if kind != "" && !knownKind(kind) {
		return nil, nil
	}
	rows, err := s.pool.Query(ctx, `SELECT h.kind, h.key, h.body_hash, i.body
		FROM host_items h LEFT JOIN items i ON i.body_hash = h.body_hash
		WHERE h.hkey = $1 AND ($2 = '' OR h.kind = $2)
		ORDER BY h.kind, h.key`, hkey, kind)
	if err != nil {
		return nil, err
	}
	var out []*commonv1.Item
	var r inventory.Ref
	var key, bodyHash, body []byte
	_, err = pgx.ForEachRow(rows, []any{&r.Kind, &key, &bodyHash, &body}, func() error {
		r.Key = string(key)
		it, err := decodeBody(r, bodyHash, body)
		if err != nil {
			return err
		}
		out = append(out, it)
		return nil
	})
	return out, err
}

// FindItems returns the host's items of the given kinds whose keys start
// with the given prefixes, ordered by kind then key. After dropping
// prefixes a shorter one covers, one query reads the key range
// [prefix, keySuccessor(prefix)) of each, through the host_items primary
// key (hkey, kind, key), both bounds being index conditions.
func (s *Store) FindItems(ctx context.Context, hostID string, prefixes []inventory.Ref) ([]*commonv1.Item, error) {
	out, err := s.findItems(ctx, hostID, prefixes)
	if err != nil {
		return nil, fmt.Errorf("find items of host %s: %w", hostID, err)
	}
	return out, nil
}

func (s *Store) findItems(ctx context.Context, hostID string, prefixes []inventory.Ref) ([]*commonv1.Item, error) {
	hkey, err := hostKey(ctx, s.pool, hostID)
	if err != nil {
		return nil, err
	}
	merged := store.MergePrefixes(prefixes)
	if len(merged) == 0 {
		return nil, nil
	}
	kinds := make([]string, len(merged))
	los := make([][]byte, len(merged))
	his := make([][]byte, len(merged))
	for i, p := range merged {
		kinds[i], los[i], his[i] = p.Kind, []byte(p.Key), keySuccessor([]byte(p.Key))
	}
	rows, err := s.pool.Query(ctx, `SELECT h.kind, h.key, h.body_hash, i.body
		FROM unnest($2::text[], $3::bytea[], $4::bytea[]) AS p(kind, lo, hi)
		JOIN host_items h ON h.hkey = $1 AND h.kind = p.kind AND h.key >= p.lo AND h.key < p.hi
		LEFT JOIN items i ON i.body_hash = h.body_hash
		ORDER BY h.kind, h.key`, hkey, kinds, los, his)
	if err != nil {
		return nil, err
	}
	var out []*commonv1.Item
	var r, prev inventory.Ref
	var key, bodyHash, body []byte
	_, err = pgx.ForEachRow(rows, []any{&r.Kind, &key, &bodyHash, &body}, func() error {
		r.Key = string(key)
		if len(out) > 0 && r == prev {
			return nil // the ranges are disjoint; this is only a safeguard
		}
		prev = r
		it, err := decodeBody(r, bodyHash, body)
		if err != nil {
			return err
		}
		out = append(out, it)
		return nil
	})
	return out, err
}

// keyCeiling is greater than every stored item key, none of which starts
// with 4097 0xff bytes: inventory.Validate admits keys of at most 4096
// bytes, and a key is a proto3 string, valid UTF-8, which has no 0xff byte.
var keyCeiling = bytes.Repeat([]byte{0xff}, 4097)

// keySuccessor returns the upper bound of the keys prefix starts: the
// least byte string greater than all of them, prefix without its trailing
// 0xff bytes and its last byte incremented; keyCeiling when there is none
// (an empty or all-0xff prefix: the keys from prefix on all start with
// it). A NULL bound with "hi IS NULL OR key < hi" instead would make the
// bound a filter on an index scan to the end of the kind.
func keySuccessor(prefix []byte) []byte {
	n := len(prefix)
	for n > 0 && prefix[n-1] == 0xff {
		n--
	}
	if n == 0 {
		return keyCeiling
	}
	hi := bytes.Clone(prefix[:n])
	hi[n-1]++
	return hi
}

// CountItems returns the number of the host's items per kind.
func (s *Store) CountItems(ctx context.Context, hostID string) (map[string]int, error) {
	counts := make(map[string]int)
	hkey, err := hostKey(ctx, s.pool, hostID)
	if err == nil {
		var rows pgx.Rows
		rows, err = s.pool.Query(ctx, `SELECT kind, count(*) FROM host_items WHERE hkey = $1 GROUP BY kind`, hkey)
		if err == nil {
			var kind string
			var n int64
			_, err = pgx.ForEachRow(rows, []any{&kind, &n}, func() error {
				counts[kind] = int(n)
				return nil
			})
		}
	}
	if err != nil {
		return nil, fmt.Errorf("count items of host %s: %w", hostID, err)
	}
	return counts, nil
}
