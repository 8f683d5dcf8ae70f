package drift

import (
	"context"
	"flag"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/quantumlayer/qinfra/server/internal/store/pgstore"
	"github.com/quantumlayer/qinfra/server/internal/store/pgstore/pgtest"
)

var pgStorageHosts = flag.Int("pg-storage-hosts", 10000, "hosts in BenchmarkPGInventoryStorage")

// pgInventoryTables are the pgstore tables holding hosts' inventories,
// what bboltstore.InventoryBuckets are in bbolt: the item bodies, the
// shared bases, each host's base and overlay (host_sets), and the stream
// state (accumulator and item count, which bbolt's inventory bucket holds
// too).
var pgInventoryTables = []string{"streams", "items", "inv_bases", "inv_base_items", "host_sets"}

// pgHistoryTables are the drift and history tables: measured, but not
// part of inventory-%.
var pgHistoryTables = []string{"drift", "item_changes", "baselines"}

// BenchmarkPGInventoryStorage is BenchmarkEngineBaselineEdit's setup on
// pgstore: 10,000 hosts (-pg-storage-hosts) from five images, each with
// about 50 differences of its own, enrolled with their image's label and
// sending full inventories from 16 concurrent writers, then checked for
// drift. It reports the inventory tables' size (heap, indexes and TOAST,
// after VACUUM) against the item bytes alone of one row per host×item,
// the measure BenchmarkEngineBaselineEdit reports for bbolt. Run it with
// -benchtime=1x: one setup is the measurement.
//
// It needs the PostgreSQL test server (see pgtest) and is skipped without
// it, unless CI=true.
func BenchmarkPGInventoryStorage(b *testing.B) {
	n := *pgStorageHosts
	dsn := pgtest.DSN(b)
	ctx := context.Background()
	// As many connections as writers: each agent stream is a transaction
	// of its own.
	st, err := pgstore.Open(ctx, dsn, pgstore.Options{MaxConns: 16})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	start := time.Now()
	naive, ok := loadFleet(b, st, n)
	if !ok {
		return
	}
	ingest := time.Since(start)
	t0 := time.Now()
	hosts, err := New(st, nil, nil).CheckSelected(ctx, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("setup: %d inventories stored in %s, %d hosts checked in %s",
		n, ingest.Round(time.Millisecond), len(hosts), time.Since(t0).Round(time.Millisecond))
	b.ReportMetric(ingest.Seconds(), "ingest-s")

	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close(ctx)
	// measure returns the tables' bytes on disk and a line on each.
	measure := func(tables []string) (total int64, lines []string) {
		for _, t := range tables {
			// VACUUM leaves the dead tuples of updates and rolled back
			// inserts out of the size; ANALYZE counts the rows.
			if _, err := conn.Exec(ctx, "VACUUM (ANALYZE) "+pgx.Identifier{t}.Sanitize()); err != nil {
				b.Fatalf("vacuum %s: %v", t, err)
			}
			var size, heap, idx, rows int64
			err := conn.QueryRow(ctx, `SELECT pg_total_relation_size(c.oid), pg_relation_size(c.oid), pg_indexes_size(c.oid),
				greatest(c.reltuples, 0)::bigint FROM pg_class c WHERE c.oid = to_regclass($1)`, t).Scan(&size, &heap, &idx, &rows)
			if err != nil {
				b.Fatalf("size of %s: %v", t, err)
			}
			line := fmt.Sprintf("%s %d B/host (heap %d, indexes %d, TOAST and maps %d; ~%d rows",
				t, size/int64(n), heap/int64(n), idx/int64(n), (size-heap-idx)/int64(n), rows)
			if rows > 0 {
				line += fmt.Sprintf(", %d B/row", size/rows)
			}
			lines = append(lines, line+")")
			total += size
		}
		return total, lines
	}
	naiveBytes := float64(naive)
	inv, lines := measure(pgInventoryTables)
	for _, l := range lines {
		b.Logf("inventory: %s", l)
	}
	hist, lines := measure(pgHistoryTables)
	b.Logf("drift and history: %s", strings.Join(lines, "; "))
	b.ReportMetric(100*float64(inv)/naiveBytes, "inventory-%")
	b.ReportMetric(float64(inv)/float64(n), "inventory-B/host")
	b.Logf("storage: one row per host×item would hold %.1f MiB of keys and bodies alone (%d B/host); "+
		"inventory tables %.1f MiB (%.2f%%, %d B/host); drift and history %.1f MiB (%d B/host)",
		naiveBytes/(1<<20), int64(naiveBytes)/int64(n), float64(inv)/(1<<20), 100*float64(inv)/naiveBytes, inv/int64(n),
		float64(hist)/(1<<20), hist/int64(n))
}
