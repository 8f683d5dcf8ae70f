package bboltstore

// Content-addressed inventories.
//
// A host's items, in item key order (kind + "\x00" + key), are a list of
// entries: item key → blob ID. A blob is an item as stored — its proto
// without kind and key, which the entry holds — and its ID is the SHA-256
// of those bytes, computed here: the agent's item hash is not trusted as an
// address, so one host cannot make another's items read differently. Each
// distinct blob is stored once.
//
// A list of entries that makes a base (bases.go: a host keeps a base and
// its own differences from it) is cut into chunks before every boundary
// key: one whose hash, keyed by the store's random salt, falls below
// 1/chunkTarget of its range. Where chunks start thus depends on keys
// alone, so bases made from hosts of one image share most chunks. A chunk
// is stored once, under its ID (the SHA-256 of its encoding); a base is its
// chunk index: first item key → chunk ID. The salt keeps agents from
// choosing keys that never cut, which would make one chunk of a whole
// inventory.
//
// Reference counts make sharing safe: base_refs counts the hosts using a
// base, chunk_refs the base index entries naming a chunk, blob_refs the
// stored chunks' entries and the overlays' entries naming a blob. They
// change in the transaction that changes a host's inventory; a base, chunk
// or blob whose count reaches zero is deleted. Blob counts change by their
// net change, so the blobs an update keeps are not written.
//
// Every chunk but a base's first starts at a boundary key and no chunk
// holds one elsewhere: a base's chunks, and its ID, are a function of its
// entries, and hosts that reached the same items share the same bases and
// chunks.

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"sort"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	commonv1 "github.com/quantumlayer/qinfra/proto/gen/qinfra/common/v1"
)

// chunkTarget is the average number of entries of a chunk: small enough
// that a delta rewrites little and a host's own items drag few shared
// entries into unshared chunks, large enough that the chunk index stays a
// small fraction of the entries.
const chunkTarget = 32

// entry is one item of a host: its item key and blob ID.
type entry struct {
	key  []byte
	blob []byte
}

// chunk is a run of entries as stored.
type chunk struct {
	id      []byte
	enc     []byte
	entries []entry
}

func (c *chunk) first() []byte { return c.entries[0].key }

// indexEntry is one entry of a host's chunk index.
type indexEntry struct {
	first []byte
	id    []byte
}

// sets reads and writes the shared bases, chunks and blobs and the hosts'
// overlays (bases.go) in one transaction.
type sets struct {
	salt                               []byte
	chunks, chunkRefs, blobs, blobRefs *bolt.Bucket
	bases, baseRefs, overlays          *bolt.Bucket
	// entryCache holds decoded chunk entries; nil for none.
	entryCache *chunkCache[entry]
	// newBlobs holds the bytes of an update's items by blob ID: the blobs
	// that may not be stored yet.
	newBlobs map[string][]byte
	// inline holds the blobs of the overlays read, by blob ID.
	inline map[string][]byte
	buf    []byte
}

func newSets(tx *bolt.Tx, salt []byte, entryCache *chunkCache[entry]) *sets {
	return &sets{
		salt:       salt,
		chunks:     tx.Bucket(bucketChunks),
		chunkRefs:  tx.Bucket(bucketChunkRefs),
		blobs:      tx.Bucket(bucketBlobs),
		blobRefs:   tx.Bucket(bucketBlobRefs),
		bases:      tx.Bucket(bucketBases),
		baseRefs:   tx.Bucket(bucketBaseRefs),
		overlays:   tx.Bucket(bucketOverlays),
		entryCache: entryCache,
	}
}

// corruptf returns an error wrapping ErrCorrupt: what is stored does not
// decode or its references do not add up.
func corruptf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrCorrupt, fmt.Sprintf(format, args...))
}

// boundary reports whether a chunk starts at key.
func (s *sets) boundary(key []byte) bool {
	s.buf = append(append(s.buf[:0], s.salt...), key...)
	sum := sha256.Sum256(s.buf)
	return binary.BigEndian.Uint32(sum[:4]) < math.MaxUint32/chunkTarget
}

