package bboltstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	"github.com/quantumlayer/qinfra/pkg/inventory"
	commonv1 "github.com/quantumlayer/qinfra/proto/gen/qinfra/common/v1"
	"github.com/quantumlayer/qinfra/server/internal/store"
)

// fleet applies updates to enrolled hosts and keeps a model of their items.
type fleet struct {
	t     testing.TB
	s     *Store
	model map[string]map[inventory.Ref]*commonv1.Item
	seq   map[string]uint64
}

func newFleet(t testing.TB, s *Store, hosts int) *fleet {
	enrollBench(t, s, hosts)
	return &fleet{t: t, s: s, model: map[string]map[inventory.Ref]*commonv1.Item{}, seq: map[string]uint64{}}
}

func (f *fleet) apply(h string, full bool, ups []*commonv1.Item, rem []inventory.Ref) {
	f.t.Helper()
	next := maps.Clone(f.model[h])
	if full || next == nil {
		next = map[inventory.Ref]*commonv1.Item{}
	}
	for _, r := range rem {
		delete(next, r)
	}
	for _, it := range ups {
		next[inventory.RefOf(it)] = it
	}
	f.seq[h]++
	out, err := f.s.ApplyInventory(context.Background(), &store.InventoryUpdate{HostID: h, SpoolID: "sp", Seq: f.seq[h], Full: full,
		Upserts: ups, Removed: rem, SetHash: inventory.SetOf(slices.Collect(maps.Values(next))).Hash(), ReceivedAt: now})
	if err != nil || out != store.Applied {
		f.t.Fatalf("host %s seq %d: ApplyInventory = %v, %v", h, f.seq[h], out, err)
	}
	f.model[h] = next
}

// check compares the host's stored items with the model.
func (f *fleet) check(h string) {
	f.t.Helper()
	got, err := f.s.ListItems(context.Background(), h, "")
	if err != nil {
		f.t.Fatal(err)
	}
	want := slices.SortedFunc(maps.Values(f.model[h]), func(a, b *commonv1.Item) int {
		return bytes.Compare(itemKey(inventory.RefOf(a)), itemKey(inventory.RefOf(b)))
	})
	if len(got) != len(want) {
		f.t.Fatalf("host %s has %d items, want %d", h, len(got), len(want))
	}
	for i := range got {
		if !proto.Equal(got[i], want[i]) {
			f.t.Fatalf("host %s item %d = %v, want %v", h, i, got[i], want[i])
		}
	}
}

// overlayStats returns the number of bases stored, of distinct bases the
// hosts use, the largest overlay and the overlays' total bytes.
func overlayStats(t testing.TB, s *Store) (bases, used, maxOv, ovBytes int) {
	t.Helper()
	seen := map[string]bool{}
	if err := s.db.View(func(tx *bolt.Tx) error {
		bases = tx.Bucket(bucketBases).Stats().KeyN
		return tx.Bucket(bucketOverlays).ForEach(func(_, v []byte) error {
			base, ov, _, err := decodeOverlay(v)
			if err != nil {
				return err
			}
			seen[string(base)] = true
			maxOv = max(maxOv, len(ov))
			ovBytes += len(v)
			return nil
		})
	}); err != nil {
		t.Fatal(err)
	}
	return bases, len(seen), maxOv, ovBytes
}

// imageItems returns image img's n packages: shared names, a version
// that depends on the image for every third.
func imageItems(t testing.TB, img, n int) []*commonv1.Item {
	items := make([]*commonv1.Item, n)
	for i := range items {
		v := "1.0"
		if i%3 == 0 {
			v = fmt.Sprintf("1.%d", img)
		}
		items[i] = imagePkg(t, fmt.Sprintf("pkg-%04d", i), v)
	}
	return items
}

