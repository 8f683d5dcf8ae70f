package bboltstore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/quantumlayer/qinfra/pkg/inventory"
	commonv1 "github.com/quantumlayer/qinfra/proto/gen/qinfra/common/v1"
	"github.com/quantumlayer/qinfra/server/internal/store"
	"github.com/quantumlayer/qinfra/server/internal/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		return openTemp(t)
	})
}

// openTemp opens a new store in a temporary directory, closed at cleanup.
func openTemp(t testing.TB) *Store {
	t.Helper()
	return openAt(t, filepath.Join(t.TempDir(), "qinfra.db"))
}

func openAt(t testing.TB, path string) *Store {
	t.Helper()
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatalf("Open(%s): %v", path, err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil && !errors.Is(err, berrors.ErrDatabaseNotOpen) {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

var now = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func sealed(t testing.TB, it *commonv1.Item) *commonv1.Item {
	t.Helper()
	if err := inventory.Seal(it); err != nil {
		t.Fatal(err)
	}
	return it
}

func testPkg(t testing.TB, name, version string) *commonv1.Item {
	return sealed(t, &commonv1.Item{
		Kind: inventory.KindPackage, Key: "dpkg:" + name + ":amd64",
		Body: &commonv1.Item_Package{Package: &commonv1.Package{Manager: "dpkg", Name: name, Version: version, Arch: "amd64"}},
	})
}

// populate enrolls host-1, gives it a full inventory of items and appends
// an audit entry.
func populate(t testing.TB, s *Store, items []*commonv1.Item) {
	t.Helper()
	ctx := context.Background()
	hash := sha256.Sum256([]byte("secret"))
	tok := &store.EnrollmentToken{ID: "tok1", Hash: hash[:], UsesAllowed: 10, ExpiresAt: now.Add(time.Hour), CreatedAt: now,
		Labels: map[string]string{"env": "prod"}}
	if err := s.CreateEnrollmentToken(ctx, tok); err != nil {
		t.Fatal(err)
	}
	h := &store.Host{ID: "host-1", Hostname: "web-1", EnrolledAt: now,
		Facts: &commonv1.OSFacts{Hostname: "web-1", PrettyName: "Debian GNU/Linux 12 (bookworm)"}}
	if err := s.EnrollHost(ctx, tok.Hash, now, h); err != nil {
		t.Fatal(err)
	}
	out, err := s.ApplyInventory(ctx, &store.InventoryUpdate{
		HostID: "host-1", SpoolID: "sp", Seq: 1, Full: true, Upserts: items,
		SetHash: inventory.SetOf(items).Hash(), ReceivedAt: now,
	})
	if err != nil || out != store.Applied {
		t.Fatalf("ApplyInventory = %v, %v", out, err)
	}
	if err := s.AppendAudit(ctx, &store.AuditEntry{Time: now, Actor: "admin", Action: "host.enroll", Target: "host-1"}); err != nil {
		t.Fatal(err)
	}
}

// checkPopulated checks what populate wrote, and that the stored
// accumulator still accepts a delta.
func checkPopulated(t *testing.T, s *Store, items []*commonv1.Item) {
	t.Helper()
	ctx := context.Background()
	h, err := s.GetHost(ctx, "host-1")
	if err != nil {
		t.Fatalf("GetHost: %v", err)
	}
	if h.Labels["env"] != "prod" || h.Facts.GetPrettyName() != "Debian GNU/Linux 12 (bookworm)" {
		t.Fatalf("host = %+v, facts %v", h, h.Facts)
	}
	got, err := s.ListItems(ctx, "host-1", "")
	if err != nil || len(got) != len(items) {
		t.Fatalf("ListItems = %d items, %v; want %d", len(got), err, len(items))
	}
	entries, err := s.ListAudit(ctx, 0, 0)
	if err != nil || len(entries) != 1 {
		t.Fatalf("ListAudit = %d entries, %v", len(entries), err)
	}
	if err := store.VerifyAuditChain(nil, entries); err != nil {
		t.Fatal(err)
	}
	up := testPkg(t, "late", "1")
	out, err := s.ApplyInventory(ctx, &store.InventoryUpdate{
		HostID: "host-1", SpoolID: "sp", Seq: 2, Upserts: []*commonv1.Item{up},
		SetHash: inventory.SetOf(append(items[:len(items):len(items)], up)).Hash(), ReceivedAt: now,
	})
	if err != nil || out != store.Applied {
		t.Fatalf("delta after reopen = %v, %v; want applied", out, err)
	}
}

func someItems(t testing.TB, n int) []*commonv1.Item {
	items := make([]*commonv1.Item, n)
	for i := range items {
		items[i] = testPkg(t, fmt.Sprintf("pkg%05d", i), "1.0")
	}
	return items
}

func TestReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "qinfra.db")
	items := someItems(t, 50)
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	populate(t, s, items)
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	checkPopulated(t, openAt(t, path), items)
}

func TestSecondOpenTimesOut(t *testing.T) {
	path := filepath.Join(t.TempDir(), "qinfra.db")
	openAt(t, path)
	start := time.Now()
	s2, err := Open(path, Options{LockTimeout: 200 * time.Millisecond})
	if err == nil {
		s2.Close()
		t.Fatal("second Open of a locked file succeeded")
	}
	if !errors.Is(err, ErrLocked) || !errors.Is(err, berrors.ErrTimeout) {
		t.Fatalf("second Open error = %v, want ErrLocked wrapping bbolt's timeout", err)
	}
	if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "another") {
		t.Fatalf("error %q does not name the file and the likely cause", err)
	}
	if waited := time.Since(start); waited > 5*time.Second {
		t.Fatalf("second Open took %s with a 200ms timeout", waited)
	}
}

