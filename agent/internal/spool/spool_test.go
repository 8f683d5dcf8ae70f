package spool

import (
	"bytes"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/quantumlayer/qinfra/pkg/inventory"
	agentv1 "github.com/quantumlayer/qinfra/proto/gen/qinfra/agent/v1"
	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"
)

func TestAppendPendingAckOrder(t *testing.T) {
	s, _ := openTest(t, Options{})
	if s.LastSeq() != 0 {
		t.Fatalf("LastSeq of a new spool = %d, want 0", s.LastSeq())
	}
	var want []*agentv1.ConnectRequest
	for i := range 10 {
		var m *agentv1.ConnectRequest
		if i%2 == 0 {
			m = result("cmd", i)
		} else {
			m = heartbeat()
		}
		seq := mustAppend(t, s, m)
		if seq != uint64(i+1) {
			t.Fatalf("append %d got seq %d, want %d", i, seq, i+1)
		}
		if r := m.GetCommandResult(); r != nil && r.Seq != seq {
			t.Fatalf("setSeq not applied: message seq %d, want %d", r.Seq, seq)
		}
		want = append(want, m)
	}

	es, err := s.Pending(0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(es) != 10 {
		t.Fatalf("Pending returned %d entries, want 10", len(es))
	}
	for i, e := range es {
		if e.Seq != uint64(i+1) {
			t.Fatalf("entry %d has seq %d", i, e.Seq)
		}
		if !proto.Equal(e.Msg, want[i]) {
			t.Fatalf("entry %d: got %v, want %v", i, e.Msg, want[i])
		}
	}

	es, err = s.Pending(3, 4)
	if err != nil {
		t.Fatal(err)
	}
	if got := []uint64{es[0].Seq, es[len(es)-1].Seq}; len(es) != 4 || got[0] != 4 || got[1] != 7 {
		t.Fatalf("Pending(3, 4) = %v, want seqs 4..7", es)
	}

	if err := s.Ack(5); err != nil {
		t.Fatal(err)
	}
	if got := pendingSeqs(t, s); !slices.Equal(got, seqRange(6, 10)) {
		t.Fatalf("after Ack(5) pending = %v", got)
	}
	if st := s.Stats(); st.Entries != 5 {
		t.Fatalf("Stats.Entries = %d, want 5", st.Entries)
	}
	// A stale ack is harmless.
	if err := s.Ack(2); err != nil {
		t.Fatal(err)
	}
	if got := pendingSeqs(t, s); !slices.Equal(got, seqRange(6, 10)) {
		t.Fatalf("after stale Ack(2) pending = %v", got)
	}
	if err := s.Ack(10); err != nil {
		t.Fatal(err)
	}
	if got := pendingSeqs(t, s); len(got) != 0 {
		t.Fatalf("after Ack(10) pending = %v", got)
	}
	if st := s.Stats(); st.Entries != 0 || st.Bytes != 0 {
		t.Fatalf("empty spool stats = %+v", st)
	}
	if seq := mustAppend(t, s, heartbeat()); seq != 11 {
		t.Fatalf("seq after acking everything = %d, want 11", seq)
	}
}

func TestCumulativeAckAccounting(t *testing.T) {
	s, _ := openTest(t, Options{})
	var sizes []int64
	prev := int64(0)
	for i := range 20 {
		mustAppend(t, s, result("c", i*10))
		b := s.Stats().Bytes
		sizes = append(sizes, b-prev)
		prev = b
	}
	// Ack in uneven cumulative steps; Bytes must follow exactly.
	total := prev
	acked := 0
	for _, upto := range []int{1, 2, 7, 7, 13, 20} {
		if err := s.Ack(uint64(upto)); err != nil {
			t.Fatal(err)
		}
		for ; acked < upto; acked++ {
			total -= sizes[acked]
		}
		st := s.Stats()
		if st.Bytes != total || st.Entries != 20-upto {
			t.Fatalf("after Ack(%d): stats %+v, want bytes %d entries %d", upto, st, total, 20-upto)
		}
		if got := pendingSeqs(t, s); len(got) > 0 && got[0] != uint64(upto+1) {
			t.Fatalf("after Ack(%d) first pending %d", upto, got[0])
		}
	}
}

func TestRestartPersistence(t *testing.T) {
	opts := Options{}
	s, path := openTest(t, opts)
	id := s.ID()
	if !regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`).MatchString(id) {
		t.Fatalf("spool ID %q is not a v4 UUID", id)
	}
	mustAppend(t, s, heartbeat())
	mustAppend(t, s, result("a", 10))
	set := smallSet("gen1", 50)
	inv := inventoryMsg(nil, true)
	if _, err := s.AppendInventory(inv, set); err != nil {
		t.Fatal(err)
	}
	mustAppend(t, s, result("b", 10))
	if err := s.Ack(1); err != nil {
		t.Fatal(err)
	}
	if err := s.Put("config", []byte("interval=60")); err != nil {
		t.Fatal(err)
	}
	before, err := s.Pending(0, 0)
	if err != nil {
		t.Fatal(err)
	}
	stats := s.Stats()

	s = reopen(t, s, path, opts)
	if s.ID() != id {
		t.Fatalf("spool ID changed across restart: %q -> %q", id, s.ID())
	}
	if s.LastSeq() != 4 {
		t.Fatalf("LastSeq after restart = %d, want 4", s.LastSeq())
	}
	after, err := s.Pending(0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(after) != len(before) {
		t.Fatalf("pending after restart %d entries, want %d", len(after), len(before))
	}
	for i := range after {
		if after[i].Seq != before[i].Seq || !proto.Equal(after[i].Msg, before[i].Msg) {
			t.Fatalf("entry %d differs after restart", i)
		}
	}
	if got := s.Stats(); got != stats {
		t.Fatalf("stats after restart %+v, want %+v", got, stats)
	}
	got, err := s.LastSet()
	if err != nil {
		t.Fatal(err)
	}
	if !setsEqual(got, set) {
		t.Fatalf("set after restart has %d items, want %d", len(got), len(set))
	}
	if v, ok, err := s.Get("config"); err != nil || !ok || string(v) != "interval=60" {
		t.Fatalf("Get after restart = %q %v %v", v, ok, err)
	}

	// Sequence numbers stay monotonic even when nothing is queued at restart.
	if err := s.Ack(s.LastSeq()); err != nil {
		t.Fatal(err)
	}
	s = reopen(t, s, path, opts)
	if seq := mustAppend(t, s, heartbeat()); seq != 5 {
		t.Fatalf("first seq after an empty restart = %d, want 5", seq)
	}
}

func TestAckBeyondLastSeq(t *testing.T) {
	log, lb := testLogger(t)
	s, _ := openTest(t, Options{Logger: log})
	for range 3 {
		mustAppend(t, s, heartbeat())
	}
	if err := s.Ack(1000); err != nil {
		t.Fatalf("Ack beyond LastSeq: %v", err)
	}
	if !strings.Contains(lb.String(), "never assigned") {
		t.Fatalf("no warning logged; log: %s", lb.String())
	}
	if got := pendingSeqs(t, s); len(got) != 0 {
		t.Fatalf("pending after clamped ack = %v", got)
	}
	if s.LastSeq() != 3 {
		t.Fatalf("LastSeq moved to %d by a bogus ack", s.LastSeq())
	}
	if seq := mustAppend(t, s, heartbeat()); seq != 4 {
		t.Fatalf("next seq = %d, want 4", seq)
	}
	// An entry appended after the bogus ack is not swallowed by it.
	if got := pendingSeqs(t, s); !slices.Equal(got, []uint64{4}) {
		t.Fatalf("pending = %v, want [4]", got)
	}
}

func TestBoundedEntriesDropOldest(t *testing.T) {
	s, _ := openTest(t, Options{MaxEntries: 5})
	for range 8 {
		mustAppend(t, s, heartbeat())
	}
	if got := pendingSeqs(t, s); !slices.Equal(got, seqRange(4, 8)) {
		t.Fatalf("pending = %v, want 4..8", got)
	}
	st := s.Stats()
	if st.Dropped != 3 || st.DroppedUnreported != 3 || st.DroppedTotal != 3 || st.Entries != 5 {
		t.Fatalf("stats = %+v, want 3 dropped, 5 entries", st)
	}

	// The next inventory carries the count. Queuing it drops seq 4, which
	// that inventory cannot report any more: the next one will.
	inv := inventoryMsg(nil, true)
	seq, err := s.AppendInventory(inv, smallSet("a", 3))
	if err != nil {
		t.Fatal(err)
	}
	if seq != 9 || inv.GetInventory().GetSeq() != 9 {
		t.Fatalf("inventory seq = %d (field %d), want 9", seq, inv.GetInventory().GetSeq())
	}
	if d := inv.GetInventory().GetDropped(); d != 3 {
		t.Fatalf("inventory dropped = %d, want 3", d)
	}
	es, err := s.Pending(8, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(es) != 1 || es[0].Msg.GetInventory().GetDropped() != 3 || es[0].Msg.GetInventory().GetSeq() != 9 {
		t.Fatalf("stored inventory = %v", es)
	}
	st = s.Stats()
	if st.Dropped != 4 || st.DroppedUnreported != 1 || st.DroppedTotal != 4 {
		t.Fatalf("stats after inventory = %+v, want dropped 4, unreported 1", st)
	}

	// Acknowledging the inventory settles the three it reported.
	if err := s.Ack(9); err != nil {
		t.Fatal(err)
	}
	st = s.Stats()
	if st.Dropped != 1 || st.DroppedUnreported != 1 || st.DroppedTotal != 4 {
		t.Fatalf("stats after ack = %+v, want dropped 1", st)
	}
	inv2 := inventoryMsg(nil, false)
	if _, err := s.AppendInventory(inv2, smallSet("a", 3)); err != nil {
		t.Fatal(err)
	}
	if d := inv2.GetInventory().GetDropped(); d != 1 {
		t.Fatalf("second inventory dropped = %d, want 1", d)
	}
	if err := s.Ack(s.LastSeq()); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Dropped != 0 || st.DroppedUnreported != 0 || st.DroppedTotal != 4 {
		t.Fatalf("stats after all acked = %+v", st)
	}
	// A third inventory reports nothing.
	inv3 := inventoryMsg(nil, false)
	if _, err := s.AppendInventory(inv3, smallSet("a", 3)); err != nil {
		t.Fatal(err)
	}
	if d := inv3.GetInventory().GetDropped(); d != 0 {
		t.Fatalf("third inventory dropped = %d, want 0", d)
	}
}

func TestBoundedBytesDropOldest(t *testing.T) {
	const maxBytes = 8 << 10
	s, _ := openTest(t, Options{MaxBytes: maxBytes})
	size := map[uint64]int64{} // stored size by seq
	for i := range 40 {
		m := result("c", 700+i)
		seq := mustAppend(t, s, m)
		enc, err := encodeEntry(m)
		if err != nil {
			t.Fatal(err)
		}
		size[seq] = int64(8 + len(enc))
		if b := s.Stats().Bytes; b > maxBytes {
			t.Fatalf("after append %d the spool holds %d bytes, over %d", i, b, maxBytes)
		}
	}
	got := pendingSeqs(t, s)
	if len(got) == 0 || got[len(got)-1] != 40 {
		t.Fatalf("pending = %v", got)
	}
	// Whatever is left is the newest, contiguous run; everything before it
	// was dropped and counted exactly.
	if !slices.Equal(got, seqRange(got[0], 40)) {
		t.Fatalf("pending not contiguous: %v", got)
	}
	st := s.Stats()
	if want := got[0] - 1; st.Dropped != want || st.DroppedTotal != want {
		t.Fatalf("stats %+v, want %d dropped", st, want)
	}
	// Only as many were dropped as needed: the queue is the longest run of
	// newest messages that fits.
	var kept int64
	for _, seq := range got {
		kept += size[seq]
	}
	if kept != st.Bytes {
		t.Fatalf("Stats.Bytes = %d, queued entries hold %d", st.Bytes, kept)
	}
	if kept+size[got[0]-1] <= maxBytes {
		t.Fatalf("seq %d was dropped although it would have fitted", got[0]-1)
	}
	// The next message would not fit even alone.
	if _, err := s.Append(result("huge", maxBytes), noSeq); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("oversized append: %v, want ErrTooLarge", err)
	}
	if s.LastSeq() != 40 || s.Stats() != st {
		t.Fatalf("a refused append changed the spool: last seq %d, stats %+v", s.LastSeq(), s.Stats())
	}
	if seq := mustAppend(t, s, heartbeat()); seq != 41 {
		t.Fatalf("seq after a refused append = %d, want 41 (no gap)", seq)
	}
}

func TestDroppedReportLostWithItsInventory(t *testing.T) {
	s, _ := openTest(t, Options{MaxEntries: 3})
	for range 5 {
		mustAppend(t, s, heartbeat())
	} // seqs 3..5 queued, 2 dropped
	inv := inventoryMsg(nil, true)
	if _, err := s.AppendInventory(inv, smallSet("x", 2)); err != nil { // seq 6 reports 2, drops seq 3
		t.Fatal(err)
	}
	if inv.GetInventory().GetDropped() != 2 {
		t.Fatalf("inventory dropped = %d, want 2", inv.GetInventory().GetDropped())
	}
	// Push the reporting inventory out before it is acknowledged: its report
	// is lost with it, so its two plus everything dropped since must go
	// into the next one.
	for range 3 {
		mustAppend(t, s, heartbeat()) // seqs 7..9 drop 4, 5, 6
	}
	if got := pendingSeqs(t, s); !slices.Equal(got, seqRange(7, 9)) {
		t.Fatalf("pending = %v", got)
	}
	st := s.Stats()
	// Dropped: 1, 2 (reported by 6, now lost), 3, 4, 5, 6.
	if st.Dropped != 6 || st.DroppedUnreported != 6 || st.DroppedTotal != 6 {
		t.Fatalf("stats = %+v, want 6 unreported", st)
	}
	inv2 := inventoryMsg(nil, true)
	if _, err := s.AppendInventory(inv2, smallSet("x", 2)); err != nil {
		t.Fatal(err)
	}
	if inv2.GetInventory().GetDropped() != 6 {
		t.Fatalf("second inventory dropped = %d, want 6", inv2.GetInventory().GetDropped())
	}
}

func TestEvictedInventoryForcesFull(t *testing.T) {
	s, _ := openTest(t, Options{MaxEntries: 2})
	if _, err := s.AppendInventory(inventoryMsg(nil, true), smallSet("g1", 5)); err != nil {
		t.Fatal(err)
	}
	mustAppend(t, s, heartbeat())
	// This delta pushes the full inventory out: the server can no longer
	// apply it, so the stored set is forgotten and the next one is full.
	if _, err := s.AppendInventory(inventoryMsg(nil, false), smallSet("g2", 5)); err != nil {
		t.Fatal(err)
	}
	if set, err := s.LastSet(); err != nil || len(set) != 0 {
		t.Fatalf("LastSet after an inventory was dropped = %d items, %v; want empty", len(set), err)
	}
	// A full snapshot that pushes out an inventory stands on its own.
	mustAppend(t, s, heartbeat())
	if _, err := s.AppendInventory(inventoryMsg(nil, true), smallSet("g3", 5)); err != nil {
		t.Fatal(err)
	}
	if set, err := s.LastSet(); err != nil || !setsEqual(set, smallSet("g3", 5)) {
		t.Fatalf("LastSet after a full snapshot = %d items, %v", len(set), err)
	}
	// A plain message that pushes out an inventory forgets the set too.
	mustAppend(t, s, heartbeat())
	mustAppend(t, s, heartbeat())
	if set, err := s.LastSet(); err != nil || len(set) != 0 {
		t.Fatalf("LastSet after a heartbeat dropped an inventory = %d items, %v", len(set), err)
	}
}

func TestAppendInventoryAtomic(t *testing.T) {
	s, path := openTest(t, Options{})
	items := packages(t, 200, 0, 0)
	set1 := inventory.SetOf(items)
	seq1, err := s.AppendInventory(inventoryMsg(items, true), set1)
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.LastSet()
	if err != nil || !setsEqual(got, set1) {
		t.Fatalf("LastSet = %d items (%v), want the appended set", len(got), err)
	}

	// A delta: a few items change, one goes, one arrives.
	items2 := packages(t, 200, 5, 1)[1:]
	extra := packages(t, 201, 0, 0)[200]
	items2 = append(items2, extra)
	set2 := inventory.SetOf(items2)
	d := inventory.Diff(set1, items2)
	delta := inventoryMsg(d.Upserts, false)
	seq2, err := s.AppendInventory(delta, set2)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := s.LastSet(); !setsEqual(got, set2) {
		t.Fatal("LastSet after delta differs from the new set")
	}

	// A transaction that fails part way (here: a set key bbolt refuses,
	// written after the entry) must leave neither the entry nor the set.
	set3 := maps(set2)
	set3[inventory.Ref{Kind: "file", Key: strings.Repeat("k", bolt.MaxKeySize+1)}] = make([]byte, 32)
	before := s.Stats()
	if _, err := s.AppendInventory(inventoryMsg(nil, false), set3); err == nil {
		t.Fatal("AppendInventory with an unstorable set key succeeded")
	}
	if s.LastSeq() != seq2 || s.Stats() != before {
		t.Fatalf("failed AppendInventory changed the spool: last seq %d, stats %+v", s.LastSeq(), s.Stats())
	}
	if got := pendingSeqs(t, s); !slices.Equal(got, []uint64{seq1, seq2}) {
		t.Fatalf("pending = %v, want [%d %d]", got, seq1, seq2)
	}
	if got, _ := s.LastSet(); !setsEqual(got, set2) {
		t.Fatal("failed AppendInventory changed the stored set")
	}
	// Still true on disk.
	s = reopen(t, s, path, Options{})
	if got, _ := s.LastSet(); !setsEqual(got, set2) {
		t.Fatal("stored set differs after reopen")
	}
	if seq, err := s.AppendInventory(inventoryMsg(nil, false), set2); err != nil || seq != seq2+1 {
		t.Fatalf("next AppendInventory = %d, %v; want seq %d", seq, err, seq2+1)
	}
	if _, err := s.AppendInventory(heartbeat(), set2); err == nil {
		t.Fatal("AppendInventory accepted a heartbeat")
	}
}

func maps(s inventory.Set) inventory.Set {
	out := make(inventory.Set, len(s))
	for k, v := range s {
		out[k] = v
	}
	return out
}

func TestLastSetAndResetSet(t *testing.T) {
	s, _ := openTest(t, Options{})
	set, err := s.LastSet()
	if err != nil || set == nil || len(set) != 0 {
		t.Fatalf("LastSet of a new spool = %v, %v; want empty non-nil", set, err)
	}
	// Refs that differ only in where kind ends and key begins stay apart.
	odd := inventory.Set{
		{Kind: "ab", Key: "c"}: []byte{1},
		{Kind: "a", Key: "bc"}: []byte{2},
		{Kind: "", Key: ""}:    []byte{3},
	}
	if _, err := s.AppendInventory(inventoryMsg(nil, true), odd); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.LastSet(); !setsEqual(got, odd) {
		t.Fatalf("LastSet = %v, want %v", got, odd)
	}
	if err := s.ResetSet(); err != nil {
		t.Fatal(err)
	}
	if got, err := s.LastSet(); err != nil || got == nil || len(got) != 0 {
		t.Fatalf("LastSet after ResetSet = %v, %v", got, err)
	}
}

func TestKeyValues(t *testing.T) {
	s, _ := openTest(t, Options{})
	if _, ok, err := s.Get("missing"); ok || err != nil {
		t.Fatalf("Get(missing) = %v, %v", ok, err)
	}
	if err := s.Put("a", []byte("1")); err != nil {
		t.Fatal(err)
	}
	if err := s.Put("a", []byte("2")); err != nil {
		t.Fatal(err)
	}
	if v, ok, err := s.Get("a"); err != nil || !ok || string(v) != "2" {
		t.Fatalf("Get(a) = %q, %v, %v", v, ok, err)
	}
	if err := s.Put("empty", nil); err != nil {
		t.Fatal(err)
	}
	if v, ok, err := s.Get("empty"); err != nil || !ok || len(v) != 0 {
		t.Fatalf("Get(empty) = %q, %v, %v", v, ok, err)
	}
	if err := s.Put("", []byte("x")); err == nil {
		t.Fatal("Put with an empty key succeeded")
	}
	// The returned slice is the caller's own.
	v, _, _ := s.Get("a")
	v[0] = 'X'
	if v2, _, _ := s.Get("a"); string(v2) != "2" {
		t.Fatal("modifying Get's result changed the stored value")
	}
}

// corruptEntries writes raw values into the entries bucket of a closed
// spool file.
func corruptEntries(t *testing.T, path string, kv map[string][]byte) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketEntries)
		for k, v := range kv {
			if err := b.Put([]byte(k), v); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestCorruptEntriesQuarantined(t *testing.T) {
	log, lb := testLogger(t)
	opts := Options{Logger: log}
	s, path := openTest(t, opts)
	for i := range 6 {
		mustAppend(t, s, result("c", i))
	}
	if _, err := s.AppendInventory(inventoryMsg(nil, true), smallSet("s", 4)); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// Seq 2: garbage; seq 4: a valid entry with one payload bit flipped
	// (still parses as protobuf, caught by the checksum); a key that is not
	// a sequence number.
	var flipped []byte
	{
		db, err := bolt.Open(path, 0o600, nil)
		if err != nil {
			t.Fatal(err)
		}
		_ = db.View(func(tx *bolt.Tx) error {
			flipped = clone(tx.Bucket(bucketEntries).Get(seqKey(4)))
			return nil
		})
		_ = db.Close()
	}
	flipped[len(flipped)-1] ^= 0x01
	corruptEntries(t, path, map[string][]byte{
		string(seqKey(2)): []byte("\xff\xfe not an entry"),
		string(seqKey(4)): flipped,
		"bogus-key":       []byte("x"),
	})

	s, err := Open(path, opts)
	if err != nil {
		t.Fatalf("Open of a spool with damaged entries: %v", err)
	}
	defer s.Close()
	st := s.Stats()
	if st.Quarantined != 3 {
		t.Fatalf("Quarantined = %d, want 3", st.Quarantined)
	}
	// A quarantined message never reaches the server: it counts as dropped.
	if st.DroppedUnreported != 3 || st.DroppedTotal != 3 {
		t.Fatalf("stats = %+v, want 3 dropped", st)
	}
	if got := pendingSeqs(t, s); !slices.Equal(got, []uint64{1, 3, 5, 6, 7}) {
		t.Fatalf("pending = %v", got)
	}
	if set, _ := s.LastSet(); len(set) != 0 {
		t.Fatal("set kept although a damaged entry may have been an inventory")
	}
	if !strings.Contains(lb.String(), "quarantined") {
		t.Fatalf("quarantine not logged: %s", lb.String())
	}
	if seq := mustAppend(t, s, heartbeat()); seq != 8 {
		t.Fatalf("seq after quarantine = %d, want 8", seq)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// The damaged bytes are kept, and counted once only.
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	var n int
	_ = db.View(func(tx *bolt.Tx) error {
		n = tx.Bucket(bucketCorrupt).Stats().KeyN
		return nil
	})
	_ = db.Close()
	if n != 3 {
		t.Fatalf("corrupt bucket holds %d entries, want 3", n)
	}
	s, err = Open(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if q := s.Stats().Quarantined; q != 3 {
		t.Fatalf("Quarantined after reopen = %d, want 3", q)
	}
}

func TestPendingQuarantinesEntryDamagedAfterOpen(t *testing.T) {
	s, _ := openTest(t, Options{})
	for range 4 {
		mustAppend(t, s, heartbeat())
	}
	// Damage seq 2 behind the Spool's back, as a bad disk would.
	if err := s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketEntries).Put(seqKey(2), []byte{1, 2, 3})
	}); err != nil {
		t.Fatal(err)
	}
	es, err := s.Pending(0, 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(es) != 2 || es[0].Seq != 1 || es[1].Seq != 3 {
		t.Fatalf("Pending(0, 2) = %v, want seqs 1 and 3", es)
	}
	if st := s.Stats(); st.Quarantined != 1 || st.Entries != 3 || st.DroppedUnreported != 1 {
		t.Fatalf("stats = %+v", st)
	}
}

func TestGarbageFileAndRecover(t *testing.T) {
	dir := t.TempDir()
	garbage := make([]byte, 64<<10)
	if _, err := rand.Read(garbage); err != nil {
		t.Fatal(err)
	}
	cases := map[string][]byte{
		"random": garbage,
		"text":   []byte("this is not a database\n"),
		"zeros":  make([]byte, 32<<10),
	}
	for name, content := range cases {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(dir, name+".db")
			if err := os.WriteFile(path, content, 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := Open(path, Options{})
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Open of a %s file: %v, want ErrCorrupt", name, err)
			}
			if !strings.Contains(err.Error(), path) {
				t.Fatalf("error %q does not name the file", err)
			}
			moved, err := Recover(path)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(moved, path+".corrupt-") {
				t.Fatalf("Recover moved the file to %q", moved)
			}
			if b, err := os.ReadFile(moved); err != nil || !bytes.Equal(b, content) {
				t.Fatalf("moved file lost its content: %v", err)
			}
			s, err := Open(path, Options{})
			if err != nil {
				t.Fatalf("Open after Recover: %v", err)
			}
			defer s.Close()
			if s.LastSeq() != 0 || s.ID() == "" {
				t.Fatalf("fresh spool: last seq %d, id %q", s.LastSeq(), s.ID())
			}
		})
	}
}

func TestTruncatedFile(t *testing.T) {
	s, path := openTest(t, Options{})
	for i := range 200 {
		mustAppend(t, s, result("c", 500+i))
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, fi.Size()/3); err != nil {
		t.Fatal(err)
	}
	// A truncated file has valid meta pages pointing past its end. Either
	// outcome is acceptable, but not a crash: ErrCorrupt, or an opened spool.
	s2, err := Open(path, Options{})
	if err != nil {
		if !errors.Is(err, ErrCorrupt) {
			t.Fatalf("Open of a truncated file: %v, want ErrCorrupt", err)
		}
		t.Logf("truncated file refused: %v", err)
		// The refused file must not stay locked by this process, or the
		// agent could not move it aside and start afresh (on Windows) nor
		// open the replacement. Had the lock leaked, a second try would
		// report ErrLocked rather than ErrCorrupt.
		if _, err := Open(path, Options{}); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("second Open of the truncated file: %v, want ErrCorrupt", err)
		}
		if _, err := Recover(path); err != nil {
			t.Fatal(err)
		}
		s3, err := Open(path, Options{})
		if err != nil {
			t.Fatalf("Open after Recover: %v", err)
		}
		_ = s3.Close()
		return
	}
	t.Logf("truncated file opened: %+v", s2.Stats())
	_ = s2.Close()
}

func TestRecoverUniqueNames(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "spool.db")
	seen := map[string]bool{}
	for i := range 3 {
		if err := os.WriteFile(path, []byte{byte(i)}, 0o600); err != nil {
			t.Fatal(err)
		}
		moved, err := Recover(path)
		if err != nil {
			t.Fatal(err)
		}
		if seen[moved] {
			t.Fatalf("Recover reused %q", moved)
		}
		seen[moved] = true
	}
	if _, err := Recover(filepath.Join(dir, "absent.db")); err == nil {
		t.Fatal("Recover of a missing file succeeded")
	}
}

func TestSecondOpenLocked(t *testing.T) {
	_, path := openTest(t, Options{})
	start := time.Now()
	s2, err := Open(path, Options{})
	if err == nil {
		s2.Close()
		t.Fatal("second Open of a spool in use succeeded")
	}
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open: %v, want ErrLocked", err)
	}
	if d := time.Since(start); d > lockTimeout+2*time.Second {
		t.Fatalf("second Open took %s", d)
	}
}

func TestNewerFormatRefused(t *testing.T) {
	s, path := openTest(t, Options{})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMeta).Put(metaFormat, u64(formatVersion+1))
	}); err != nil {
		t.Fatal(err)
	}
	_ = db.Close()
	if _, err := Open(path, Options{}); err == nil || !strings.Contains(err.Error(), "format version") {
		t.Fatalf("Open of a newer format: %v", err)
	}
}

func TestMissingIDRepaired(t *testing.T) {
	s, path := openTest(t, Options{})
	mustAppend(t, s, heartbeat())
	if _, err := s.AppendInventory(inventoryMsg(nil, true), smallSet("a", 2)); err != nil {
		t.Fatal(err)
	}
	old := s.ID()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	_ = db.Update(func(tx *bolt.Tx) error {
		m := tx.Bucket(bucketMeta)
		if err := m.Delete(metaID); err != nil {
			return err
		}
		return m.Put(metaLastSeq, []byte("short")) // unreadable counter
	})
	_ = db.Close()
	s, err = Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.ID() == "" || s.ID() == old {
		t.Fatalf("ID after repair = %q (old %q)", s.ID(), old)
	}
	if s.LastSeq() != 2 {
		t.Fatalf("LastSeq repaired to %d, want 2 (the highest queued)", s.LastSeq())
	}
	if set, _ := s.LastSet(); len(set) != 0 {
		t.Fatal("set kept under a new spool ID")
	}
}

func TestClosed(t *testing.T) {
	s, _ := openTest(t, Options{})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := s.Append(heartbeat(), noSeq); !errors.Is(err, ErrClosed) {
		t.Fatalf("Append after Close: %v", err)
	}
	if _, err := s.Pending(0, 0); !errors.Is(err, ErrClosed) {
		t.Fatalf("Pending after Close: %v", err)
	}
	if err := s.Ack(1); !errors.Is(err, ErrClosed) {
		t.Fatalf("Ack after Close: %v", err)
	}
	if _, _, err := s.Get("x"); !errors.Is(err, ErrClosed) {
		t.Fatalf("Get after Close: %v", err)
	}
}

func TestAppendRejectsEmptyMessage(t *testing.T) {
	s, _ := openTest(t, Options{})
	if _, err := s.Append(&agentv1.ConnectRequest{}, noSeq); err == nil {
		t.Fatal("Append of a message without a body succeeded")
	}
	if _, err := s.Append(nil, noSeq); err == nil {
		t.Fatal("Append(nil) succeeded")
	}
	if s.LastSeq() != 0 {
		t.Fatalf("refused appends used seq numbers: %d", s.LastSeq())
	}
}

// TestConcurrentUse runs appenders, a sender reading Pending and acking,
// and Stats readers at once; run with -race.
func TestConcurrentUse(t *testing.T) {
	s, _ := openTest(t, Options{MaxEntries: 50})
	const writers, perWriter = 3, 40
	var wg sync.WaitGroup
	errc := make(chan error, writers+2)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perWriter {
				var err error
				if w == 0 && i%5 == 0 {
					_, err = s.AppendInventory(inventoryMsg(nil, false), smallSet("c", i%7))
				} else {
					_, err = s.Append(result("c", i), setResultSeq)
				}
				if err != nil {
					errc <- err
					return
				}
			}
		}()
	}
	done := make(chan struct{})
	var readers sync.WaitGroup
	readers.Add(1)
	go func() {
		defer readers.Done()
		var last uint64
		for {
			select {
			case <-done:
				return
			default:
			}
			es, err := s.Pending(last, 10)
			if err != nil {
				errc <- err
				return
			}
			for i, e := range es {
				if e.Seq <= last || (i > 0 && e.Seq <= es[i-1].Seq) {
					errc <- errors.New("pending out of order")
					return
				}
			}
			if len(es) > 0 {
				last = es[len(es)-1].Seq
				if err := s.Ack(last); err != nil {
					errc <- err
					return
				}
			}
			_ = s.Stats()
			_ = s.LastSeq()
		}
	}()
	wg.Wait()
	close(done)
	readers.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	if s.LastSeq() != writers*perWriter {
		t.Fatalf("LastSeq = %d, want %d", s.LastSeq(), writers*perWriter)
	}
	st := s.Stats()
	if got := uint64(len(pendingSeqs(t, s))); got != uint64(st.Entries) {
		t.Fatalf("Stats.Entries %d, pending %d", st.Entries, got)
	}
}
