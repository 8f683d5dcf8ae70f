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
// touches. A full inventory is compared with the stored set, the
// difference recorded as changes (except for the host's
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
	// round trip: the host's base ID and overlay and the candidate bases
	// for a full inventory, the items it touches for a delta.
	var old hostSetRead
	var cands []candidate
	var touched map[inventory.Ref]touchedItem
	var reads []*lockedRead
	refs := touchedRefs(u, pending)
	switch {
	case u.Full:
		reads = []*lockedRead{readHostBase(u.HostID, &old.baseID), readOverlay(u.HostID, &old.overlay),
			readCandidates(s.mru.list(), &cands)}
	case len(refs) > 0:
		reads = []*lockedRead{readHostBase(u.HostID, &old.baseID), readTouched(u.HostID, refs, &touched),
			readOverlayCount(u.HostID, &old.overlayLen)}
	}
	var outcome store.Outcome
	err = s.inTx(ctx, func(tx pgx.Tx) error {
		st, err := s.lockStream(ctx, tx, u.HostID, true, reads...)
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
			outcome, w, err = s.applyFull(ctx, tx, w, &st, u, pending, &old, cands)
		default:
			outcome, w, err = s.applyDelta(ctx, tx, w, &st, u, pending, refs, &old, touched)
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

// hostSetRead is what a transaction read of a host's stored set with the
// stream lock: its base ID (nil for none), and its overlay (for a full
// inventory) or the number of overlay entries (for a delta).
type hostSetRead struct {
	baseID     []byte
	overlay    map[inventory.Ref][]byte
	overlayLen int
}

// load returns the host's stored set, with its base's contents.
func (s *Store) loadHostSet(ctx context.Context, tx pgx.Tx, r *hostSetRead) (hostSet, error) {
	hs := hostSet{overlay: r.overlay}
	if hs.overlay == nil {
		hs.overlay = map[inventory.Ref][]byte{}
	}
	if r.baseID == nil {
		return hs, nil
	}
	bases, err := s.loadBases(ctx, tx, [][]byte{r.baseID})
	if err != nil {
		return hs, err
	}
	if hs.base = bases[string(r.baseID)]; hs.base == nil {
		return hs, fmt.Errorf("base %x of the host is missing", r.baseID)
	}
	return hs, nil
}

// applyFull replaces the host's items with pending if their set hash is
// u.SetHash, recording the difference from the stored set old. The new
// set is placed on the best of the candidate bases cands (see bases.go).
// As in inventory.SetOf, a later item replaces an earlier one with the
// same ref. It returns the batch to send last.
func (s *Store) applyFull(ctx context.Context, tx pgx.Tx, w *pgx.Batch, st *stream, u *store.InventoryUpdate,
	pending []pendingItem, old *hostSetRead, cands []candidate) (store.Outcome, *pgx.Batch, error) {
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
		return store.HashMismatch, w, nil
	}
	hs, err := s.loadHostSet(ctx, tx, old)
	if err != nil {
		return 0, nil, err
	}
	stored := hs.items()
	var written []pendingItem
	var changes []change
	entries := make([]setEntry, 0, len(final))
	for _, p := range final {
		entries = append(entries, setEntry{ref: p.ref, bodyHash: p.bodyHash})
		old, ok := stored[p.ref]
		switch {
		case !ok:
			written = append(written, p)
			changes = append(changes, change{ref: p.ref, op: store.ChangeAdded, after: p.bodyHash})
		case !bytes.Equal(old, p.bodyHash):
			written = append(written, p)
			changes = append(changes, change{ref: p.ref, op: store.ChangeChanged, before: old, after: p.bodyHash})
		}
		delete(stored, p.ref)
	}
	for r, old := range stored {
		changes = append(changes, change{ref: r, op: store.ChangeRemoved, before: old})
	}
	// Every body of the new set is now stored: those of items the host
	// held are referenced by its base or overlay until the commit.
	if err := writeBodies(ctx, tx, w, written); err != nil {
		return 0, nil, err
	}
	slices.SortFunc(entries, compareEntries)
	p, err := s.choosePlacement(ctx, tx, hs.base, cands, entries)
	if err != nil {
		return 0, nil, err
	}
	if w, err = s.putPlacement(ctx, tx, w, st.hkey, &hs, p, entries); err != nil {
		return 0, nil, err
	}
	if st.hasItems {
		// A host's first full inventory is the starting point, not a change.
		queueChanges(w, st.hkey, u, changes)
	}
	st.acc = acc
	st.needsFull, st.hasItems = false, true
	st.updatedAt = u.ReceivedAt
	return store.Applied, w, nil
}

// touchedItem is the stored state of an item a delta touches: its base's
// body hash (nil if the base lacks it), its overlay entry, and whether the
// host holds it, with what body and agent's item hash.
type touchedItem struct {
	baseHash  []byte
	inOverlay bool
	ovHash    []byte // nil: a tombstone
	present   bool
	bodyHash  []byte
	hash      []byte
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
// refs, the items u touches; nothing else is read unless the overlay grows
// past overlayLimit and the host is rebased. A mismatch writes nothing but
// the stream state. It returns the batch to send last.
func (s *Store) applyDelta(ctx context.Context, tx pgx.Tx, w *pgx.Batch, st *stream, u *store.InventoryUpdate, pending []pendingItem,
	refs []inventory.Ref, old *hostSetRead, stored map[inventory.Ref]touchedItem) (store.Outcome, *pgx.Batch, error) {
	// cur is the state after the changes so far; a nil entry is removed.
	cur := make(map[inventory.Ref]*pendingItem, len(refs))
	present := func(r inventory.Ref) ([]byte, bool) {
		if p, ok := cur[r]; ok {
			if p == nil {
				return nil, false
			}
			return p.hash, true
		}
		t := stored[r]
		return t.hash, t.present
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
		return store.HashMismatch, w, nil
	}
	var written []pendingItem
	var changes []change
	var ovDel []inventory.Ref
	var ovUp []ovEntry
	ovLen := old.overlayLen
	for _, r := range refs {
		p, ok := cur[r]
		if !ok {
			continue
		}
		t := stored[r]
		switch {
		case p == nil && t.present:
			changes = append(changes, change{ref: r, op: store.ChangeRemoved, before: t.bodyHash})
		case p == nil:
		case !t.present:
			written = append(written, *p)
			changes = append(changes, change{ref: r, op: store.ChangeAdded, after: p.bodyHash})
		case !bytes.Equal(t.bodyHash, p.bodyHash):
			written = append(written, *p)
			changes = append(changes, change{ref: r, op: store.ChangeChanged, before: t.bodyHash, after: p.bodyHash})
		}
		// The overlay entry r needs: none where the host holds what its
		// base does, else the host's body or a tombstone.
		var want []byte
		if p != nil {
			want = p.bodyHash
		}
		switch {
		case bytes.Equal(want, t.baseHash) && (want == nil) == (t.baseHash == nil):
			if t.inOverlay {
				ovDel = append(ovDel, r)
				ovLen--
			}
		case !t.inOverlay:
			ovUp = append(ovUp, ovEntry{ref: r, bodyHash: want})
			ovLen++
		case !bytes.Equal(t.ovHash, want) || (want == nil) != (t.ovHash == nil):
			ovUp = append(ovUp, ovEntry{ref: r, bodyHash: want})
		}
	}
	if err := writeBodies(ctx, tx, w, written); err != nil {
		return 0, nil, err
	}
	if ovLen > overlayLimit(int(acc.Count)) {
		var err error
		if w, err = s.rebase(ctx, tx, w, st.hkey, old.baseID, cur); err != nil {
			return 0, nil, err
		}
	} else {
		queueOverlayDeletes(w, st.hkey, ovDel)
		queueOverlayUpserts(w, st.hkey, ovUp)
	}
	queueChanges(w, st.hkey, u, changes)
	st.acc = acc
	st.needsFull, st.hasItems = false, true
	st.updatedAt = u.ReceivedAt
	return store.Applied, w, nil
}

// rebase places the host, whose base is baseID and whose overlay a delta
// would grow past the limit, as a full inventory would: on the best
// candidate base or on its own items. cur is the delta's changes (a nil
// entry is a removal), whose bodies w writes.
func (s *Store) rebase(ctx context.Context, tx pgx.Tx, w *pgx.Batch, hkey int64, baseID []byte, cur map[inventory.Ref]*pendingItem) (*pgx.Batch, error) {
	r := &hostSetRead{baseID: baseID, overlay: map[inventory.Ref][]byte{}}
	rows, err := tx.Query(ctx, `SELECT kind, key, body_hash FROM host_overlay WHERE hkey = $1`, hkey)
	if err != nil {
		return nil, err
	}
	if err := scanOverlay(rows, r.overlay); err != nil {
		return nil, err
	}
	var cands []candidate
	cr := readCandidates(s.mru.list(), &cands)
	rows, err = tx.Query(ctx, cr.sql, cr.args...)
	if err != nil {
		return nil, err
	}
	if err := cr.scan(rows); err != nil {
		return nil, err
	}
	hs, err := s.loadHostSet(ctx, tx, r)
	if err != nil {
		return nil, err
	}
	items := hs.items()
	for ref, p := range cur {
		if p == nil {
			delete(items, ref)
		} else {
			items[ref] = p.bodyHash
		}
	}
	entries := sortedEntries(items)
	p, err := s.choosePlacement(ctx, tx, hs.base, cands, entries)
	if err != nil {
		return nil, err
	}
	return s.putPlacement(ctx, tx, w, hkey, &hs, p, entries)
}

// readTouched reads into *out the stored state of the host's items named
// by refs: in its base, its overlay, or both.
func readTouched(hostID string, refs []inventory.Ref, out *map[inventory.Ref]touchedItem) *lockedRead {
	kinds, keys := refColumns(refs)
	return &lockedRead{
		sql: `WITH h AS (SELECT h.hkey, hs.base_id FROM hosts h LEFT JOIN host_sets hs ON hs.hkey = h.hkey WHERE h.id = $1)
			SELECT t.kind, t.key, b.body_hash, o.hkey IS NOT NULL, o.body_hash, i.body
			FROM unnest($2::text[], $3::bytea[]) AS t(kind, key)
			CROSS JOIN h
			LEFT JOIN inv_base_items b ON b.base_id = h.base_id AND b.kind = t.kind AND b.key = t.key
			LEFT JOIN host_overlay o ON o.hkey = h.hkey AND o.kind = t.kind AND o.key = t.key
			LEFT JOIN items i ON i.body_hash = CASE WHEN o.hkey IS NOT NULL THEN o.body_hash ELSE b.body_hash END
			WHERE b.base_id IS NOT NULL OR o.hkey IS NOT NULL`,
		args: []any{hostID, kinds, keys},
		scan: func(rows pgx.Rows) error {
			m := make(map[inventory.Ref]touchedItem, len(refs))
			*out = m
			var r inventory.Ref
			var key, baseHash, ovHash, body []byte
			var inOverlay bool
			_, err := pgx.ForEachRow(rows, []any{&r.Kind, &key, &baseHash, &inOverlay, &ovHash, &body}, func() error {
				r.Key = string(key)
				t := touchedItem{baseHash: baseHash, inOverlay: inOverlay, ovHash: ovHash}
				t.bodyHash = baseHash
				if inOverlay {
					t.bodyHash = ovHash
				}
				if t.bodyHash != nil {
					it, err := decodeBody(r, t.bodyHash, body)
					if err != nil {
						return err
					}
					t.present, t.hash = true, it.GetHash()
				}
				m[r] = t
				return nil
			})
			if err != nil {
				return fmt.Errorf("read stored items: %w", err)
			}
			return nil
		},
	}
}

// readOverlayCount reads into *n the number of the host's overlay entries.
func readOverlayCount(hostID string, n *int) *lockedRead {
	return &lockedRead{
		sql:  `SELECT count(*) FROM host_overlay WHERE hkey = (SELECT hkey FROM hosts WHERE id = $1)`,
		args: []any{hostID},
		scan: func(rows pgx.Rows) error {
			*n = 0
			_, err := pgx.ForEachRow(rows, []any{n}, func() error { return nil })
			if err != nil {
				return fmt.Errorf("count the host's overlay: %w", err)
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
	// One statement, so one snapshot of the host's base and overlay. The
	// base's items the overlay replaces are left out by its primary key.
	rows, err := s.pool.Query(ctx, `SELECT x.kind, x.key, x.body_hash, i.body FROM (
			SELECT b.kind, b.key, b.body_hash FROM inv_base_items b
			WHERE b.base_id = (SELECT base_id FROM host_sets WHERE hkey = $1) AND ($2 = '' OR b.kind = $2)
			AND NOT EXISTS (SELECT 1 FROM host_overlay o WHERE o.hkey = $1 AND o.kind = b.kind AND o.key = b.key)
			UNION ALL
			SELECT o.kind, o.key, o.body_hash FROM host_overlay o
			WHERE o.hkey = $1 AND ($2 = '' OR o.kind = $2) AND o.body_hash IS NOT NULL
		) x LEFT JOIN items i ON i.body_hash = x.body_hash
		ORDER BY x.kind, x.key`, hkey, kind)
	if err != nil {
		return nil, err
	}
	return scanItems(rows)
}

// scanItems decodes rows of (kind, key, body hash, body) ordered by kind
// and key into items, each ref once: a ref repeated on the next row is
// skipped (FindItems' ranges are disjoint; that is only a safeguard).
func scanItems(rows pgx.Rows) ([]*commonv1.Item, error) {
	var out []*commonv1.Item
	var r, prev inventory.Ref
	var key, bodyHash, body []byte
	_, err := pgx.ForEachRow(rows, []any{&r.Kind, &key, &bodyHash, &body}, func() error {
		r.Key = string(key)
		if len(out) > 0 && r == prev {
			return nil
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

// FindItems returns the host's items of the given kinds whose keys start
// with the given prefixes, ordered by kind then key. After dropping
// prefixes a shorter one covers, one query reads the key range
// [prefix, keySuccessor(prefix)) of each, in the host's base through the
// inv_base_items primary key (base_id, kind, key) and in its overlay
// through the host_overlay primary key (hkey, kind, key), both bounds
// being index conditions.
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
	rows, err := s.pool.Query(ctx, findItemsSQL, hkey, kinds, los, his)
	if err != nil {
		return nil, err
	}
	return scanItems(rows)
}

// findItemsSQL reads the host $1's items in the key ranges [$3, $4) of
// the kinds $2.
const findItemsSQL = `SELECT x.kind, x.key, x.body_hash, i.body FROM (
		SELECT b.kind, b.key, b.body_hash
		FROM unnest($2::text[], $3::bytea[], $4::bytea[]) AS p(kind, lo, hi)
		JOIN inv_base_items b ON b.base_id = (SELECT base_id FROM host_sets WHERE hkey = $1)
			AND b.kind = p.kind AND b.key >= p.lo AND b.key < p.hi
		WHERE NOT EXISTS (SELECT 1 FROM host_overlay o WHERE o.hkey = $1 AND o.kind = b.kind AND o.key = b.key)
		UNION ALL
		SELECT o.kind, o.key, o.body_hash
		FROM unnest($2::text[], $3::bytea[], $4::bytea[]) AS p(kind, lo, hi)
		JOIN host_overlay o ON o.hkey = $1 AND o.kind = p.kind AND o.key >= p.lo AND o.key < p.hi
		WHERE o.body_hash IS NOT NULL
	) x LEFT JOIN items i ON i.body_hash = x.body_hash
	ORDER BY x.kind, x.key`

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
		rows, err = s.pool.Query(ctx, `SELECT kind, count(*) FROM (
				SELECT b.kind FROM inv_base_items b
				WHERE b.base_id = (SELECT base_id FROM host_sets WHERE hkey = $1)
				AND NOT EXISTS (SELECT 1 FROM host_overlay o WHERE o.hkey = $1 AND o.kind = b.kind AND o.key = b.key)
				UNION ALL
				SELECT o.kind FROM host_overlay o WHERE o.hkey = $1 AND o.body_hash IS NOT NULL
			) x GROUP BY kind`, hkey)
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