func TestBackup(t *testing.T) {
	s := openTemp(t)
	items := someItems(t, 300)
	populate(t, s, items)
	var buf bytes.Buffer
	n, err := s.Backup(&buf)
	if err != nil {
		t.Fatalf("Backup: %v", err)
	}
	if n != int64(buf.Len()) || n == 0 {
		t.Fatalf("Backup reported %d bytes, wrote %d", n, buf.Len())
	}
	// The store stays usable while and after it is backed up.
	if _, err := s.GetHost(context.Background(), "host-1"); err != nil {
		t.Fatal(err)
	}
	restored := filepath.Join(t.TempDir(), "restored.db")
	if err := os.WriteFile(restored, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	checkPopulated(t, openAt(t, restored), items)
}

func TestCorruptFile(t *testing.T) {
	valid := filepath.Join(t.TempDir(), "valid.db")
	s, err := Open(valid, Options{})
	if err != nil {
		t.Fatal(err)
	}
	populate(t, s, someItems(t, 200))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	good, err := os.ReadFile(valid)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	random := make([]byte, 64<<10)
	for i := range random {
		random[i] = byte(rng.UintN(256))
	}
	zeroedMeta := bytes.Clone(good)
	clear(zeroedMeta[:2*4096])
	for name, content := range map[string][]byte{
		"text":          []byte("this is not a database\n"),
		"random":        random,
		"zeroed metas":  zeroedMeta,
		"one page":      good[:4096],
		"half a header": good[:20],
	} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "qinfra.db")
			if err := os.WriteFile(path, content, 0o600); err != nil {
				t.Fatal(err)
			}
			s, err := Open(path, Options{LockTimeout: 100 * time.Millisecond})
			if err == nil {
				s.Close()
				t.Fatal("Open of a damaged file succeeded")
			}
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), path) {
				t.Fatalf("Open error = %v, want ErrCorrupt naming the file", err)
			}
			// The failed Open released the file.
			f, err := os.OpenFile(path, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			f.Close()
		})
	}
}

// setSchemaVersion rewrites the schema version of a closed store file.
func setSchemaVersion(t *testing.T, path string, v uint64) {
	t.Helper()
	updateFile(t, path, func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMeta).Put(keySchemaVersion, u64(v))
	})
}

func TestSchemaVersion(t *testing.T) {
	path := filepath.Join(t.TempDir(), "qinfra.db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	setSchemaVersion(t, path, SchemaVersion+1)
	_, err = Open(path, Options{})
	if !errors.Is(err, ErrSchemaVersion) || !strings.Contains(err.Error(), "newer") {
		t.Fatalf("Open of a newer schema: error = %v, want ErrSchemaVersion saying newer", err)
	}

	// Version 1 (full copies of every host's items) is refused, saying
	// what to do.
	setSchemaVersion(t, path, 1)
	_, err = Open(path, Options{})
	if !errors.Is(err, ErrSchemaVersion) || !strings.Contains(err.Error(), "version 1") || !strings.Contains(err.Error(), "move the file aside") {
		t.Fatalf("Open of a version 1 store: error = %v, want ErrSchemaVersion explaining it", err)
	}
	if _, err := Open(path, Options{ReadOnly: true}); !errors.Is(err, ErrSchemaVersion) {
		t.Fatalf("read-only Open of a version 1 store: error = %v, want ErrSchemaVersion", err)
	}

	setSchemaVersion(t, path, SchemaVersion)
	openAt(t, path) // a refused Open left the file intact and unlocked
}

func TestForeignBoltFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "other.db")
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucket([]byte("spool"))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	db.Close()
	_, err = Open(path, Options{})
	if !errors.Is(err, ErrSchemaVersion) || !strings.Contains(err.Error(), "not a qinfra store") {
		t.Fatalf("Open of another application's bbolt file: error = %v, want ErrSchemaVersion", err)
	}
}

