package spool

import (
	"errors"
	"fmt"

	"github.com/quantumlayer/qinfra/pkg/inventory"
	bolt "go.etcd.io/bbolt"
)

// LastSet returns the inventory set described by the last inventory message
// appended, which the next delta is computed against. It is empty (not nil)
// when there is none, after ResetSet, and after a repair, so that the next
// inventory is sent in full.
func (s *Spool) LastSet() (inventory.Set, error) {
	if err := s.begin(); err != nil {
		return nil, err
	}
	defer s.life.RUnlock()
	set := make(inventory.Set)
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketSet).ForEach(func(k, v []byte) error {
			r, err := decodeRef(k)
			if err != nil {
				return fmt.Errorf("%w: set key %x: %w", ErrCorrupt, k, err)
			}
			set[r] = clone(v)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("spool: read set: %w", err)
	}
	return set, nil
}

// ResetSet forgets the last-sent set so that the next inventory is full, as
// the server asks with a ResyncRequest or a Welcome needing a full snapshot.
func (s *Spool) ResetSet() error {
	if err := s.begin(); err != nil {
		return err
	}
	defer s.life.RUnlock()
	// mu keeps the reset from interleaving with AppendInventory's
	// read-modify-write of the same bucket in a surprising order.
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.db.Update(func(tx *bolt.Tx) error { return clearBucket(tx, bucketSet) }); err != nil {
		return fmt.Errorf("spool: reset set: %w", err)
	}
	return nil
}

// Get returns the value stored under key by Put, and whether there is one.
func (s *Spool) Get(key string) ([]byte, bool, error) {
	if err := s.begin(); err != nil {
		return nil, false, err
	}
	defer s.life.RUnlock()
	var (
		v  []byte
		ok bool
	)
	err := s.db.View(func(tx *bolt.Tx) error {
		if b := tx.Bucket(bucketKV).Get([]byte(key)); b != nil {
			v, ok = clone(b), true
		}
		return nil
	})
	if err != nil {
		return nil, false, fmt.Errorf("spool: get %q: %w", key, err)
	}
	return v, ok, nil
}

// Put durably stores a small value of the agent's own (its current config,
// say) under key, replacing any previous value. Values do not count towards
// the queue's bounds; they are meant to be small.
func (s *Spool) Put(key string, v []byte) error {
	if key == "" {
		return errors.New("spool: put: empty key")
	}
	if err := s.begin(); err != nil {
		return err
	}
	defer s.life.RUnlock()
	if v == nil {
		// bbolt would store nil as an empty value anyway; say so explicitly
		// so that Get reports it as present.
		v = []byte{}
	}
	if err := s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketKV).Put([]byte(key), v) }); err != nil {
		return fmt.Errorf("spool: put %q: %w", key, err)
	}
	return nil
}
