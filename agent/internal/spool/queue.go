package spool

import (
	"bytes"
	"errors"
	"fmt"
	"math"

	"github.com/quantumlayer/qinfra/pkg/inventory"
	agentv1 "github.com/quantumlayer/qinfra/proto/gen/qinfra/agent/v1"
	bolt "go.etcd.io/bbolt"
)

// Append assigns the next sequence number to msg, passing it to setSeq so
// the caller can set the seq field of the message before it is marshalled,
// and commits the message durably (fsync) before returning the number. When
// the spool is full the oldest entries are dropped and counted to make room.
//
// If Append fails the number is not used up: the next Append assigns it
// again, so a failed Append leaves no gap in the sequence.
func (s *Spool) Append(msg *agentv1.ConnectRequest, setSeq func(*agentv1.ConnectRequest, uint64)) (uint64, error) {
	if setSeq == nil {
		setSeq = func(*agentv1.ConnectRequest, uint64) {}
	}
	return s.append(msg, setSeq, false, nil)
}

// AppendInventory is Append for an inventory message. It sets the message's
// seq, stamps into its dropped field the count of messages dropped and not
// yet reported, and replaces the stored last-sent set with next, all in the
// transaction that queues the message, so that a crash can never leave the
// set and the queue out of step.
//
// If an inventory message had to be dropped to make room, the server can no
// longer follow the chain of deltas; the stored set is then emptied instead
// (unless msg is a full snapshot), so the next inventory is sent in full.
func (s *Spool) AppendInventory(msg *agentv1.ConnectRequest, next inventory.Set) (uint64, error) {
	if msg.GetInventory() == nil {
		return 0, errors.New("spool: AppendInventory needs an inventory message")
	}
	return s.append(msg, nil, true, next)
}

func (s *Spool) append(msg *agentv1.ConnectRequest, setSeq func(*agentv1.ConnectRequest, uint64), isInv bool, next inventory.Set) (uint64, error) {
	if msg == nil {
		return 0, errEmptyMessage
	}
	if err := s.begin(); err != nil {
		return 0, err
	}
	defer s.life.RUnlock()
	s.mu.Lock()
	defer s.mu.Unlock()

	// Only holders of mu change s.st, so reading it here needs no stMu.
	st := s.st
	if st.lastSeq == math.MaxUint64 {
		return 0, errors.New("spool: sequence numbers exhausted")
	}
	seq := st.lastSeq + 1
	var stamped uint64
	if isInv {
		inv := msg.GetInventory()
		inv.Seq = seq
		stamped = st.dropped
		inv.Dropped = stamped
	} else {
		setSeq(msg, seq)
	}
	val, err := encodeEntry(msg)
	if err != nil {
		return 0, err
	}
	key := seqKey(seq)
	size := int64(len(key) + len(val))
	if size > s.maxBytes {
		return 0, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, size, s.maxBytes)
	}

	var (
		nst             state
		evicted         int
		evictedReports  []uint64
		evictedInvFirst uint64
	)
	err = s.db.Update(func(tx *bolt.Tx) error {
		nst, evicted, evictedReports, evictedInvFirst = st, 0, nil, 0
		entries := tx.Bucket(bucketEntries)
		reports := tx.Bucket(bucketReports)
		meta := tx.Bucket(bucketMeta)

		// Drop the oldest entries until the new one fits.
		c := entries.Cursor()
		for nst.entries > 0 && (nst.bytes+size > s.maxBytes || nst.entries+1 > s.maxEntries) {
			k, v := c.First()
			if k == nil {
				break
			}
			old, _ := parseSeqKey(k)
			if entryKind(v) == kindInventory && evictedInvFirst == 0 {
				evictedInvFirst = old
			}
			nst.entries--
			nst.bytes -= int64(len(k) + len(v))
			if err := c.Delete(); err != nil {
				return err
			}
			nst.dropped++
			nst.droppedTotal++
			evicted++
			// The dropped entry may have been the inventory that reported
			// earlier drops; that report is now lost with it, so those
			// drops are unreported again.
			if n, ok := s.reports[old]; ok {
				if err := reports.Delete(seqKey(old)); err != nil {
					return err
				}
				nst.inflight -= n
				nst.dropped += n
				evictedReports = append(evictedReports, old)
			}
		}

		if err := entries.Put(key, val); err != nil {
			return err
		}
		nst.entries++
		nst.bytes += size
		nst.lastSeq = seq
		if first, _ := entries.Cursor().First(); first != nil {
			nst.oldest, _ = parseSeqKey(first)
		}

		if isInv && stamped > 0 {
			if err := reports.Put(key, u64(stamped)); err != nil {
				return err
			}
			nst.inflight += stamped
			nst.dropped -= stamped
		}
		switch {
		case evictedInvFirst != 0 && !(isInv && msg.GetInventory().GetFull()):
			if err := clearBucket(tx, bucketSet); err != nil {
				return err
			}
		case isInv:
			if err := replaceSet(tx.Bucket(bucketSet), next); err != nil {
				return err
			}
		}
		return putState(meta, nst)
	})
	if err != nil {
		return 0, fmt.Errorf("spool: append seq %d: %w", seq, err)
	}

	for _, r := range evictedReports {
		delete(s.reports, r)
	}
	if isInv && stamped > 0 {
		s.reports[seq] = stamped
	}
	s.publish(nst)
	if evicted > 0 {
		s.log.Warn("spool full; dropped the oldest messages",
			"dropped", evicted, "unreported", nst.dropped, "entries", nst.entries, "bytes", nst.bytes,
			"max_entries", s.maxEntries, "max_bytes", s.maxBytes)
		if evictedInvFirst != 0 && !(isInv && msg.GetInventory().GetFull()) {
			s.log.Warn("spool dropped an inventory message; the next inventory will be full", "seq", evictedInvFirst)
		}
	}
	return seq, nil
}

