package store

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"time"
)

// ChainAudit fills e's Seq, PrevHash and Hash given the previous entry (nil
// for the first). Every backend calls it inside the transaction that
// appends, so the chain is identical whatever stores it. It sets e.Time to
// UTC truncated to the microsecond, the precision every backend keeps
// (PostgreSQL's timestamptz included), so a stored entry still verifies.
func ChainAudit(prev, e *AuditEntry) {
	e.Seq = 1
	e.PrevHash = make([]byte, sha256.Size)
	if prev != nil {
		e.Seq = prev.Seq + 1
		e.PrevHash = append([]byte(nil), prev.Hash...)
	}
	e.Time = e.Time.UTC().Truncate(time.Microsecond)
	e.Hash = auditHash(e)
}

func auditHash(e *AuditEntry) []byte {
	h := sha256.New()
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], e.Seq)
	h.Write(n[:])
	binary.BigEndian.PutUint64(n[:], uint64(e.Time.UnixNano()))
	h.Write(n[:])
	for _, s := range []string{e.Actor, e.Action, e.Target, e.Detail} {
		binary.BigEndian.PutUint64(n[:], uint64(len(s)))
		h.Write(n[:])
		h.Write([]byte(s))
	}
	h.Write(e.PrevHash)
	return h.Sum(nil)
}

// VerifyAuditChain checks that entries, in order and starting at Seq 1 or
// following a known previous entry, form an unbroken chain.
func VerifyAuditChain(prev *AuditEntry, entries []*AuditEntry) error {
	for _, e := range entries {
		wantSeq, wantPrev := uint64(1), make([]byte, sha256.Size)
		if prev != nil {
			wantSeq, wantPrev = prev.Seq+1, prev.Hash
		}
		if e.Seq != wantSeq {
			return fmt.Errorf("audit entry %d: expected seq %d", e.Seq, wantSeq)
		}
		if !bytes.Equal(e.PrevHash, wantPrev) {
			return fmt.Errorf("audit entry %d: previous hash does not match entry %d", e.Seq, wantSeq-1)
		}
		if !bytes.Equal(e.Hash, auditHash(e)) {
			return fmt.Errorf("audit entry %d: hash does not match its content", e.Seq)
		}
		prev = e
	}
	return nil
}
