package bboltstore

// Shared bases and per-host overlays.
//
// A base is a chunk index (first item key of a chunk → chunk ID) stored
// once under its ID, the SHA-256 of its encoding, and counted in base_refs
// by the hosts that use it; its chunks are counted in chunk_refs once per
// base, not per host. A host's inventory is a base and an overlay: the
// entries where the host differs from its base, sorted by key, each an
// item key with a blob (the host's value) or a tombstone (the host lacks
// an item the base has). The overlay is one value per host in the flat
// overlays bucket, which holds its blobs (overlay.go): blob_refs counts
// the chunk entries naming a blob only.
//
// Hosts built from one image then share one base and keep only their own
// few differences: storage grows with the differences, not with the
// items. A full inventory picks the base the host's entries differ least
// from, among its current base and the bases of recently updated hosts
// (baseMRU); when even the best leaves too large an overlay (overlayLimit),
// it makes a base of its own entries, cut into chunks as sets.go does, so
// hosts that reached the same items share that base and its chunks. When
// the host's overlay and that of another host on the same base agree on
// many entries, the base itself is behind the fleet (the host it was made
// from had its own oddities, or the fleet upgraded since): a consensus
// base, the old one with the agreed entries applied, is made and taken.
// A delta changes the overlay only, in O(size of delta + overlay); one
// that grows the overlay past the limit rebases the host as a full
// inventory would.

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"slices"
	"sort"
	"sync"

	commonv1 "github.com/quantumlayer/qinfra/proto/gen/qinfra/common/v1"
)

var (
	bucketBases    = []byte("bases")
	bucketBaseRefs = []byte("base_refs")
	bucketOverlays = []byte("overlays")
)

// overlayLimit is the largest overlay a host of n items keeps: above it a
// delta rebases the host, and a full inventory makes a base of its own
// rather than take a candidate's. The floor lets hosts with ~50 own
// differences share a base made from another such host (about twice their
// differences); the fraction keeps a large host's overlay, which every
// delta rewrites, a small part of it.
func overlayLimit(n int) int { return max(128, n/8) }

// consensusMin is the fewest entries a host's overlay must share with
// another host's on the same base to make a consensus base.
const consensusMin = 8

// ovEntry is an entry of an overlay: the host's blob for key, nil for a
// tombstone.
type ovEntry struct {
	key  []byte
	blob []byte
	// val is the value as the overlay stores it, for an entry of
	// readOverlay, which leaves blob nil; sealed says it lacks its item
	// hash (overlay.go).
	val    []byte
	sealed bool
}

// absent reports whether e is a tombstone.
func (e *ovEntry) absent() bool { return e.blob == nil && e.val == nil }

// item decodes the item an overlay entry holds.
func (s *sets) ovItem(e *ovEntry) (*commonv1.Item, error) {
	switch {
	case e.val == nil:
		return s.item(entry{key: e.key, blob: e.blob})
	case !e.sealed:
		return decodeItem(e.key, e.val)
	}
	it, err := decodeItem(e.key, e.val)
	if err != nil {
		return nil, err
	}
	if it.Hash == nil {
		// As the whole blob, the hash field first, would decode: a
		// field 3 in the rest would come later and win.
		sum := sha256.Sum256(e.val)
		it.Hash = sum[:]
	}
	return it, nil
}

// hostSet is a host's stored inventory.
type hostSet struct {
	base    []byte       // base ID, nil for none
	index   []indexEntry // the base's chunk index
	overlay []ovEntry
}

// baseSpec is a base chosen for a host: one stored (chunks nil), or one
// made of entries, stored unless it exists already.
type baseSpec struct {
	id     []byte
	enc    []byte
	chunks []chunk
}

// mruSize is how many recently used bases are candidates for a full
// inventory.
const mruSize = 16

// baseMRU lists the bases of recently updated hosts, most recent first,
// each with the last two hosts seen on it. It is a hint: an ID may name a
// base since deleted, or one of a transaction rolled back.
type baseMRU struct {
	mu      sync.Mutex
	entries []mruEntry
}

type mruEntry struct {
	id    []byte
	hosts [2]string
}

func (m *baseMRU) list() []mruEntry {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.entries)
}

