package pgstore

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/proto"

	"github.com/quantumlayer/qinfra/pkg/inventory"
	commonv1 "github.com/quantumlayer/qinfra/proto/gen/qinfra/common/v1"
	"github.com/quantumlayer/qinfra/server/internal/store"
)

// ovEntryOf is the overlay entry holding it.
func ovEntryOf(tb testing.TB, it *commonv1.Item) ovEntry {
	tb.Helper()
	pending, err := prepare(&store.InventoryUpdate{Full: true, Upserts: []*commonv1.Item{it}})
	if err != nil {
		tb.Fatal(err)
	}
	p := pending[0]
	return ovEntry{ref: p.ref, bodyHash: p.bodyHash, body: p.body}
}

// forgedItem is a package whose item hash is not its body's.
func forgedItem(tb testing.TB) *commonv1.Item {
	it := proto.Clone(benchPkg(tb, "openssl", "3.0.13-1")).(*commonv1.Item)
	it.GetPackage().Version = "0.9.8-backdoored"
	return it
}

func sameEntries(a, b []ovEntry) bool {
	return slices.EqualFunc(a, b, func(x, y ovEntry) bool {
		return x.ref == y.ref && bytes.Equal(x.bodyHash, y.bodyHash) && bytes.Equal(x.body, y.body) &&
			(x.bodyHash == nil) == (y.bodyHash == nil)
	})
}

// TestOverlayEncoding: entries survive encoding, a sealed body without
// its item hash and a body whose hash is not its own in full, in less
// room than their bodies for sealed items.
func TestOverlayEncoding(t *testing.T) {
	sealed := ovEntryOf(t, benchPkg(t, "zlib", "1.2.13"))
	forged := ovEntryOf(t, forgedItem(t))
	tomb := ovEntry{ref: inventory.Ref{Kind: inventory.KindFile, Key: "/etc/gone"}}
	entries := []ovEntry{tomb, sealed, forged}
	slices.SortFunc(entries, compareEntries)
	b, err := encodeOverlay(entries)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := store.SealedRest(sealed.body); !ok {
		t.Fatal("a sealed item's body is not taken for sealed")
	}
	if _, ok := store.SealedRest(forged.body); ok {
		t.Fatal("a forged item's body is taken for sealed")
	}
	if max := 1 + 3*8 + len(tomb.ref.Kind) + len(tomb.ref.Key) + len(sealed.body) - 32 + len(sealed.ref.Kind) + len(sealed.ref.Key) +
		len(forged.body) + len(forged.ref.Kind) + len(forged.ref.Key); len(b) > max {
		t.Fatalf("overlay value of %d bytes, want at most %d", len(b), max)
	}
	got, err := decodeOverlay(b)
	if err != nil {
		t.Fatal(err)
	}
	if !sameEntries(got, entries) {
		t.Fatalf("decoded %v, want %v", got, entries)
	}
	if b, err := encodeOverlay(nil); b != nil || err != nil {
		t.Fatalf("encodeOverlay(nil) = %x, %v; want nil", b, err)
	}
	if _, err := encodeOverlay([]ovEntry{sealed, sealed}); err == nil {
		t.Fatal("encodeOverlay took a repeated ref")
	}
	for _, bad := range [][]byte{{}, {2}, b[:len(b)-1], append(slices.Clone(b), 0)} {
		if _, err := decodeOverlay(bad); err == nil {
			t.Fatalf("decodeOverlay(%x) did not fail", bad)
		}
	}
}

