package pgstore

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"google.golang.org/protobuf/proto"

	"github.com/quantumlayer/qinfra/pkg/inventory"
	commonv1 "github.com/quantumlayer/qinfra/proto/gen/qinfra/common/v1"
	"github.com/quantumlayer/qinfra/server/internal/store"
)

// stream is a host's streams row.
type stream struct {
	hkey      int64
	started   bool
	spool     []byte
	lastSeq   uint64
	acc       inventory.Accumulator
	needsFull bool
	hasItems  bool
	updatedAt time.Time
}

const streamColumns = `s.hkey, s.started, s.spool_id, s.last_seq, s.acc, s.item_count, s.needs_full, s.has_items, s.updated_at`

func scanStream(row pgx.Row) (stream, error) {
	var st stream
	var lastSeq, count int64
	var acc []byte
	var updated pgtype.Timestamptz
	if err := row.Scan(&st.hkey, &st.started, &st.spool, &lastSeq, &acc, &count, &st.needsFull, &st.hasItems, &updated); err != nil {
		return st, err
	}
	st.lastSeq, st.acc.Count = uint64(lastSeq), uint64(count)
	copy(st.acc.Acc[:], acc)
	st.updatedAt = fromTS(updated)
	return st, nil
}

// consume applies the sequence rules every message of a host's stream
// follows. A spool ID other than the stored one starts a new scope (seqs
// restart from zero). It returns false, changing nothing, for a seq that
// is not above the scope's last one.
func (st *stream) consume(spool string, seq uint64) (newScope, ok bool) {
	newScope = !bytes.Equal([]byte(spool), st.spool)
	last := st.lastSeq
	if newScope {
		last = 0
	}
	if seq <= last {
		return newScope, false
	}
	st.started, st.spool, st.lastSeq = true, []byte(spool), seq
	return newScope, true
}

// lockStream locks the host's stream row FOR UPDATE and returns it, or
// ErrNotFound for an unknown host. With items, it first takes the shared
// lock that keeps PruneHistory's garbage collector from deleting item
// bodies, as every transaction that references bodies must.
func (s *Store) lockStream(ctx context.Context, tx pgx.Tx, hostID string, items bool) (stream, error) {
	if !textOK(hostID) {
		return stream{}, store.ErrNotFound
	}
	const q = `SELECT ` + streamColumns + ` FROM streams s JOIN hosts h ON h.hkey = s.hkey
		WHERE h.id = $1 FOR UPDATE OF s`
	for attempt := 0; ; attempt++ {
		b := &pgx.Batch{}
		if items {
			b.Queue(`SELECT pg_advisory_xact_lock_shared($1, $2)`, lockItemsGC, s.lockKey)
		}
		b.Queue(q, hostID)
		br := tx.SendBatch(ctx, b)
		var err error
		if items {
			_, err = br.Exec()
		}
		var st stream
		if err == nil {
			st, err = scanStream(br.QueryRow())
		}
		if cerr := br.Close(); err == nil {
			err = cerr
		}
		if !errors.Is(err, pgx.ErrNoRows) || attempt > 0 {
			if errors.Is(err, pgx.ErrNoRows) {
				err = store.ErrNotFound
			}
			return st, err
		}
		// EnrollHost creates the stream row with the host; create it for
		// a host that was made some other way.
		tag, err := tx.Exec(ctx, `INSERT INTO streams (hkey) SELECT hkey FROM hosts WHERE id = $1 ON CONFLICT DO NOTHING`, hostID)
		if err != nil {
			return st, err
		}
		if tag.RowsAffected() == 0 {
			return st, store.ErrNotFound
		}
		items = false // already held
	}
}

// queueSaveStream queues the update of the stream row.
func queueSaveStream(b *pgx.Batch, st *stream) {
	b.Queue(`UPDATE streams SET started = $2, spool_id = $3, last_seq = $4, acc = $5, item_count = $6,
		needs_full = $7, has_items = $8, updated_at = $9 WHERE hkey = $1`,
		st.hkey, st.started, st.spool, int64(st.lastSeq), st.acc.Acc[:], int64(st.acc.Count),
		st.needsFull, st.hasItems, ts(st.updatedAt))
}