// TestBasesRandom applies random fulls and deltas to many hosts built
// from a few images, and checks after each that the host's items are the
// model's, and every few steps that the whole storage is consistent
// (checkSets). Deltas are large enough now and then to rebase hosts.
func TestBasesRandom(t *testing.T) {
	s := openFast(t)
	const hosts, images, items = 30, 3, 300
	f := newFleet(t, s, hosts)
	rng := rand.New(rand.NewPCG(3, 5))
	imgs := make([][]*commonv1.Item, images)
	for i := range imgs {
		imgs[i] = imageItems(t, i, items)
	}
	host := func(i int) string { return fmt.Sprintf("host-%05d", i) }
	// random returns a package of the pool, at one of a few versions.
	random := func() *commonv1.Item {
		return imagePkg(t, fmt.Sprintf("pkg-%04d", rng.IntN(items+100)), fmt.Sprintf("2.%d", rng.IntN(4)))
	}
	for i := range hosts {
		ups := slices.Clone(imgs[i%images])
		for range rng.IntN(40) {
			ups = append(ups, random())
		}
		f.apply(host(i), true, ups, nil)
		f.check(host(i))
	}
	checkSets(t, s)
	steps := 600
	if raceEnabled || testing.Short() {
		steps = 200
	}
	for step := range steps {
		i := rng.IntN(hosts)
		h := host(i)
		switch r := rng.IntN(20); {
		case r == 0:
			// A full inventory: the image again, with own changes.
			ups := slices.Clone(imgs[rng.IntN(images)])
			for range rng.IntN(60) {
				ups = append(ups, random())
			}
			f.apply(h, true, ups, nil)
		case r == 1:
			f.apply(h, true, nil, nil) // emptied
		default:
			n := 1 + rng.IntN(8)
			if r == 2 {
				n = 50 + rng.IntN(100) // a big upgrade: rebases
			}
			var ups []*commonv1.Item
			var rem []inventory.Ref
			present := slices.SortedFunc(maps.Keys(f.model[h]), func(a, b inventory.Ref) int {
				return bytes.Compare(itemKey(a), itemKey(b))
			})
			for range n {
				if rng.IntN(4) == 0 {
					if len(present) == 0 || rng.IntN(5) == 0 {
						rem = append(rem, inventory.RefOf(random())) // maybe absent
					} else {
						rem = append(rem, present[rng.IntN(len(present))])
					}
				} else {
					ups = append(ups, random())
				}
			}
			f.apply(h, false, ups, rem)
		}
		f.check(h)
		if step%20 == 19 {
			checkSets(t, s)
		}
	}
	checkSets(t, s)
	for i := range hosts {
		f.check(host(i))
		f.apply(host(i), true, nil, nil)
	}
	checkSets(t, s)
	wantNoInventories(t, s)
}

