package pgstore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"strings"

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
	// round trip: the host's base ID and overlay, and the candidate bases
	// for a full inventory or the base's items it touches for a delta.
	var old hostSetRead
	var cands []candidate
	var touched map[inventory.Ref]setEntry
	var reads []*lockedRead
	refs := touchedRefs(u, pending)
	switch {
	case u.Full:
		reads = []*lockedRead{readHostSet(u.HostID, &old), readCandidates(s.mru.list(), &cands)}
	case len(refs) > 0:
		reads = []*lockedRead{readHostSet(u.HostID, &old), readTouchedBase(u.HostID, refs, &touched)}
	}
	var outcome store.Outcome
	for safe := false; ; safe = true {
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
				outcome, w, err = s.applyFull(ctx, tx, w, &st, u, pending, &old, cands, safe)
			default:
				outcome, w, err = s.applyDelta(ctx, tx, w, &st, u, pending, refs, &old, touched, safe)
			}
			if err != nil {
				return err
			}
			queueSaveStream(w, &st)
			return tx.SendBatch(ctx, w).Close()
		})
		// A base chosen and deleted before the transaction took it: rare
		// (its last hosts left it meanwhile), so only then are all the
		// bodies a fallback may need stored.
		if !errors.Is(err, errBaseGone) || safe {
			break
		}
	}
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
// stream lock: its base ID (nil for none) and its overlay.
type hostSetRead struct {
	baseID  []byte
	overlay []ovEntry
}

// loadHostSet returns the host's stored set, with its base's contents.
func (s *Store) loadHostSet(ctx context.Context, tx pgx.Tx, r *hostSetRead) (hostSet, error) {
	hs := hostSet{overlay: overlayMap(r.overlay)}
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
	pending []pendingItem, old *hostSetRead, cands []candidate, safe bool) (store.Outcome, *pgx.Batch, error) {
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
	// A host's first full inventory is the starting point, not a change.
	record := st.hasItems
	var written []pendingItem
	var changes []change
	entries := make([]setEntry, 0, len(final))
	for _, p := range final {
		entries = append(entries, setEntry{ref: p.ref, bodyHash: p.bodyHash, body: p.body})
		old, ok := stored[p.ref]
		switch {
		case !ok:
			changes = append(changes, change{ref: p.ref, op: store.ChangeAdded, after: p.bodyHash})
			written = append(written, p)
		case !bytes.Equal(old.bodyHash, p.bodyHash):
			changes = append(changes, change{ref: p.ref, op: store.ChangeChanged, before: old.bodyHash, after: p.bodyHash})
			written = append(written, p, historyBody(old))
		}
		delete(stored, p.ref)
	}
	for r, old := range stored {
		changes = append(changes, change{ref: r, op: store.ChangeRemoved, before: old.bodyHash})
		written = append(written, historyBody(old))
	}
	if !record {
		written = nil
	}
	slices.SortFunc(entries, compareEntries)
	p, err := s.choosePlacement(ctx, tx, hs.base, cands, entries)
	if err != nil {
		return 0, nil, err
	}
	if p.own || safe {
		written = append(written, final...)
	}
	if err := writeBodies(ctx, tx, w, written); err != nil {
		return 0, nil, err
	}
	if w, err = s.putPlacement(ctx, tx, w, st.hkey, &hs, p, entries, safe); err != nil {
		return 0, nil, err
	}
	if record {
		queueChanges(w, st.hkey, u, changes)
	}
	st.acc = acc
	st.needsFull, st.hasItems = false, true
	st.updatedAt = u.ReceivedAt
	return store.Applied, w, nil
}

// historyBody is the body of a stored item e that a recorded change
// names, to be stored in the items table if it is only in an overlay; a
// base's item (no body at hand) is there already, and nothing is written
// for it.
func historyBody(e setEntry) pendingItem {
	return pendingItem{ref: e.ref, body: e.body, bodyHash: e.bodyHash}
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
	body      []byte // nil for an item of the base
	hash      []byte
}

