package storetest

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	commonv1 "github.com/quantumlayer/qinfra/proto/gen/qinfra/common/v1"
	"github.com/quantumlayer/qinfra/server/internal/store"
)

var retentionTests = []test{
	{"Retention/PruneHistory", testPruneHistory},
	{"Retention/PruneAudit", testPruneAudit},
	{"Retention/PruneAuditAll", testPruneAuditAll},
	{"Retention/PruneAuditIsPrefix", testPruneAuditPrefix},
}

// verifyKeptChain checks that entries, what is left of an audit log after
// pruning, form an unbroken chain from the oldest kept entry, and that
// this entry's PrevHash names pruned, the last entry pruned (nil if none
// was). store.VerifyAuditChain expects seq 1 first unless given the
// previous entry; the previous entry's seq and hash are all it reads, and
// the oldest kept entry holds both.
func verifyKeptChain(t *testing.T, entries []*store.AuditEntry, pruned *store.AuditEntry) {
	t.Helper()
	if len(entries) == 0 {
		return
	}
	var prev *store.AuditEntry
	if first := entries[0]; first.Seq > 1 {
		prev = &store.AuditEntry{Seq: first.Seq - 1, Hash: first.PrevHash}
	}
	if err := store.VerifyAuditChain(prev, entries); err != nil {
		t.Fatalf("VerifyAuditChain from the oldest kept entry: %v", err)
	}
	if pruned != nil && (entries[0].Seq != pruned.Seq+1 || !bytes.Equal(entries[0].PrevHash, pruned.Hash)) {
		t.Fatalf("oldest kept entry %d (prev hash %x) does not follow the last pruned entry %d (hash %x)",
			entries[0].Seq, entries[0].PrevHash, pruned.Seq, pruned.Hash)
	}
}

func testPruneHistory(t *testing.T, s store.Store) {
	enrollHosts(t, s, "host-1", "host-2")
	var want = map[string][]*store.ItemChange{}
	var items = map[string][]*commonv1.Item{}
	for _, h := range []string{"host-1", "host-2"} {
		items[h] = []*commonv1.Item{pkg("bash", "1")}
		apply(t, s, fullUpdate(h, "sp", 1, items[h]), store.Applied)
	}
	// host-1 changes at minutes 2..6, host-2 at minutes 3 and 5.
	for seq := uint64(2); seq <= 6; seq++ {
		for _, h := range []string{"host-1", "host-2"} {
			if h == "host-2" && seq%2 == 0 {
				continue
			}
			next := pkg("bash", fmt.Sprintf("%s.%d", h, seq))
			apply(t, s, deltaUpdate(h, "sp", seq, items[h], []*commonv1.Item{next}, nil), store.Applied)
			want[h] = append(want[h], changed(seq, items[h][0], next))
			items[h] = []*commonv1.Item{next}
		}
	}
	prune := func(before time.Time, wantN int) {
		t.Helper()
		n, err := s.PruneHistory(t.Context(), before)
		if err != nil || n != wantN {
			t.Fatalf("PruneHistory(%s) = %d, %v; want %d", before.Format(time.RFC3339), n, err, wantN)
		}
	}
	prune(received(2), 0) // nothing is older than the oldest change
	// Older than minute 4: host-1's 2 and 3, host-2's 3. A change at
	// exactly before is kept.
	prune(received(4), 3)
	wantChanges(t, s, "host-1", time.Time{}, 0, want["host-1"][2:]...)
	wantChanges(t, s, "host-2", time.Time{}, 0, want["host-2"][1:]...)
	prune(received(4), 0)
	prune(received(100), 4)
	wantChanges(t, s, "host-1", time.Time{}, 0)
	wantChanges(t, s, "host-2", time.Time{}, 0)

	// The items are not history: they stay, and changes are recorded
	// again.
	wantItems(t, s, "host-1", items["host-1"])
	next := pkg("bash", "7")
	apply(t, s, deltaUpdate("host-1", "sp", 7, items["host-1"], []*commonv1.Item{next}, nil), store.Applied)
	wantChanges(t, s, "host-1", time.Time{}, 0, changed(7, items["host-1"][0], next))
}