// TestFleetUpgradeRebases loads hosts from a few images, each with its
// own differences, then upgrades the same 20 packages on every host by
// delta, round after round. Overlays must not grow without bound: hosts
// rebase, and after rebasing share bases again, so storage stays bounded.
func TestFleetUpgradeRebases(t *testing.T) {
	s := openFast(t)
	hosts, rounds := 200, 8
	if raceEnabled || testing.Short() {
		hosts = 60
	}
	const images, items, own = 3, 400, 30
	f := newFleet(t, s, hosts)
	host := func(i int) string { return fmt.Sprintf("host-%05d", i) }
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range hosts {
		ups := slices.Clone(imageItems(t, i%images, items))
		for _, p := range rng.Perm(items)[:own] {
			ups[p] = imagePkg(t, fmt.Sprintf("pkg-%04d", p), fmt.Sprintf("0.%d", i%images))
		}
		ups = append(ups, ownPackages(t, i, 3)...)
		f.apply(host(i), true, ups, nil)
	}
	checkSets(t, s)
	bases0, used0, max0, bytes0 := overlayStats(t, s)
	t.Logf("loaded: %d bases stored, %d used, largest overlay %d, overlays %d bytes", bases0, used0, max0, bytes0)
	if used0 > 8*images {
		t.Errorf("%d hosts of %d images use %d bases", hosts, images, used0)
	}
	shrank := false
	prev := bytes0
	for r := range rounds {
		for i := range hosts {
			var ups []*commonv1.Item
			for k := range 20 {
				ups = append(ups, imagePkg(t, fmt.Sprintf("pkg-%04d", 20*r+k), fmt.Sprintf("3.%d", r)))
			}
			f.apply(host(i), false, ups, nil)
		}
		bases, used, maxOv, ovBytes := overlayStats(t, s)
		t.Logf("round %d: %d bases stored, %d used, largest overlay %d, overlays %d bytes", r, bases, used, maxOv, ovBytes)
		if limit := overlayLimit(items + 3); maxOv > limit {
			t.Fatalf("round %d: an overlay of %d entries, over the limit of %d", r, maxOv, limit)
		}
		if used > 8*images || bases > 8*images {
			t.Errorf("round %d: %d hosts use %d bases, %d stored: rebased hosts do not share", r, hosts, used, bases)
		}
		if ovBytes > 3*bytes0 {
			t.Errorf("round %d: overlays take %d bytes, loaded they took %d", r, ovBytes, bytes0)
		}
		shrank = shrank || ovBytes < prev
		prev = ovBytes
	}
	if !shrank {
		t.Errorf("overlays never shrank: no host rebased")
	}
	checkSets(t, s)
	for _, i := range []int{0, hosts / 2, hosts - 1} {
		f.check(host(i))
	}
}

