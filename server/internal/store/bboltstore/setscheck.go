package bboltstore

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"maps"

	bolt "go.etcd.io/bbolt"

	"github.com/quantumlayer/qinfra/pkg/inventory"
)

// checkSetsTx checks the content-addressed storage of the whole store
// (sets.go, bases.go) and returns an error wrapping ErrCorrupt for the
// first problem found:
//   - every base is stored under the SHA-256 of its encoding, and its
//     chunks are those cut makes of its entries, so a base is a function
//     of its entries;
//   - every overlay is canonical for its base: sorted, an upsert only
//     where the base's value differs, a tombstone only where the base has
//     the key;
//   - every reference count (base_refs, chunk_refs, blob_refs) is the
//     number of references (an overlay holds its blobs: only chunks name
//     blobs), and nothing unreferenced is stored;
//   - each host's items (its base merged with its overlay) add up to the
//     accumulator of its stream state.
//
// It reads the whole store; Restore runs it on the backup it verifies.
func checkSetsTx(tx *bolt.Tx, salt []byte) error {
	ss := newSets(tx, salt, nil)
	baseRefs := map[string]uint64{}
	chunkRefs := map[string]uint64{}
	blobRefs := map[string]uint64{}
	indexes := map[string][]indexEntry{}
	err := ss.bases.ForEach(func(id, v []byte) error {
		if sum := sha256.Sum256(v); !bytes.Equal(sum[:], id) {
			return corruptf("base %x is stored under another ID", id)
		}
		idx, err := ss.loadBase(id)
		if err != nil {
			return err
		}
		var all []entry
		for _, ie := range idx {
			es, err := ss.loadChunk(ie.id)
			if err != nil {
				return fmt.Errorf("base %x: %w", id, err)
			}
			if !bytes.Equal(es[0].key, ie.first) {
				return corruptf("base %x: chunk indexed at %q starts at %q", id, ie.first, es[0].key)
			}
			all = append(all, es...)
			chunkRefs[string(ie.id)]++
		}
		for i := 1; i < len(all); i++ {
			if bytes.Compare(all[i-1].key, all[i].key) >= 0 {
				return corruptf("base %x: entries out of order", id)
			}
		}
		if len(all) == 0 {
			return corruptf("base %x is empty", id)
		}
		want := ss.cut(all)
		if len(want) != len(idx) {
			return corruptf("base %x: %d chunks, cut makes %d", id, len(idx), len(want))
		}
		for i := range want {
			if !bytes.Equal(want[i].id, idx[i].id) {
				return corruptf("base %x: chunk %d at %q is not the one cut makes", id, i, idx[i].first)
			}
		}
		indexes[string(id)] = idx
		return nil
	})
	if err != nil {
		return err
	}
	err = ss.overlays.ForEach(func(host, v []byte) error {
		if !hostExists(tx, string(host)) {
			return corruptf("overlay of unknown host %s", host)
		}
		base, ov, vals, err := decodeOverlay(v)
		if err != nil {
			return fmt.Errorf("host %s: %w", host, err)
		}
		ss.inline = vals // one host's at a time
		hs := hostSet{base: base, overlay: ov}
		if base != nil {
			idx, ok := indexes[string(base)]
			if !ok {
				return corruptf("host %s: base %x is missing", host, base)
			}
			hs.index = idx
			baseRefs[string(base)]++
		} else if len(ov) == 0 {
			return corruptf("host %s: empty overlay record", host)
		}
		for _, e := range ov {
			b, err := ss.baseValue(hs.index, e.key)
			if err != nil {
				return err
			}
			switch {
			case e.blob == nil && b == nil:
				return corruptf("host %s: tombstone of %q, which its base lacks", host, e.key)
			case bytes.Equal(e.blob, b):
				return corruptf("host %s: overlay entry %q repeats its base's", host, e.key)
			}
		}
		st, _, err := loadStream(tx, string(host))
		if err != nil {
			return err
		}
		var acc inventory.Accumulator
		err = ss.walk(&hs, nil, func(e entry) (bool, error) {
			b, err := ss.blob(e.blob)
			if err != nil {
				return false, err
			}
			hash, err := itemHash(b)
			if err != nil {
				return false, err
			}
			kind, key, err := splitItemKey(e.key)
			if err != nil {
				return false, err
			}
			acc.Add(inventory.Ref{Kind: kind, Key: key}, hash)
			return true, nil
		})
		if err != nil {
			return fmt.Errorf("host %s: %w", host, err)
		}
		if want := st.accumulator(); acc != want {
			return corruptf("host %s: %d items stored, the stream state says %d, or their hashes differ", host, acc.Count, want.Count)
		}
		return nil
	})
	if err != nil {
		return err
	}
	// A host without an overlay record has no items.
	if err := tx.Bucket(bucketInventory).ForEach(func(host, v []byte) error {
		if ss.overlays.Get(host) != nil {
			return nil
		}
		st, _, err := loadStream(tx, string(host))
		if err != nil {
			return err
		}
		if st.Count != 0 {
			return corruptf("host %s: no items stored, the stream state says %d", host, st.Count)
		}
		return nil
	}); err != nil {
		return err
	}
	if err := ss.chunks.ForEach(func(id, v []byte) error {
		entries, err := decodeChunk(v)
		if err != nil {
			return fmt.Errorf("chunk %x: %w", id, err)
		}
		for _, e := range entries {
			blobRefs[string(e.blob)]++
		}
		return nil
	}); err != nil {
		return err
	}
	for _, c := range []struct {
		name        string
		refs, items *bolt.Bucket
		want        map[string]uint64
	}{
		{"base", ss.baseRefs, ss.bases, baseRefs},
		{"chunk", ss.chunkRefs, ss.chunks, chunkRefs},
		{"blob", ss.blobRefs, ss.blobs, blobRefs},
	} {
		got := map[string]uint64{}
		if err := c.refs.ForEach(func(k, _ []byte) error {
			n, err := count(c.refs, k)
			got[string(k)] = n
			return err
		}); err != nil {
			return err
		}
		if !maps.Equal(got, c.want) {
			return corruptf("%s reference counts: %d stored, %d expected, or counts differ", c.name, len(got), len(c.want))
		}
		if n := c.items.Stats().KeyN; n != len(c.want) {
			return corruptf("%d %ss stored, %d referenced", n, c.name, len(c.want))
		}
		for id := range c.want {
			if c.items.Get([]byte(id)) == nil {
				return corruptf("%s %x is referenced but missing", c.name, id)
			}
		}
	}
	return nil
}
