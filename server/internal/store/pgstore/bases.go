package pgstore

// Shared bases and per-host overlays, as in bboltstore's bases.go.
//
// A host's item set is a base and an overlay. A base is an item set
// stored once (inv_bases, inv_base_items) under its ID, the SHA-256 of its
// rows (see baseID), and counted by the hosts naming it in host_sets. The
// overlay holds the entries where the host differs from its base: an item
// with the host's body, or a tombstone for an item of the base the host
// lacks. It is one value in the host's host_sets row, bodies included
// (see overlay.go), so a base's items reference bodies in the items table
// and an overlay's do not. Hosts built from one image share one base and
// keep only their own few differences, so storage grows with the
// differences rather than with hosts × items.
//
// A full inventory picks, among candidate bases, the one leaving the
// smallest overlay; when even that overlay is larger than overlayLimit, the
// host's own items make its base (shared with any host that reached the
// same items: the ID is content-addressed). Candidates are the host's
// current base, the candidateTop most referenced bases (the fleet's images,
// whichever replica stored them: one index scan of inv_bases) and the bases
// this replica used last (baseMRU: a base just made for a new image has few
// references yet). A delta changes the overlay only; one that grows it past
// the limit rebases the host as a full inventory would.
//
// Bases are immutable, so their contents are cached by ID (baseCache): a
// full inventory compares itself with the candidates in memory, reading
// from the database only the bases it has not seen.
//
// References: a transaction taking a base upserts its inv_bases row (INSERT
// ... ON CONFLICT DO UPDATE refs = refs + 1 RETURNING refs) and one
// dropping it decrements refs, deleting the base and its items when refs
// reaches 0. Both hold the row lock until commit, so a concurrent taker
// waits: it then either increments the surviving row or, the base having
// been deleted, inserts it anew (refs 1) and stores its items again. A
// transaction locks the rows of the bases it takes and drops in base ID
// order, after the item bodies it inserts (in body hash order), so
// transactions wait for each other rather than deadlock.
//
// A base's items need their bodies in the items table, an overlay's do
// not: a transaction stores the bodies of a host's items only when it
// makes a base of them. A candidate base deleted between its choice and
// its taking would leave the host's own items as the only base to fall
// back on, with bodies not stored; the transaction is then retried in
// safe mode, which stores every body of the host's items before it takes
// a base, so that it can fall back (see errBaseGone).

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/jackc/pgx/v5"

	"github.com/quantumlayer/qinfra/pkg/inventory"
)

// overlayLimit is the largest overlay a host of n items keeps, as in
// bboltstore: above it a delta rebases the host, and a full inventory
// makes a base of its own items rather than take a candidate.
func overlayLimit(n int) int { return max(128, n/8) }

// candidateTop is how many of the most referenced bases are candidates
// for a full inventory.
const candidateTop = 8

// setEntry is an item of a set: its ref and body hash, and its body when
// the transaction has it: always for the items of an update and of an
// overlay, never for a base's (whose bodies are in the items table).
type setEntry struct {
	ref      inventory.Ref
	bodyHash []byte
	body     []byte
}

// ovEntry is an overlay entry; bodyHash nil is a tombstone.
type ovEntry = setEntry

func compareEntries(a, b setEntry) int { return compareRefs(a.ref, b.ref) }

// baseID returns the ID of the base holding entries, which are sorted by
// ref: the SHA-256 of each entry as the kind's length (4 bytes, big
// endian), the kind, the key's length, the key and the body hash. The
// migration to schema version 5 computes the same in SQL.
func baseID(entries []setEntry) []byte {
	h := sha256.New()
	var buf []byte
	for _, e := range entries {
		buf = binary.BigEndian.AppendUint32(buf[:0], uint32(len(e.ref.Kind)))
		buf = append(buf, e.ref.Kind...)
		buf = binary.BigEndian.AppendUint32(buf, uint32(len(e.ref.Key)))
		buf = append(buf, e.ref.Key...)
		buf = append(buf, e.bodyHash...)
		h.Write(buf)
	}
	return h.Sum(nil)
}

// baseSet is a base's contents. It is shared through the cache: never
// modified.
type baseSet struct {
	id      []byte
	entries []setEntry // sorted by ref
	m       map[inventory.Ref][]byte
}

