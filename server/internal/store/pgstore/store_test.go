package pgstore

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/proto"

	"github.com/quantumlayer/qinfra/pkg/baseline"
	"github.com/quantumlayer/qinfra/pkg/inventory"
	commonv1 "github.com/quantumlayer/qinfra/proto/gen/qinfra/common/v1"
	"github.com/quantumlayer/qinfra/server/internal/store"
	"github.com/quantumlayer/qinfra/server/internal/store/pgstore/pgtest"
)

// enroll enrolls hosts with the given IDs in s.
func enroll(t testing.TB, s store.Store, ids ...string) {
	t.Helper()
	ctx := context.Background()
	hash := sha256.Sum256([]byte("tok-" + ids[0]))
	tok := &store.EnrollmentToken{ID: "tok-" + ids[0], Hash: hash[:], UsesAllowed: len(ids),
		ExpiresAt: benchNow.Add(time.Hour), CreatedAt: benchNow}
	if err := s.CreateEnrollmentToken(ctx, tok); err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		if err := s.EnrollHost(ctx, tok.Hash, benchNow, &store.Host{ID: id, EnrolledAt: benchNow}); err != nil {
			t.Fatal(err)
		}
	}
}

func full(host string, seq uint64, items []*commonv1.Item) *store.InventoryUpdate {
	return &store.InventoryUpdate{HostID: host, SpoolID: "sp", Seq: seq, Full: true,
		Upserts: items, SetHash: inventory.SetOf(items).Hash(), ReceivedAt: benchNow.Add(time.Duration(seq) * time.Minute)}
}

func mustApply(t testing.TB, s store.Store, u *store.InventoryUpdate) {
	t.Helper()
	if out, err := s.ApplyInventory(context.Background(), u); err != nil || out != store.Applied {
		t.Fatalf("ApplyInventory(%s, seq %d) = %v, %v; want applied", u.HostID, u.Seq, out, err)
	}
}