// cut chunks entries, which are sorted by key; the first starts a chunk
// whatever its key.
func (s *sets) cut(entries []entry) []chunk {
	var out []chunk
	start := 0
	for i := 1; i <= len(entries); i++ {
		if i == len(entries) || s.boundary(entries[i].key) {
			out = append(out, makeChunk(entries[start:i:i]))
			start = i
		}
	}
	return out
}

func makeChunk(entries []entry) chunk {
	enc := encodeChunk(entries)
	id := sha256.Sum256(enc)
	return chunk{id: id[:], enc: enc, entries: entries}
}

// encodeChunk encodes entries, each as the length of the prefix its key
// shares with the previous key, the rest of the key (length-prefixed) and
// the blob ID. Item keys of one kind share long prefixes.
func encodeChunk(entries []entry) []byte {
	n := 0
	for _, e := range entries {
		n += len(e.key) + len(e.blob) + 4
	}
	b := make([]byte, 0, n)
	var prev []byte
	for _, e := range entries {
		b = append(appendKey(b, prev, e.key), e.blob...)
		prev = e.key
	}
	return b
}

// appendKey appends key as chunks and overlays hold keys: the length of
// the prefix it shares with the previous key, prev, then the rest of it,
// length-prefixed.
func appendKey(b, prev, key []byte) []byte {
	shared := 0
	for shared < len(prev) && shared < len(key) && prev[shared] == key[shared] {
		shared++
	}
	b = binary.AppendUvarint(b, uint64(shared))
	b = binary.AppendUvarint(b, uint64(len(key)-shared))
	return append(b, key[shared:]...)
}

// readKey reads, into a fresh slice, a key appendKey wrote after prev,
// and returns the bytes after it, of which there must be at least
// minAfter.
func readKey(b, prev []byte, minAfter int) (key, after []byte, err error) {
	return appendReadKey(nil, b, prev, minAfter)
}

// appendReadKey is readKey appending the key to dst.
func appendReadKey(dst, b, prev []byte, minAfter int) (key, after []byte, err error) {
	shared, n := binary.Uvarint(b)
	if n <= 0 || shared > uint64(len(prev)) {
		return nil, nil, errors.New("bad shared prefix length")
	}
	b = b[n:]
	rest, n := binary.Uvarint(b)
	if n <= 0 || rest > uint64(len(b)-n) || uint64(len(b)-n)-rest < uint64(minAfter) {
		return nil, nil, errors.New("bad key length")
	}
	b = b[n:]
	if dst == nil {
		dst = make([]byte, 0, int(shared)+int(rest))
	}
	dst = append(append(dst, prev[:shared]...), b[:rest]...)
	return dst, b[rest:], nil
}

// decodeChunk decodes a chunk into fresh slices.
func decodeChunk(b []byte) ([]entry, error) {
	var out []entry
	var prev []byte
	for len(b) > 0 {
		key, rest, err := readKey(b, prev, sha256.Size)
		if err != nil {
			return nil, corruptf("chunk entry %d: %v", len(out), err)
		}
		b = rest
		out = append(out, entry{key: key, blob: bytes.Clone(b[:sha256.Size])})
		b = b[sha256.Size:]
		prev = key
	}
	if len(out) == 0 {
		return nil, corruptf("empty chunk")
	}
	return out, nil
}

// loadChunk reads and decodes a stored chunk.
func (s *sets) loadChunk(id []byte) ([]entry, error) {
	v := s.chunks.Get(id)
	if v == nil {
		return nil, corruptf("chunk %x is missing", id)
	}
	entries, err := decodeChunk(v)
	if err != nil {
		return nil, fmt.Errorf("chunk %x: %w", id, err)
	}
	return entries, nil
}

// blob returns a blob's bytes: in the update, in an overlay read, or
// stored.
func (s *sets) blob(id []byte) ([]byte, error) {
	if v, ok := s.newBlobs[string(id)]; ok {
		return v, nil
	}
	if v, ok := s.inline[string(id)]; ok {
		return v, nil
	}
	if v := s.blobs.Get(id); v != nil {
		return v, nil
	}
	return nil, corruptf("blob %x is missing", id)
}