func testPruneAudit(t *testing.T, s store.Store) {
	appended := appendAudit(t, s, 7) // at t0 + i seconds + 123456789ns
	n, err := s.PruneAudit(t.Context(), appended[3].Time)
	if err != nil || n != 3 {
		t.Fatalf("PruneAudit(time of entry 4) = %d, %v; want 3", n, err)
	}
	kept := listAudit(t, s, 0, 0)
	if len(kept) != 4 || kept[0].Seq != 4 {
		t.Fatalf("after pruning: %d entries from seq %d, want 4 from seq 4", len(kept), kept[0].Seq)
	}
	for i := range kept {
		sameAudit(t, kept[i], appended[3+i])
	}
	verifyKeptChain(t, kept, appended[2])
	if got := listAudit(t, s, 2, 2); len(got) != 2 || got[0].Seq != 4 {
		t.Fatalf("ListAudit(2, 2) after pruning = %d entries, want seqs 4 and 5", len(got))
	}
	if n, err := s.PruneAudit(t.Context(), appended[3].Time); err != nil || n != 0 {
		t.Fatalf("PruneAudit again = %d, %v; want 0", n, err)
	}

	// The chain goes on.
	e := &store.AuditEntry{Time: t0.Add(time.Hour), Actor: "admin@example.com", Action: "host.revoke", Target: "host-9"}
	if err := s.AppendAudit(t.Context(), e); err != nil {
		t.Fatal(err)
	}
	if e.Seq != 8 || !bytes.Equal(e.PrevHash, appended[6].Hash) {
		t.Fatalf("appended after pruning: seq %d, prev hash %x; want 8, %x", e.Seq, e.PrevHash, appended[6].Hash)
	}
	verifyKeptChain(t, listAudit(t, s, 0, 0), appended[2])
}

func testPruneAuditAll(t *testing.T, s store.Store) {
	if n, err := s.PruneAudit(t.Context(), t0.Add(time.Hour)); err != nil || n != 0 {
		t.Fatalf("PruneAudit of an empty log = %d, %v", n, err)
	}
	appended := appendAudit(t, s, 5)
	if n, err := s.PruneAudit(t.Context(), t0.Add(time.Hour)); err != nil || n != 5 {
		t.Fatalf("PruneAudit(all) = %d, %v; want 5", n, err)
	}
	if got := listAudit(t, s, 0, 0); len(got) != 0 {
		t.Fatalf("after pruning all: %d entries", len(got))
	}
	// A log pruned to nothing goes on from its last entry, not from seq 1:
	// seqs are never reused, and the chain still names what went before.
	e := &store.AuditEntry{Time: t0.Add(2 * time.Hour), Actor: "admin@example.com", Action: "token.create", Target: "tok"}
	if err := s.AppendAudit(t.Context(), e); err != nil {
		t.Fatal(err)
	}
	kept := listAudit(t, s, 0, 0)
	if len(kept) != 1 {
		t.Fatalf("ListAudit: %d entries, want 1", len(kept))
	}
	sameAudit(t, kept[0], e)
	verifyKeptChain(t, kept, appended[4])
}

func testPruneAuditPrefix(t *testing.T, s store.Store) {
	// The clock went back between entries 2 and 3.
	var appended []*store.AuditEntry
	for i, at := range []time.Duration{0, 10 * time.Second, 5 * time.Second, 20 * time.Second} {
		e := &store.AuditEntry{Time: t0.Add(at), Actor: "admin@example.com", Action: "test", Target: fmt.Sprint(i)}
		if err := s.AppendAudit(t.Context(), e); err != nil {
			t.Fatal(err)
		}
		appended = append(appended, e)
	}
	// Entry 3 is older than before but follows entry 2, which is not:
	// deleting it would break the chain, so only entry 1 goes.
	n, err := s.PruneAudit(t.Context(), t0.Add(7*time.Second))
	if err != nil || n != 1 {
		t.Fatalf("PruneAudit = %d, %v; want 1", n, err)
	}
	kept := listAudit(t, s, 0, 0)
	if len(kept) != 3 {
		t.Fatalf("after pruning: %d entries, want 3", len(kept))
	}
	verifyKeptChain(t, kept, appended[0])
}