// TestSameItemsSameBase gives hosts the same items by different paths: a
// full inventory, deltas from another image, and a rebase; they must end
// up with one base and empty overlays where the paths allow, and their
// items must not depend on the path.
func TestSameItemsSameBase(t *testing.T) {
	s := openFast(t)
	f := newFleet(t, s, 3)
	img := imageItems(t, 0, 500)
	f.apply("host-00000", true, img, nil)
	// host-00001 starts from another image and converges by deltas.
	f.apply("host-00001", true, imageItems(t, 1, 500), nil)
	f.apply("host-00001", false, img, nil)
	// host-00002 converges by a full inventory after many deltas.
	f.apply("host-00002", true, imageItems(t, 2, 500), nil)
	for i := 0; i < 500; i += 50 {
		f.apply("host-00002", false, img[i:i+50], nil)
	}
	f.apply("host-00002", true, img, nil)
	checkSets(t, s)
	for _, h := range []string{"host-00000", "host-00001", "host-00002"} {
		f.check(h)
	}
	if err := s.db.View(func(tx *bolt.Tx) error {
		ss := newSets(tx, s.salt, nil)
		var bases [][]byte
		for _, h := range []string{"host-00000", "host-00001", "host-00002"} {
			hs, err := ss.loadHost([]byte(h))
			if err != nil {
				return err
			}
			if len(hs.overlay) != 0 && h != "host-00001" {
				return fmt.Errorf("host %s has an overlay of %d entries", h, len(hs.overlay))
			}
			bases = append(bases, hs.base)
		}
		if !bytes.Equal(bases[0], bases[2]) {
			return fmt.Errorf("hosts with the same items after a full inventory have different bases")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// writeV2 writes the schema version 2 layout into the store file at path
// (created by Open and closed): each host of items gets a chunk index in
// its own bucket under inventory_chunks, chunks counted once per host
// index entry, and a stream state, as the previous release wrote them.
func writeV2(t *testing.T, path string, items map[string][]*commonv1.Item) {
	t.Helper()
	updateFile(t, path, func(tx *bolt.Tx) error {
		salt := tx.Bucket(bucketMeta).Get(keyChunkSalt)
		inv, err := tx.CreateBucket(bucketInvChunksV2)
		if err != nil {
			return err
		}
		for _, h := range slices.Sorted(maps.Keys(items)) {
			pending, blobs, err := prepare(&store.InventoryUpdate{Full: true, Upserts: items[h]})
			if err != nil {
				return err
			}
			ss := newSets(tx, salt, nil)
			ss.newBlobs = blobs
			var acc inventory.Accumulator
			var entries []entry
			for _, p := range pending {
				acc.Add(p.ref, p.hash)
				entries = append(entries, entry{key: p.key, blob: p.blob})
			}
			slices.SortFunc(entries, func(a, b entry) int { return bytes.Compare(a.key, b.key) })
			idx, err := inv.CreateBucket([]byte(h))
			if err != nil {
				return err
			}
			refs := map[string]int64{}
			chunks := ss.cut(entries)
			if len(entries) == 0 {
				chunks = nil
			}
			for i := range chunks {
				if err := ss.ref(&chunks[i], refs); err != nil {
					return err
				}
				if err := idx.Put(chunks[i].first(), chunks[i].id); err != nil {
					return err
				}
			}
			if err := ss.refBlobs(refs); err != nil {
				return err
			}
			st := streamRecord{SpoolID: "sp", LastSeq: 1, UpdatedAt: now, HasSet: true}
			st.setAccumulator(acc)
			if err := saveStream(tx, h, &st); err != nil {
				return err
			}
		}
		for _, b := range [][]byte{bucketOverlays, bucketBases, bucketBaseRefs} {
			if err := tx.DeleteBucket(b); err != nil {
				return err
			}
		}
		return tx.Bucket(bucketMeta).Put(keySchemaVersion, u64(2))
	})
}

// TestMigrateV2 opens a file of the previous layout (a chunk index per
// host): Open converts it, every host reads its items as before, hosts
// with the same items share a base, and updates go on from there.
func TestMigrateV2(t *testing.T) {
	path := filepath.Join(t.TempDir(), "qinfra.db")
	s := openAt(t, path)
	const hosts = 12
	enrollBench(t, s, hosts)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	items := map[string][]*commonv1.Item{}
	for i := range hosts {
		h := fmt.Sprintf("host-%05d", i)
		switch {
		case i == hosts-1:
			// No items: a stream state, no index bucket entries.
		case i%4 == 0:
			items[h] = imageItems(t, 0, 300) // three hosts with the same items
		default:
			items[h] = append(imageItems(t, i%3, 300), ownPackages(t, i, 2)...)
		}
	}
	writeV2(t, path, items)
	if _, err := Open(path, Options{ReadOnly: true}); !errors.Is(err, ErrSchemaVersion) {
		t.Fatalf("read-only Open of a version 2 store: error = %v, want ErrSchemaVersion", err)
	}
	s = openAt(t, path)
	checkSets(t, s)
	ctx := context.Background()
	for i := range hosts {
		h := fmt.Sprintf("host-%05d", i)
		wantItems(t, s, h, slices.SortedFunc(slices.Values(items[h]), func(a, b *commonv1.Item) int {
			return bytes.Compare(itemKey(inventory.RefOf(a)), itemKey(inventory.RefOf(b)))
		}))
	}
	var version uint64
	bases, _, maxOv, _ := overlayStats(t, s)
	if err := s.db.View(func(tx *bolt.Tx) error {
		version = binary.BigEndian.Uint64(tx.Bucket(bucketMeta).Get(keySchemaVersion))
		if tx.Bucket(bucketInvChunksV2) != nil {
			return fmt.Errorf("inventory_chunks is left")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// Hosts 0, 4 and 8 share a base; host 11 has none.
	if version != SchemaVersion || maxOv != 0 || bases != hosts-3 {
		t.Fatalf("after the migration: schema version %d, largest overlay %d, %d bases; want %d, 0, %d", version, maxOv, bases, SchemaVersion, hosts-3)
	}
	// Updates go on from the converted state.
	st, err := s.GetStreamState(ctx, "host-00001")
	if err != nil || st.Items != 302 {
		t.Fatalf("GetStreamState = %+v, %v", st, err)
	}
	ups := []*commonv1.Item{imagePkg(t, "pkg-0001", "9.9")}
	next := append(slices.Clone(items["host-00001"]), ups...)
	out, err := s.ApplyInventory(ctx, &store.InventoryUpdate{HostID: "host-00001", SpoolID: "sp", Seq: 2,
		Upserts: ups, SetHash: inventory.SetOf(next).Hash(), ReceivedAt: now})
	if err != nil || out != store.Applied {
		t.Fatalf("delta after the migration: %v, %v", out, err)
	}
	checkSets(t, s)
	// A second Open changes nothing.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openAt(t, path)
	checkSets(t, s)
}

// TestRestoreV2Backup: a backup taken before bases (schema version 2) is
// converted while it is restored, and reads back whole.
func TestRestoreV2Backup(t *testing.T) {
	dir := t.TempDir()
	backup := filepath.Join(dir, "backup.db")
	s := openAt(t, backup)
	enrollBench(t, s, 3)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	items := map[string][]*commonv1.Item{}
	for i := range 3 {
		items[fmt.Sprintf("host-%05d", i)] = append(imageItems(t, 0, 100), ownPackages(t, i, 2)...)
	}
	writeV2(t, backup, items)
	r := restoreBackup(t, backup, filepath.Join(dir, "restored", "qinfra.db"), 3)
	for h, want := range items {
		got, err := r.ListItems(context.Background(), h, "")
		if err != nil || len(got) != len(want) {
			t.Fatalf("host %s: %d items (%v), want %d", h, len(got), err, len(want))
		}
	}
}

// writeV3 turns the store file at path (closed) into the schema version 3
// layout, as the previous release wrote it: each overlay names its blobs
// by ID, and they are stored and counted in blob_refs like chunk entries.
func writeV3(t *testing.T, path string) {
	t.Helper()
	updateFile(t, path, func(tx *bolt.Tx) error {
		ss := newSets(tx, nil, nil)
		old := map[string][]byte{}
		if err := ss.overlays.ForEach(func(k, v []byte) error {
			old[string(k)] = bytes.Clone(v)
			return nil
		}); err != nil {
			return err
		}
		for h, v := range old {
			base, ov, vals, err := decodeOverlay(v)
			if err != nil {
				return err
			}
			refs := map[string]int64{}
			for _, e := range ov {
				if e.blob != nil {
					refs[string(e.blob)]++
				}
			}
			ss.inline = vals
			if err := ss.refBlobs(refs); err != nil {
				return err
			}
			if err := ss.overlays.Put([]byte(h), encodeOverlayV3(base, ov)); err != nil {
				return err
			}
		}
		return tx.Bucket(bucketMeta).Put(keySchemaVersion, u64(3))
	})
}

// TestMigrateV3 opens a file of the previous layout (overlays naming
// blobs kept in the blobs bucket): Open moves every overlay's blobs
// inline, deletes the blobs no chunk names, and every host reads its
// items as before, an item whose hash is not its body's included.
func TestMigrateV3(t *testing.T) {
	path := filepath.Join(t.TempDir(), "qinfra.db")
	s := openAt(t, path)
	const hosts = 8
	enrollBench(t, s, hosts)
	ctx := context.Background()
	items := map[string][]*commonv1.Item{}
	for i := range hosts {
		h := fmt.Sprintf("host-%05d", i)
		items[h] = append(imageItems(t, 0, 300), ownPackages(t, i, 5)...)
		if i == 3 {
			odd := imagePkg(t, "forged", "1.0")
			odd.Hash = bytes.Repeat([]byte{0xaa}, 32) // an agent's hash that is not the body's
			items[h] = append(items[h], odd)
		}
		out, err := s.ApplyInventory(ctx, &store.InventoryUpdate{HostID: h, SpoolID: "sp", Seq: 1, Full: true,
			Upserts: items[h], SetHash: inventory.SetOf(items[h]).Hash(), ReceivedAt: now})
		if err != nil || out != store.Applied {
			t.Fatalf("host %s: %v, %v", h, out, err)
		}
	}
	before := map[string][]*commonv1.Item{}
	for h := range items {
		got, err := s.ListItems(ctx, h, "")
		if err != nil {
			t.Fatal(err)
		}
		before[h] = got
	}
	blobsNow := func(s *Store) (n int) {
		if err := s.db.View(func(tx *bolt.Tx) error {
			n = tx.Bucket(bucketBlobs).Stats().KeyN
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return n
	}
	inline := blobsNow(s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	writeV3(t, path)
	if _, err := Open(path, Options{ReadOnly: true}); !errors.Is(err, ErrSchemaVersion) {
		t.Fatalf("read-only Open of a version 3 store: error = %v, want ErrSchemaVersion", err)
	}
	s = openAt(t, path)
	checkSets(t, s)
	if n := blobsNow(s); n != inline {
		t.Fatalf("%d blobs stored after the migration, want the %d the chunks name", n, inline)
	}
	for h, want := range before {
		wantItems(t, s, h, want)
	}
	// Updates go on from the converted state.
	ups := []*commonv1.Item{imagePkg(t, "pkg-0001", "9.9")}
	next := append(slices.Clone(items["host-00003"]), ups...)
	out, err := s.ApplyInventory(ctx, &store.InventoryUpdate{HostID: "host-00003", SpoolID: "sp", Seq: 2,
		Upserts: ups, SetHash: inventory.SetOf(next).Hash(), ReceivedAt: now})
	if err != nil || out != store.Applied {
		t.Fatalf("delta after the migration: %v, %v", out, err)
	}
	checkSets(t, s)
}

// wantItems fails t unless the host's items read back as want, in key
// order.
func wantItems(t *testing.T, s *Store, h string, want []*commonv1.Item) {
	t.Helper()
	got, err := s.ListItems(context.Background(), h, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("host %s: %d items after the migration, want %d", h, len(got), len(want))
	}
	for j := range got {
		if !proto.Equal(got[j], want[j]) {
			t.Fatalf("host %s item %d = %v, want %v", h, j, got[j], want[j])
		}
	}
}

// TestRestoreV3Backup: a backup taken before inline overlays (schema
// version 3) is converted while it is restored, and reads back whole.
func TestRestoreV3Backup(t *testing.T) {
	dir := t.TempDir()
	backup := filepath.Join(dir, "backup.db")
	s := openAt(t, backup)
	enrollBench(t, s, 3)
	want := map[string][]*commonv1.Item{}
	for i := range 3 {
		h := fmt.Sprintf("host-%05d", i)
		items := append(imageItems(t, 0, 100), ownPackages(t, i, 4)...)
		out, err := s.ApplyInventory(context.Background(), &store.InventoryUpdate{HostID: h, SpoolID: "sp", Seq: 1, Full: true,
			Upserts: items, SetHash: inventory.SetOf(items).Hash(), ReceivedAt: now})
		if err != nil || out != store.Applied {
			t.Fatalf("host %s: %v, %v", h, out, err)
		}
		if want[h], err = s.ListItems(context.Background(), h, ""); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	writeV3(t, backup)
	r := restoreBackup(t, backup, filepath.Join(dir, "restored", "qinfra.db"), 3)
	for h, items := range want {
		wantItems(t, r, h, items)
	}
}

// restoreBackup restores the backup file at backup to target, checks that
// it held hosts hosts and that its sets add up, and opens the result.
func restoreBackup(t *testing.T, backup, target string, hosts int) *Store {
	t.Helper()
	f, err := os.Open(backup)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	res, err := Restore(context.Background(), f, target, RestoreOptions{})
	if err != nil {
		t.Fatalf("Restore of %s: %v", backup, err)
	}
	if res.Hosts != hosts {
		t.Fatalf("restored %d hosts, want %d", res.Hosts, hosts)
	}
	r := openAt(t, target)
	checkSets(t, r)
	return r
}