func TestCancelledContext(t *testing.T) {
	s := openTemp(t)
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

func TestUpdateHostKeepsID(t *testing.T) {
	s := openTemp(t)
	populate(t, s, nil)
	err := s.UpdateHost(context.Background(), "host-1", func(h *store.Host) error {
		h.ID = "host-2"
		return nil
	})
	if !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("UpdateHost changing the ID: error = %v, want ErrInvalid", err)
	}
	if _, err := s.GetHost(context.Background(), "host-2"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("host-2 exists after a refused update: %v", err)
	}
}

// TestDamagedPages overwrites one page at a time of a populated store: Open
// either refuses the file or the requests meeting the bad page fail with
// ErrCorrupt; nothing panics.
func TestDamagedPages(t *testing.T) {
	valid := filepath.Join(t.TempDir(), "valid.db")
	s, err := Open(valid, Options{})
	if err != nil {
		t.Fatal(err)
	}
	populate(t, s, someItems(t, 2000))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	good, err := os.ReadFile(valid)
	if err != nil {
		t.Fatal(err)
	}
	const pageSize = 4096
	refused, failed := 0, 0
	for pg := 2; pg < len(good)/pageSize; pg += 3 {
		damaged := bytes.Clone(good)
		for i := pg * pageSize; i < (pg+1)*pageSize; i++ {
			damaged[i] = 0xab
		}
		path := filepath.Join(t.TempDir(), "qinfra.db")
		if err := os.WriteFile(path, damaged, 0o600); err != nil {
			t.Fatal(err)
		}
		s, err := Open(path, Options{})
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("page %d: Open error = %v, want ErrCorrupt", pg, err)
			}
			refused++
			continue
		}
		ctx := context.Background()
		var errs []error
		_, err = s.ListItems(ctx, "host-1", "")
		errs = append(errs, err)
		_, err = s.CountItems(ctx, "host-1")
		errs = append(errs, err)
		_, err = s.ListHosts(ctx)
		errs = append(errs, err)
		_, err = s.ApplyInventory(ctx, &store.InventoryUpdate{HostID: "host-1", SpoolID: "sp", Seq: 2,
			Upserts: []*commonv1.Item{testPkg(t, "pkg00007", "2.0")}, ReceivedAt: now})
		errs = append(errs, err)
		for _, err := range errs {
			if err != nil && !errors.Is(err, ErrCorrupt) {
				t.Fatalf("page %d: error = %v, want nil or ErrCorrupt", pg, err)
			}
			if err != nil {
				failed++
			}
		}
		// Close may complain about what it finds too; it must not hang.
		_ = s.Close()
	}
	t.Logf("%d damaged files refused by Open, %d requests failed with ErrCorrupt", refused, failed)
	if failed == 0 {
		t.Fatal("no request met a damaged page: the test does not test anything")
	}
}

func TestUpdateHostCallerPanic(t *testing.T) {
	s := openTemp(t)
	populate(t, s, nil)
	func() {
		defer func() {
			if r := recover(); r != "caller bug" {
				t.Fatalf("recovered %v, want the callback's own panic", r)
			}
		}()
		_ = s.UpdateHost(context.Background(), "host-1", func(h *store.Host) error {
			h.Hostname = "changed"
			panic("caller bug")
		})
	}()
	// The transaction was rolled back and the store is usable.
	h, err := s.GetHost(context.Background(), "host-1")
	if err != nil || h.Hostname != "web-1" {
		t.Fatalf("after a panicking update: host %+v, %v", h, err)
	}
	if err := s.UpdateHost(context.Background(), "host-1", func(*store.Host) error { return nil }); err != nil {
		t.Fatal(err)
	}
}

// updateFile runs fn in a read-write transaction on the closed store file
// at path, opened as bbolt alone.
func updateFile(t *testing.T, path string, fn func(tx *bolt.Tx) error) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Update(fn); err != nil {
		t.Fatal(err)
	}
}