func newBaseSet(id []byte, entries []setEntry) *baseSet {
	m := make(map[inventory.Ref][]byte, len(entries))
	for _, e := range entries {
		m[e.ref] = e.bodyHash
	}
	return &baseSet{id: id, entries: entries, m: m}
}

// baseCacheSize is how many bases' contents a Store keeps in memory.
const baseCacheSize = 32

// baseCache holds the contents of recently used bases by ID, least
// recently used first out. An entry stays valid for ever: a base's ID is
// the hash of its contents.
type baseCache struct {
	mu    sync.Mutex
	m     map[string]*baseSet
	order []string // least recently used first
}

func (c *baseCache) get(id []byte) *baseSet {
	c.mu.Lock()
	defer c.mu.Unlock()
	b := c.m[string(id)]
	if b != nil {
		c.touchLocked(string(id))
	}
	return b
}

func (c *baseCache) put(b *baseSet) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]*baseSet{}
	}
	if _, ok := c.m[string(b.id)]; !ok {
		c.m[string(b.id)] = b
		c.order = append(c.order, string(b.id))
		if len(c.order) > baseCacheSize {
			delete(c.m, c.order[0])
			c.order = slices.Delete(c.order, 0, 1)
		}
		return
	}
	c.touchLocked(string(b.id))
}

func (c *baseCache) touchLocked(id string) {
	if i := slices.Index(c.order, id); i >= 0 {
		c.order = append(slices.Delete(c.order, i, i+1), id)
	}
}

// mruSize is how many bases this replica used last are candidates for a
// full inventory.
const mruSize = 8

// baseMRU lists the bases this replica's hosts took last, most recent
// first. It is a hint: the candidates' query checks they still exist.
type baseMRU struct {
	mu  sync.Mutex
	ids [][]byte
}

func (m *baseMRU) list() [][]byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.ids)
}

func (m *baseMRU) touch(id []byte) {
	if id == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if i := slices.IndexFunc(m.ids, func(x []byte) bool { return bytes.Equal(x, id) }); i >= 0 {
		m.ids = slices.Delete(m.ids, i, i+1)
	}
	m.ids = slices.Insert(m.ids, 0, id)
	if len(m.ids) > mruSize {
		m.ids = m.ids[:mruSize]
	}
}

// loadBases returns the contents of the bases ids, from the cache or else
// read in one query; a base that does not exist (any more) is left out.
func (s *Store) loadBases(ctx context.Context, q pgx.Tx, ids [][]byte) (map[string]*baseSet, error) {
	out := make(map[string]*baseSet, len(ids))
	var missing [][]byte
	for _, id := range ids {
		if b := s.bases.get(id); b != nil {
			out[string(id)] = b
		} else if !slices.ContainsFunc(missing, func(x []byte) bool { return bytes.Equal(x, id) }) {
			missing = append(missing, id)
		}
	}
	if len(missing) == 0 {
		return out, nil
	}
	rows, err := q.Query(ctx, `SELECT base_id, kind, key, body_hash FROM inv_base_items
		WHERE base_id = ANY($1) ORDER BY base_id, kind, key`, missing)
	if err != nil {
		return nil, err
	}
	read := map[string][]setEntry{}
	var id, key, bodyHash []byte
	var kind string
	_, err = pgx.ForEachRow(rows, []any{&id, &kind, &key, &bodyHash}, func() error {
		read[string(id)] = append(read[string(id)], setEntry{ref: inventory.Ref{Kind: kind, Key: string(key)}, bodyHash: bodyHash})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read bases: %w", err)
	}
	for sid, entries := range read {
		if got := baseID(entries); !bytes.Equal(got, []byte(sid)) {
			return nil, fmt.Errorf("base %x: its items hash to %x", sid, got)
		}
		b := newBaseSet([]byte(sid), entries)
		s.bases.put(b)
		out[sid] = b
	}
	return out, nil
}

// hostSet is a host's stored set as its transaction read it.
type hostSet struct {
	base    *baseSet // nil for none
	overlay map[inventory.Ref]ovEntry
}

// items returns the host's items by ref, with their bodies when they are
// in the overlay.
func (h *hostSet) items() map[inventory.Ref]setEntry {
	n := len(h.overlay)
	if h.base != nil {
		n += len(h.base.entries)
	}
	m := make(map[inventory.Ref]setEntry, n)
	if h.base != nil {
		for _, e := range h.base.entries {
			m[e.ref] = e
		}
	}
	for r, e := range h.overlay {
		if e.bodyHash == nil {
			delete(m, r)
		} else {
			m[r] = e
		}
	}
	return m
}

func (h *hostSet) baseID() []byte {
	if h.base == nil {
		return nil
	}
	return h.base.id
}

// readHostSet reads into *out the host's base ID (nil for none) and its
// decoded overlay.
func readHostSet(hostID string, out *hostSetRead) *lockedRead {
	return &lockedRead{
		sql:  `SELECT hs.base_id, hs.overlay FROM host_sets hs JOIN hosts h ON h.hkey = hs.hkey WHERE h.id = $1`,
		args: []any{hostID},
		scan: func(rows pgx.Rows) error {
			*out = hostSetRead{}
			var overlay []byte
			_, err := pgx.ForEachRow(rows, []any{&out.baseID, &overlay}, func() error { return nil })
			if err != nil {
				return fmt.Errorf("read the host's set: %w", err)
			}
			if out.overlay, err = decodeOverlay(overlay); err != nil {
				return fmt.Errorf("read the host's overlay: %w", err)
			}
			return nil
		},
	}
}

// candidate is a base a full inventory may take: its ID and item count.
type candidate struct {
	id []byte
	n  int
}

// readCandidates reads into *out the candidateTop most referenced bases
// and those of mru that still exist.
func readCandidates(mru [][]byte, out *[]candidate) *lockedRead {
	if mru == nil {
		mru = [][]byte{}
	}
	return &lockedRead{
		sql: `(SELECT base_id, n FROM inv_bases ORDER BY refs DESC LIMIT $1)
			UNION SELECT base_id, n FROM inv_bases WHERE base_id = ANY($2)`,
		args: []any{candidateTop, mru},
		scan: func(rows pgx.Rows) error {
			var err error
			*out, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (candidate, error) {
				var c candidate
				err := row.Scan(&c.id, &c.n)
				return c, err
			})
			if err != nil {
				return fmt.Errorf("read candidate bases: %w", err)
			}
			return nil
		},
	}
}

