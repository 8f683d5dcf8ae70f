package store

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// chain builds n chained entries.
func chain(n int) []*AuditEntry {
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	var out []*AuditEntry
	var prev *AuditEntry
	for i := range n {
		e := &AuditEntry{
			Time:   t0.Add(time.Duration(i) * time.Second),
			Actor:  "admin@example.com",
			Action: "host.revoke",
			Target: fmt.Sprintf("host-%d", i),
			Detail: fmt.Sprintf(`{"n":%d}`, i),
		}
		ChainAudit(prev, e)
		out = append(out, e)
		prev = e
	}
	return out
}

// clone deep-copies entries, so a test can tamper with its copy.
func clone(entries []*AuditEntry) []*AuditEntry {
	out := make([]*AuditEntry, len(entries))
	for i, e := range entries {
		c := *e
		c.PrevHash = bytes.Clone(e.PrevHash)
		c.Hash = bytes.Clone(e.Hash)
		out[i] = &c
	}
	return out
}

func TestChainAudit(t *testing.T) {
	entries := chain(3)
	first := entries[0]
	if first.Seq != 1 || !bytes.Equal(first.PrevHash, make([]byte, sha256.Size)) || len(first.Hash) != sha256.Size {
		t.Fatalf("first entry: seq %d, prev %x, hash %x", first.Seq, first.PrevHash, first.Hash)
	}
	for i := 1; i < len(entries); i++ {
		if entries[i].Seq != uint64(i+1) || !bytes.Equal(entries[i].PrevHash, entries[i-1].Hash) {
			t.Fatalf("entry %d: seq %d, prev %x; want seq %d, prev %x", i, entries[i].Seq, entries[i].PrevHash, i+1, entries[i-1].Hash)
		}
	}
	if err := VerifyAuditChain(nil, entries); err != nil {
		t.Fatalf("VerifyAuditChain: %v", err)
	}
	if err := VerifyAuditChain(entries[0], entries[1:]); err != nil {
		t.Fatalf("VerifyAuditChain of a page after a known entry: %v", err)
	}
	if err := VerifyAuditChain(entries[2], nil); err != nil {
		t.Fatalf("VerifyAuditChain of an empty page: %v", err)
	}
}

// TestChainAuditTime checks the time is hashed as the instant, to the
// microsecond: whatever zone or sub-microsecond digits the caller used,
// the entry read back from any backend verifies.
func TestChainAuditTime(t *testing.T) {
	instant := time.Date(2026, 3, 1, 12, 0, 0, 123456789, time.UTC)
	a := &AuditEntry{Time: instant, Actor: "a", Action: "x"}
	b := &AuditEntry{Time: instant.In(time.FixedZone("X", -7*3600)), Actor: "a", Action: "x"}
	ChainAudit(nil, a)
	ChainAudit(nil, b)
	if !bytes.Equal(a.Hash, b.Hash) {
		t.Fatal("the same instant in two zones hashes differently")
	}
	if want := instant.Truncate(time.Microsecond); !a.Time.Equal(want) || a.Time.Location() != time.UTC {
		t.Fatalf("Time = %s, want %s in UTC", a.Time.Format(time.RFC3339Nano), want.Format(time.RFC3339Nano))
	}
	// As a backend with microsecond timestamps returns it.
	stored := *a
	stored.Time = time.UnixMicro(a.Time.UnixMicro()).In(time.Local)
	if err := VerifyAuditChain(nil, []*AuditEntry{&stored}); err != nil {
		t.Fatalf("entry read back with microsecond precision: %v", err)
	}
}

func TestVerifyAuditChainTampering(t *testing.T) {
	tests := []struct {
		name   string
		tamper func([]*AuditEntry) []*AuditEntry
		prev   func([]*AuditEntry) *AuditEntry
		want   string
	}{
		{"edited detail", func(e []*AuditEntry) []*AuditEntry { e[2].Detail = `{"n":99}`; return e }, nil, "entry 3: hash does not match"},
		{"edited actor", func(e []*AuditEntry) []*AuditEntry { e[0].Actor = "mallory"; return e }, nil, "entry 1: hash does not match"},
		{"edited target", func(e []*AuditEntry) []*AuditEntry { e[4].Target = "host-x"; return e }, nil, "entry 5: hash does not match"},
		{"edited time", func(e []*AuditEntry) []*AuditEntry { e[1].Time = e[1].Time.Add(time.Microsecond); return e }, nil, "entry 2: hash does not match"},
		{"deleted entry", func(e []*AuditEntry) []*AuditEntry { return slices.Delete(e, 2, 3) }, nil, "entry 4: expected seq 3"},
		{"deleted first entry", func(e []*AuditEntry) []*AuditEntry { return e[1:] }, nil, "entry 2: expected seq 1"},
		{"swapped entries", func(e []*AuditEntry) []*AuditEntry { e[1], e[2] = e[2], e[1]; return e }, nil, "entry 3: expected seq 2"},
		{"renumbered after deletion", func(e []*AuditEntry) []*AuditEntry {
			e = slices.Delete(e, 2, 3)
			for i := 2; i < len(e); i++ {
				e[i].Seq--
			}
			return e
		}, nil, "entry 3: previous hash does not match"},
		{"rehashed after edit", func(e []*AuditEntry) []*AuditEntry {
			// The forger recomputes the edited entry's hash but cannot
			// recompute the next entry's without rewriting all of them.
			e[1].Detail = "forged"
			ChainAudit(e[0], e[1])
			return e
		}, nil, "entry 3: previous hash does not match"},
		{"forged previous hash", func(e []*AuditEntry) []*AuditEntry { e[3].PrevHash[0] ^= 1; return e }, nil, "entry 4: previous hash does not match"},
		{"page after the wrong entry", func(e []*AuditEntry) []*AuditEntry { return e[3:] },
			func(e []*AuditEntry) *AuditEntry { return e[1] }, "entry 4: expected seq 3"},
		{"page after a forged entry", func(e []*AuditEntry) []*AuditEntry { return e[3:] },
			func(e []*AuditEntry) *AuditEntry {
				f := *e[2]
				f.Hash = bytes.Clone(f.Hash)
				f.Hash[31] ^= 1
				return &f
			}, "entry 4: previous hash does not match"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			entries := clone(chain(6))
			var prev *AuditEntry
			if tc.prev != nil {
				prev = tc.prev(entries)
			}
			err := VerifyAuditChain(prev, tc.tamper(entries))
			if err == nil {
				t.Fatal("VerifyAuditChain accepted a tampered chain")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("VerifyAuditChain error = %q, want it to say %q", err, tc.want)
			}
		})
	}
}
