package pgstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/proto"

	"github.com/quantumlayer/qinfra/pkg/inventory"
	commonv1 "github.com/quantumlayer/qinfra/proto/gen/qinfra/common/v1"
	"github.com/quantumlayer/qinfra/server/internal/store"
	"github.com/quantumlayer/qinfra/server/internal/store/pgstore/pgtest"
)

// checkBases recounts what bases.go keeps consistent: each base's
// references and items, its ID (the hash of its items), the overlays'
// minimality and size, and that every referenced body is stored.
func checkBases(t testing.TB, s *Store) {
	t.Helper()
	ctx := context.Background()
	checks := []struct{ what, sql string }{
		{"bases whose refs are not their hosts", `SELECT count(*) FROM inv_bases b
			WHERE refs <> (SELECT count(*) FROM host_sets h WHERE h.base_id = b.base_id)`},
		{"hosts on a missing base", `SELECT count(*) FROM host_sets h
			WHERE h.base_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM inv_bases b WHERE b.base_id = h.base_id)`},
		{"bases whose n is not their item count", `SELECT count(*) FROM inv_bases b
			WHERE n <> (SELECT count(*) FROM inv_base_items i WHERE i.base_id = b.base_id)`},
		{"items of missing bases", `SELECT count(*) FROM inv_base_items i
			WHERE NOT EXISTS (SELECT 1 FROM inv_bases b WHERE b.base_id = i.base_id)`},
		{"bases whose ID is not their items' hash", `SELECT count(*) FROM (
			SELECT base_id, sha256(string_agg(int4send(octet_length(kind)) || convert_to(kind, 'UTF8') ||
				int4send(length(key)) || key || body_hash, ''::bytea ORDER BY kind, key)) AS h
			FROM inv_base_items GROUP BY base_id) x WHERE x.h <> x.base_id`},
		{"dangling bodies", `SELECT count(*) FROM inv_base_items b
			WHERE NOT EXISTS (SELECT 1 FROM items i WHERE i.body_hash = b.body_hash)`},
		{"empty overlays", `SELECT count(*) FROM host_sets WHERE overlay = ''::bytea`},
	}
	for _, c := range checks {
		var n int
		if err := s.pool.QueryRow(ctx, c.sql).Scan(&n); err != nil {
			t.Fatalf("%s: %v", c.what, err)
		}
		if n != 0 {
			t.Fatalf("%d %s", n, c.what)
		}
	}
	// Each overlay: minimal (no entry where the host holds what its base
	// does, tombstones only for the base's items) and within the limit.
	rows, err := s.pool.Query(ctx, `SELECT h.id, hs.base_id, hs.overlay, st.item_count
		FROM host_sets hs JOIN hosts h ON h.hkey = hs.hkey JOIN streams st ON st.hkey = hs.hkey`)
	if err != nil {
		t.Fatal(err)
	}
	type row struct {
		host    string
		base    []byte
		overlay []byte
		n       int64
	}
	sets, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (row, error) {
		var x row
		return x, r.Scan(&x.host, &x.base, &x.overlay, &x.n)
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range sets {
		ov, err := decodeOverlay(x.overlay)
		if err != nil {
			t.Fatalf("host %s: %v", x.host, err)
		}
		if len(ov) > overlayLimit(int(x.n)) {
			t.Fatalf("host %s: %d overlay entries for %d items", x.host, len(ov), x.n)
		}
		base := map[inventory.Ref][]byte{}
		if x.base != nil {
			rows, err := s.pool.Query(ctx, `SELECT kind, key, body_hash FROM inv_base_items WHERE base_id = $1`, x.base)
			if err != nil {
				t.Fatal(err)
			}
			var r inventory.Ref
			var key, bodyHash []byte
			if _, err := pgx.ForEachRow(rows, []any{&r.Kind, &key, &bodyHash}, func() error {
				r.Key = string(key)
				base[r] = bodyHash
				return nil
			}); err != nil {
				t.Fatal(err)
			}
		}
		for _, e := range ov {
			bh, inBase := base[e.ref]
			if (e.bodyHash == nil && !inBase) || (e.bodyHash != nil && bytes.Equal(bh, e.bodyHash)) {
				t.Fatalf("host %s: redundant overlay entry %s", x.host, e.ref)
			}
		}
	}
}

// overlayEntries returns the number of entries of all hosts' overlays.
func overlayEntries(t testing.TB, s *Store) int {
	t.Helper()
	rows, err := s.pool.Query(context.Background(), `SELECT overlay FROM host_sets WHERE overlay IS NOT NULL`)
	if err != nil {
		t.Fatal(err)
	}
	values, err := pgx.CollectRows(rows, pgx.RowTo[[]byte])
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, v := range values {
		ov, err := decodeOverlay(v)
		if err != nil {
			t.Fatal(err)
		}
		n += len(ov)
	}
	return n
}

// hostBase returns the host's base ID, nil for none.
func hostBase(t testing.TB, s *Store, host string) []byte {
	t.Helper()
	var id []byte
	err := s.pool.QueryRow(context.Background(), `SELECT hs.base_id FROM host_sets hs JOIN hosts h ON h.hkey = hs.hkey
		WHERE h.id = $1`, host).Scan(&id)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		t.Fatal(err)
	}
	return id
}

