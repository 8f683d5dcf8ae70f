package pki_test

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/quantumlayer/qinfra/pkg/pki"
)

func TestWriteFileAtomic(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "secret.key")

	checkFile := func(want string, perm os.FileMode) {
		t.Helper()
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != want {
			t.Fatalf("content = %q, want %q", got, want)
		}
		if runtime.GOOS != "windows" {
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != perm {
				t.Fatalf("mode = %v, want %v", fi.Mode().Perm(), perm)
			}
		}
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if e.Name() != filepath.Base(path) {
				t.Fatalf("stray file %q left in the directory", e.Name())
			}
		}
	}

	if err := pki.WriteFileAtomic(path, []byte("first"), 0o600); err != nil {
		t.Fatal(err)
	}
	checkFile("first", 0o600)

	// Overwriting replaces the content and the mode. 0o666 would be cut
	// down by a typical umask under os.WriteFile; here it is exact.
	if err := pki.WriteFileAtomic(path, []byte("second, longer content"), 0o666); err != nil {
		t.Fatal(err)
	}
	checkFile("second, longer content", 0o666)

	if err := pki.WriteFileAtomic(path, nil, 0o640); err != nil {
		t.Fatal(err)
	}
	checkFile("", 0o640)
}

func TestWriteFileAtomicErrors(t *testing.T) {
	dir := t.TempDir()

	if err := pki.WriteFileAtomic(filepath.Join(dir, "missing", "f"), []byte("x"), 0o600); err == nil {
		t.Error("write into a missing directory succeeded")
	}

	// The rename fails when the target is a non-empty directory; the
	// temporary file must not be left behind.
	target := filepath.Join(dir, "target")
	if err := os.MkdirAll(filepath.Join(target, "child"), 0o700); err != nil {
		t.Fatal(err)
	}
	err := pki.WriteFileAtomic(target, []byte("x"), 0o600)
	if err == nil || !strings.Contains(err.Error(), target) {
		t.Fatalf("write over a directory: err = %v, want an error naming the path", err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Fatalf("directory holds %d entries after a failed write, want only %q", len(entries), "target")
	}
}

func TestWriteFileAtomicRelative(t *testing.T) {
	t.Chdir(t.TempDir())
	if err := pki.WriteFileAtomic("plain", []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile("plain"); err != nil || string(b) != "x" {
		t.Fatalf("ReadFile = %q, %v", b, err)
	}
}
