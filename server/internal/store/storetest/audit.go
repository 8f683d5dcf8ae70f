package storetest

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/quantumlayer/qinfra/server/internal/store"
)

var auditTests = []test{
	{"Audit/Empty", testAuditEmpty},
	{"Audit/AppendList", testAuditAppendList},
	{"Audit/Paging", testAuditPaging},
	{"Audit/ConcurrentAppend", testAuditConcurrentAppend},
}

func sameAudit(t *testing.T, got, want *store.AuditEntry) {
	t.Helper()
	if got.Seq != want.Seq || !got.Time.Equal(want.Time) || got.Actor != want.Actor || got.Action != want.Action ||
		got.Target != want.Target || got.Detail != want.Detail ||
		!bytes.Equal(got.PrevHash, want.PrevHash) || !bytes.Equal(got.Hash, want.Hash) {
		t.Fatalf("audit entry =\n  %+v\nwant\n  %+v", got, want)
	}
}

func listAudit(t *testing.T, s store.Store, after uint64, limit int) []*store.AuditEntry {
	t.Helper()
	entries, err := s.ListAudit(t.Context(), after, limit)
	if err != nil {
		t.Fatalf("ListAudit(%d, %d): %v", after, limit, err)
	}
	return entries
}

// appendAudit appends n entries and returns them as AppendAudit filled them.
func appendAudit(t *testing.T, s store.Store, n int) []*store.AuditEntry {
	t.Helper()
	var out []*store.AuditEntry
	for i := range n {
		e := &store.AuditEntry{
			// Nanoseconds and a zone other than UTC: ChainAudit
			// normalises both, so every backend stores what it hashed.
			Time:   t0.Add(time.Duration(i)*time.Second + 123456789).In(time.FixedZone("CET", 3600)),
			Actor:  "admin@example.com",
			Action: "host.revoke",
			Target: fmt.Sprintf("host-%d", i),
		}
		if i%2 == 0 {
			e.Detail = fmt.Sprintf(`{"reason":"test %d"}`, i)
		}
		if err := s.AppendAudit(t.Context(), e); err != nil {
			t.Fatalf("AppendAudit %d: %v", i, err)
		}
		out = append(out, e)
	}
	return out
}

func testAuditEmpty(t *testing.T, s store.Store) {
	if got := listAudit(t, s, 0, 10); len(got) != 0 {
		t.Fatalf("empty log lists %d entries", len(got))
	}
	if got := listAudit(t, s, 0, 0); len(got) != 0 {
		t.Fatalf("empty log lists %d entries", len(got))
	}
}

func testAuditAppendList(t *testing.T, s store.Store) {
	appended := appendAudit(t, s, 5)
	for i, e := range appended {
		if e.Seq != uint64(i+1) {
			t.Fatalf("entry %d got Seq %d, want %d", i, e.Seq, i+1)
		}
		if len(e.Hash) != sha256.Size {
			t.Fatalf("entry %d has a %d-byte hash", i, len(e.Hash))
		}
		if e.Time.Location() != time.UTC || e.Time.Nanosecond()%1000 != 0 {
			t.Fatalf("entry %d time %s is not UTC to the microsecond", i, e.Time.Format(time.RFC3339Nano))
		}
	}
	if !bytes.Equal(appended[0].PrevHash, make([]byte, sha256.Size)) {
		t.Fatalf("first entry's PrevHash = %x, want zeros", appended[0].PrevHash)
	}
	got := listAudit(t, s, 0, 0)
	if len(got) != len(appended) {
		t.Fatalf("ListAudit: %d entries, want %d", len(got), len(appended))
	}
	for i := range got {
		sameAudit(t, got[i], appended[i])
	}
	if err := store.VerifyAuditChain(nil, got); err != nil {
		t.Fatalf("VerifyAuditChain of the stored log: %v", err)
	}
}

func testAuditPaging(t *testing.T, s store.Store) {
	appended := appendAudit(t, s, 7)
	var prev *store.AuditEntry
	var all []*store.AuditEntry
	for after := uint64(0); ; {
		page := listAudit(t, s, after, 3)
		if len(page) > 3 {
			t.Fatalf("ListAudit(%d, 3) returned %d entries", after, len(page))
		}
		if len(page) == 0 {
			break
		}
		if page[0].Seq != after+1 {
			t.Fatalf("ListAudit(%d, 3) starts at seq %d", after, page[0].Seq)
		}
		if err := store.VerifyAuditChain(prev, page); err != nil {
			t.Fatalf("VerifyAuditChain of page after %d: %v", after, err)
		}
		all = append(all, page...)
		prev = page[len(page)-1]
		after = prev.Seq
	}
	if len(all) != len(appended) {
		t.Fatalf("paging listed %d entries, want %d", len(all), len(appended))
	}
	for i := range all {
		sameAudit(t, all[i], appended[i])
	}
	if got := listAudit(t, s, 5, 100); len(got) != 2 || got[0].Seq != 6 {
		t.Fatalf("ListAudit(5, 100) = %d entries, want seqs 6 and 7", len(got))
	}
	if got := listAudit(t, s, 7, 100); len(got) != 0 {
		t.Fatalf("ListAudit(7, 100) = %d entries, want none", len(got))
	}
	if got := listAudit(t, s, 1<<63, 100); len(got) != 0 {
		t.Fatalf("ListAudit(2^63, 100) = %d entries, want none", len(got))
	}
}

func testAuditConcurrentAppend(t *testing.T, s store.Store) {
	const writers, each = 8, 5
	var wg sync.WaitGroup
	errs := make(chan error, writers*each)
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				e := &store.AuditEntry{Time: t0, Actor: fmt.Sprintf("writer-%d", w), Action: "test", Target: fmt.Sprint(i)}
				if err := s.AppendAudit(t.Context(), e); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("AppendAudit: %v", err)
	}
	got := listAudit(t, s, 0, 0)
	if len(got) != writers*each {
		t.Fatalf("ListAudit: %d entries, want %d", len(got), writers*each)
	}
	if err := store.VerifyAuditChain(nil, got); err != nil {
		t.Fatalf("VerifyAuditChain after concurrent appends: %v", err)
	}
}
