package bboltstore

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"

	bolt "go.etcd.io/bbolt"

	"github.com/quantumlayer/qinfra/server/internal/store"
)

// enrollmentTokenRecord is an enrollment token as stored: its JSON plus the
// secret's hash, which store.EnrollmentToken keeps out of its JSON.
type enrollmentTokenRecord struct {
	store.EnrollmentToken
	SecretHash []byte `json:"secret_hash"`
}

// apiTokenRecord is an API token as stored, like enrollmentTokenRecord.
type apiTokenRecord struct {
	store.APIToken
	SecretHash []byte `json:"secret_hash"`
}

func decodeEnrollmentToken(b []byte) (*store.EnrollmentToken, error) {
	var rec enrollmentTokenRecord
	if err := json.Unmarshal(b, &rec); err != nil {
		return nil, fmt.Errorf("decode enrollment token: %w", err)
	}
	t := rec.EnrollmentToken
	t.Hash = rec.SecretHash
	return &t, nil
}

func decodeAPIToken(b []byte) (*store.APIToken, error) {
	var rec apiTokenRecord
	if err := json.Unmarshal(b, &rec); err != nil {
		return nil, fmt.Errorf("decode API token: %w", err)
	}
	t := rec.APIToken
	t.Hash = rec.SecretHash
	return &t, nil
}

// putEnrollmentToken writes an existing or new token's record; the hash
// index is the caller's concern.
func putEnrollmentToken(tx *bolt.Tx, t *store.EnrollmentToken) error {
	b, err := json.Marshal(&enrollmentTokenRecord{EnrollmentToken: *t, SecretHash: t.Hash})
	if err != nil {
		return fmt.Errorf("encode enrollment token %s: %w", t.ID, err)
	}
	return tx.Bucket(bucketEnrollTokens).Put([]byte(t.ID), b)
}

// tokenByHash looks a token up through its hash index, returning
// ErrNotFound for an unknown hash.
func tokenByHash[T any](tx *bolt.Tx, hashBucket, idBucket, hash []byte, decode func([]byte) (T, error)) (T, error) {
	var zero T
	if len(hash) == 0 {
		return zero, store.ErrNotFound
	}
	id := tx.Bucket(hashBucket).Get(hash)
	if id == nil {
		return zero, store.ErrNotFound
	}
	v := tx.Bucket(idBucket).Get(id)
	if v == nil {
		return zero, fmt.Errorf("hash index names token %s, which does not exist", id)
	}
	return decode(v)
}

// createToken stores a new token record and its hash index entry, or
// returns ErrConflict when the ID or the hash is taken.
func createToken(tx *bolt.Tx, idBucket, hashBucket []byte, id string, hash, record []byte) error {
	ids, hashes := tx.Bucket(idBucket), tx.Bucket(hashBucket)
	if ids.Get([]byte(id)) != nil {
		return fmt.Errorf("token ID %s: %w", id, store.ErrConflict)
	}
	if hashes.Get(hash) != nil {
		return fmt.Errorf("token hash: %w", store.ErrConflict)
	}
	if err := ids.Put([]byte(id), record); err != nil {
		return err
	}
	return hashes.Put(hash, []byte(id))
}

// CreateEnrollmentToken stores t, or returns ErrConflict when its ID or
// hash exists.
func (s *Store) CreateEnrollmentToken(ctx context.Context, t *store.EnrollmentToken) error {
	if t.ID == "" || len(t.Hash) == 0 {
		return fmt.Errorf("create enrollment token: %w: empty ID or hash", store.ErrInvalid)
	}
	b, err := json.Marshal(&enrollmentTokenRecord{EnrollmentToken: *t, SecretHash: t.Hash})
	if err != nil {
		return fmt.Errorf("create enrollment token %s: encode: %w", t.ID, err)
	}
	err = s.update(ctx, func(tx *bolt.Tx) error {
		return createToken(tx, bucketEnrollTokens, bucketEnrollHashes, t.ID, t.Hash, b)
	})
	if err != nil {
		return fmt.Errorf("create enrollment token %s: %w", t.ID, err)
	}
	return nil
}

// ListEnrollmentTokens returns all enrollment tokens ordered by creation
// time, then ID.
func (s *Store) ListEnrollmentTokens(ctx context.Context) ([]*store.EnrollmentToken, error) {
	var toks []*store.EnrollmentToken
	err := s.view(ctx, func(tx *bolt.Tx) error {
		return tx.Bucket(bucketEnrollTokens).ForEach(func(k, v []byte) error {
			t, err := decodeEnrollmentToken(v)
			if err != nil {
				return fmt.Errorf("token %s: %w", k, err)
			}
			toks = append(toks, t)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list enrollment tokens: %w", err)
	}
	slices.SortStableFunc(toks, func(a, b *store.EnrollmentToken) int {
		if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
			return c
		}
		return cmp.Compare(a.ID, b.ID)
	})
	return toks, nil
}

// CreateAPIToken stores t, or returns ErrConflict when its ID or hash
// exists.
func (s *Store) CreateAPIToken(ctx context.Context, t *store.APIToken) error {
	if t.ID == "" || len(t.Hash) == 0 {
		return fmt.Errorf("create API token: %w: empty ID or hash", store.ErrInvalid)
	}
	b, err := json.Marshal(&apiTokenRecord{APIToken: *t, SecretHash: t.Hash})
	if err != nil {
		return fmt.Errorf("create API token %s: encode: %w", t.ID, err)
	}
	err = s.update(ctx, func(tx *bolt.Tx) error {
		return createToken(tx, bucketAPITokens, bucketAPIHashes, t.ID, t.Hash, b)
	})
	if err != nil {
		return fmt.Errorf("create API token %s: %w", t.ID, err)
	}
	return nil
}

// GetAPITokenByHash returns the API token whose secret hashes to hash, or
// an error wrapping ErrNotFound.
func (s *Store) GetAPITokenByHash(ctx context.Context, hash []byte) (*store.APIToken, error) {
	var t *store.APIToken
	err := s.view(ctx, func(tx *bolt.Tx) error {
		var err error
		t, err = tokenByHash(tx, bucketAPIHashes, bucketAPITokens, hash, decodeAPIToken)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("get API token by hash: %w", err)
	}
	return t, nil
}
