package bboltstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
)

// ErrExists means Restore found a store file where it was to put one.
var ErrExists = errors.New("a store file exists")

// RestoreOptions configures Restore.
type RestoreOptions struct {
	// Force replaces an existing store file. The file replaced is kept
	// next to it, as <name>.pre-restore-<UTC time>.
	Force bool
	// Now returns the time naming the file replaced; nil means time.Now.
	Now func() time.Time
}

// RestoreResult says what Restore did.
type RestoreResult struct {
	// Bytes is the size of the restored file.
	Bytes int64
	// Hosts is how many hosts the restored store holds.
	Hosts int
	// Replaced is where the store file Force replaced was kept; empty when
	// there was none.
	Replaced string
}

// Restore puts the backup read from r in place as the store file at path,
// for a server that is not running. It copies r to a temporary file next
// to path and fsyncs it; opens the copy read-only, which checks that it is
// a store of SchemaVersion, and checks every page of it (see Check); and
// only then renames it over path, so path is at every moment either the
// old store or the whole new one. An existing store file is refused with
// ErrExists unless opts.Force is set, and with ErrLocked while a process
// (a running qinfra-server) has it open. The directory is created if need
// be. On error the temporary file is removed and path left as it was.
func Restore(ctx context.Context, r io.Reader, path string, opts RestoreOptions) (*RestoreResult, error) {
	res, err := restore(ctx, r, path, opts)
	if err != nil {
		return nil, fmt.Errorf("restore store %s: %w", path, err)
	}
	return res, nil
}

func restore(ctx context.Context, r io.Reader, path string, opts RestoreOptions) (*RestoreResult, error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	existing, err := os.OpenFile(path, os.O_RDWR, 0)
	switch {
	case errors.Is(err, os.ErrNotExist):
		existing = nil
	case err != nil:
		return nil, err
	case !opts.Force:
		existing.Close()
		return nil, ErrExists
	}
	if existing != nil {
		// Held until the new file is in place: a server starting
		// meanwhile waits for it.
		defer existing.Close()
		if err := lockFile(existing); err != nil {
			return nil, err
		}
	}

	tmp, err := os.CreateTemp(dir, filepath.Base(path)+".restore-*")
	if err != nil {
		return nil, err
	}
	tmpPath := tmp.Name()
	placed := false
	defer func() {
		if !placed {
			_ = os.Remove(tmpPath)
		}
	}()
	n, err := io.Copy(tmp, contextReader{ctx, r})
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("copy the backup: %w", err)
	}
	hosts, err := verify(ctx, tmpPath)
	if errors.Is(err, ErrSchemaVersion) {
		// A backup of an older layout is converted, on the copy, as the
		// server's first read-write Open would convert it; a layout with
		// no conversion fails the Open again and keeps the first error.
		if upgrade(tmpPath) == nil {
			hosts, err = verify(ctx, tmpPath)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("the backup is not a usable store: %w", err)
	}
	res := &RestoreResult{Bytes: n, Hosts: hosts}
	if existing != nil {
		now := time.Now
		if opts.Now != nil {
			now = opts.Now
		}
		res.Replaced = path + ".pre-restore-" + now().UTC().Format("20060102T150405Z")
		if err := os.Link(path, res.Replaced); err != nil {
			return nil, fmt.Errorf("keep the store being replaced: %w", err)
		}
	}
	if err := os.Rename(tmpPath, path); err != nil {
		return nil, err
	}
	placed = true
	return res, syncDir(dir)
}

// upgrade opens a store file read-write, which converts an older schema,
// and closes it.
func upgrade(path string) error {
	s, err := Open(path, Options{})
	if err != nil {
		return err
	}
	return s.Close()
}

// verify opens a store file read-only, checks its pages and its
// inventories' storage (checkSetsTx) and returns its number of hosts.
func verify(ctx context.Context, path string) (int, error) {
	s, err := Open(path, Options{ReadOnly: true})
	if err != nil {
		return 0, err
	}
	defer s.Close()
	if err := s.Check(ctx); err != nil {
		return 0, err
	}
	// Every inventory adds up: bases, overlays and reference counts.
	if err := s.view(ctx, func(tx *bolt.Tx) error { return checkSetsTx(tx, s.salt) }); err != nil {
		return 0, err
	}
	hosts, err := s.ListHosts(ctx)
	if err != nil {
		return 0, err
	}
	return len(hosts), nil
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}

// contextReader stops a copy when ctx is done.
type contextReader struct {
	ctx context.Context
	r   io.Reader
}

func (c contextReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
