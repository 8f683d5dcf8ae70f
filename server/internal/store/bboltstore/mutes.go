package bboltstore

import (
	"context"
	"encoding/json"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/quantumlayer/qinfra/server/internal/store"
)

// bucketMutes maps a mute ID to its JSON; created by the first PutMute.
var bucketMutes = []byte("mutes")

// PutMute creates m; see store.Mutes.
func (s *Store) PutMute(ctx context.Context, m *store.Mute) error {
	if m.ID == "" || m.Vulnerability == "" {
		return fmt.Errorf("put mute: %w: ID and vulnerability are required", store.ErrInvalid)
	}
	b, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("encode mute %s: %w", m.ID, err)
	}
	return s.update(ctx, func(tx *bolt.Tx) error {
		mutes, err := tx.CreateBucketIfNotExists(bucketMutes)
		if err != nil {
			return err
		}
		if mutes.Get([]byte(m.ID)) != nil {
			return fmt.Errorf("mute %s: %w", m.ID, store.ErrConflict)
		}
		return mutes.Put([]byte(m.ID), b)
	})
}

// ListMutes returns every mute ordered by ID.
func (s *Store) ListMutes(ctx context.Context) ([]*store.Mute, error) {
	var out []*store.Mute
	err := s.view(ctx, func(tx *bolt.Tx) error {
		mutes := tx.Bucket(bucketMutes)
		if mutes == nil {
			return nil
		}
		return mutes.ForEach(func(k, v []byte) error {
			var m store.Mute
			if err := json.Unmarshal(v, &m); err != nil {
				return fmt.Errorf("decode mute %s: %w", k, err)
			}
			out = append(out, &m)
			return nil
		})
	})
	return out, err
}

// DeleteMute deletes one mute, or returns ErrNotFound.
func (s *Store) DeleteMute(ctx context.Context, id string) error {
	return s.update(ctx, func(tx *bolt.Tx) error {
		mutes := tx.Bucket(bucketMutes)
		if mutes == nil || mutes.Get([]byte(id)) == nil {
			return fmt.Errorf("mute %s: %w", id, store.ErrNotFound)
		}
		return mutes.Delete([]byte(id))
	})
}