// overlayOn returns the overlay that makes base hold entries (both
// sorted), false if it has more than limit entries.
func overlayOn(base []setEntry, entries []setEntry, limit int) ([]ovEntry, bool) {
	var ov []ovEntry
	for len(base) > 0 || len(entries) > 0 {
		var c int
		switch {
		case len(entries) == 0:
			c = -1
		case len(base) == 0:
			c = 1
		default:
			c = compareEntries(base[0], entries[0])
		}
		switch {
		case c < 0:
			ov = append(ov, ovEntry{ref: base[0].ref}) // tombstone
			base = base[1:]
		case c > 0:
			ov = append(ov, entries[0])
			entries = entries[1:]
		default:
			if !bytes.Equal(base[0].bodyHash, entries[0].bodyHash) {
				ov = append(ov, entries[0])
			}
			base, entries = base[1:], entries[1:]
		}
		if len(ov) > limit {
			return nil, false
		}
	}
	return ov, true
}

// placement is a base and overlay chosen for a host.
type placement struct {
	base    *baseSet // nil for none
	own     bool     // base is made of the host's own items
	overlay []ovEntry
}

func (p *placement) baseID() []byte {
	if p.base == nil {
		return nil
	}
	return p.base.id
}

// ownPlacement makes the host's own entries its base.
func ownPlacement(entries []setEntry) placement {
	if len(entries) == 0 {
		return placement{}
	}
	// A base's entries hold no bodies: the items table has them.
	es := make([]setEntry, len(entries))
	for i, e := range entries {
		es[i] = setEntry{ref: e.ref, bodyHash: e.bodyHash}
	}
	return placement{base: newBaseSet(baseID(es), es), own: true}
}