// touch moves base id to the front, with host as the last seen on it.
func (m *baseMRU) touch(id []byte, host string) {
	if id == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	e := mruEntry{id: id}
	if i := slices.IndexFunc(m.entries, func(e mruEntry) bool { return bytes.Equal(e.id, id) }); i >= 0 {
		e = m.entries[i]
		m.entries = slices.Delete(m.entries, i, i+1)
	}
	if e.hosts[0] != host {
		e.hosts = [2]string{host, e.hosts[0]}
	}
	m.entries = slices.Insert(m.entries, 0, e)
	if len(m.entries) > mruSize {
		m.entries = m.entries[:mruSize]
	}
}

// encodeIndex encodes a chunk index as a chunk's entries are encoded.
func encodeIndex(chunks []chunk) []byte {
	es := make([]entry, len(chunks))
	for i := range chunks {
		es[i] = entry{key: chunks[i].first(), blob: chunks[i].id}
	}
	return encodeChunk(es)
}

// makeBase returns the base made of entries, which are sorted and not
// empty, cut into chunks.
func (s *sets) makeBase(entries []entry) baseSpec {
	return s.baseOf(s.cut(entries))
}

func (s *sets) baseOf(chunks []chunk) baseSpec {
	enc := encodeIndex(chunks)
	id := sha256.Sum256(enc)
	return baseSpec{id: id[:], enc: enc, chunks: chunks}
}

// loadBase reads and decodes a stored base's chunk index.
func (s *sets) loadBase(id []byte) ([]indexEntry, error) {
	v := s.bases.Get(id)
	if v == nil {
		return nil, corruptf("base %x is missing", id)
	}
	es, err := decodeChunk(v)
	if err != nil {
		return nil, fmt.Errorf("base %x: %w", id, err)
	}
	out := make([]indexEntry, len(es))
	for i, e := range es {
		out[i] = indexEntry{first: e.key, id: e.blob}
	}
	return out, nil
}

// loadHostRead is loadHost for reading items only (walkItems): the
// overlay's entries are left as readOverlay makes them.
func (s *sets) loadHostRead(hostID []byte) (hostSet, error) {
	v := s.overlays.Get(hostID)
	if v == nil {
		return hostSet{}, nil
	}
	base, ov, err := readOverlay(v)
	if err != nil {
		return hostSet{}, fmt.Errorf("host %s: %w", hostID, err)
	}
	return s.withBase(hostSet{base: base, overlay: ov})
}

// loadHost reads a host's stored inventory; the zero hostSet if it has
// none.
func (s *sets) loadHost(hostID []byte) (hostSet, error) {
	v := s.overlays.Get(hostID)
	if v == nil {
		return hostSet{}, nil
	}
	base, ov, vals, err := decodeOverlay(v)
	if err != nil {
		return hostSet{}, fmt.Errorf("host %s: %w", hostID, err)
	}
	s.addInline(vals)
	return s.withBase(hostSet{base: base, overlay: ov})
}

// withBase loads the chunk index of hs's base.
func (s *sets) withBase(hs hostSet) (hostSet, error) {
	if hs.base != nil {
		var err error
		if hs.index, err = s.loadBase(hs.base); err != nil {
			return hostSet{}, err
		}
	}
	return hs, nil
}

// chunkEntries returns the decoded entries of a stored chunk, from the
// entries cache when it has them. They are shared: callers must not
// modify them.
func (s *sets) chunkEntries(id []byte) ([]entry, error) {
	if es, ok := s.entryCache.get(id); ok {
		return es, nil
	}
	es, err := s.loadChunk(id)
	if err != nil {
		return nil, err
	}
	s.entryCache.put(id, es)
	return es, nil
}

// baseValue returns the blob of key in the base with chunk index idx, nil
// if absent.
func (s *sets) baseValue(idx []indexEntry, key []byte) ([]byte, error) {
	if len(idx) == 0 {
		return nil, nil
	}
	es, err := s.chunkEntries(idx[chunkOf(idx, key)].id)
	if err != nil {
		return nil, err
	}
	return findEntry(es, key), nil
}

