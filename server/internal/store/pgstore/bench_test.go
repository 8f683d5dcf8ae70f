package pgstore

// Benchmarks against the test PostgreSQL server (see pgtest). Run them, and
// bboltstore's of the same names, with
//
//	go test -run='^$' -bench=. ./server/internal/store/pgstore/ ./server/internal/store/bboltstore/

import (
	"bytes"
	"context"
	"fmt"
	"github.com/quantumlayer/qinfra/server/internal/store/storetest"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/quantumlayer/qinfra/pkg/inventory"
	commonv1 "github.com/quantumlayer/qinfra/proto/gen/qinfra/common/v1"
	"github.com/quantumlayer/qinfra/server/internal/store"
)

var benchNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func sealed(tb testing.TB, it *commonv1.Item) *commonv1.Item {
	tb.Helper()
	if err := inventory.Seal(it); err != nil {
		tb.Fatal(err)
	}
	return it
}

func benchPkg(tb testing.TB, name, version string) *commonv1.Item {
	return sealed(tb, &commonv1.Item{
		Kind: inventory.KindPackage, Key: "dpkg:" + name + ":amd64",
		Body: &commonv1.Item_Package{Package: &commonv1.Package{
			Manager: "dpkg", Name: name, Version: version, Arch: "amd64",
			SourceName: name, SourceVersion: version, Status: "installed",
			UpstreamVersion: version, Vendor: "Debian",
		}},
	})
}

// Fleet shape for BenchmarkApplyFull: hosts built from benchImages images
// of benchItemsPerHost items, of which benchPerImage differ between images
// and benchPerHost between hosts (its files, its OS item).
const (
	benchImages       = 5
	benchItemsPerHost = 2000
	benchPerImage     = 200
	benchPerHost      = 10
)

// imageItems returns the items image img's hosts share.
func imageItems(tb testing.TB, img int) []*commonv1.Item {
	common := benchItemsPerHost - benchPerImage - benchPerHost
	items := benchItems(tb, common, "1.0-1")
	for i := range benchPerImage {
		items = append(items, benchPkg(tb, fmt.Sprintf("image-package-%04d", i), fmt.Sprintf("2.%d-1", img)))
	}
	return items
}

// hostItems returns the items only host h has.
func hostItems(tb testing.TB, h int) []*commonv1.Item {
	items := []*commonv1.Item{sealed(tb, &commonv1.Item{
		Kind: inventory.KindOS, Key: "host",
		Body: &commonv1.Item_Os{Os: &commonv1.OSFacts{
			Hostname: fmt.Sprintf("web-%05d", h), Os: "linux", Platform: "debian", PlatformVersion: "12.5",
			KernelVersion: "6.1.0-18-amd64", MachineId: fmt.Sprintf("%032x", h), PrettyName: "Debian GNU/Linux 12 (bookworm)",
		}},
	})}
	for i := len(items); i < benchPerHost; i++ {
		path := fmt.Sprintf("/etc/host-specific-%d.conf", i)
		items = append(items, sealed(tb, &commonv1.Item{
			Kind: inventory.KindFile, Key: path,
			Body: &commonv1.Item_File{File: &commonv1.File{
				Path: path, Type: "file", Sha256: fmt.Sprintf("%064x", h*benchPerHost+i), Mode: 0o644, Owner: "root", Group: "root", Size: 42,
			}},
		}))
	}
	return items
}