// FuzzDecodeOverlay: decodeOverlay fails or returns sorted entries that
// encode into a value decoding to the same.
func FuzzDecodeOverlay(f *testing.F) {
	entries := []ovEntry{ovEntryOf(f, benchPkg(f, "bash", "5.2")), ovEntryOf(f, forgedItem(f)),
		{ref: inventory.Ref{Kind: inventory.KindUser, Key: "games"}}}
	slices.SortFunc(entries, compareEntries)
	b, err := encodeOverlay(entries)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	// What the migration writes: bodies whole (tag 1).
	f.Add([]byte("\x01\x04user\x05games\x00\x04user\x04root\x01\x03abc"))
	f.Add([]byte{1})
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := decodeOverlay(b)
		if err != nil {
			return
		}
		for i := 1; i < len(got); i++ {
			if compareRefs(got[i-1].ref, got[i].ref) >= 0 {
				t.Fatalf("entries %s and %s out of order", got[i-1].ref, got[i].ref)
			}
		}
		again, err := encodeOverlay(got)
		if err != nil {
			t.Fatal(err)
		}
		back, err := decodeOverlay(again)
		if err != nil {
			t.Fatal(err)
		}
		if !sameEntries(back, got) {
			t.Fatalf("re-encoded %v as %v", got, back)
		}
	})
}