// walk calls fn with the host's entries (its base's merged with its
// overlay) in key order, from the first at or after from, until fn
// returns false. hs must be loadHost's: with blob IDs.
func (s *sets) walk(hs *hostSet, from []byte, fn func(entry) (bool, error)) error {
	ov := hs.overlay[searchOverlay(hs.overlay, from):]
	// emit passes the overlay's entries before key (all if key is nil)
	// to fn, and reports whether to go on.
	emit := func(key []byte) (bool, error) {
		for len(ov) > 0 && (key == nil || bytes.Compare(ov[0].key, key) < 0) {
			e := ov[0]
			ov = ov[1:]
			if e.blob == nil {
				continue
			}
			if more, err := fn(entry{key: e.key, blob: e.blob}); err != nil || !more {
				return false, err
			}
		}
		return true, nil
	}
	if len(hs.index) > 0 {
		for ci := chunkOf(hs.index, from); ci < len(hs.index); ci++ {
			es, err := s.chunkEntries(hs.index[ci].id)
			if err != nil {
				return err
			}
			for _, e := range es[searchEntries(es, from):] {
				if more, err := emit(e.key); err != nil || !more {
					return err
				}
				if len(ov) > 0 && bytes.Equal(ov[0].key, e.key) {
					e = entry{key: ov[0].key, blob: ov[0].blob}
					ov = ov[1:]
					if e.blob == nil {
						continue
					}
				}
				if more, err := fn(e); err != nil || !more {
					return err
				}
			}
		}
	}
	_, err := emit(nil)
	return err
}

// walkItems calls fn with the host's items in key order, from the first
// at or after from, until fn returns false; key is the item's item key,
// valid during the call only. Base chunks are decoded through cache.
func (s *sets) walkItems(hs *hostSet, from []byte, cache *chunkCache[*commonv1.Item], fn func(key []byte, it *commonv1.Item) bool) error {
	ov := hs.overlay[searchOverlay(hs.overlay, from):]
	emit := func(key []byte) (bool, error) {
		for len(ov) > 0 && (key == nil || bytes.Compare(ov[0].key, key) < 0) {
			e := ov[0]
			ov = ov[1:]
			if e.absent() {
				continue
			}
			it, err := s.ovItem(&e)
			if err != nil {
				return false, err
			}
			if !fn(e.key, it) {
				return false, nil
			}
		}
		return true, nil
	}
	if len(hs.index) > 0 {
		shared := false
		if n, err := count(s.baseRefs, hs.base); err == nil && n > 1 {
			shared = true
		}
		var buf []byte
		for ci := chunkOf(hs.index, from); ci < len(hs.index); ci++ {
			items, err := s.chunkItems(hs.index[ci].id, cache, shared)
			if err != nil {
				return err
			}
			i := 0
			if from != nil {
				i = sort.Search(len(items), func(i int) bool {
					buf = itemKeyOf(buf[:0], items[i])
					return bytes.Compare(buf, from) >= 0
				})
			}
			for _, it := range items[i:] {
				buf = itemKeyOf(buf[:0], it)
				if more, err := emit(buf); err != nil || !more {
					return err
				}
				if len(ov) > 0 && bytes.Equal(ov[0].key, buf) {
					e := ov[0]
					ov = ov[1:]
					if e.absent() {
						continue
					}
					if it, err = s.ovItem(&e); err != nil {
						return err
					}
				}
				if !fn(buf, it) {
					return nil
				}
			}
		}
	}
	_, err := emit(nil)
	return err
}

// searchOverlay returns the position of the first overlay entry at or
// after key.
func searchOverlay(ov []ovEntry, key []byte) int {
	if key == nil {
		return 0
	}
	return sort.Search(len(ov), func(i int) bool { return bytes.Compare(ov[i].key, key) >= 0 })
}

// searchEntries returns the position of the first entry at or after key.
func searchEntries(es []entry, key []byte) int {
	if key == nil {
		return 0
	}
	return sort.Search(len(es), func(i int) bool { return bytes.Compare(es[i].key, key) >= 0 })
}

// hostEntries returns all of a host's entries, in key order.
func (s *sets) hostEntries(hs *hostSet) ([]entry, error) {
	var out []entry
	err := s.walk(hs, nil, func(e entry) (bool, error) {
		out = append(out, e)
		return true, nil
	})
	return out, err
}

// entryDiff is a key whose blob differs between two sets of entries; nil
// means absent.
type entryDiff struct {
	key, before, after []byte
}

