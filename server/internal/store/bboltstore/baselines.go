package bboltstore

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/quantumlayer/qinfra/pkg/baseline"
	"github.com/quantumlayer/qinfra/server/internal/store"
)

// The baselines' and drift's buckets are created by the first write, like
// the advisories', so that older files need no migration; readers treat a
// missing bucket as empty.
//
//	baselines      name → bucket: version, uint64 big-endian → JSON baseline
//	drift          drift number, uint64 big-endian → store.Drift, binary (store.EncodeDrift, store/driftcodec.go) or, as older builds wrote it, JSON
//	drift_open     host ID → bucket: deviation identity → drift number + fingerprint + type + severity (openEntry)
//	drift_by_host  host ID → bucket: drift number → nothing (open and resolved)
//	drift_accepted drift number → acceptance's Until, time key (drift with an acceptance)
//	drift_resolved resolution time + drift number → host ID (resolved drift, for PruneDrift)
//
// Files written before drift_resolved existed, and before drift_open and
// drift_accepted held the values CountDrift reads, are brought up to date
// once by Open (indexDrift), which then sets meta's "drift_index_version"
// to driftIndexVersion.
var (
	bucketBaselines     = []byte("baselines")
	bucketDrift         = []byte("drift")
	bucketDriftOpen     = []byte("drift_open")
	bucketDriftByHost   = []byte("drift_by_host")
	bucketDriftAccepted = []byte("drift_accepted")
	bucketDriftResolved = []byte("drift_resolved")
	keyDriftIndex       = []byte("drift_index_version")
)

// driftIndexVersion is the drift indexes' version indexDrift brings a file
// to.
const driftIndexVersion = 1

// PutBaseline implements store.Baselines.
func (s *Store) PutBaseline(ctx context.Context, b *baseline.Baseline) (created bool, err error) {
	if b == nil || b.Name == "" {
		return false, fmt.Errorf("put baseline: %w: no name", store.ErrInvalid)
	}
	var version int
	err = s.update(ctx, func(tx *bolt.Tx) error {
		created, version = false, 0
		root, err := tx.CreateBucketIfNotExists(bucketBaselines)
		if err != nil {
			return err
		}
		vb, err := root.CreateBucketIfNotExists([]byte(b.Name))
		if err != nil {
			return err
		}
		if k, v := vb.Cursor().Last(); k != nil {
			var latest baseline.Baseline
			if err := json.Unmarshal(v, &latest); err != nil {
				return fmt.Errorf("decode baseline %s: %w", b.Name, err)
			}
			version = int(binary.BigEndian.Uint64(k))
			if baseline.SameContent(&latest, b) {
				return nil
			}
		}
		version++
		rec := *b
		rec.Version = version
		v, err := json.Marshal(&rec)
		if err != nil {
			return err
		}
		created = true
		return vb.Put(u64(uint64(version)), v)
	})
	if err != nil {
		return false, fmt.Errorf("put baseline %s: %w", b.Name, err)
	}
	b.Version = version
	return created, nil
}

// GetBaseline implements store.Baselines.
func (s *Store) GetBaseline(ctx context.Context, name string, version int) (*baseline.Baseline, error) {
	var out *baseline.Baseline
	err := s.view(ctx, func(tx *bolt.Tx) error {
		vb := baselineBucket(tx, name)
		if vb == nil {
			return store.ErrNotFound
		}
		var v []byte
		if version <= 0 {
			_, v = vb.Cursor().Last()
		} else {
			v = vb.Get(u64(uint64(version)))
		}
		if v == nil {
			return store.ErrNotFound
		}
		out = new(baseline.Baseline)
		return json.Unmarshal(v, out)
	})
	if err != nil {
		return nil, fmt.Errorf("get baseline %s version %d: %w", name, version, err)
	}
	return out, nil
}

func baselineBucket(tx *bolt.Tx, name string) *bolt.Bucket {
	root := tx.Bucket(bucketBaselines)
	if root == nil || name == "" {
		return nil
	}
	return root.Bucket([]byte(name))
}

// ListBaselines implements store.Baselines.
func (s *Store) ListBaselines(ctx context.Context) ([]*baseline.Baseline, error) {
	var out []*baseline.Baseline
	err := s.view(ctx, func(tx *bolt.Tx) error {
		root := tx.Bucket(bucketBaselines)
		if root == nil {
			return nil
		}
		return root.ForEachBucket(func(name []byte) error {
			_, v := root.Bucket(name).Cursor().Last()
			if v == nil {
				return nil
			}
			b := new(baseline.Baseline)
			if err := json.Unmarshal(v, b); err != nil {
				return fmt.Errorf("decode baseline %s: %w", name, err)
			}
			out = append(out, b)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list baselines: %w", err)
	}
	return out, nil
}

// ListBaselineVersions implements store.Baselines.
func (s *Store) ListBaselineVersions(ctx context.Context, name string) ([]*baseline.Baseline, error) {
	var out []*baseline.Baseline
	err := s.view(ctx, func(tx *bolt.Tx) error {
		vb := baselineBucket(tx, name)
		if vb == nil {
			return store.ErrNotFound
		}
		return vb.ForEach(func(_, v []byte) error {
			b := new(baseline.Baseline)
			if err := json.Unmarshal(v, b); err != nil {
				return err
			}
			out = append(out, b)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list versions of baseline %s: %w", name, err)
	}
	return out, nil
}

// DeleteBaseline implements store.Baselines.
func (s *Store) DeleteBaseline(ctx context.Context, name string) error {
	err := s.update(ctx, func(tx *bolt.Tx) error {
		root := tx.Bucket(bucketBaselines)
		if root == nil || name == "" {
			return store.ErrNotFound
		}
		err := root.DeleteBucket([]byte(name))
		if errors.Is(err, berrors.ErrBucketNotFound) {
			return store.ErrNotFound
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("delete baseline %s: %w", name, err)
	}
	return nil
}
