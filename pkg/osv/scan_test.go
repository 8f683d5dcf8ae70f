package osv

import (
	"archive/zip"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

// writeFiles creates files (name → content) under a new directory.
func writeFiles(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// writeZip creates a zip archive holding files.
func writeZip(t *testing.T, path string, files map[string]string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	zw := zip.NewWriter(f)
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		w, err := zw.Create(n)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write([]byte(files[n])); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

func record(id, modified string, extra ...string) string {
	return fmt.Sprintf(`{"id": %q, "modified": %q, "affected": [{"package": {"ecosystem": "Debian:12", "name": "openssl"},
	  "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "3.0.11-1~deb12u1"}]}]}]%s}`, id, modified, strings.Join(extra, ""))
}

func collect(t *testing.T, path string) (ok []string, bad map[string]string) {
	t.Helper()
	bad = map[string]string{}
	err := Scan(context.Background(), path, func(e Entry) error {
		if e.Err != nil {
			bad[e.Path] = e.Err.Error()
		} else {
			ok = append(ok, e.Record.ID)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return ok, bad
}

func TestScanDirectory(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"a/DSA-1.json":       record("DSA-1", "2024-01-01T00:00:00Z"),
		"b/DSA-2.JSON":       record("DSA-2", "2024-01-01T00:00:00Z"),
		"b/broken.json":      `{"id": "DSA-3"`,
		"b/no-modified.json": `{"id": "DSA-4"}`,
		"b/notes.txt":        "not a record",
		".git/DSA-5.json":    record("DSA-5", "2024-01-01T00:00:00Z"),
	})
	writeZip(t, filepath.Join(dir, "c", "Debian.zip"), map[string]string{
		"DSA-6.json": record("DSA-6", "2024-01-01T00:00:00Z"),
		"bad.json":   "[]",
		"README.md":  "skipped",
		"sub/":       "",
		"DSA-7.json": record("DSA-7", "2024-01-01T00:00:00Z"),
	})
	ok, bad := collect(t, dir)
	if want := []string{"DSA-1", "DSA-2", "DSA-6", "DSA-7"}; strings.Join(ok, ",") != strings.Join(want, ",") {
		t.Errorf("records %v, want %v", ok, want)
	}
	wantBad := map[string]string{
		filepath.Join(dir, "b", "broken.json"):              "decode JSON",
		filepath.Join(dir, "b", "no-modified.json"):         "modified is missing",
		filepath.Join(dir, "c", "Debian.zip") + "!bad.json": "decode JSON",
	}
	if len(bad) != len(wantBad) {
		t.Errorf("invalid files %v", bad)
	}
	for p, reason := range wantBad {
		if !strings.Contains(bad[p], reason) {
			t.Errorf("%s: %q, want %q", p, bad[p], reason)
		}
	}
}

func TestScanZipAndFile(t *testing.T) {
	dir := t.TempDir()
	zipPath := filepath.Join(dir, "all.zip")
	writeZip(t, zipPath, map[string]string{"A-1.json": record("A-1", "2024-01-01T00:00:00Z")})
	if ok, bad := collect(t, zipPath); len(ok) != 1 || len(bad) != 0 {
		t.Errorf("zip: %v %v", ok, bad)
	}
	ok, bad := collect(t, filepath.Join("testdata", "alma", "ALSA-2022-5244.json"))
	if len(ok) != 1 || ok[0] != "ALSA-2022:5244" || len(bad) != 0 {
		t.Errorf("file: %v %v", ok, bad)
	}
	notZip := filepath.Join(dir, "fake.zip")
	os.WriteFile(notZip, []byte("PK but not really"), 0o644)
	if ok, bad := collect(t, notZip); len(ok) != 0 || len(bad) != 1 {
		t.Errorf("corrupt zip: %v %v", ok, bad)
	}
	if err := Scan(context.Background(), filepath.Join(dir, "missing"), func(Entry) error { return nil }); err == nil {
		t.Error("a missing source is an error")
	}
}

func TestScanStops(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"1.json": record("A-1", "2024-01-01T00:00:00Z"),
		"2.json": record("A-2", "2024-01-01T00:00:00Z"),
	})
	stop := errors.New("stop")
	n := 0
	err := Scan(context.Background(), dir, func(Entry) error { n++; return stop })
	if !errors.Is(err, stop) || n != 1 {
		t.Errorf("callback error: %v after %d", err, n)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := Scan(ctx, dir, func(Entry) error { return nil }); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
}

type memStore map[string]time.Time

func (m memStore) Modified(id string) (time.Time, bool) { t, ok := m[id]; return t, ok }

func TestImportIncremental(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"1.json": record("A-1", "2024-01-01T00:00:00Z"),
		"2.json": record("A-2", "2024-01-01T00:00:00Z"),
		"3.json": `{"id": "A-3"}`,
	})
	store := memStore{}
	put := func(r *Record) error { store[r.ID] = r.Modified; return nil }
	rep, err := Import(context.Background(), dir, store, put)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Files != 3 || rep.Added != 2 || rep.Updated != 0 || rep.Unchanged != 0 || len(rep.Invalid) != 1 {
		t.Fatalf("first import: %+v", rep)
	}
	if p := rep.Invalid[0].Path; !strings.HasSuffix(p, "3.json") || !strings.Contains(rep.Invalid[0].Error(), "modified is missing") {
		t.Fatalf("invalid: %v", rep.Invalid[0])
	}

	// Again, unchanged: nothing is put.
	var puts int
	rep, err = Import(context.Background(), dir, store, func(r *Record) error { puts++; return put(r) })
	if err != nil || rep.Unchanged != 2 || rep.Added+rep.Updated != 0 || puts != 0 {
		t.Fatalf("second import: %+v %v puts %d", rep, err, puts)
	}

	// A newer A-1, withdrawn; an older A-2 (ignored).
	os.WriteFile(filepath.Join(dir, "1.json"), []byte(record("A-1", "2024-02-01T00:00:00Z", `, "withdrawn": "2024-02-01T00:00:00Z"`)), 0o644)
	os.WriteFile(filepath.Join(dir, "2.json"), []byte(record("A-2", "2023-12-01T00:00:00Z")), 0o644)
	var got []*Record
	rep, err = Import(context.Background(), dir, store, func(r *Record) error { got = append(got, r); return put(r) })
	if err != nil || rep.Updated != 1 || rep.Withdrawn != 1 || rep.Unchanged != 1 {
		t.Fatalf("third import: %+v %v", rep, err)
	}
	if len(got) != 1 || got[0].ID != "A-1" || !got[0].IsWithdrawn() {
		t.Fatalf("put %+v", got)
	}
}

func TestImportDuplicateIDsLatestWins(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"a.json": record("A-1", "2024-03-01T00:00:00Z"),
		"b.json": record("A-1", "2024-01-01T00:00:00Z"),
		"c.json": record("A-1", "2024-05-01T00:00:00Z"),
	})
	last := map[string]time.Time{}
	rep, err := Import(context.Background(), dir, nil, func(r *Record) error { last[r.ID] = r.Modified; return nil })
	if err != nil || rep.Added != 1 || rep.Updated != 1 || rep.Unchanged != 1 {
		t.Fatalf("%+v %v", rep, err)
	}
	if want := time.Date(2024, 5, 1, 0, 0, 0, 0, time.UTC); !last["A-1"].Equal(want) {
		t.Fatalf("kept %v", last["A-1"])
	}
}

func TestScanFollowsFileLinks(t *testing.T) {
	dir := writeFiles(t, map[string]string{"real/A-1.json": record("A-1", "2024-01-01T00:00:00Z")})
	if err := os.Symlink(filepath.Join(dir, "real", "A-1.json"), filepath.Join(dir, "link.json")); err != nil {
		t.Skip(err)
	}
	if ok, bad := collect(t, dir); len(ok) != 2 || len(bad) != 0 {
		t.Fatalf("records %v, invalid %v", ok, bad)
	}
}