// diffEntries returns the keys whose blobs differ between sorted entries
// before and after, in key order. It stops, returning false, once it has
// found more than limit (negative: no limit).
func diffEntries(before, after []entry, limit int) ([]entryDiff, bool) {
	var out []entryDiff
	for len(before) > 0 || len(after) > 0 {
		var c int
		switch {
		case len(after) == 0:
			c = -1
		case len(before) == 0:
			c = 1
		default:
			c = bytes.Compare(before[0].key, after[0].key)
		}
		var d entryDiff
		switch {
		case c < 0:
			d = entryDiff{key: before[0].key, before: before[0].blob}
			before = before[1:]
		case c > 0:
			d = entryDiff{key: after[0].key, after: after[0].blob}
			after = after[1:]
		default:
			d = entryDiff{key: before[0].key, before: before[0].blob, after: after[0].blob}
			before, after = before[1:], after[1:]
			if bytes.Equal(d.before, d.after) {
				continue
			}
		}
		out = append(out, d)
		if limit >= 0 && len(out) > limit {
			return nil, false
		}
	}
	return out, true
}

// overlayOn returns the overlay of the entries cut into next on the base
// with chunk index idx, false if it has more than limit entries. Chunks
// both hold at the same place hold the same entries and are not compared.
func (s *sets) overlayOn(idx []indexEntry, next []chunk, limit int) ([]ovEntry, bool, error) {
	same := unchanged(idx, next)
	var before, after []entry
	for _, ie := range idx {
		if same[string(ie.first)] {
			continue
		}
		es, err := s.chunkEntries(ie.id)
		if err != nil {
			return nil, false, err
		}
		before = append(before, es...)
	}
	for i := range next {
		if !same[string(next[i].first())] {
			after = append(after, next[i].entries...)
		}
	}
	diffs, ok := diffEntries(before, after, limit)
	if !ok {
		return nil, false, nil
	}
	return overlayOf(diffs), true, nil
}

// overlayOf returns the overlay entries that give the after side of diffs.
func overlayOf(diffs []entryDiff) []ovEntry {
	ov := make([]ovEntry, len(diffs))
	for i, d := range diffs {
		ov[i] = ovEntry{key: d.key, blob: d.after}
	}
	return ov
}

// chooseBase picks the base and overlay of a host whose entries are
// entries (sorted): the candidate base leaving the smallest overlay, if
// it is at most limit entries, else one made of the entries. Candidates
// are the host's current base and those in mru. A candidate's overlay
// that agrees with another host's on the same base on at least a quarter
// of its entries (and consensusMin) makes a consensus base (see the top
// comment).
func (s *sets) chooseBase(hostID []byte, hs *hostSet, entries []entry, mru []mruEntry, limit int) (baseSpec, []ovEntry, error) {
	if len(entries) == 0 {
		return baseSpec{}, nil, nil
	}
	next := s.cut(entries)
	type cand struct {
		id    []byte
		idx   []indexEntry
		peers []string
	}
	var cands []cand
	if hs.base != nil {
		cands = append(cands, cand{id: hs.base, idx: hs.index})
	}
	for _, m := range mru {
		if i := slices.IndexFunc(cands, func(c cand) bool { return bytes.Equal(c.id, m.id) }); i >= 0 {
			cands[i].peers = m.hosts[:]
			continue
		}
		if s.bases.Get(m.id) == nil {
			continue // deleted, or never committed
		}
		idx, err := s.loadBase(m.id)
		if err != nil {
			return baseSpec{}, nil, err
		}
		cands = append(cands, cand{id: m.id, idx: idx, peers: m.hosts[:]})
	}
	best, bestN := -1, limit
	var bestOv []ovEntry
	for i, c := range cands {
		ov, ok, err := s.overlayOn(c.idx, next, bestN)
		if err != nil {
			return baseSpec{}, nil, err
		}
		if ok && (best < 0 || len(ov) < bestN) {
			best, bestN, bestOv = i, len(ov), ov
		}
	}
	if best < 0 {
		// No candidate is close enough: the host's own entries make its
		// base.
		return s.makeBase(entries), nil, nil
	}
	c := cands[best]
	if len(bestOv) >= consensusMin {
		spec, ov, ok, err := s.consensus(hostID, c.id, c.idx, c.peers, bestOv, entries)
		if err != nil || ok {
			return spec, ov, err
		}
	}
	return baseSpec{id: c.id}, bestOv, nil
}

