package bboltstore

// Conversions of older layouts, run by a read-write Open (and by Restore
// on the copy of an older backup) in the transaction that opens the file.

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// encodeOverlayV3 encodes, as schema version 3 did, a host's base ID and overlay: a byte saying
// whether there is a base, its ID, then each entry as a chunk's are (the
// key's shared prefix length, the rest of the key) followed by 0 for a
// tombstone or 1 and the blob ID.
func encodeOverlayV3(base []byte, ov []ovEntry) []byte {
	b := make([]byte, 0, 1+len(base)+len(ov)*48)
	if base == nil {
		b = append(b, 0)
	} else {
		b = append(append(b, 1), base...)
	}
	var prev []byte
	for _, e := range ov {
		b = appendKey(b, prev, e.key)
		if e.blob == nil {
			b = append(b, 0)
		} else {
			b = append(append(b, 1), e.blob...)
		}
		prev = e.key
	}
	return b
}

func decodeOverlayV3(b []byte) (base []byte, ov []ovEntry, err error) {
	switch {
	case len(b) >= 1 && b[0] == 0:
		b = b[1:]
	case len(b) >= 1+sha256.Size && b[0] == 1:
		base = bytes.Clone(b[1 : 1+sha256.Size])
		b = b[1+sha256.Size:]
	default:
		return nil, nil, corruptf("overlay: bad base")
	}
	var prev []byte
	for len(b) > 0 {
		key, rest, err := readKey(b, prev, 1)
		if err != nil {
			return nil, nil, corruptf("overlay entry %d: %v", len(ov), err)
		}
		b = rest
		e := ovEntry{key: key}
		switch {
		case b[0] == 0:
			b = b[1:]
		case b[0] == 1 && len(b) > sha256.Size:
			e.blob = bytes.Clone(b[1 : 1+sha256.Size])
			b = b[1+sha256.Size:]
		default:
			return nil, nil, corruptf("overlay entry %d: bad value", len(ov))
		}
		if len(ov) > 0 && bytes.Compare(ov[len(ov)-1].key, key) >= 0 {
			return nil, nil, corruptf("overlay entry %d: out of order", len(ov))
		}
		ov = append(ov, e)
		prev = key
	}
	return base, ov, nil
}

// migrateIndexes turns the schema version 2 layout, where each host kept
// a chunk index in a bucket of its own under inventory_chunks, into bases:
// each host's index becomes a base (hosts with identical indexes share
// one) with an empty overlay. The chunks stay; a chunk's count drops by
// the hosts that now reach it through a base another host already made.
// Blob counts do not change: the same chunks are stored.
func migrateIndexes(tx *bolt.Tx) error {
	for _, name := range [][]byte{bucketBases, bucketBaseRefs, bucketOverlays} {
		if _, err := tx.CreateBucketIfNotExists(name); err != nil {
			return fmt.Errorf("create bucket %s: %w", name, err)
		}
	}
	old := tx.Bucket(bucketInvChunksV2)
	if old == nil {
		return nil
	}
	ss := newSets(tx, nil, nil)
	err := old.ForEachBucket(func(host []byte) error {
		c := old.Bucket(host).Cursor()
		var es []entry
		for k, v := c.First(); k != nil; k, v = c.Next() {
			es = append(es, entry{key: bytes.Clone(k), blob: bytes.Clone(v)})
		}
		if len(es) == 0 {
			return nil
		}
		enc := encodeChunk(es)
		sum := sha256.Sum256(enc)
		id := sum[:]
		n, err := count(ss.baseRefs, id)
		if err != nil {
			return err
		}
		if n == 0 {
			if err := ss.bases.Put(id, enc); err != nil {
				return err
			}
		} else {
			for _, e := range es {
				m, err := count(ss.chunkRefs, e.blob)
				if err != nil {
					return err
				}
				if m < 2 {
					return corruptf("chunk %x of host %s has %d references", e.blob, host, m)
				}
				if err := ss.chunkRefs.Put(e.blob, u64(m-1)); err != nil {
					return err
				}
			}
		}
		if err := ss.baseRefs.Put(id, u64(n+1)); err != nil {
			return err
		}
		return ss.overlays.Put(bytes.Clone(host), encodeOverlayV3(id, nil))
	})
	if err != nil {
		return fmt.Errorf("migrate chunk indexes: %w", err)
	}
	return tx.DeleteBucket(bucketInvChunksV2)
}

// bucketInvChunksV2 held schema version 2's chunk indexes.
var bucketInvChunksV2 = []byte("inventory_chunks")

// migrateOverlaysV3 rewrites schema version 3's overlays, which named
// their blobs by ID and counted them in blob_refs, in the inline form of
// version 4 (overlay.go); blobs no base chunk names any more are deleted.
func migrateOverlaysV3(tx *bolt.Tx) error {
	ss := newSets(tx, nil, nil)
	var hosts [][]byte
	if err := ss.overlays.ForEach(func(k, _ []byte) error {
		hosts = append(hosts, bytes.Clone(k))
		return nil
	}); err != nil {
		return err
	}
	drop := map[string]int64{}
	for _, h := range hosts {
		base, ov, err := decodeOverlayV3(ss.overlays.Get(h))
		if err != nil {
			return fmt.Errorf("host %s: %w", h, err)
		}
		v, err := encodeOverlay(base, ov, func(id []byte) ([]byte, error) {
			drop[string(id)]--
			if b := ss.blobs.Get(id); b != nil {
				return b, nil
			}
			return nil, corruptf("blob %x is missing", id)
		})
		if err != nil {
			return fmt.Errorf("host %s: %w", h, err)
		}
		if err := ss.overlays.Put(h, v); err != nil {
			return err
		}
	}
	return ss.refBlobs(drop)
}

// migrateSchema converts a file of schema version 2 or 3 to the current
// version, in the transaction of a read-write Open; other versions are
// left to checkTx.
func migrateSchema(tx *bolt.Tx) error {
	meta := tx.Bucket(bucketMeta)
	v := meta.Get(keySchemaVersion)
	if len(v) != 8 {
		return nil
	}
	switch binary.BigEndian.Uint64(v) {
	case 2:
		if err := migrateIndexes(tx); err != nil {
			return err
		}
		fallthrough
	case 3:
		if err := migrateOverlaysV3(tx); err != nil {
			return fmt.Errorf("migrate overlays: %w", err)
		}
	default:
		return nil
	}
	return meta.Put(keySchemaVersion, u64(SchemaVersion))
}