// addInline makes the blobs of an overlay read available to blob.
func (s *sets) addInline(vals map[string][]byte) {
	if s.inline == nil {
		s.inline = vals
		return
	}
	for id, b := range vals {
		s.inline[id] = b
	}
}

// item decodes the item an entry names.
func (s *sets) item(e entry) (*commonv1.Item, error) {
	b, err := s.blob(e.blob)
	if err != nil {
		return nil, err
	}
	return decodeItem(e.key, b)
}

// decodeItem decodes a blob and gives it the kind and key of its item key.
func decodeItem(key, blob []byte) (*commonv1.Item, error) {
	kind, k, err := splitItemKey(key)
	if err != nil {
		return nil, err
	}
	it := &commonv1.Item{}
	if err := proto.Unmarshal(blob, it); err != nil {
		return nil, corruptf("item %q: %v", key, err)
	}
	it.Kind, it.Key = kind, k
	return it, nil
}

// splitItemKey returns the kind and key of an item key.
func splitItemKey(key []byte) (kind, k string, err error) {
	i := bytes.IndexByte(key, 0)
	if i < 0 {
		return "", "", corruptf("item key %q has no kind", key)
	}
	return string(key[:i]), string(key[i+1:]), nil
}

// encodeBlob returns the bytes stored for an item, and their ID.
func encodeBlob(it *commonv1.Item) (b, id []byte, err error) {
	// The body is shared with it, not copied: Marshal only reads it.
	b, err = proto.MarshalOptions{Deterministic: true}.Marshal(&commonv1.Item{Hash: it.GetHash(), Body: it.Body})
	if err != nil {
		return nil, nil, err
	}
	sum := sha256.Sum256(b)
	return b, sum[:], nil
}

// itemHash returns the item hash (field 3 of Item) held in a blob, without
// decoding the body.
func itemHash(blob []byte) ([]byte, error) {
	b := blob
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, corruptf("blob: %v", protowire.ParseError(n))
		}
		b = b[n:]
		if num == 3 && typ == protowire.BytesType {
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return nil, corruptf("blob: %v", protowire.ParseError(n))
			}
			return v, nil
		}
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return nil, corruptf("blob: %v", protowire.ParseError(n))
		}
		b = b[n:]
	}
	return nil, nil
}

// chunkOf returns the position in index of the chunk key falls in: the
// last starting at or before key, or the first. index must not be empty.
func chunkOf(index []indexEntry, key []byte) int {
	i := sort.Search(len(index), func(i int) bool { return bytes.Compare(index[i].first, key) > 0 })
	return max(i-1, 0)
}

// findEntry returns the blob ID of key in sorted entries, nil if absent.
func findEntry(entries []entry, key []byte) []byte {
	i, ok := slices.BinarySearchFunc(entries, key, func(e entry, k []byte) int { return bytes.Compare(e.key, k) })
	if !ok {
		return nil
	}
	return entries[i].blob
}

// unchanged returns the first keys of the chunks of next that old already
// holds at the same place.
func unchanged(old []indexEntry, next []chunk) map[string]bool {
	had := make(map[string][]byte, len(old))
	for _, o := range old {
		had[string(o.first)] = o.id
	}
	same := make(map[string]bool)
	for _, c := range next {
		if id, ok := had[string(c.first())]; ok && bytes.Equal(id, c.id) {
			same[string(c.first())] = true
		}
	}
	return same
}

func count(b *bolt.Bucket, id []byte) (uint64, error) {
	v := b.Get(id)
	switch len(v) {
	case 0:
		return 0, nil
	case 8:
		return binary.BigEndian.Uint64(v), nil
	}
	return 0, corruptf("reference count of %x is %d bytes long", id, len(v))
}

// release drops one reference counted in refs under id (a chunk's, a
// base's: what names it) and reports whether it was the last, leaving the
// caller to delete the object and its count; with others left it only
// stores the lower count.
func release(refs *bolt.Bucket, what string, id []byte) (last bool, err error) {
	n, err := count(refs, id)
	switch {
	case err != nil:
		return false, err
	case n == 0:
		return false, corruptf("%s %x is referenced but has no reference count", what, id)
	case n == 1:
		return true, nil
	}
	return false, refs.Put(id, u64(n-1))
}

