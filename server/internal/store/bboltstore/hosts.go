package bboltstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"time"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	commonv1 "github.com/quantumlayer/qinfra/proto/gen/qinfra/common/v1"
	"github.com/quantumlayer/qinfra/server/internal/store"
)

// hostRecord is a host as stored: the JSON of store.Host plus its OS facts
// as proto bytes (store.Host leaves Facts out of its JSON).
type hostRecord struct {
	store.Host
	// FactsProto is nil when Host.Facts is nil.
	FactsProto []byte `json:"facts_proto"`
}

func encodeHost(h *store.Host) ([]byte, error) {
	rec := hostRecord{Host: *h}
	if h.Facts != nil {
		b, err := proto.Marshal(h.Facts)
		if err != nil {
			return nil, fmt.Errorf("encode facts of host %s: %w", h.ID, err)
		}
		if b == nil {
			b = []byte{} // empty facts, not absent ones
		}
		rec.FactsProto = b
	}
	b, err := json.Marshal(&rec)
	if err != nil {
		return nil, fmt.Errorf("encode host %s: %w", h.ID, err)
	}
	return b, nil
}

func decodeHost(b []byte) (*store.Host, error) {
	var rec hostRecord
	if err := json.Unmarshal(b, &rec); err != nil {
		return nil, fmt.Errorf("decode host: %w", err)
	}
	h := rec.Host
	if rec.FactsProto != nil {
		h.Facts = &commonv1.OSFacts{}
		if err := proto.Unmarshal(rec.FactsProto, h.Facts); err != nil {
			return nil, fmt.Errorf("decode facts of host %s: %w", h.ID, err)
		}
	}
	return &h, nil
}

// getHost reads a host in tx, returning ErrNotFound when it is absent.
func getHost(tx *bolt.Tx, id string) (*store.Host, error) {
	v := tx.Bucket(bucketHosts).Get([]byte(id))
	if v == nil {
		return nil, store.ErrNotFound
	}
	return decodeHost(v)
}

// hostExists reports whether the host is enrolled.
func hostExists(tx *bolt.Tx, id string) bool {
	return id != "" && tx.Bucket(bucketHosts).Get([]byte(id)) != nil
}

// EnrollHost consumes one use of the enrollment token whose secret hashes
// to tokenHash and creates h, in one transaction. The token's labels are
// copied onto h, over any h already has. A token is valid while now is
// before its ExpiresAt and Used is below UsesAllowed. On error nothing
// changes, h included.
func (s *Store) EnrollHost(ctx context.Context, tokenHash []byte, now time.Time, h *store.Host) error {
	if h == nil || h.ID == "" {
		return fmt.Errorf("enroll host: %w: empty host ID", store.ErrInvalid)
	}
	var labels map[string]string
	err := s.update(ctx, func(tx *bolt.Tx) error {
		tok, err := tokenByHash(tx, bucketEnrollHashes, bucketEnrollTokens, tokenHash, decodeEnrollmentToken)
		switch {
		case errors.Is(err, store.ErrNotFound):
			return fmt.Errorf("%w: unknown token", store.ErrTokenInvalid)
		case err != nil:
			return err
		case !now.Before(tok.ExpiresAt):
			return fmt.Errorf("%w: token %s expired at %s", store.ErrTokenInvalid, tok.ID, tok.ExpiresAt.UTC().Format(time.RFC3339))
		case tok.Used >= tok.UsesAllowed:
			return fmt.Errorf("%w: token %s used up (%d of %d uses)", store.ErrTokenInvalid, tok.ID, tok.Used, tok.UsesAllowed)
		}
		hosts := tx.Bucket(bucketHosts)
		if hosts.Get([]byte(h.ID)) != nil {
			return store.ErrConflict
		}
		tok.Used++
		if err := putEnrollmentToken(tx, tok); err != nil {
			return err
		}
		labels = make(map[string]string, len(h.Labels)+len(tok.Labels))
		maps.Copy(labels, h.Labels)
		maps.Copy(labels, tok.Labels)
		rec := *h
		rec.Labels = labels
		b, err := encodeHost(&rec)
		if err != nil {
			return err
		}
		return hosts.Put([]byte(h.ID), b)
	})
	if err != nil {
		return fmt.Errorf("enroll host %s: %w", h.ID, err)
	}
	h.Labels = labels
	return nil
}

// GetHost returns the host, or an error wrapping ErrNotFound.
func (s *Store) GetHost(ctx context.Context, id string) (*store.Host, error) {
	var h *store.Host
	err := s.view(ctx, func(tx *bolt.Tx) error {
		var err error
		h, err = getHost(tx, id)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("get host %s: %w", id, err)
	}
	return h, nil
}

// ListHosts returns all hosts ordered by ID.
func (s *Store) ListHosts(ctx context.Context) ([]*store.Host, error) {
	var hosts []*store.Host
	err := s.view(ctx, func(tx *bolt.Tx) error {
		return tx.Bucket(bucketHosts).ForEach(func(k, v []byte) error {
			h, err := decodeHost(v)
			if err != nil {
				return fmt.Errorf("host %s: %w", k, err)
			}
			hosts = append(hosts, h)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list hosts: %w", err)
	}
	return hosts, nil
}

// fnError marks the error of an UpdateHost callback, returned unwrapped.
type fnError struct{ err error }

func (e fnError) Error() string { return e.err.Error() }

// UpdateHost reads the host, calls fn on it and writes it back, in one
// transaction. fn's error aborts the update and is returned as is; fn must
// not change the host's ID. Calls are group-committed (see batch), so fn
// may run more than once and must only change the host it is given.
func (s *Store) UpdateHost(ctx context.Context, id string, fn func(*store.Host) error) error {
	err := s.batch(ctx, func(tx *bolt.Tx) error {
		h, err := getHost(tx, id)
		if err != nil {
			return err
		}
		if err := callHostFn(fn, h); err != nil {
			return fnError{err}
		}
		if h.ID != id {
			return fmt.Errorf("%w: update must not change the host ID (to %q)", store.ErrInvalid, h.ID)
		}
		b, err := encodeHost(h)
		if err != nil {
			return err
		}
		return tx.Bucket(bucketHosts).Put([]byte(id), b)
	})
	var fe fnError
	if errors.As(err, &fe) {
		return fe.err
	}
	if err != nil {
		return fmt.Errorf("update host %s: %w", id, err)
	}
	return nil
}

// callHostFn calls an UpdateHost callback, marking its panic as the
// caller's so that it is not mistaken for bbolt's.
func callHostFn(fn func(*store.Host) error, h *store.Host) error {
	defer func() {
		if r := recover(); r != nil {
			panic(callerPanic{r})
		}
	}()
	return fn(h)
}