// choosePlacement returns the base and overlay for a host whose items are
// entries (sorted), currently on base cur (nil for none): the candidate
// leaving the smallest overlay, if at most overlayLimit entries, else its
// own entries as its base.
func (s *Store) choosePlacement(ctx context.Context, tx pgx.Tx, cur *baseSet, cands []candidate, entries []setEntry) (placement, error) {
	if len(entries) == 0 {
		return placement{}, nil
	}
	limit := overlayLimit(len(entries))
	best := placement{}
	found := false
	if cur != nil {
		if ov, ok := overlayOn(cur.entries, entries, limit); ok {
			best, found, limit = placement{base: cur, overlay: ov}, true, len(ov)
		}
	}
	// A base of n items leaves an overlay of at least |n - len(entries)|.
	var ids [][]byte
	for _, c := range cands {
		if (cur == nil || !bytes.Equal(c.id, cur.id)) && abs(c.n-len(entries)) <= limit {
			ids = append(ids, c.id)
		}
	}
	if len(ids) > 0 && (!found || limit > 0) {
		bases, err := s.loadBases(ctx, tx, ids)
		if err != nil {
			return placement{}, err
		}
		for _, id := range ids {
			b := bases[string(id)]
			if b == nil || abs(len(b.entries)-len(entries)) > limit || (found && limit == 0) {
				continue
			}
			lim := limit
			if found {
				lim = limit - 1 // only a smaller overlay is better
			}
			if ov, ok := overlayOn(b.entries, entries, lim); ok {
				best, found, limit = placement{base: b, overlay: ov}, true, len(ov)
			}
		}
	}
	if !found {
		return ownPlacement(entries), nil
	}
	return best, nil
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}

// errBaseGone rolls back a transaction whose chosen base was deleted
// before it could take it: ApplyInventory retries it in safe mode.
var errBaseGone = errors.New("the chosen base was deleted")

// putPlacement replaces the host's stored set old by p, counting base
// references. The bodies in the items table must include those of p's
// base when it is made of the host's own items (p.own), and in safe mode
// those of all entries; w must hold only what is to be written before base
// rows are locked (item bodies): it is sent first when the base changes.
// Without safe, a chosen base found deleted fails with errBaseGone; in
// safe mode the host's own entries become its base instead. The write of
// the host's set is queued in the returned batch.
func (s *Store) putPlacement(ctx context.Context, tx pgx.Tx, w *pgx.Batch, hkey int64, old *hostSet, p placement,
	entries []setEntry, safe bool) (*pgx.Batch, error) {
	oldID := old.baseID()
	if bytes.Equal(oldID, p.baseID()) {
		s.mru.touch(oldID)
		return w, queueOverlay(w, hkey, oldID, old.overlay, p.overlay)
	}
	if w.Len() > 0 {
		if err := tx.SendBatch(ctx, w).Close(); err != nil {
			return nil, err
		}
	}
	w = &pgx.Batch{}
	// Take the new base and drop the old one in ID order. In safe mode,
	// taking may fall back to the host's own items as its base (see
	// takeBase).
	dropped := false
	for p.base != nil {
		if oldID != nil && !dropped && bytes.Compare(oldID, p.base.id) < 0 {
			if err := dropBase(ctx, tx, oldID); err != nil {
				return nil, err
			}
			dropped = true
		}
		if !dropped && bytes.Equal(oldID, p.base.id) {
			// The fallback is the base the host holds.
			s.mru.touch(oldID)
			return w, queueOverlay(w, hkey, oldID, old.overlay, p.overlay)
		}
		ok, err := takeBase(ctx, tx, p)
		if err != nil {
			return nil, err
		}
		if ok {
			break
		}
		if !safe {
			return nil, errBaseGone
		}
		p = ownPlacement(entries)
	}
	if oldID != nil && !dropped {
		if err := dropBase(ctx, tx, oldID); err != nil {
			return nil, err
		}
	}
	s.mru.touch(p.baseID())
	return w, queueHostSet(w, hkey, p.baseID(), p.overlay)
}

// queueOverlay queues the write of the host's set on base baseID with the
// overlay next (sorted) instead of old, if they differ.
func queueOverlay(w *pgx.Batch, hkey int64, baseID []byte, old map[inventory.Ref]ovEntry, next []ovEntry) error {
	if sameOverlay(old, next) {
		return nil
	}
	return queueHostSet(w, hkey, baseID, next)
}

// queueHostSet queues the write of the host's set as base id and overlay
// (sorted): its host_sets row, deleted when it has neither. The overlay's
// entries must have their bodies (fillBodies).
func queueHostSet(w *pgx.Batch, hkey int64, id []byte, overlay []ovEntry) error {
	if id == nil && len(overlay) == 0 {
		w.Queue(`DELETE FROM host_sets WHERE hkey = $1`, hkey)
		return nil
	}
	value, err := encodeOverlay(overlay)
	if err != nil {
		return err
	}
	w.Queue(`INSERT INTO host_sets (hkey, base_id, overlay) VALUES ($1, $2, $3)
		ON CONFLICT (hkey) DO UPDATE SET base_id = excluded.base_id, overlay = excluded.overlay`, hkey, id, value)
	return nil
}