// touchedState returns the stored state of the host's item r, from its
// base's items the delta touches and its overlay.
func touchedState(r inventory.Ref, base map[inventory.Ref]setEntry, overlay map[inventory.Ref]ovEntry) (touchedItem, error) {
	b := base[r]
	o, inOverlay := overlay[r]
	t := touchedItem{baseHash: b.bodyHash, inOverlay: inOverlay, ovHash: o.bodyHash}
	e := b
	if inOverlay {
		e = o
	}
	if e.bodyHash == nil {
		return t, nil
	}
	it, err := decodeBody(r, e.bodyHash, e.body)
	if err != nil {
		return t, err
	}
	t.present, t.bodyHash, t.hash = true, e.bodyHash, it.GetHash()
	if inOverlay {
		t.body = e.body
	}
	return t, nil
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
// if the resulting set hash is u.SetHash. old is the host's base ID and
// overlay, base its base's items among refs, the items u touches; nothing
// else is read unless the overlay grows past overlayLimit and the host is
// rebased. A mismatch writes nothing but the stream state. It returns the
// batch to send last.
func (s *Store) applyDelta(ctx context.Context, tx pgx.Tx, w *pgx.Batch, st *stream, u *store.InventoryUpdate, pending []pendingItem,
	refs []inventory.Ref, old *hostSetRead, base map[inventory.Ref]setEntry, safe bool) (store.Outcome, *pgx.Batch, error) {
	overlay := overlayMap(old.overlay)
	stored := make(map[inventory.Ref]touchedItem, len(refs))
	for _, r := range refs {
		t, err := touchedState(r, base, overlay)
		if err != nil {
			return 0, nil, fmt.Errorf("read stored items: %w", err)
		}
		stored[r] = t
	}
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
	for _, r := range refs {
		p, ok := cur[r]
		if !ok {
			continue
		}
		t := stored[r]
		before := pendingItem{ref: r, body: t.body, bodyHash: t.bodyHash}
		switch {
		case p == nil && t.present:
			changes = append(changes, change{ref: r, op: store.ChangeRemoved, before: t.bodyHash})
			written = append(written, before)
		case p == nil:
		case !t.present:
			written = append(written, *p)
			changes = append(changes, change{ref: r, op: store.ChangeAdded, after: p.bodyHash})
		case !bytes.Equal(t.bodyHash, p.bodyHash):
			written = append(written, *p, before)
			changes = append(changes, change{ref: r, op: store.ChangeChanged, before: t.bodyHash, after: p.bodyHash})
		}
		// The overlay entry r needs: none where the host holds what its
		// base does, else the host's body or a tombstone.
		var want ovEntry
		if p != nil {
			want = ovEntry{ref: r, bodyHash: p.bodyHash, body: p.body}
		}
		if bytes.Equal(want.bodyHash, t.baseHash) && (want.bodyHash == nil) == (t.baseHash == nil) {
			delete(overlay, r)
		} else {
			want.ref = r
			overlay[r] = want
		}
	}
	var err error
	if len(overlay) > overlayLimit(int(acc.Count)) {
		w, err = s.rebase(ctx, tx, w, st.hkey, old, overlay, written, safe)
	} else if err = writeBodies(ctx, tx, w, written); err == nil {
		err = queueOverlay(w, st.hkey, old.baseID, overlayMap(old.overlay), sortedOverlay(overlay))
	}
	if err != nil {
		return 0, nil, err
	}
	queueChanges(w, st.hkey, u, changes)
	st.acc = acc
	st.needsFull, st.hasItems = false, true
	st.updatedAt = u.ReceivedAt
	return store.Applied, w, nil
}

// sortedOverlay returns the entries of m in ref order.
func sortedOverlay(m map[inventory.Ref]ovEntry) []ovEntry {
	out := make([]ovEntry, 0, len(m))
	for _, e := range m {
		out = append(out, e)
	}
	slices.SortFunc(out, compareEntries)
	return out
}

// rebase places the host, whose stored set is old and whose overlay a
// delta grew past the limit to overlay, as a full inventory would: on the
// best candidate base or on its own items. written is the bodies the
// delta stores.
func (s *Store) rebase(ctx context.Context, tx pgx.Tx, w *pgx.Batch, hkey int64, old *hostSetRead, overlay map[inventory.Ref]ovEntry,
	written []pendingItem, safe bool) (*pgx.Batch, error) {
	var cands []candidate
	cr := readCandidates(s.mru.list(), &cands)
	rows, err := tx.Query(ctx, cr.sql, cr.args...)
	if err != nil {
		return nil, err
	}
	if err := cr.scan(rows); err != nil {
		return nil, err
	}
	hs, err := s.loadHostSet(ctx, tx, old)
	if err != nil {
		return nil, err
	}
	after := hostSet{base: hs.base, overlay: overlay}
	items := after.items()
	entries := make([]setEntry, 0, len(items))
	for _, e := range items {
		entries = append(entries, e)
	}
	slices.SortFunc(entries, compareEntries)
	p, err := s.choosePlacement(ctx, tx, hs.base, cands, entries)
	if err != nil {
		return nil, err
	}
	// Entries of the old base that the new one holds otherwise move to
	// the overlay, with their bodies.
	if err := fillBodies(ctx, tx, p.overlay); err != nil {
		return nil, err
	}
	if p.own || safe {
		for _, e := range entries {
			written = append(written, pendingItem{ref: e.ref, body: e.body, bodyHash: e.bodyHash})
		}
	}
	if err := writeBodies(ctx, tx, w, written); err != nil {
		return nil, err
	}
	return s.putPlacement(ctx, tx, w, hkey, &hs, p, entries, safe)
}

// readTouchedBase reads into *out the items of the host's base named by
// refs, with their bodies.
func readTouchedBase(hostID string, refs []inventory.Ref, out *map[inventory.Ref]setEntry) *lockedRead {
	kinds, keys := refColumns(refs)
	return &lockedRead{
		sql: `WITH h AS (SELECT hs.base_id FROM hosts h JOIN host_sets hs ON hs.hkey = h.hkey WHERE h.id = $1)
			SELECT t.kind, t.key, b.body_hash, i.body
			FROM unnest($2::text[], $3::bytea[]) AS t(kind, key)
			CROSS JOIN h
			JOIN inv_base_items b ON b.base_id = h.base_id AND b.kind = t.kind AND b.key = t.key
			LEFT JOIN items i ON i.body_hash = b.body_hash`,
		args: []any{hostID, kinds, keys},
		scan: func(rows pgx.Rows) error {
			m := make(map[inventory.Ref]setEntry, len(refs))
			*out = m
			var r inventory.Ref
			var key, bodyHash, body []byte
			_, err := pgx.ForEachRow(rows, []any{&r.Kind, &key, &bodyHash, &body}, func() error {
				r.Key = string(key)
				m[r] = setEntry{ref: r, bodyHash: bodyHash, body: body}
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
	rows, err := s.pool.Query(ctx, `SELECT b.kind, b.key, b.body_hash, i.body, NULL::bytea
		FROM host_sets hs JOIN inv_base_items b ON b.base_id = hs.base_id
		LEFT JOIN items i ON i.body_hash = b.body_hash
		WHERE hs.hkey = $1 AND ($2 = '' OR b.kind = $2)
		UNION ALL
		SELECT NULL, NULL, NULL, NULL, overlay FROM host_sets WHERE hkey = $1 AND overlay IS NOT NULL`, hkey, kind)
	if err != nil {
		return nil, err
	}
	return mergeItems(rows, func(r inventory.Ref) bool { return kind == "" || r.Kind == kind })
}

// mergeItems reads the host's items from rows of (kind, key, body hash,
// body, overlay): its base's items, then a row holding only its overlay
// value, if any, in any order. One statement reads both, so one snapshot.
// It returns, ordered by kind then key, the base's items the overlay has
// no entry for and the overlay's items keep admits; the base's rows must
// be those keep admits. A ref repeated is returned once (FindItems' ranges
// are disjoint; that is only a safeguard).
func mergeItems(rows pgx.Rows, keep func(inventory.Ref) bool) ([]*commonv1.Item, error) {
	var base []setEntry
	var overlay []ovEntry
	var kind *string
	var key, bodyHash, body, value []byte
	_, err := pgx.ForEachRow(rows, []any{&kind, &key, &bodyHash, &body, &value}, func() error {
		if kind == nil {
			var err error
			overlay, err = decodeOverlay(value)
			if err != nil {
				return fmt.Errorf("read the host's overlay: %w", err)
			}
			return nil
		}
		base = append(base, setEntry{ref: inventory.Ref{Kind: *kind, Key: string(key)}, bodyHash: bodyHash, body: body})
		return nil
	})
	if err != nil {
		return nil, err
	}
	ov := overlayMap(overlay)
	all := slices.DeleteFunc(base, func(e setEntry) bool {
		_, ok := ov[e.ref]
		return ok
	})
	for _, e := range overlay {
		if e.bodyHash != nil && keep(e.ref) {
			all = append(all, e)
		}
	}
	slices.SortFunc(all, compareEntries)
	var out []*commonv1.Item
	for i, e := range all {
		if i > 0 && e.ref == all[i-1].ref {
			continue
		}
		it, err := decodeBody(e.ref, e.bodyHash, e.body)
		if err != nil {
			return nil, err
		}
		out = append(out, it)
	}
	return out, nil
}

// FindItems returns the host's items of the given kinds whose keys start
// with the given prefixes, ordered by kind then key. After dropping
// prefixes a shorter one covers, one query reads the key range
// [prefix, keySuccessor(prefix)) of each in the host's base, through the
// inv_base_items primary key (base_id, kind, key) with both bounds as
// index conditions, and the host's overlay, whose entries are filtered
// here.
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
	// A key is in [prefix, keySuccessor(prefix)) if and only if it
	// starts with prefix.
	return mergeItems(rows, func(r inventory.Ref) bool {
		return slices.ContainsFunc(merged, func(p inventory.Ref) bool {
			return p.Kind == r.Kind && strings.HasPrefix(r.Key, p.Key)
		})
	})
}

// findItemsSQL reads the items of the host $1's base in the key ranges
// [$3, $4) of the kinds $2, and its overlay.
const findItemsSQL = `SELECT b.kind, b.key, b.body_hash, i.body, NULL::bytea
	FROM unnest($2::text[], $3::bytea[], $4::bytea[]) AS p(kind, lo, hi)
	JOIN inv_base_items b ON b.base_id = (SELECT base_id FROM host_sets WHERE hkey = $1)
		AND b.kind = p.kind AND b.key >= p.lo AND b.key < p.hi
	LEFT JOIN items i ON i.body_hash = b.body_hash
	UNION ALL
	SELECT NULL, NULL, NULL, NULL, overlay FROM host_sets WHERE hkey = $1 AND overlay IS NOT NULL`

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
	counts, err := s.countItems(ctx, hostID)
	if err != nil {
		return nil, fmt.Errorf("count items of host %s: %w", hostID, err)
	}
	return counts, nil
}

func (s *Store) countItems(ctx context.Context, hostID string) (map[string]int, error) {
	hkey, err := hostKey(ctx, s.pool, hostID)
	if err != nil {
		return nil, err
	}
	// The refs of the base's items, and the overlay in the same snapshot:
	// whether an overlay entry adds an item or replaces one depends on
	// the base.
	rows, err := s.pool.Query(ctx, `SELECT b.kind, b.key, NULL::bytea
		FROM host_sets hs JOIN inv_base_items b ON b.base_id = hs.base_id WHERE hs.hkey = $1
		UNION ALL
		SELECT NULL, NULL, overlay FROM host_sets WHERE hkey = $1 AND overlay IS NOT NULL`, hkey)
	if err != nil {
		return nil, err
	}
	refs := map[inventory.Ref]bool{}
	var overlay []ovEntry
	var kind *string
	var key, value []byte
	_, err = pgx.ForEachRow(rows, []any{&kind, &key, &value}, func() error {
		if kind == nil {
			var err error
			if overlay, err = decodeOverlay(value); err != nil {
				return fmt.Errorf("read the host's overlay: %w", err)
			}
			return nil
		}
		refs[inventory.Ref{Kind: *kind, Key: string(key)}] = true
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, e := range overlay {
		refs[e.ref] = e.bodyHash != nil
	}
	counts := make(map[string]int)
	for r, present := range refs {
		if present {
			counts[r.Kind]++
		}
	}
	return counts, nil
}