// TestFindItemsIndexes: FindItems reads each prefix's key range of the
// base's items through their primary key.
func TestFindItemsIndexes(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	enroll(t, s, "h1", "h2")
	items := benchItems(t, 300, "1")
	mustApply(t, s, full("h1", 1, items))
	mustApply(t, s, full("h2", 1, append(slices.Clone(items[:290]), benchItems(t, 5, "2")...)))
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	// Small tables are cheapest to scan whole: ask what the indexes give.
	if _, err := conn.Exec(ctx, `SET enable_seqscan = off`); err != nil {
		t.Fatal(err)
	}
	defer conn.Exec(ctx, `RESET enable_seqscan`)
	var hkey int64
	if err := conn.QueryRow(ctx, `SELECT hkey FROM hosts WHERE id = 'h2'`).Scan(&hkey); err != nil {
		t.Fatal(err)
	}
	rows, err := conn.Query(ctx, `EXPLAIN `+findItemsSQL, hkey, []string{inventory.KindPackage},
		[][]byte{[]byte("dpkg:lib-benchmark-package-0000")}, [][]byte{[]byte("dpkg:lib-benchmark-package-0001")})
	if err != nil {
		t.Fatal(err)
	}
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	plan := strings.Join(lines, "\n")
	if i := strings.Index(plan, "using inv_base_items_pkey"); i < 0 || !strings.Contains(plan[i:], "(key >= p") {
		t.Fatalf("FindItems plan does not range-scan inv_base_items_pkey:\n%s", plan)
	}
	got, err := s.FindItems(ctx, "h2", []inventory.Ref{{Kind: inventory.KindPackage, Key: "dpkg:lib-benchmark-package-0000"}})
	if err != nil || len(got) != 10 {
		t.Fatalf("FindItems = %d items, %v; want 10", len(got), err)
	}
}

// pkgItem is a sealed package item, cached: sealing is the slow part of
// making items.
var (
	pkgMu    sync.Mutex
	pkgCache = map[[2]string]*commonv1.Item{}
)

func pkgItem(tb testing.TB, name, version string) *commonv1.Item {
	pkgMu.Lock()
	defer pkgMu.Unlock()
	k := [2]string{name, version}
	if it, ok := pkgCache[k]; ok {
		return it
	}
	it := benchPkg(tb, name, version)
	pkgCache[k] = it
	return it
}

// modelSet is a host's items by ref.
type modelSet map[inventory.Ref]*commonv1.Item

func (m modelSet) items() []*commonv1.Item {
	out := slices.Collect(maps.Values(m))
	slices.SortFunc(out, func(a, b *commonv1.Item) int { return compareRefs(inventory.RefOf(a), inventory.RefOf(b)) })
	return out
}

func setOf(items []*commonv1.Item) modelSet {
	m := modelSet{}
	for _, it := range items {
		m[inventory.RefOf(it)] = it
	}
	return m
}