// ref takes a reference to c, storing it if it is new; the references its
// entries then take to their blobs are added to blobs.
func (s *sets) ref(c *chunk, blobs map[string]int64) error {
	n, err := count(s.chunkRefs, c.id)
	if err != nil {
		return err
	}
	if n == 0 {
		if err := s.chunks.Put(c.id, c.enc); err != nil {
			return fmt.Errorf("store chunk: %w", err)
		}
		for _, e := range c.entries {
			blobs[string(e.blob)]++
		}
	}
	return s.chunkRefs.Put(c.id, u64(n+1))
}

// unref drops a reference to a chunk, deleting it with the last; the
// references its entries then drop are subtracted from blobs.
func (s *sets) unref(id []byte, blobs map[string]int64) error {
	if last, err := release(s.chunkRefs, "chunk", id); !last || err != nil {
		return err
	}
	entries, err := s.loadChunk(id)
	if err != nil {
		return err
	}
	if err := s.chunks.Delete(id); err != nil {
		return fmt.Errorf("delete chunk: %w", err)
	}
	if err := s.chunkRefs.Delete(id); err != nil {
		return fmt.Errorf("delete chunk count: %w", err)
	}
	for _, e := range entries {
		blobs[string(e.blob)]--
	}
	return nil
}

// refBlobs applies net changes to blobs' reference counts, in ID order:
// a blob gaining its first reference is stored (it must be one of the
// update's or of an overlay read), one losing its last is deleted.
func (s *sets) refBlobs(blobs map[string]int64) error {
	for _, id := range slices.Sorted(maps.Keys(blobs)) {
		d := blobs[id]
		if d == 0 {
			continue
		}
		key := []byte(id)
		n, err := count(s.blobRefs, key)
		if err != nil {
			return err
		}
		m := int64(n) + d
		switch {
		case m < 0:
			return corruptf("blob %x has %d references, %d are dropped", key, n, -d)
		case m == 0:
			if err := s.blobs.Delete(key); err != nil {
				return fmt.Errorf("delete blob: %w", err)
			}
			if err := s.blobRefs.Delete(key); err != nil {
				return fmt.Errorf("delete blob count: %w", err)
			}
			continue
		case n == 0:
			v, ok := s.newBlobs[id]
			if !ok {
				v, ok = s.inline[id]
			}
			if !ok {
				return corruptf("blob %x is neither stored nor new", key)
			}
			if err := s.blobs.Put(key, v); err != nil {
				return fmt.Errorf("store blob: %w", err)
			}
		}
		if err := s.blobRefs.Put(key, u64(uint64(m))); err != nil {
			return fmt.Errorf("count blob: %w", err)
		}
	}
	return nil
}

// chunkItems returns the decoded items of chunk id, taken from cache when
// it has them. Only chunks several hosts share are worth keeping, a
// host's own would push the shared ones out: those of a base several
// hosts use (shared), or those several bases hold.
func (s *sets) chunkItems(id []byte, cache *chunkCache[*commonv1.Item], shared bool) ([]*commonv1.Item, error) {
	if items, ok := cache.get(id); ok {
		return items, nil
	}
	entries, err := s.chunkEntries(id)
	if err != nil {
		return nil, err
	}
	items := make([]*commonv1.Item, 0, len(entries))
	for _, e := range entries {
		it, err := s.item(e)
		if err != nil {
			return nil, err
		}
		items = append(items, it)
	}
	if !shared {
		n, err := count(s.chunkRefs, id)
		shared = err == nil && n > 1
	}
	if shared {
		cache.put(id, items)
	}
	return items, nil
}

// itemKeyOf appends the item key of it to b.
func itemKeyOf(b []byte, it *commonv1.Item) []byte {
	b = append(b, it.GetKind()...)
	b = append(b, 0)
	return append(b, it.GetKey()...)
}