// BenchmarkApplyFull applies a 2,000-item full inventory to a new host per
// iteration: hosts of 5 images, sharing most packages, each with a few
// items of its own. One committed transaction each.
func BenchmarkApplyFull(b *testing.B) {
	s := openTest(b)
	enrollBench(b, s, b.N)
	var images [benchImages][]*commonv1.Item
	for i := range images {
		images[i] = imageItems(b, i)
	}
	updates := make([]*store.InventoryUpdate, b.N)
	for i := range updates {
		items := append(append([]*commonv1.Item{}, images[i%benchImages]...), hostItems(b, i)...)
		updates[i] = &store.InventoryUpdate{
			HostID: fmt.Sprintf("host-%05d", i), SpoolID: "sp", Seq: 1, Full: true,
			Upserts: items, SetHash: inventory.SetOf(items).Hash(), ReceivedAt: benchNow,
		}
	}
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		out, err := s.ApplyInventory(ctx, updates[i])
		if err != nil || out != store.Applied {
			b.Fatalf("ApplyInventory = %v, %v", out, err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "inventories/s")
	b.ReportMetric(float64(b.N*benchItemsPerHost)/b.Elapsed().Seconds(), "items/s")
}

// BenchmarkWriteFull compares ways of writing what a host's first full
// inventory writes: 2,000 host rows, and the item bodies, most of which
// are already stored (hosts of 5 images). ApplyInventory uses the winner.
func BenchmarkWriteFull(b *testing.B) {
	for _, m := range []struct {
		name  string
		write func(ctx context.Context, tx pgx.Tx, hkey int64, items []pendingItem) error
	}{
		{"copy-missing", writeFullStore},
		{"unnest-missing", writeFullUnnestMissing},
		{"copy", writeFullCopy},
		{"unnest", writeFullUnnest},
		{"batch", writeFullBatch},
	} {
		b.Run(m.name, func(b *testing.B) {
			s := openTest(b)
			// The thin row per host and item of schema versions 1 to 4,
			// which these ways of writing were measured for.
			if _, err := s.pool.Exec(context.Background(), `CREATE TABLE host_items (
				hkey bigint NOT NULL, kind text COLLATE "C" NOT NULL, key bytea NOT NULL, body_hash bytea NOT NULL,
				PRIMARY KEY (hkey, kind, key))`); err != nil {
				b.Fatal(err)
			}
			var images [benchImages][]pendingItem
			for i := range images {
				var err error
				u := &store.InventoryUpdate{Full: true, Upserts: imageItems(b, i)}
				if images[i], err = prepare(u); err != nil {
					b.Fatal(err)
				}
			}
			ctx := context.Background()
			b.ResetTimer()
			for i := range b.N {
				err := s.inTx(ctx, func(tx pgx.Tx) error {
					return m.write(ctx, tx, int64(i+1), images[i%benchImages])
				})
				if err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "inventories/s")
		})
	}
}

// writeFullStore is what ApplyInventory does: ask which bodies are
// missing, COPY the rows, and send the missing bodies as arrays.
func writeFullStore(ctx context.Context, tx pgx.Tx, hkey int64, items []pendingItem) error {
	w := &pgx.Batch{}
	if err := writeBodies(ctx, tx, w, items); err != nil {
		return err
	}
	if err := insertHostItems(ctx, tx, w, hkey, items); err != nil {
		return err
	}
	return tx.SendBatch(ctx, w).Close()
}

// insertHostItems adds host_items rows: by COPY when there are many, else
// in the batch w.
func insertHostItems(ctx context.Context, tx pgx.Tx, w *pgx.Batch, hkey int64, items []pendingItem) error {
	if len(items) == 0 {
		return nil
	}
	if len(items) >= bulkRows {
		_, err := tx.CopyFrom(ctx, pgx.Identifier{"host_items"}, []string{"hkey", "kind", "key", "body_hash"},
			pgx.CopyFromSlice(len(items), func(i int) ([]any, error) {
				return []any{hkey, items[i].ref.Kind, []byte(items[i].ref.Key), items[i].bodyHash}, nil
			}))
		return err
	}
	kinds, keys, hashes := itemColumns(items)
	w.Queue(`INSERT INTO host_items (hkey, kind, key, body_hash)
		SELECT $1, * FROM unnest($2::text[], $3::bytea[], $4::bytea[])`, hkey, kinds, keys, hashes)
	return nil
}

// queueUnnest queues the bodies and rows as one INSERT each, with the
// columns as arrays.
func queueUnnest(w *pgx.Batch, hkey int64, bodies, rows []pendingItem) {
	if len(bodies) > 0 {
		hashes := make([][]byte, len(bodies))
		data := make([][]byte, len(bodies))
		for i, p := range bodies {
			hashes[i], data[i] = p.bodyHash, p.body
		}
		w.Queue(`INSERT INTO items (body_hash, body)
			SELECT * FROM unnest($1::bytea[], $2::bytea[]) AS t(h, b) ORDER BY h
			ON CONFLICT DO NOTHING`, hashes, data)
	}
	kinds, keys, hashes := itemColumns(rows)
	w.Queue(`INSERT INTO host_items (hkey, kind, key, body_hash)
		SELECT $1, * FROM unnest($2::text[], $3::bytea[], $4::bytea[])`, hkey, kinds, keys, hashes)
}

// writeFullUnnest sends every body and row as arrays, in one batch.
func writeFullUnnest(ctx context.Context, tx pgx.Tx, hkey int64, items []pendingItem) error {
	w := &pgx.Batch{}
	queueUnnest(w, hkey, sortedBodies(items), items)
	return tx.SendBatch(ctx, w).Close()
}

// sortedBodies returns items in body hash order, as writeBodies sends
// them.
func sortedBodies(items []pendingItem) []pendingItem {
	items = slices.Clone(items)
	slices.SortFunc(items, func(a, b pendingItem) int { return bytes.Compare(a.bodyHash, b.bodyHash) })
	return items
}

// missingBodies returns the items whose bodies are not stored.
func missingBodies(ctx context.Context, tx pgx.Tx, items []pendingItem) ([]pendingItem, error) {
	hashes := make([][]byte, len(items))
	for i, p := range items {
		hashes[i] = p.bodyHash
	}
	rows, err := tx.Query(ctx, `SELECT h FROM unnest($1::bytea[]) AS t(h)
		WHERE NOT EXISTS (SELECT 1 FROM items WHERE body_hash = t.h)`, hashes)
	if err != nil {
		return nil, err
	}
	missing, err := pgx.CollectRows(rows, pgx.RowTo[[]byte])
	if err != nil {
		return nil, err
	}
	want := map[string]bool{}
	for _, h := range missing {
		want[string(h)] = true
	}
	var send []pendingItem
	for _, p := range items {
		if want[string(p.bodyHash)] {
			send = append(send, p)
		}
	}
	return send, nil
}

// writeFullUnnestMissing first asks which bodies are missing and sends
// only those, with the rows, as arrays.
func writeFullUnnestMissing(ctx context.Context, tx pgx.Tx, hkey int64, items []pendingItem) error {
	send, err := missingBodies(ctx, tx, items)
	if err != nil {
		return err
	}
	w := &pgx.Batch{}
	queueUnnest(w, hkey, sortedBodies(send), items)
	return tx.SendBatch(ctx, w).Close()
}

// writeFullCopy copies the bodies into a temporary table, inserts the new
// ones from there, and copies the rows into host_items.
func writeFullCopy(ctx context.Context, tx pgx.Tx, hkey int64, items []pendingItem) error {
	if _, err := tx.Exec(ctx, `CREATE TEMP TABLE IF NOT EXISTS stage_items (body_hash bytea, body bytea) ON COMMIT DELETE ROWS`); err != nil {
		return err
	}
	_, err := tx.CopyFrom(ctx, pgx.Identifier{"stage_items"}, []string{"body_hash", "body"},
		pgx.CopyFromSlice(len(items), func(i int) ([]any, error) { return []any{items[i].bodyHash, items[i].body}, nil }))
	if err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, `INSERT INTO items SELECT * FROM stage_items ORDER BY body_hash ON CONFLICT DO NOTHING`); err != nil {
		return err
	}
	_, err = tx.CopyFrom(ctx, pgx.Identifier{"host_items"}, []string{"hkey", "kind", "key", "body_hash"},
		pgx.CopyFromSlice(len(items), func(i int) ([]any, error) {
			return []any{hkey, items[i].ref.Kind, []byte(items[i].ref.Key), items[i].bodyHash}, nil
		}))
	return err
}