// checkHost compares the host's stored items with want.
func checkHost(t testing.TB, s *Store, host string, want modelSet) {
	t.Helper()
	got := listItems(t, s, host)
	w := want.items()
	if len(got) != len(w) {
		t.Fatalf("%s: %d items, want %d", host, len(got), len(w))
	}
	for i := range got {
		if !proto.Equal(got[i], w[i]) {
			t.Fatalf("%s: item %d = %v, want %v", host, i, got[i], w[i])
		}
	}
	counts, err := s.CountItems(context.Background(), host)
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, n := range counts {
		total += n
	}
	if total != len(w) {
		t.Fatalf("%s: CountItems says %d items, want %d", host, total, len(w))
	}
}

// TestBasesModel applies random full inventories and deltas to hosts of 3
// images and compares each host's items with a model, recounting the
// bases after each step.
func TestBasesModel(t *testing.T) {
	s := openTest(t)
	rng := rand.New(rand.NewPCG(1, 2))
	const nHosts, universe, steps = 9, 420, 300
	// Image i: packages 0-249 at version 1 and 60 of its own.
	image := func(i int) []*commonv1.Item {
		var items []*commonv1.Item
		for p := range 250 {
			items = append(items, pkgItem(t, fmt.Sprintf("p%03d", p), "1"))
		}
		for p := range 60 {
			items = append(items, pkgItem(t, fmt.Sprintf("p%03d", 250+i*50+p), fmt.Sprintf("img%d", i)))
		}
		return items
	}
	var hosts []string
	for i := range nHosts {
		hosts = append(hosts, fmt.Sprintf("m%d", i))
	}
	enroll(t, s, hosts...)
	model := map[string]modelSet{}
	seqs := map[string]uint64{}
	randomItem := func() *commonv1.Item {
		return pkgItem(t, fmt.Sprintf("p%03d", rng.IntN(universe)), fmt.Sprintf("v%d", rng.IntN(4)))
	}
	var fulls, deltas, empties, rebases int
	for step := range steps {
		h := hosts[rng.IntN(nHosts)]
		seqs[h]++
		ms, had := model[h]
		switch {
		case !had || rng.IntN(4) == 0:
			var items []*commonv1.Item
			if rng.IntN(30) != 0 {
				items = image(rng.IntN(3))
				for range rng.IntN(40) {
					items = append(items, randomItem())
				}
				for range rng.IntN(20) {
					if len(items) > 0 {
						j := rng.IntN(len(items))
						items = slices.Delete(items, j, j+1)
					}
				}
			} else {
				empties++
			}
			u := full(h, seqs[h], items)
			mustApply(t, s, u)
			model[h] = setOf(items)
			fulls++
		default:
			next := maps.Clone(ms)
			var ups []*commonv1.Item
			var removed []inventory.Ref
			for range 1 + rng.IntN(30) {
				if rng.IntN(3) == 0 && len(next) > 0 {
					refs := slices.Collect(maps.Keys(next))
					slices.SortFunc(refs, compareRefs)
					r := refs[rng.IntN(len(refs))]
					removed = append(removed, r)
					delete(next, r)
				}
			}
			for range rng.IntN(30) {
				it := randomItem()
				ups = append(ups, it)
				next[inventory.RefOf(it)] = it
			}
			set := inventory.SetOf(ms.items())
			set.Apply(ups, removed)
			u := &store.InventoryUpdate{HostID: h, SpoolID: "sp", Seq: seqs[h], Upserts: ups, Removed: removed,
				SetHash: set.Hash(), ReceivedAt: benchNow.Add(time.Duration(step) * time.Minute)}
			before := hostBase(t, s, h)
			mustApply(t, s, u)
			if string(hostBase(t, s, h)) != string(before) {
				rebases++
			}
			model[h] = next
			deltas++
		}
		checkHost(t, s, h, model[h])
		checkBases(t, s)
	}
	for _, h := range hosts {
		checkHost(t, s, h, model[h])
	}
	t.Logf("%d fulls (%d empty), %d deltas (%d rebasing): %d bases, %d overlay entries",
		fulls, empties, deltas, rebases, countRows(t, s, "inv_bases"), overlayEntries(t, s))
	if rebases == 0 {
		t.Fatal("no delta rebased its host")
	}
}