// pendingItem is one upsert, validated and encoded before the
// transaction.
type pendingItem struct {
	ref inventory.Ref
	// hash is the agent's item hash.
	hash []byte
	// body is the item's deterministic encoding, bodyHash its SHA-256.
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

func compareRefs(a, b inventory.Ref) int {
	return cmp.Or(cmp.Compare(a.Kind, b.Kind), cmp.Compare(a.Key, b.Key))
}

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
	var outcome store.Outcome
	err = s.inTx(ctx, func(tx pgx.Tx) error {
		st, err := s.lockStream(ctx, tx, u.HostID, true)
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
			outcome, err = s.applyFull(ctx, tx, w, &st, u, pending)
		default:
			outcome, err = s.applyDelta(ctx, tx, w, &st, u, pending)
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
// u.SetHash, writing only the difference from the stored set. As in
// inventory.SetOf, a later item replaces an earlier one with the same ref.
func (s *Store) applyFull(ctx context.Context, tx pgx.Tx, w *pgx.Batch, st *stream, u *store.InventoryUpdate, pending []pendingItem) (store.Outcome, error) {
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
	stored := map[inventory.Ref][]byte{}
	if st.hasItems {
		rows, err := tx.Query(ctx, `SELECT kind, key, body_hash FROM host_items WHERE hkey = $1`, st.hkey)
		if err != nil {
			return 0, err
		}
		var r inventory.Ref
		var key, bodyHash []byte
		_, err = pgx.ForEachRow(rows, []any{&r.Kind, &key, &bodyHash}, func() error {
			r.Key = string(key)
			stored[r] = bodyHash
			bodyHash = nil // a new slice for the next row
			return nil
		})
		if err != nil {
			return 0, fmt.Errorf("read stored items: %w", err)
		}
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

// touched is the stored state of an item a delta touches.
type touched struct {
	bodyHash []byte // nil when absent
	hash     []byte // the agent's item hash
}

// applyDelta applies removals, then upserts (as inventory.Set.Apply does),
// if the resulting set hash is u.SetHash. It reads only the stored items u
// touches; a mismatch writes nothing but the stream state.
func (s *Store) applyDelta(ctx context.Context, tx pgx.Tx, w *pgx.Batch, st *stream, u *store.InventoryUpdate, pending []pendingItem) (store.Outcome, error) {
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
	stored, err := readTouched(ctx, tx, st.hkey, refs)
	if err != nil {
		return 0, err
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

// readTouched reads the stored state of the host's items named by refs.
func readTouched(ctx context.Context, tx pgx.Tx, hkey int64, refs []inventory.Ref) (map[inventory.Ref]touched, error) {
	out := make(map[inventory.Ref]touched, len(refs))
	if len(refs) == 0 {
		return out, nil
	}
	kinds, keys := refColumns(refs)
	rows, err := tx.Query(ctx, `SELECT h.kind, h.key, h.body_hash, i.body
		FROM unnest($2::text[], $3::bytea[]) AS t(kind, key)
		JOIN host_items h ON h.hkey = $1 AND h.kind = t.kind AND h.key = t.key
		LEFT JOIN items i ON i.body_hash = h.body_hash`, hkey, kinds, keys)
	if err != nil {
		return nil, err
	}
	var r inventory.Ref
	var key, bodyHash, body []byte
	_, err = pgx.ForEachRow(rows, []any{&r.Kind, &key, &bodyHash, &body}, func() error {
		r.Key = string(key)
		it, err := decodeBody(r, bodyHash, body)
		if err != nil {
			return err
		}
		out[r] = touched{bodyHash: bodyHash, hash: it.GetHash()}
		bodyHash = nil
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read stored items: %w", err)
	}
	return out, nil
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

// refColumns splits refs into the kind and key arrays of an unnest.
func refColumns(refs []inventory.Ref) (kinds []string, keys [][]byte) {
	kinds = make([]string, len(refs))
	keys = make([][]byte, len(refs))
	for i, r := range refs {
		kinds[i], keys[i] = r.Kind, []byte(r.Key)
	}
	return kinds, keys
}

// writeBodies stores the bodies of items that may be new. Bodies are
// inserted in body hash order, so concurrent transactions inserting the
// same new bodies wait for each other rather than deadlock.
func writeBodies(_ context.Context, _ pgx.Tx, w *pgx.Batch, items []pendingItem) error {
	if len(items) == 0 {
		return nil
	}
	items = slices.Clone(items)
	slices.SortFunc(items, func(a, b pendingItem) int { return bytes.Compare(a.bodyHash, b.bodyHash) })
	items = slices.CompactFunc(items, func(a, b pendingItem) bool { return bytes.Equal(a.bodyHash, b.bodyHash) })
	hashes := make([][]byte, len(items))
	bodies := make([][]byte, len(items))
	for i, p := range items {
		hashes[i], bodies[i] = p.bodyHash, p.body
	}
	w.Queue(`INSERT INTO items (body_hash, body)
		SELECT * FROM unnest($1::bytea[], $2::bytea[]) AS t(h, b) ORDER BY h
		ON CONFLICT DO NOTHING`, hashes, bodies)
	return nil
}

// insertHostItems adds rows for items the host does not hold.
func insertHostItems(_ context.Context, _ pgx.Tx, w *pgx.Batch, hkey int64, items []pendingItem) error {
	if len(items) == 0 {
		return nil
	}
	kinds, keys, hashes := itemColumns(items)
	w.Queue(`INSERT INTO host_items (hkey, kind, key, body_hash)
		SELECT $1, * FROM unnest($2::text[], $3::bytea[], $4::bytea[])`, hkey, kinds, keys, hashes)
	return nil
}

func itemColumns(items []pendingItem) (kinds []string, keys, hashes [][]byte) {
	kinds = make([]string, len(items))
	keys = make([][]byte, len(items))
	hashes = make([][]byte, len(items))
	for i, p := range items {
		kinds[i], keys[i], hashes[i] = p.ref.Kind, []byte(p.ref.Key), p.bodyHash
	}
	return kinds, keys, hashes
}

// queueUpdateHostItems points the host's rows of changed items at their
// new bodies.
func queueUpdateHostItems(w *pgx.Batch, hkey int64, items []pendingItem) {
	if len(items) == 0 {
		return
	}
	kinds, keys, hashes := itemColumns(items)
	w.Queue(`UPDATE host_items h SET body_hash = t.body_hash
		FROM unnest($2::text[], $3::bytea[], $4::bytea[]) AS t(kind, key, body_hash)
		WHERE h.hkey = $1 AND h.kind = t.kind AND h.key = t.key`, hkey, kinds, keys, hashes)
}

// queueDeleteHostItems deletes the host's rows of removed items.
func queueDeleteHostItems(w *pgx.Batch, hkey int64, refs []inventory.Ref) {
	if len(refs) == 0 {
		return
	}
	kinds, keys := refColumns(refs)
	w.Queue(`DELETE FROM host_items h USING unnest($2::text[], $3::bytea[]) AS t(kind, key)
		WHERE h.hkey = $1 AND h.kind = t.kind AND h.key = t.key`, hkey, kinds, keys)
}

// queueChanges records changes, in ref order, as update u's.
func queueChanges(w *pgx.Batch, hkey int64, u *store.InventoryUpdate, changes []change) {
	if len(changes) == 0 {
		return
	}
	slices.SortFunc(changes, func(a, b change) int { return compareRefs(a.ref, b.ref) })
	kinds := make([]string, len(changes))
	keys := make([][]byte, len(changes))
	ops := make([]string, len(changes))
	before := make([][]byte, len(changes))
	after := make([][]byte, len(changes))
	for i, c := range changes {
		kinds[i], keys[i], ops[i], before[i], after[i] = c.ref.Kind, []byte(c.ref.Key), c.op, c.before, c.after
	}
	w.Queue(`INSERT INTO item_changes (hkey, seq, time, kind, key, op, before_hash, after_hash)
		SELECT $1, $2, $3, kind, key, op, b, a
		FROM unnest($4::text[], $5::bytea[], $6::text[], $7::bytea[], $8::bytea[]) WITH ORDINALITY AS t(kind, key, op, b, a, n)
		ORDER BY n`,
		hkey, int64(u.Seq), u.ReceivedAt, kinds, keys, ops, before, after)
}

// GetStreamState returns the host's stream state: the zero StreamState if
// it has sent nothing, an error wrapping ErrNotFound if it is unknown.
func (s *Store) GetStreamState(ctx context.Context, hostID string) (store.StreamState, error) {
	st, err := s.readStream(ctx, hostID)
	if err != nil {
		return store.StreamState{}, fmt.Errorf("get stream state of host %s: %w", hostID, err)
	}
	if !st.started {
		return store.StreamState{}, nil
	}
	return store.StreamState{
		SpoolID:   string(st.spool),
		LastSeq:   st.lastSeq,
		SetHash:   st.acc.Sum(),
		Items:     int(st.acc.Count),
		NeedsFull: st.needsFull,
		UpdatedAt: st.updatedAt,
	}, nil
}

// readStream reads the host's stream row without locking it.
func (s *Store) readStream(ctx context.Context, hostID string) (stream, error) {
	if !textOK(hostID) {
		return stream{}, store.ErrNotFound
	}
	st, err := scanStream(s.pool.QueryRow(ctx, `SELECT `+streamColumns+`
		FROM streams s JOIN hosts h ON h.hkey = s.hkey WHERE h.id = $1`, hostID))
	if errors.Is(err, pgx.ErrNoRows) {
		// A host without a stream row has sent nothing.
		_, err = hostKey(ctx, s.pool, hostID)
	}
	return st, err
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