// consensus looks for a peer on base id whose overlay agrees with ov (the
// host's overlay on it) on at least a quarter of ov's entries and
// consensusMin; if one does, it returns the base made of the base's
// entries with those applied (which are the host's entries with the rest
// of ov undone), and the rest of ov as the host's overlay.
func (s *sets) consensus(hostID, id []byte, idx []indexEntry, peers []string, ov []ovEntry, entries []entry) (baseSpec, []ovEntry, bool, error) {
	for _, p := range peers {
		if p == "" || p == string(hostID) {
			continue
		}
		v := s.overlays.Get([]byte(p))
		if v == nil {
			continue
		}
		pbase, pov, _, err := decodeOverlay(v)
		if err != nil {
			return baseSpec{}, nil, false, fmt.Errorf("host %s: %w", p, err)
		}
		if !bytes.Equal(pbase, id) {
			continue
		}
		// Walk both overlays: agreed entries go to the base, the rest of
		// ov stays the host's.
		var rest []ovEntry
		agreed := 0
		j := 0
		for _, e := range ov {
			for j < len(pov) && bytes.Compare(pov[j].key, e.key) < 0 {
				j++
			}
			if j < len(pov) && bytes.Equal(pov[j].key, e.key) && bytes.Equal(pov[j].blob, e.blob) {
				agreed++
				continue
			}
			rest = append(rest, e)
		}
		if agreed < consensusMin || agreed*4 < len(ov) {
			continue
		}
		// The consensus base is the host's entries with rest undone: where
		// rest has an entry, the base's value (if any) replaces the host's.
		be := make([]entry, 0, len(entries)+len(rest))
		i := 0
		for _, r := range rest {
			for i < len(entries) && bytes.Compare(entries[i].key, r.key) < 0 {
				be = append(be, entries[i])
				i++
			}
			if i < len(entries) && bytes.Equal(entries[i].key, r.key) {
				i++ // the host's value, an upsert of rest
			}
			b, err := s.baseValue(idx, r.key)
			if err != nil {
				return baseSpec{}, nil, false, err
			}
			if b != nil {
				be = append(be, entry{key: r.key, blob: b})
			}
		}
		be = append(be, entries[i:]...)
		if len(be) == 0 {
			continue
		}
		return s.makeBase(be), rest, true, nil
	}
	return baseSpec{}, nil, false, nil
}

// putHost replaces the host's stored inventory old by base and overlay,
// counting references: the new base is referenced (and stored, with its
// chunks, if new) before the old one is dropped, so chunks both hold are
// not deleted and stored again; blob references are counted net. The
// overlay, which holds its blobs (overlay.go), is encoded before blobs
// its old base alone named are deleted.
func (s *sets) putHost(hostID []byte, old *hostSet, base baseSpec, overlay []ovEntry) error {
	blobs := map[string]int64{}
	if !bytes.Equal(old.base, base.id) {
		if base.id != nil {
			if err := s.refBase(base, blobs); err != nil {
				return err
			}
		}
		if old.base != nil {
			if err := s.unrefBase(old.base, old.index, blobs); err != nil {
				return err
			}
		}
	}
	if base.id == nil && len(overlay) == 0 {
		if err := s.overlays.Delete(hostID); err != nil {
			return fmt.Errorf("delete overlay: %w", err)
		}
	} else {
		v, err := encodeOverlay(base.id, overlay, s.blob)
		if err != nil {
			return err
		}
		if err := s.overlays.Put(hostID, v); err != nil {
			return fmt.Errorf("store overlay: %w", err)
		}
	}
	return s.refBlobs(blobs)
}

// refBase takes a host's reference to base, storing it and referencing
// its chunks if it is new.
func (s *sets) refBase(base baseSpec, blobs map[string]int64) error {
	n, err := count(s.baseRefs, base.id)
	if err != nil {
		return err
	}
	if n == 0 {
		if base.chunks == nil {
			return corruptf("base %x is chosen but not stored", base.id)
		}
		if err := s.bases.Put(base.id, base.enc); err != nil {
			return fmt.Errorf("store base: %w", err)
		}
		for i := range base.chunks {
			if err := s.ref(&base.chunks[i], blobs); err != nil {
				return err
			}
		}
	}
	return s.baseRefs.Put(base.id, u64(n+1))
}

// unrefBase drops a host's reference to base id, whose chunk index is
// idx, deleting it and dropping its chunk references with the last.
func (s *sets) unrefBase(id []byte, idx []indexEntry, blobs map[string]int64) error {
	if last, err := release(s.baseRefs, "base", id); !last || err != nil {
		return err
	}
	for _, ie := range idx {
		if err := s.unref(ie.id, blobs); err != nil {
			return err
		}
	}
	if err := s.bases.Delete(id); err != nil {
		return fmt.Errorf("delete base: %w", err)
	}
	if err := s.baseRefs.Delete(id); err != nil {
		return fmt.Errorf("delete base count: %w", err)
	}
	return nil
}