// TestBasesStorage: hosts built from a few images store their shared items
// once. It reports the size of the inventory tables next to that of the
// one-row-per-host-and-item table of schema version 4 holding the same.
func TestBasesStorage(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 500 inventories")
	}
	s := openTest(t)
	ctx := context.Background()
	const nHosts, nItems, nImages, own = 500, 1000, 5, 30
	rng := rand.New(rand.NewPCG(3, 4))
	images := make([][]*commonv1.Item, nImages)
	for i := range images {
		for p := range nItems - 200 {
			images[i] = append(images[i], pkgItem(t, fmt.Sprintf("common-%04d", p), "1"))
		}
		for p := range 200 {
			images[i] = append(images[i], pkgItem(t, fmt.Sprintf("image-%d-%03d", i, p), "1"))
		}
	}
	var ids []string
	for h := range nHosts {
		ids = append(ids, fmt.Sprintf("s%03d", h))
	}
	enroll(t, s, ids...)
	sets := make([][]*commonv1.Item, nHosts)
	for h, id := range ids {
		items := slices.Clone(images[h%nImages])
		// 15 packages at another version, 15 files of the host's own.
		for range own / 2 {
			p := rng.IntN(nItems - 200)
			items[p] = pkgItem(t, fmt.Sprintf("common-%04d", p), fmt.Sprintf("2.%d", rng.IntN(3)))
		}
		items = append(items, hostItems(t, h)[:1]...)
		for i := range own/2 - 1 {
			items = append(items, pkgItem(t, fmt.Sprintf("own-%03d-%02d", h, i), "1"))
		}
		sets[h] = items
		mustApply(t, s, full(id, 1, items))
	}
	checkBases(t, s)
	for _, h := range []int{0, 1, 7, nHosts - 1} {
		checkHost(t, s, ids[h], setOf(sets[h]))
	}
	baseRows, ovRows, bases := countRows(t, s, "inv_base_items"), overlayEntries(t, s), countRows(t, s, "inv_bases")
	naive := 0
	for _, items := range sets {
		naive += len(setOf(items))
	}
	if baseRows+ovRows > naive/10 {
		t.Fatalf("%d base and %d overlay rows for %d items", baseRows, ovRows, naive)
	}
	// The same sets as schema version 4 stored them.
	if _, err := s.pool.Exec(ctx, `CREATE TABLE naive_host_items (
		hkey bigint NOT NULL, kind text COLLATE "C" NOT NULL, key bytea NOT NULL, body_hash bytea NOT NULL,
		PRIMARY KEY (hkey, kind, key))`); err != nil {
		t.Fatal(err)
	}
	var rows [][]any
	for h, items := range sets {
		pending, err := prepare(&store.InventoryUpdate{Full: true, Upserts: setOf(items).items()})
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range pending {
			rows = append(rows, []any{int64(h + 1), p.ref.Kind, []byte(p.ref.Key), p.bodyHash})
		}
	}
	if _, err := s.pool.CopyFrom(ctx, pgx.Identifier{"naive_host_items"}, []string{"hkey", "kind", "key", "body_hash"},
		pgx.CopyFromRows(rows)); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{`CREATE INDEX naive_host_items_body_hash ON naive_host_items (body_hash)`,
		`VACUUM ANALYZE naive_host_items`, `VACUUM ANALYZE inv_bases`, `VACUUM ANALYZE inv_base_items`,
		`VACUUM ANALYZE host_sets`} {
		if _, err := s.pool.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	var sizeNew, sizeNaive int64
	if err := s.pool.QueryRow(ctx, `SELECT pg_total_relation_size('inv_bases') + pg_total_relation_size('inv_base_items') +
		pg_total_relation_size('host_sets'),
		pg_total_relation_size('naive_host_items')`).Scan(&sizeNew, &sizeNaive); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d hosts × %d items: %d bases, %d base rows + %d overlay entries = %d (%.1f%% of %d); "+
		"%d kB vs %d kB in host_items (%.1f×)",
		nHosts, nItems, bases, baseRows, ovRows, baseRows+ovRows, 100*float64(baseRows+ovRows)/float64(naive), naive,
		sizeNew/1024, sizeNaive/1024, float64(sizeNaive)/float64(sizeNew))
	if sizeNew*5 > sizeNaive {
		t.Fatalf("inventory tables take %d bytes, host_items %d", sizeNew, sizeNaive)
	}
}