// replaceSet makes the set bucket hold exactly next. It writes only what
// changed, so a small delta against a large set touches few pages.
func replaceSet(b *bolt.Bucket, next inventory.Set) error {
	want := make(map[string][]byte, len(next))
	for r, h := range next {
		want[string(encodeRef(r))] = h
	}
	var stale [][]byte
	c := b.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		h, ok := want[string(k)]
		switch {
		case !ok:
			stale = append(stale, clone(k))
		case bytes.Equal(h, v):
			delete(want, string(k))
		}
	}
	for _, k := range stale {
		if err := b.Delete(k); err != nil {
			return err
		}
	}
	for k, h := range want {
		if h == nil {
			h = []byte{}
		}
		if err := b.Put([]byte(k), h); err != nil {
			return err
		}
	}
	return nil
}

// Pending returns the queued entries with seq greater than after, in
// ascending order, at most limit of them (all when limit <= 0). Each call
// returns newly decoded messages that the caller may modify.
//
// An entry damaged since Open is quarantined and counted as dropped rather
// than returned, so that one bad entry cannot stall the stream.
func (s *Spool) Pending(after uint64, limit int) ([]Entry, error) {
	if err := s.begin(); err != nil {
		return nil, err
	}
	defer s.life.RUnlock()
	if after == math.MaxUint64 {
		return nil, nil
	}
	// Each round quarantines what it found damaged, so a second round finds
	// nothing unless the file is being damaged as we read; give up then.
	for attempt := 0; ; attempt++ {
		var (
			out []Entry
			bad []uint64
		)
		err := s.db.View(func(tx *bolt.Tx) error {
			c := tx.Bucket(bucketEntries).Cursor()
			for k, v := c.Seek(seqKey(after + 1)); k != nil; k, v = c.Next() {
				if limit > 0 && len(out) >= limit {
					break
				}
				seq, ok := parseSeqKey(k)
				if !ok {
					continue
				}
				m, err := decodeEntry(v)
				if err != nil {
					bad = append(bad, seq)
					continue
				}
				out = append(out, Entry{Seq: seq, Msg: m})
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("spool: read pending: %w", err)
		}
		if len(bad) == 0 {
			return out, nil
		}
		if attempt == 3 {
			return nil, fmt.Errorf("%w: entries keep failing to decode (seq %d...)", ErrCorrupt, bad[0])
		}
		if err := s.quarantineSeqs(bad); err != nil {
			return nil, err
		}
		// Read again: the quarantined entries no longer fill the limit.
	}
}

// quarantineSeqs moves entries found damaged after Open to the corrupt
// bucket.
func (s *Spool) quarantineSeqs(seqs []uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.st
	var (
		nst     state
		reports []uint64
	)
	err := s.db.Update(func(tx *bolt.Tx) error {
		nst, reports = st, nil
		entries := tx.Bucket(bucketEntries)
		for _, seq := range seqs {
			k := seqKey(seq)
			v := entries.Get(k)
			if v == nil {
				continue // acknowledged or dropped meanwhile
			}
			if _, err := decodeEntry(v); err == nil {
				continue
			}
			s.log.Warn("spool entry damaged; quarantined", "seq", seq)
			nst.entries--
			nst.bytes -= int64(len(k) + len(v))
			if err := quarantine(tx, k, clone(v)); err != nil {
				return err
			}
			if err := entries.Delete(k); err != nil {
				return err
			}
			nst.dropped++
			nst.droppedTotal++
			nst.quarantined++
			if n, ok := s.reports[seq]; ok {
				if err := tx.Bucket(bucketReports).Delete(k); err != nil {
					return err
				}
				nst.inflight -= n
				nst.dropped += n
				reports = append(reports, seq)
			}
		}
		nst.oldest = 0
		if first, _ := entries.Cursor().First(); first != nil {
			nst.oldest, _ = parseSeqKey(first)
		}
		if nst.quarantined == st.quarantined {
			return nil
		}
		// It may have been an inventory: start the chain again.
		if err := clearBucket(tx, bucketSet); err != nil {
			return err
		}
		return putState(tx.Bucket(bucketMeta), nst)
	})
	if err != nil {
		return fmt.Errorf("spool: quarantine: %w", err)
	}
	for _, r := range reports {
		delete(s.reports, r)
	}
	s.publish(nst)
	return nil
}

// Ack deletes every queued entry with seq <= seq: the server has committed
// them. An inventory among them that reported dropped messages settles that
// report, so those drops leave Stats.Dropped. An Ack beyond LastSeq, which
// only a confused server sends, is logged and treated as an Ack of LastSeq.
func (s *Spool) Ack(seq uint64) error {
	if err := s.begin(); err != nil {
		return err
	}
	defer s.life.RUnlock()
	s.mu.Lock()
	defer s.mu.Unlock()

	st := s.st
	if seq > st.lastSeq {
		s.log.Warn("server acknowledged a seq never assigned; acknowledging up to the last assigned seq",
			"ack", seq, "last_seq", st.lastSeq, "spool_id", s.id)
		seq = st.lastSeq
	}
	var settled []uint64
	for r := range s.reports {
		if r <= seq {
			settled = append(settled, r)
		}
	}
	if len(settled) == 0 && (st.entries == 0 || st.oldest > seq) {
		// Nothing to delete: spare the fsync of an empty commit. Repeated
		// and stale acks are normal after a reconnect.
		return nil
	}

	var nst state
	err := s.db.Update(func(tx *bolt.Tx) error {
		nst = st
		entries := tx.Bucket(bucketEntries)
		var done [][]byte
		c := entries.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if n, _ := parseSeqKey(k); n > seq {
				break
			}
			done = append(done, clone(k))
			nst.entries--
			nst.bytes -= int64(len(k) + len(v))
		}
		// Deleting while walking would make the cursor skip entries.
		for _, k := range done {
			if err := entries.Delete(k); err != nil {
				return err
			}
		}
		nst.oldest = 0
		if first, _ := entries.Cursor().First(); first != nil {
			nst.oldest, _ = parseSeqKey(first)
		}
		reports := tx.Bucket(bucketReports)
		for _, r := range settled {
			if err := reports.Delete(seqKey(r)); err != nil {
				return err
			}
			nst.inflight -= s.reports[r]
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("spool: ack %d: %w", seq, err)
	}
	for _, r := range settled {
		delete(s.reports, r)
	}
	s.publish(nst)
	return nil
}