// sameOverlay reports whether the overlays old and next hold the same
// entries.
func sameOverlay(old map[inventory.Ref]ovEntry, next []ovEntry) bool {
	if len(old) != len(next) {
		return false
	}
	for _, e := range next {
		o, ok := old[e.ref]
		if !ok || !bytes.Equal(o.bodyHash, e.bodyHash) || (o.bodyHash == nil) != (e.bodyHash == nil) {
			return false
		}
	}
	return true
}

// fillBodies gives the entries of overlay without a body, which hold an
// item of a base, its body from the items table. The transaction holds
// the items lock, and a base's bodies are stored.
func fillBodies(ctx context.Context, tx pgx.Tx, overlay []ovEntry) error {
	var hashes [][]byte
	for _, e := range overlay {
		if e.bodyHash != nil && e.body == nil {
			hashes = append(hashes, e.bodyHash)
		}
	}
	if len(hashes) == 0 {
		return nil
	}
	rows, err := tx.Query(ctx, `SELECT body_hash, body FROM items WHERE body_hash = ANY($1)`, hashes)
	if err != nil {
		return err
	}
	bodies := make(map[string][]byte, len(hashes))
	var h, body []byte
	_, err = pgx.ForEachRow(rows, []any{&h, &body}, func() error {
		bodies[string(h)] = body
		return nil
	})
	if err != nil {
		return fmt.Errorf("read item bodies: %w", err)
	}
	for i := range overlay {
		e := &overlay[i]
		if e.bodyHash != nil && e.body == nil {
			if e.body = bodies[string(e.bodyHash)]; e.body == nil {
				return fmt.Errorf("item %s: body %x is missing from the items table", e.ref, e.bodyHash)
			}
		}
	}
	return nil
}

// takeBase takes a reference to p's base, storing it if it is new. It
// returns false, having taken nothing, when the base is not stored (any
// more) and p is not made of the host's own items: the transaction cannot
// be sure the bodies of the base's items the host lacks are stored.
func takeBase(ctx context.Context, tx pgx.Tx, p placement) (bool, error) {
	var refs int64
	err := tx.QueryRow(ctx, `INSERT INTO inv_bases (base_id, refs, n) VALUES ($1, 1, $2)
		ON CONFLICT (base_id) DO UPDATE SET refs = inv_bases.refs + 1 RETURNING refs`,
		p.base.id, len(p.base.entries)).Scan(&refs)
	if err != nil {
		return false, fmt.Errorf("take base: %w", err)
	}
	if refs > 1 {
		return true, nil
	}
	if !p.own {
		// Deleted since it was chosen: undo the insert (the row is ours).
		if _, err := tx.Exec(ctx, `DELETE FROM inv_bases WHERE base_id = $1`, p.base.id); err != nil {
			return false, fmt.Errorf("take base: %w", err)
		}
		return false, nil
	}
	es := p.base.entries
	_, err = tx.CopyFrom(ctx, pgx.Identifier{"inv_base_items"}, []string{"base_id", "kind", "key", "body_hash"},
		pgx.CopyFromSlice(len(es), func(i int) ([]any, error) {
			return []any{p.base.id, es[i].ref.Kind, []byte(es[i].ref.Key), es[i].bodyHash}, nil
		}))
	if err != nil {
		return false, fmt.Errorf("store base: %w", err)
	}
	return true, nil
}

// dropBase drops a reference to base id, deleting it with the last. The
// decrement locks the row whatever the count, so no transaction takes the
// base between the last reference's drop and the deletion: a taker waits,
// then finds the base gone and stores it anew.
func dropBase(ctx context.Context, tx pgx.Tx, id []byte) error {
	var refs int64
	err := tx.QueryRow(ctx, `UPDATE inv_bases SET refs = refs - 1 WHERE base_id = $1 RETURNING refs`, id).Scan(&refs)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return fmt.Errorf("drop base: base %x is referenced but not stored", id)
	case err != nil:
		return fmt.Errorf("drop base: %w", err)
	case refs > 0:
		return nil
	}
	b := &pgx.Batch{}
	b.Queue(`DELETE FROM inv_bases WHERE base_id = $1`, id)
	b.Queue(`DELETE FROM inv_base_items WHERE base_id = $1`, id)
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("delete base: %w", err)
	}
	return nil
}