// TestMigrateHostItems: sets stored as host_items rows (schema version 4)
// become bases, one per distinct set, and read the same.
func TestMigrateHostItems(t *testing.T) {
	ctx := context.Background()
	dsn, conn := connectAtVersion(t, 4)
	x := append(benchItems(t, 150, "1"), hostItems(t, 1)...)
	y := append(benchItems(t, 150, "2"), hostItems(t, 2)...)
	sets := map[string][]*commonv1.Item{"h1": x, "h2": x, "h3": y, "h4": nil}
	for _, id := range []string{"h1", "h2", "h3", "h4"} {
		var hkey int64
		if err := conn.QueryRow(ctx, `INSERT INTO hosts (id, hostname, labels, agent_version, cert_serial, revoked)
			VALUES ($1, $1, '{}', '', '', false) RETURNING hkey`, id).Scan(&hkey); err != nil {
			t.Fatal(err)
		}
		pending, err := prepare(&store.InventoryUpdate{Full: true, Upserts: sets[id]})
		if err != nil {
			t.Fatal(err)
		}
		var acc inventory.Accumulator
		for _, p := range pending {
			acc.Add(p.ref, p.hash)
			if _, err := conn.Exec(ctx, `INSERT INTO items (body_hash, body) VALUES ($1, $2) ON CONFLICT DO NOTHING`, p.bodyHash, p.body); err != nil {
				t.Fatal(err)
			}
			if _, err := conn.Exec(ctx, `INSERT INTO host_items (hkey, kind, key, body_hash) VALUES ($1, $2, $3, $4)`,
				hkey, p.ref.Kind, []byte(p.ref.Key), p.bodyHash); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := conn.Exec(ctx, `INSERT INTO streams (hkey, started, spool_id, last_seq, acc, item_count, has_items, updated_at)
			VALUES ($1, true, 'sp', 1, $2, $3, $4, $5)`, hkey, acc.Acc[:], int64(acc.Count), len(pending) > 0, benchNow); err != nil {
			t.Fatal(err)
		}
	}

	s := openDSN(t, dsn, Options{})
	checkBases(t, s)
	for id, items := range sets {
		checkHost(t, s, id, setOf(items))
	}
	// One base per distinct set, its ID what ApplyInventory computes.
	rows, err := s.pool.Query(ctx, `SELECT base_id, refs FROM inv_bases ORDER BY refs`)
	if err != nil {
		t.Fatal(err)
	}
	type base struct {
		id   []byte
		refs int64
	}
	got, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (base, error) {
		var b base
		return b, r.Scan(&b.id, &b.refs)
	})
	if err != nil {
		t.Fatal(err)
	}
	idOf := func(items []*commonv1.Item) []byte {
		var es []setEntry
		pending, err := prepare(&store.InventoryUpdate{Full: true, Upserts: items})
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range pending {
			es = append(es, setEntry{ref: p.ref, bodyHash: p.bodyHash})
		}
		slices.SortFunc(es, compareEntries)
		return baseID(es)
	}
	want := []base{{idOf(y), 1}, {idOf(x), 2}}
	if len(got) != 2 || string(got[0].id) != string(want[0].id) || got[0].refs != 1 ||
		string(got[1].id) != string(want[1].id) || got[1].refs != 2 {
		t.Fatalf("bases = %x, want %x", got, want)
	}
	if n := overlayEntries(t, s); n != 0 {
		t.Fatalf("%d overlay entries after the migration", n)
	}
	// The stream states carried over: a delta applies.
	next := benchPkg(t, "lib-benchmark-package-00003", "9")
	set := inventory.SetOf(x)
	set.Apply([]*commonv1.Item{next}, nil)
	mustApply(t, s, &store.InventoryUpdate{HostID: "h1", SpoolID: "sp", Seq: 2, Upserts: []*commonv1.Item{next},
		SetHash: set.Hash(), ReceivedAt: benchNow.Add(time.Hour)})
	x1 := setOf(x)
	x1[inventory.RefOf(next)] = next
	checkHost(t, s, "h1", x1)
	checkHost(t, s, "h2", setOf(x))
	// h3 moves to x: its old base goes.
	mustApply(t, s, full("h3", 2, x))
	checkHost(t, s, "h3", setOf(x))
	checkBases(t, s)
	if n := countRows(t, s, "inv_bases"); n != 1 {
		t.Fatalf("%d bases, want 1", n)
	}
}