func countRows(t testing.TB, s *Store, table string) int {
	t.Helper()
	var n int
	if err := s.pool.QueryRow(context.Background(), `SELECT count(*) FROM `+table).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func listItems(t testing.TB, s store.Store, host string) []*commonv1.Item {
	t.Helper()
	items, err := s.ListItems(context.Background(), host, "")
	if err != nil {
		t.Fatalf("ListItems(%s): %v", host, err)
	}
	return items
}

// TestBodiesShared: hosts holding the same items share their bodies.
func TestBodiesShared(t *testing.T) {
	s := openTest(t)
	enroll(t, s, "h1", "h2", "h3")
	common := benchItems(t, 50, "1.0")
	for i, h := range []string{"h1", "h2", "h3"} {
		mustApply(t, s, full(h, 1, append(append([]*commonv1.Item{}, common...), hostItems(t, i)...)))
	}
	// h1's items make the base, their bodies stored once; h2 and h3 keep
	// their own items, which have the keys of h1's, in their overlays,
	// bodies included.
	if n, want := countRows(t, s, "items"), 50+benchPerHost; n != want {
		t.Fatalf("%d item bodies stored, want %d", n, want)
	}
	if n, want := countRows(t, s, "inv_base_items"), 50+benchPerHost; n != want {
		t.Fatalf("%d base rows, want %d", n, want)
	}
	if n, want := overlayEntries(t, s), 2*benchPerHost; n != want {
		t.Fatalf("%d overlay entries, want %d", n, want)
	}
	for i, h := range []string{"h1", "h2", "h3"} {
		checkHost(t, s, h, setOf(append(slices.Clone(common), hostItems(t, i)...)))
	}
}

// TestForgedItemHash: an agent claiming another item's hash for a body of
// its choosing changes only its own host's items. Bodies are keyed by a
// hash the server computes.
func TestForgedItemHash(t *testing.T) {
	s := openTest(t)
	enroll(t, s, "good", "evil")
	genuine := benchPkg(t, "openssl", "3.0.13-1~deb12u1")
	forged := proto.Clone(genuine).(*commonv1.Item)
	forged.GetPackage().Version = "0.9.8-backdoored"
	// forged keeps genuine's hash: its set hash is the same as genuine's.
	mustApply(t, s, full("evil", 1, []*commonv1.Item{forged}))
	mustApply(t, s, full("good", 1, []*commonv1.Item{genuine}))
	if got := listItems(t, s, "good"); len(got) != 1 || !proto.Equal(got[0], genuine) {
		t.Fatalf("good host's items = %v, want the genuine package", got)
	}
	if got := listItems(t, s, "evil"); len(got) != 1 || !proto.Equal(got[0], forged) {
		t.Fatalf("evil host's items = %v, want what it sent", got)
	}
}

// TestPruneHistoryCollectsBodies: bodies nothing references any more are
// deleted by PruneHistory, and only those.
func TestPruneHistoryCollectsBodies(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	enroll(t, s, "h1", "h2")
	v1, v2, v3 := benchItems(t, 20, "1"), benchItems(t, 20, "2"), benchItems(t, 20, "3")
	mustApply(t, s, full("h1", 1, v1))
	mustApply(t, s, full("h2", 1, v1))
	mustApply(t, s, full("h1", 2, v2)) // 20 changes: v1 → v2
	mustApply(t, s, full("h1", 3, v3)) // 20 changes: v2 → v3
	if n := countRows(t, s, "items"); n != 60 {
		t.Fatalf("%d bodies before pruning, want 60", n)
	}
	// Pruning nothing collects nothing: v2 is still history.
	if n, err := s.PruneHistory(ctx, benchNow); err != nil || n != 0 {
		t.Fatalf("PruneHistory(nothing) = %d, %v", n, err)
	}
	if n := countRows(t, s, "items"); n != 60 {
		t.Fatalf("%d bodies after pruning nothing, want 60", n)
	}
	// Without history, v2 and v3 are unreferenced: v1 is the base of h2
	// and h1, and v3 is in h1's overlay, which holds its bodies.
	if n, err := s.PruneHistory(ctx, benchNow.Add(time.Hour)); err != nil || n != 40 {
		t.Fatalf("PruneHistory(all) = %d, %v; want 40", n, err)
	}
	if n := countRows(t, s, "items"); n != 20 {
		t.Fatalf("%d bodies after pruning, want 20", n)
	}
	for host, want := range map[string][]*commonv1.Item{"h1": v3, "h2": v1} {
		checkHost(t, s, host, setOf(want))
	}
	// A collected body is stored again when it comes back.
	mustApply(t, s, full("h1", 4, v2))
	if got := listItems(t, s, "h1"); !proto.Equal(got[0], v2[0]) {
		t.Fatalf("h1's first item = %v, want %v", got[0], v2[0])
	}
}

// TestCollectWaitsForIngest: the garbage collector does not delete a body
// that an open ingest transaction references without having inserted it
// (it found the body stored): the collector waits for the ingest to
// commit, then finds the body referenced.
func TestCollectWaitsForIngest(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	enroll(t, s, "h1", "h2")
	a, b := benchItems(t, bulkRows+10, "a"), benchItems(t, bulkRows+10, "b")
	// h1 holds an item more than a, so h2's set (a) is a base of its own.
	mustApply(t, s, full("h1", 1, append(slices.Clone(a), benchPkg(t, "extra", "1"))))

	// h2 applies a, in a transaction left open: a's bodies are stored, so
	// it sends none, and its rows are not visible to others yet.
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	st, err := s.lockStream(ctx, tx, "h2", true, nil)
	if err != nil {
		t.Fatal(err)
	}
	pending, err := prepare(full("h2", 1, a))
	if err != nil {
		t.Fatal(err)
	}
	w := &pgx.Batch{}
	if err := writeBodies(ctx, tx, w, pending); err != nil {
		t.Fatal(err)
	}
	if w.Len() != 0 {
		t.Fatalf("%d statements queued for bodies that are stored", w.Len())
	}
	entries := make([]setEntry, len(pending))
	for i, p := range pending {
		entries[i] = setEntry{ref: p.ref, bodyHash: p.bodyHash}
	}
	slices.SortFunc(entries, compareEntries)
	w, err = s.putPlacement(ctx, tx, w, st.hkey, &hostSet{}, ownPlacement(entries), entries, false)
	if err != nil {
		t.Fatal(err)
	}
	if err := tx.SendBatch(ctx, w).Close(); err != nil {
		t.Fatal(err)
	}

	// h1 moves to b: no committed row or change references a any more
	// once the history is pruned.
	mustApply(t, s, full("h1", 2, b))
	type result struct {
		n   int
		err error
	}
	gc := make(chan result, 1)
	go func() {
		n, err := s.PruneHistory(ctx, benchNow.Add(24*time.Hour))
		gc <- result{n, err}
	}()
	select {
	case r := <-gc:
		t.Fatalf("PruneHistory returned (%d, %v) while an ingest referencing bodies was open", r.n, r.err)
	case <-time.After(500 * time.Millisecond):
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if r := <-gc; r.err != nil {
		t.Fatal(r.err)
	}
	if got := listItems(t, s, "h2"); len(got) != len(a) {
		t.Fatalf("h2 has %d items, want %d", len(got), len(a))
	}
	// h1 stays on its base (a and the extra item) with b in its overlay,
	// which holds b's bodies: the extra body is still referenced, b's are
	// collected with the history that named them.
	if n := countRows(t, s, "items"); n != len(a)+1 {
		t.Fatalf("%d bodies stored, want %d (a for h2, and the extra item of h1's base)", n, len(a)+1)
	}
	checkHost(t, s, "h1", setOf(b))
}

// TestCollectWhileIngesting is a smoke test: the garbage collector runs
// while hosts apply inventories that drop and re-reference the same
// bodies; no host ends up with an item whose body was collected.
func TestCollectWhileIngesting(t *testing.T) {
	if testing.Short() {
		t.Skip("a stress test")
	}
	s := openTest(t)
	ctx := context.Background()
	const hosts, rounds = 3, 30
	var ids []string
	for i := range hosts {
		ids = append(ids, fmt.Sprintf("h%d", i))
	}
	enroll(t, s, ids...)
	sets := [][]*commonv1.Item{benchItems(t, 100, "a"), benchItems(t, 100, "b")}
	var wg sync.WaitGroup
	errs := make(chan error, hosts+1)
	stop := make(chan struct{})
	for _, id := range ids {
		wg.Go(func() {
			for r := range rounds {
				// All hosts move between the same two sets, so each set's
				// bodies keep losing their last reference.
				items := sets[r%2]
				if out, err := s.ApplyInventory(ctx, full(id, uint64(r+1), items)); err != nil || out != store.Applied {
					errs <- fmt.Errorf("%s round %d: %v, %v", id, r, out, err)
					return
				}
			}
		})
	}
	gcDone := make(chan struct{})
	go func() {
		defer close(gcDone)
		for {
			select {
			case <-stop:
				return
			default:
			}
			// Pruning all history leaves only the current sets referenced.
			if _, err := s.PruneHistory(ctx, benchNow.Add(24*time.Hour)); err != nil {
				errs <- err
				return
			}
		}
	}()
	wg.Wait()
	close(stop)
	<-gcDone
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for _, id := range ids {
		listItems(t, s, id) // fails on a missing body
	}
	var dangling int
	if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM inv_base_items b
		WHERE NOT EXISTS (SELECT 1 FROM items i WHERE i.body_hash = b.body_hash)`).Scan(&dangling); err != nil {
		t.Fatal(err)
	}
	if dangling != 0 {
		t.Fatalf("%d base rows reference collected bodies", dangling)
	}
}

// TestReplicasExactlyOnce: two stores on one database (two replicas)
// receive the same messages of a host's stream, redelivered many times:
// each (host, spool, seq) is applied once, whichever replica gets it.
func TestReplicasExactlyOnce(t *testing.T) {
	dsn := pgtest.DSN(t)
	a, b := openDSN(t, dsn, Options{}), openDSN(t, dsn, Options{})
	ctx := context.Background()
	enroll(t, a, "h1")
	base := benchItems(t, 30, "1")
	mustApply(t, a, full("h1", 1, base))
	for _, c := range []string{"c1", "c2"} {
		if err := a.CreateCommand(ctx, &store.Command{ID: c, HostID: "h1", Kind: "script", CreatedAt: benchNow}); err != nil {
			t.Fatal(err)
		}
	}
	// Seq 2: a delta; seq 3: c1's result; seq 4: c2's result.
	next := benchPkg(t, "lib-benchmark-package-00000", "2")
	set := inventory.SetOf(base)
	set.Apply([]*commonv1.Item{next}, nil)
	delta := &store.InventoryUpdate{HostID: "h1", SpoolID: "sp", Seq: 2, Upserts: []*commonv1.Item{next}, SetHash: set.Hash(), ReceivedAt: benchNow}
	result := func(seq uint64, id string) *store.CommandResultUpdate {
		return &store.CommandResultUpdate{HostID: "h1", SpoolID: "sp", Seq: seq, CommandID: id, Status: store.CommandSucceeded, ReceivedAt: benchNow}
	}
	var mu sync.Mutex
	applied := map[uint64]int{}
	var wg sync.WaitGroup
	for i := range 12 {
		s := []*Store{a, b}[i%2]
		wg.Go(func() {
			outs := map[uint64]store.Outcome{}
			var err error
			if outs[2], err = s.ApplyInventory(ctx, delta); err != nil {
				t.Error(err)
			}
			if outs[3], err = s.ApplyCommandResult(ctx, result(3, "c1")); err != nil {
				t.Error(err)
			}
			if outs[4], err = s.ApplyCommandResult(ctx, result(4, "c2")); err != nil {
				t.Error(err)
			}
			mu.Lock()
			defer mu.Unlock()
			for seq, out := range outs {
				if out == store.Applied {
					applied[seq]++
				}
			}
		})
	}
	wg.Wait()
	for seq := uint64(2); seq <= 4; seq++ {
		if applied[seq] != 1 {
			t.Fatalf("seq %d applied %d times, want once", seq, applied[seq])
		}
	}
	changes, err := b.ListChanges(ctx, "h1", time.Time{}, 0)
	if err != nil || len(changes) != 1 {
		t.Fatalf("ListChanges = %d changes, %v; want 1", len(changes), err)
	}
	st, err := b.GetStreamState(ctx, "h1")
	if err != nil || st.LastSeq != 4 || st.NeedsFull {
		t.Fatalf("stream state = %+v, %v; want last seq 4", st, err)
	}
}

// TestText: what PostgreSQL's text cannot hold is refused with ErrInvalid
// (or not found, for a lookup), never stored altered; what an agent
// sends in item keys and command output is stored as bytes.
func TestText(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	enroll(t, s, "h1")
	if err := s.EnrollHost(ctx, []byte("x"), benchNow, &store.Host{ID: "bad\x00id"}); !errors.Is(err, store.ErrInvalid) &&
		!errors.Is(err, store.ErrTokenInvalid) {
		t.Fatalf("EnrollHost(NUL in ID) error = %v", err)
	}
	for _, id := range []string{"bad\x00id", "\xff"} {
		if _, err := s.GetHost(ctx, id); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("GetHost(%q) error = %v, want ErrNotFound", id, err)
		}
		if _, err := s.ListItems(ctx, id, ""); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("ListItems(%q) error = %v, want ErrNotFound", id, err)
		}
		if out, err := s.ApplyInventory(ctx, full(id, 1, nil)); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("ApplyInventory(host %q) = %v, %v; want ErrNotFound", id, out, err)
		}
	}
	if err := s.UpdateHost(ctx, "h1", func(h *store.Host) error {
		h.Labels = map[string]string{"k": "v\x00"}
		return nil
	}); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("UpdateHost(NUL in a label) error = %v, want ErrInvalid", err)
	}
	e := &store.AuditEntry{Actor: "admin", Action: "x", Target: "\xffbad"}
	if err := s.AppendAudit(ctx, e); !errors.Is(err, store.ErrInvalid) || e.Seq != 0 {
		t.Fatalf("AppendAudit(invalid UTF-8) error = %v, seq %d; want ErrInvalid, e unchanged", err, e.Seq)
	}

	// An item key with a NUL byte, and spool IDs and command output of any
	// bytes, round-trip.
	odd := sealed(t, &commonv1.Item{Kind: inventory.KindFile, Key: "/tmp/a\x00b",
		Body: &commonv1.Item_File{File: &commonv1.File{Path: "/tmp/a\x00b"}}})
	u := full("h1", 1, []*commonv1.Item{odd, benchPkg(t, "bash", "5")})
	u.SpoolID = "spool\x00\xff"
	mustApply(t, s, u)
	if got := listItems(t, s, "h1"); len(got) != 2 || !proto.Equal(got[0], odd) {
		t.Fatalf("items = %v, want the NUL-keyed file first", got)
	}
	if st, err := s.GetStreamState(ctx, "h1"); err != nil || st.SpoolID != u.SpoolID {
		t.Fatalf("stream state = %+v, %v", st, err)
	}
	if err := s.CreateCommand(ctx, &store.Command{ID: "c1", HostID: "h1", Kind: "script"}); err != nil {
		t.Fatal(err)
	}
	r := &store.CommandResultUpdate{HostID: "h1", SpoolID: u.SpoolID, Seq: 2, CommandID: "c1", Status: store.CommandFailed,
		Output: "binary \x00\xff\xfe output", Error: "cut mid-rune \xe2\x82", ReceivedAt: benchNow}
	if out, err := s.ApplyCommandResult(ctx, r); err != nil || out != store.Applied {
		t.Fatalf("ApplyCommandResult = %v, %v", out, err)
	}
	c, err := s.GetCommand(ctx, "c1")
	if err != nil || c.Output != r.Output || c.Error != r.Error {
		t.Fatalf("command = %+v, %v; want the output and error as sent", c, err)
	}
}

// TestHostFacts: absent and empty OS facts are told apart.
func TestHostFacts(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	enroll(t, s, "h1")
	for _, facts := range []*commonv1.OSFacts{{}, nil, {Hostname: "x"}} {
		if err := s.UpdateHost(ctx, "h1", func(h *store.Host) error { h.Facts = facts; return nil }); err != nil {
			t.Fatal(err)
		}
		h, err := s.GetHost(ctx, "h1")
		if err != nil {
			t.Fatal(err)
		}
		if (h.Facts == nil) != (facts == nil) || !proto.Equal(h.Facts, facts) {
			t.Fatalf("facts = %v, want %v", h.Facts, facts)
		}
	}
}

func TestUpdateHostKeepsID(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	enroll(t, s, "h1")
	err := s.UpdateHost(ctx, "h1", func(h *store.Host) error {
		h.ID = "h2"
		return nil
	})
	if !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("UpdateHost changing the ID: error = %v, want ErrInvalid", err)
	}
	if _, err := s.GetHost(ctx, "h2"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("h2 exists after a refused update: %v", err)
	}
}

func TestUpdateHostCallerPanic(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	enroll(t, s, "h1")
	func() {
		defer func() {
			if r := recover(); r != "caller bug" {
				t.Fatalf("recovered %v, want the callback's own panic", r)
			}
		}()
		_ = s.UpdateHost(ctx, "h1", func(h *store.Host) error {
			h.Hostname = "changed"
			panic("caller bug")
		})
	}()
	// The transaction was rolled back, its connection released.
	h, err := s.GetHost(ctx, "h1")
	if err != nil || h.Hostname != "" {
		t.Fatalf("after a panicking update: host %+v, %v", h, err)
	}
	if err := s.UpdateHost(ctx, "h1", func(*store.Host) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if st := s.pool.Stat(); st.AcquiredConns() != 0 {
		t.Fatalf("%d connections still acquired", st.AcquiredConns())
	}
}

func TestCancelledContext(t *testing.T) {
	s := openTest(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.AppendAudit(ctx, &store.AuditEntry{Action: "x"}); !errors.Is(err, context.Canceled) {
		t.Fatalf("AppendAudit with a cancelled context: error = %v", err)
	}
	if _, err := s.ListHosts(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("ListHosts with a cancelled context: error = %v", err)
	}
	if entries, err := s.ListAudit(context.Background(), 0, 0); err != nil || len(entries) != 0 {
		t.Fatalf("ListAudit = %d entries, %v; want none", len(entries), err)
	}
}

// TestMissingStreamRow: a host without a stream row (made by something
// other than EnrollHost) gets one on its first message.
func TestMissingStreamRow(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	enroll(t, s, "h1")
	if _, err := s.pool.Exec(ctx, `DELETE FROM streams`); err != nil {
		t.Fatal(err)
	}
	if st, err := s.GetStreamState(ctx, "h1"); err != nil || st.LastSeq != 0 {
		t.Fatalf("GetStreamState = %+v, %v", st, err)
	}
	mustApply(t, s, full("h1", 1, benchItems(t, 3, "1")))
	if st, err := s.GetStreamState(ctx, "h1"); err != nil || st.LastSeq != 1 || st.Items != 3 {
		t.Fatalf("GetStreamState = %+v, %v", st, err)
	}
}

// TestPruneDriftInBatches prunes resolved drift over several statements
// and leaves open drift.
func TestPruneDriftInBatches(t *testing.T) {
	defer func(n int) { pruneDriftBatch = n }(pruneDriftBatch)
	pruneDriftBatch = 7
	s := openTest(t)
	ctx := context.Background()
	var devs []baseline.Deviation
	for i := range 25 {
		devs = append(devs, baseline.Deviation{Baseline: "web", BaselineVersion: 1, Type: baseline.TypeVersion,
			Severity: baseline.SeverityHigh, Action: "alert", Kind: "package", Key: fmt.Sprintf("p%d", i),
			Rule: baseline.RulePackageMinimum, Expected: ">= 2", Actual: "1"})
	}
	if _, err := s.ReplaceHostDrift(ctx, benchNow, store.HostDeviations{HostID: "h1", Deviations: devs}); err != nil {
		t.Fatal(err)
	}
	// 21 resolved, 4 left open.
	if _, err := s.ReplaceHostDrift(ctx, benchNow.Add(time.Minute), store.HostDeviations{HostID: "h1", Deviations: devs[21:]}); err != nil {
		t.Fatal(err)
	}
	if n, err := s.PruneDrift(ctx, benchNow.Add(time.Hour)); err != nil || n != 21 {
		t.Fatalf("PruneDrift = %d, %v; want 21", n, err)
	}
	if n := countRows(t, s, "drift"); n != 4 {
		t.Fatalf("%d drift rows left, want the 4 open", n)
	}
}
