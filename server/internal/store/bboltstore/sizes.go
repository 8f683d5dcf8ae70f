package bboltstore

import (
	"context"

	bolt "go.etcd.io/bbolt"
)

// InventoryBuckets are the buckets that hold hosts' inventories (not their
// history or drift): what content addressing is meant to keep small.
var InventoryBuckets = []string{"inventory", "overlays", "bases", "base_refs", "chunks", "chunk_refs", "blobs", "blob_refs"}

// BucketSizes returns the bytes of pages each top-level bucket (nested
// buckets included) occupies in the file, free space inside those pages
// included: what the bucket costs on disk, apart from the file's free
// pages.
func (s *Store) BucketSizes(ctx context.Context) (map[string]int64, error) {
	out := map[string]int64{}
	err := s.view(ctx, func(tx *bolt.Tx) error {
		return tx.ForEach(func(name []byte, b *bolt.Bucket) error {
			st := b.Stats()
			out[string(name)] = int64(st.BranchAlloc + st.LeafAlloc)
			return nil
		})
	})
	return out, err
}