// TestMigrateOverlays: overlays stored as host_overlay rows (schema
// version 5) become overlay values holding their bodies, and read the
// same; hosts on them take deltas.
func TestMigrateOverlays(t *testing.T) {
	ctx := context.Background()
	dsn, conn := connectAtVersion(t, 5)
	// h1 and h2 on base x; h1 with 3 packages changed, 2 added, one
	// removed and the forged item; h3 on no base, all in its overlay.
	x := benchItems(t, 100, "1")
	h1 := slices.Clone(x[1:])
	copy(h1[10:13], benchItems(t, 14, "2")[11:14])
	h1 = append(h1, benchItems(t, 102, "3")[100:]...)
	h1 = append(h1, forgedItem(t))
	sets := map[string][]*commonv1.Item{"h1": h1, "h2": x, "h3": hostItems(t, 3)}
	pendingOf := func(items []*commonv1.Item) []pendingItem {
		p, err := prepare(&store.InventoryUpdate{Full: true, Upserts: items})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	var baseEntries []setEntry
	for _, p := range pendingOf(x) {
		baseEntries = append(baseEntries, setEntry{ref: p.ref, bodyHash: p.bodyHash})
	}
	slices.SortFunc(baseEntries, compareEntries)
	base := newBaseSet(baseID(baseEntries), baseEntries)
	if _, err := conn.Exec(ctx, `INSERT INTO inv_bases (base_id, refs, n) VALUES ($1, 2, $2)`, base.id, len(baseEntries)); err != nil {
		t.Fatal(err)
	}
	for _, e := range baseEntries {
		if _, err := conn.Exec(ctx, `INSERT INTO inv_base_items (base_id, kind, key, body_hash) VALUES ($1, $2, $3, $4)`,
			base.id, e.ref.Kind, []byte(e.ref.Key), e.bodyHash); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range []string{"h1", "h2", "h3"} {
		var hkey int64
		if err := conn.QueryRow(ctx, `INSERT INTO hosts (id, hostname, labels, agent_version, cert_serial, revoked)
			VALUES ($1, $1, '{}', '', '', false) RETURNING hkey`, id).Scan(&hkey); err != nil {
			t.Fatal(err)
		}
		var acc inventory.Accumulator
		var entries []setEntry
		for _, p := range pendingOf(sets[id]) {
			acc.Add(p.ref, p.hash)
			entries = append(entries, setEntry{ref: p.ref, bodyHash: p.bodyHash, body: p.body})
			if _, err := conn.Exec(ctx, `INSERT INTO items (body_hash, body) VALUES ($1, $2) ON CONFLICT DO NOTHING`, p.bodyHash, p.body); err != nil {
				t.Fatal(err)
			}
		}
		slices.SortFunc(entries, compareEntries)
		ov := entries
		if id != "h3" {
			if _, err := conn.Exec(ctx, `INSERT INTO host_sets (hkey, base_id) VALUES ($1, $2)`, hkey, base.id); err != nil {
				t.Fatal(err)
			}
			ov, _ = overlayOn(base.entries, entries, 1000)
		}
		for _, e := range ov {
			if _, err := conn.Exec(ctx, `INSERT INTO host_overlay (hkey, kind, key, body_hash) VALUES ($1, $2, $3, $4)`,
				hkey, e.ref.Kind, []byte(e.ref.Key), e.bodyHash); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := conn.Exec(ctx, `INSERT INTO streams (hkey, started, spool_id, last_seq, acc, item_count, has_items, updated_at)
			VALUES ($1, true, 'sp', 1, $2, $3, true, $4)`, hkey, acc.Acc[:], int64(acc.Count), benchNow); err != nil {
			t.Fatal(err)
		}
	}

	s := openDSN(t, dsn, Options{})
	checkBases(t, s)
	for id, items := range sets {
		checkHost(t, s, id, setOf(items))
	}
	if n, want := overlayEntries(t, s), 3+2+1+1+len(sets["h3"]); n != want {
		t.Fatalf("%d overlay entries after the migration, want %d", n, want)
	}
	var left bool
	if err := s.pool.QueryRow(ctx, `SELECT to_regclass('host_overlay') IS NOT NULL`).Scan(&left); err != nil || left {
		t.Fatalf("host_overlay left: %v, %v", left, err)
	}
	// Deltas apply to the migrated overlays, rewriting them.
	for i, id := range []string{"h1", "h3"} {
		next := benchPkg(t, "delta-package", "1")
		set := inventory.SetOf(sets[id])
		set.Apply([]*commonv1.Item{next}, nil)
		mustApply(t, s, &store.InventoryUpdate{HostID: id, SpoolID: "sp", Seq: 2, Upserts: []*commonv1.Item{next},
			SetHash: set.Hash(), ReceivedAt: benchNow.Add(time.Duration(i+1) * time.Hour)})
		sets[id] = append(sets[id], next)
		checkHost(t, s, id, setOf(sets[id]))
	}
	checkBases(t, s)
}

// TestPlacementBaseGone: a chosen base found deleted when taken fails the
// transaction with errBaseGone, for ApplyInventory to retry in safe mode,
// where the host's own items become its base, their bodies stored first.
func TestPlacementBaseGone(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	enroll(t, s, "h1")
	items := append(benchItems(t, 80, "1"), hostItems(t, 1)...)
	pending, err := prepare(full("h1", 1, items))
	if err != nil {
		t.Fatal(err)
	}
	var entries []setEntry
	for _, p := range pending {
		entries = append(entries, setEntry{ref: p.ref, bodyHash: p.bodyHash, body: p.body})
	}
	slices.SortFunc(entries, compareEntries)
	// gone is a base of 80 of the host's items, never stored.
	gone := ownPlacement(entries[:80]).base
	ov, ok := overlayOn(gone.entries, entries, 128)
	if !ok {
		t.Fatal("no overlay on the base")
	}
	p := placement{base: gone, overlay: ov}
	for _, safe := range []bool{false, true} {
		err := s.inTx(ctx, func(tx pgx.Tx) error {
			st, err := s.lockStream(ctx, tx, "h1", true)
			if err != nil {
				return err
			}
			w := &pgx.Batch{}
			if safe {
				if err := writeBodies(ctx, tx, w, pending); err != nil {
					return err
				}
			}
			if w, err = s.putPlacement(ctx, tx, w, st.hkey, &hostSet{}, p, entries, safe); err != nil {
				return err
			}
			return tx.SendBatch(ctx, w).Close()
		})
		switch {
		case !safe && !errors.Is(err, errBaseGone):
			t.Fatalf("putPlacement on a deleted base = %v, want errBaseGone", err)
		case safe && err != nil:
			t.Fatalf("putPlacement on a deleted base in safe mode: %v", err)
		}
	}
	checkHost(t, s, "h1", setOf(items))
	checkBases(t, s)
	if n := overlayEntries(t, s); n != 0 {
		t.Fatalf("%d overlay entries on the host's own base, want 0", n)
	}
}