// writeFullBatch sends one INSERT per body and per row, in one batch.
func writeFullBatch(ctx context.Context, tx pgx.Tx, hkey int64, items []pendingItem) error {
	w := &pgx.Batch{}
	for _, p := range items {
		w.Queue(`INSERT INTO items (body_hash, body) VALUES ($1, $2) ON CONFLICT DO NOTHING`, p.bodyHash, p.body)
	}
	for _, p := range items {
		w.Queue(`INSERT INTO host_items (hkey, kind, key, body_hash) VALUES ($1, $2, $3, $4)`, hkey, p.ref.Kind, []byte(p.ref.Key), p.bodyHash)
	}
	return tx.SendBatch(ctx, w).Close()
}

// benchItems returns n sealed packages of a typical size.
func benchItems(tb testing.TB, n int, version string) []*commonv1.Item {
	return storetest.BenchItems(tb, n, version)
}

// enrollBench enrolls n hosts named host-00000... in s.
func enrollBench(tb testing.TB, s store.Store, n int) { storetest.EnrollBench(tb, s, n, benchNow) }

// BenchmarkApplyDelta: see storetest.BenchApplyDelta.
func BenchmarkApplyDelta(b *testing.B) { storetest.BenchApplyDelta(b, openTest(b), benchNow) }

func itemColumns(items []pendingItem) (kinds []string, keys, hashes [][]byte) {
	kinds = make([]string, len(items))
	keys = make([][]byte, len(items))
	hashes = make([][]byte, len(items))
	for i, p := range items {
		kinds[i], keys[i], hashes[i] = p.ref.Kind, []byte(p.ref.Key), p.bodyHash
	}
	return kinds, keys, hashes
}
