package pki

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"syscall"
)

// WriteFileAtomic writes data to path so that a reader sees either the old
// file or the complete new one, never a torn write, even across a crash.
// It writes a temporary file in the same directory (a rename is only atomic
// within one file system), syncs it, renames it over path and syncs the
// directory so the rename itself is durable.
//
// The file gets exactly perm, not perm masked by the umask as with
// os.WriteFile. The temporary file is created with mode 0600, so a private
// key is never readable by others, not even for a moment. On Windows perm
// only controls the read-only attribute and the directory is not synced.
func WriteFileAtomic(path string, data []byte, perm os.FileMode) (err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			_ = f.Close() // may already be closed; the write error matters more
			_ = os.Remove(tmp)
		}
	}()
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("write %s: sync: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: close: %w", path, err)
	}
	// Chmod by name rather than through the handle: it works the same on
	// every platform and, unlike the mode given to open, ignores the umask.
	if err := os.Chmod(tmp, perm); err != nil {
		return fmt.Errorf("write %s: chmod: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: rename: %w", path, err)
	}
	if err := syncDir(dir); err != nil {
		// The file is in place; only its durability across a power loss is
		// in doubt. Still report it, since callers write keys with this.
		return fmt.Errorf("write %s: sync directory: %w", path, err)
	}
	return nil
}

// syncDir flushes a directory's entries to disk, making a rename in it
// durable. Windows cannot open a directory for syncing, and NTFS journals
// renames, so there it does nothing.
func syncDir(dir string) error {
	if runtime.GOOS == "windows" {
		return nil
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	// Some file systems (and some CI sandboxes) do not support syncing a
	// directory and say so with ENOTSUP or EINVAL; that is not a reason to
	// fail a write that has happened.
	if errors.Is(err, errors.ErrUnsupported) || errors.Is(err, syscall.EINVAL) {
		return nil
	}
	return err
}