// TestBasesConcurrent: two replicas apply full inventories to hosts of one
// image at once, the image changing every round, so bases are taken,
// dropped, deleted and made again concurrently. The reference counts add
// up after.
func TestBasesConcurrent(t *testing.T) {
	dsn := pgtest.DSN(t)
	replicas := []*Store{openDSN(t, dsn, Options{}), openDSN(t, dsn, Options{})}
	const nHosts, workers, rounds = 16, 6, 8
	var ids []string
	for i := range nHosts {
		ids = append(ids, fmt.Sprintf("c%02d", i))
	}
	enroll(t, replicas[0], ids...)
	// Round r's image: 300 packages, those below 150 at version r%3 (so
	// earlier bases come back), then the host's own few.
	setFor := func(r, h int) []*commonv1.Item {
		var items []*commonv1.Item
		for p := range 300 {
			v := "1"
			if p < 150 {
				v = fmt.Sprint(r % 3)
			}
			items = append(items, pkgItem(t, fmt.Sprintf("p%03d", p), v))
		}
		if h%4 != 0 {
			items = append(items, pkgItem(t, fmt.Sprintf("own-%02d", h), fmt.Sprint(r)))
		}
		return items
	}
	for r := range rounds {
		var wg sync.WaitGroup
		errs := make(chan error, nHosts)
		next := make(chan int, nHosts)
		for h := range nHosts {
			next <- h
		}
		close(next)
		for w := range workers {
			s := replicas[w%2]
			wg.Go(func() {
				for h := range next {
					u := full(ids[h], uint64(r+1), setFor(r, h))
					if out, err := s.ApplyInventory(context.Background(), u); err != nil || out != store.Applied {
						errs <- fmt.Errorf("round %d host %s: %v, %v", r, ids[h], out, err)
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		checkBases(t, replicas[0])
		for h, id := range ids {
			checkHost(t, replicas[1-r%2], id, setOf(setFor(r, h)))
		}
	}
	// Hosts applied at once may each make a base before another's commits.
	t.Logf("%d bases, %d overlay entries", countRows(t, replicas[0], "inv_bases"), overlayEntries(t, replicas[0]))
}

// connectAtVersion connects to a database of the test's own (pgtest.DSN)
// migrated to schema version v only, as an older release left it, and
// returns its DSN and the connection, closed at cleanup.
func connectAtVersion(t *testing.T, v int) (string, *pgx.Conn) {
	t.Helper()
	ctx := context.Background()
	dsn := pgtest.DSN(t)
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(ctx) })
	ms, err := loadMigrations()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `CREATE TABLE schema_migrations (
		version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		t.Fatal(err)
	}
	for _, m := range ms[:v] {
		if _, err := conn.Exec(ctx, m.sql); err != nil {
			t.Fatalf("migration %d: %v", m.version, err)
		}
		if _, err := conn.Exec(ctx, `INSERT INTO schema_migrations (version, name) VALUES ($1, $2)`, m.version, m.name); err != nil {
			t.Fatal(err)
		}
	}
	return dsn, conn
}
