package bboltstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/quantumlayer/qinfra/pkg/inventory"
	commonv1 "github.com/quantumlayer/qinfra/proto/gen/qinfra/common/v1"
	"github.com/quantumlayer/qinfra/server/internal/store"
)

// backupFile backs s up to a new file and returns its path.
func backupFile(t testing.TB, s *Store) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "backup.db")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Backup(f); err != nil {
		t.Fatalf("Backup: %v", err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

func restoreFile(t testing.TB, src, dst string, opts RestoreOptions) (*RestoreResult, error) {
	t.Helper()
	f, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	return Restore(context.Background(), f, dst, opts)
}

// TestRestoreDrill backs up a store of 10,000 hosts, each with ~20 items
// drawn from a few shared sets, restores it into a new directory and
// checks every host's items; it logs how long backup and restore took.
func TestRestoreDrill(t *testing.T) {
	hosts := 10_000
	if raceEnabled || testing.Short() {
		hosts = 1_000
	}
	ctx := context.Background()
	s := openFast(t)
	enrollBench(t, s, hosts)
	// Five images of 18 packages, sharing half; each host has one image,
	// and 2 items of its own.
	images := make([][]*commonv1.Item, 5)
	for i := range images {
		for j := range 18 {
			v := "1.0"
			if j%2 == 1 {
				v = fmt.Sprintf("1.%d", i)
			}
			images[i] = append(images[i], imagePkg(t, fmt.Sprintf("base-%02d", j), v))
		}
	}
	type want struct {
		hash []byte
		n    int
	}
	wants := make([]want, hosts)
	start := time.Now()
	for i := range hosts {
		items := append(images[i%len(images)][:18:18], ownPackages(t, i, 1)[0],
			sealed(t, &commonv1.Item{Kind: inventory.KindFile, Key: "/etc/hostname",
				Body: &commonv1.Item_File{File: &commonv1.File{Path: "/etc/hostname", Type: "file", Sha256: fmt.Sprintf("%064x", i)}}}))
		u := &store.InventoryUpdate{HostID: fmt.Sprintf("host-%05d", i), SpoolID: "sp", Seq: 1, Full: true,
			Upserts: items, SetHash: inventory.SetOf(items).Hash(), ReceivedAt: now}
		if out, err := s.ApplyInventory(ctx, u); err != nil || out != store.Applied {
			t.Fatalf("ApplyInventory = %v, %v", out, err)
		}
		wants[i] = want{u.SetHash, len(items)}
	}
	t.Logf("built %d hosts in %s", hosts, time.Since(start).Round(time.Millisecond))

	start = time.Now()
	backup := backupFile(t, s)
	backupTook := time.Since(start)
	fi, err := os.Stat(backup)
	if err != nil {
		t.Fatal(err)
	}

	dir := filepath.Join(t.TempDir(), "new-data-dir")
	path := filepath.Join(dir, "qinfra.db")
	start = time.Now()
	res, err := restoreFile(t, backup, path, RestoreOptions{})
	if err != nil {
		t.Fatalf("Restore: %v", err)
	}
	restoreTook := time.Since(start)
	t.Logf("backup of %d hosts: %d KiB in %s; restore (copy, fsync, open, page check, rename): %s",
		hosts, fi.Size()>>10, backupTook.Round(time.Millisecond), restoreTook.Round(time.Millisecond))
	if res.Hosts != hosts+0 || res.Bytes != fi.Size() || res.Replaced != "" {
		t.Fatalf("Restore = %+v, want %d hosts, %d bytes, nothing replaced", res, hosts, fi.Size())
	}

	r := openAt(t, path)
	start = time.Now()
	list, err := r.ListHosts(ctx)
	if err != nil || len(list) != hosts {
		t.Fatalf("ListHosts of the restored store = %d hosts, %v; want %d", len(list), err, hosts)
	}
	for i := range hosts {
		id := fmt.Sprintf("host-%05d", i)
		if list[i].ID != id {
			t.Fatalf("restored host %d is %s, want %s", i, list[i].ID, id)
		}
		st, err := r.GetStreamState(ctx, id)
		if err != nil || st.Items != wants[i].n || !bytes.Equal(st.SetHash, wants[i].hash) || st.LastSeq != 1 {
			t.Fatalf("restored host %s: state %+v, %v; want %d items, set hash %x", id, st, err, wants[i].n, wants[i].hash)
		}
		counts, err := r.CountItems(ctx, id)
		if err != nil || counts[inventory.KindPackage] != wants[i].n-1 || counts[inventory.KindFile] != 1 {
			t.Fatalf("restored host %s: counts %v, %v", id, counts, err)
		}
		if i%997 == 0 {
			items, err := r.ListItems(ctx, id, "")
			if err != nil || !bytes.Equal(inventory.SetOf(items).Hash(), wants[i].hash) {
				t.Fatalf("restored host %s: items do not hash to the set hash (%v)", id, err)
			}
		}
	}
	t.Logf("checked every restored host in %s", time.Since(start).Round(time.Millisecond))
	checkSets(t, r)
}

func TestRestoreRefusals(t *testing.T) {
	s := openTemp(t)
	items := someItems(t, 30)
	populate(t, s, items)
	backup := backupFile(t, s)
	dir := t.TempDir()
	path := filepath.Join(dir, "qinfra.db")

	// Something that is not a store, or not a whole one, is refused and
	// leaves nothing behind.
	good, err := os.ReadFile(backup)
	if err != nil {
		t.Fatal(err)
	}
	for name, content := range map[string][]byte{
		"text":      []byte("not a database\n"),
		"truncated": good[:len(good)/2],
		"empty":     nil,
	} {
		src := filepath.Join(t.TempDir(), name)
		if err := os.WriteFile(src, content, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := restoreFile(t, src, path, RestoreOptions{}); err == nil {
			t.Fatalf("Restore of %s succeeded", name)
		} else if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrSchemaVersion) {
			t.Fatalf("Restore of %s: error = %v, want ErrCorrupt or ErrSchemaVersion", name, err)
		}
		if entries, _ := os.ReadDir(dir); len(entries) != 0 {
			t.Fatalf("a refused restore left %v", entries)
		}
	}
	older := filepath.Join(t.TempDir(), "v1.db")
	if err := os.WriteFile(older, good, 0o600); err != nil {
		t.Fatal(err)
	}
	setSchemaVersion(t, older, 1)
	if _, err := restoreFile(t, older, path, RestoreOptions{}); !errors.Is(err, ErrSchemaVersion) {
		t.Fatalf("Restore of a version 1 store: error = %v, want ErrSchemaVersion", err)
	}

	if _, err := restoreFile(t, backup, path, RestoreOptions{}); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	// Not over an existing store, unless forced.
	if _, err := restoreFile(t, backup, path, RestoreOptions{}); !errors.Is(err, ErrExists) {
		t.Fatalf("Restore over a store: error = %v, want ErrExists", err)
	}
	// Not over a store in use, even forced.
	inUse := openAt(t, path)
	if _, err := restoreFile(t, backup, path, RestoreOptions{Force: true}); !errors.Is(err, ErrLocked) {
		t.Fatalf("Restore over a store in use: error = %v, want ErrLocked", err)
	}
	if err := inUse.Close(); err != nil {
		t.Fatal(err)
	}
	// Forced over a damaged store: the old file is kept.
	if err := os.WriteFile(path, []byte("damaged"), 0o600); err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 3, 2, 3, 4, 5, 0, time.UTC)
	res, err := restoreFile(t, backup, path, RestoreOptions{Force: true, Now: func() time.Time { return at }})
	if err != nil {
		t.Fatalf("forced Restore: %v", err)
	}
	if want := path + ".pre-restore-20260302T030405Z"; res.Replaced != want {
		t.Fatalf("Replaced = %q, want %q", res.Replaced, want)
	}
	if old, err := os.ReadFile(res.Replaced); err != nil || string(old) != "damaged" {
		t.Fatalf("the replaced store is %q, %v", old, err)
	}
	checkPopulated(t, openAt(t, path), items)
}

func TestReadOnlyOpen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "qinfra.db")
	if _, err := Open(path, Options{ReadOnly: true}); err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("read-only Open of a missing file: error = %v", err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("read-only Open created the file")
	}
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	populate(t, s, someItems(t, 10))

	// While a read-write Open holds the file, a read-only one waits and
	// fails.
	if _, err := Open(path, Options{ReadOnly: true, LockTimeout: 100 * time.Millisecond}); !errors.Is(err, ErrLocked) {
		t.Fatalf("read-only Open of a file in use: error = %v, want ErrLocked", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// Two readers share it; writes fail.
	r1 := openReadOnly(t, path)
	r2 := openReadOnly(t, path)
	if items, err := r2.ListItems(context.Background(), "host-1", ""); err != nil || len(items) != 10 {
		t.Fatalf("ListItems read-only = %d, %v", len(items), err)
	}
	if err := r1.AppendAudit(context.Background(), &store.AuditEntry{Action: "x"}); err == nil {
		t.Fatal("AppendAudit on a read-only store succeeded")
	}
	if err := r1.Check(context.Background()); err != nil {
		t.Fatalf("Check: %v", err)
	}
	if _, err := r1.Backup(&bytes.Buffer{}); err != nil {
		t.Fatalf("Backup of a read-only store: %v", err)
	}
}

func openReadOnly(t *testing.T, path string) *Store {
	t.Helper()
	s, err := Open(path, Options{ReadOnly: true, LockTimeout: time.Second})
	if err != nil {
		t.Fatalf("read-only Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}
