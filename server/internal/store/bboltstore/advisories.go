package bboltstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/quantumlayer/qinfra/server/internal/store"
)

// The vulnerability database's buckets are created by the first write
// rather than with the others in initSchema, so that files created before
// they existed need no migration; readers treat a missing bucket as empty.
//
//	advisories         advisory ID → advisoryRecord JSON
//	advisories_by_rev  revision + advisory ID → nothing (the current version's)
//	advisory_meta      "revision", "count", "withdrawn" → uint64; "updated_at" → RFC 3339
//	mutes              mute ID → JSON mute
var (
	bucketAdvisories    = []byte("advisories")
	bucketAdvisoryByRev = []byte("advisories_by_rev")
	bucketAdvisoryMeta  = []byte("advisory_meta")
	keyAdvRevision      = []byte("revision")
	keyAdvCount         = []byte("count")
	keyAdvWithdrawn     = []byte("withdrawn")
	keyAdvUpdatedAt     = []byte("updated_at")
)

// advisoryRecord is an advisory as stored: its fields and the record.
type advisoryRecord struct {
	store.StoredAdvisory
	Record json.RawMessage `json:"record"`
}

func getU64(b *bolt.Bucket, key []byte) uint64 {
	if b == nil {
		return 0
	}
	v := b.Get(key)
	if len(v) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(v)
}

// PutAdvisories stores recs under one new revision; see store.Advisories.
func (s *Store) PutAdvisories(ctx context.Context, recs []store.StoredAdvisory, now time.Time) error {
	for i := range recs {
		a := &recs[i]
		switch {
		case a.ID == "":
			return fmt.Errorf("put advisories: %w: advisory %d has no ID", store.ErrInvalid, i)
		case a.Modified.IsZero():
			return fmt.Errorf("put advisories: %w: advisory %s has no modified time", store.ErrInvalid, a.ID)
		case !json.Valid(a.Raw):
			return fmt.Errorf("put advisories: %w: advisory %s is not valid JSON", store.ErrInvalid, a.ID)
		}
	}
	return s.update(ctx, func(tx *bolt.Tx) error {
		advs, err := tx.CreateBucketIfNotExists(bucketAdvisories)
		if err != nil {
			return err
		}
		byRev, err := tx.CreateBucketIfNotExists(bucketAdvisoryByRev)
		if err != nil {
			return err
		}
		meta, err := tx.CreateBucketIfNotExists(bucketAdvisoryMeta)
		if err != nil {
			return err
		}
		rev := getU64(meta, keyAdvRevision) + 1
		count, withdrawn := getU64(meta, keyAdvCount), getU64(meta, keyAdvWithdrawn)
		changed := false
		for _, a := range recs {
			if old := advs.Get([]byte(a.ID)); old != nil {
				var prev advisoryRecord
				if err := json.Unmarshal(old, &prev); err != nil {
					return fmt.Errorf("decode advisory %s: %w", a.ID, err)
				}
				if prev.Modified.After(a.Modified) {
					continue
				}
				if err := byRev.Delete(revKey(prev.Revision, a.ID)); err != nil {
					return err
				}
				count--
				if prev.Withdrawn {
					withdrawn--
				}
			}
			a.Revision = rev
			b, err := json.Marshal(advisoryRecord{StoredAdvisory: a, Record: a.Raw})
			if err != nil {
				return fmt.Errorf("encode advisory %s: %w", a.ID, err)
			}
			if err := advs.Put([]byte(a.ID), b); err != nil {
				return err
			}
			if err := byRev.Put(revKey(rev, a.ID), nil); err != nil {
				return err
			}
			count++
			if a.Withdrawn {
				withdrawn++
			}
			changed = true
		}
		if !changed {
			return nil
		}
		for k, v := range map[string]uint64{string(keyAdvRevision): rev, string(keyAdvCount): count, string(keyAdvWithdrawn): withdrawn} {
			if err := meta.Put([]byte(k), u64(v)); err != nil {
				return err
			}
		}
		return meta.Put(keyAdvUpdatedAt, []byte(now.UTC().Format(time.RFC3339Nano)))
	})
}

func revKey(rev uint64, id string) []byte {
	return append(u64(rev), id...)
}

// AdvisoriesSince calls fn for the advisories put after revision after.
// It holds one read transaction for the whole walk, which bbolt allows
// alongside writers.
func (s *Store) AdvisoriesSince(ctx context.Context, after uint64, fn func(store.StoredAdvisory) error) error {
	return s.view(ctx, func(tx *bolt.Tx) error {
		byRev, advs := tx.Bucket(bucketAdvisoryByRev), tx.Bucket(bucketAdvisories)
		if byRev == nil || advs == nil {
			return nil
		}
		c := byRev.Cursor()
		n := 0
		for k, _ := c.Seek(u64(after + 1)); k != nil; k, _ = c.Next() {
			if n++; n%1024 == 0 {
				if err := ctx.Err(); err != nil {
					return err
				}
			}
			id := k[8:]
			v := advs.Get(id)
			if v == nil {
				return fmt.Errorf("advisory index names %s, which does not exist", id)
			}
			var rec advisoryRecord
			if err := json.Unmarshal(v, &rec); err != nil {
				return fmt.Errorf("decode advisory %s: %w", id, err)
			}
			a := rec.StoredAdvisory
			a.Raw = bytes.Clone(rec.Record)
			if err := fn(a); err != nil {
				return err
			}
		}
		return nil
	})
}

// GetAdvisoryState returns the summary of the stored advisories.
func (s *Store) GetAdvisoryState(ctx context.Context) (store.AdvisoryState, error) {
	var st store.AdvisoryState
	err := s.view(ctx, func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketAdvisoryMeta)
		if meta == nil {
			return nil
		}
		st.Revision = getU64(meta, keyAdvRevision)
		st.Count = int(getU64(meta, keyAdvCount))
		st.Withdrawn = int(getU64(meta, keyAdvWithdrawn))
		if v := meta.Get(keyAdvUpdatedAt); v != nil {
			t, err := time.Parse(time.RFC3339Nano, string(v))
			if err != nil {
				return fmt.Errorf("decode advisory update time: %w", err)
			}
			st.UpdatedAt = t
		}
		return nil
	})
	return st, err
}
