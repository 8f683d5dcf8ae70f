// Package bboltstore is the embedded, single-node store of qinfra-server: one
// bbolt file holding hosts, tokens, inventories and the audit log.
//
// Every method runs inside one db.Update or db.View callback, so each is
// atomic and no transaction escapes the store. bbolt allows one writer at a
// time; readers never block.
//
// # Layout
//
// Top-level buckets, schema version 1:
//
//	meta                     "schema_version" → uint64, big-endian
//	hosts                    host ID → JSON host record (OS facts as proto bytes)
//	enrollment_tokens        token ID → JSON token record
//	enrollment_token_hashes  SHA-256 of the secret → token ID
//	api_tokens               token ID → JSON token record
//	api_token_hashes         SHA-256 of the secret → token ID
//	inventory                host ID → bucket:
//	                           "state" → JSON stream state (spool, seq, accumulator)
//	                           "items" → bucket: kind + "\x00" + key → proto Item
//	audit                    seq, uint64 big-endian → JSON audit entry
package bboltstore

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"runtime/debug"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/quantumlayer/qinfra/server/internal/store"
)

// SchemaVersion is the bucket layout this package reads and writes. Open
// refuses a file with a newer version.
const SchemaVersion = 1

// DefaultLockTimeout is how long Open waits for another process to release
// the file lock when Options.LockTimeout is zero.
const DefaultLockTimeout = 5 * time.Second

// Errors returned by Open, checked with errors.Is.
var (
	// ErrLocked means another process (usually another qinfra-server on
	// the same data directory) holds the file lock.
	ErrLocked = errors.New("database file is locked by another process")
	// ErrSchemaVersion means the file's layout is one this build cannot
	// use: newer than SchemaVersion, or not a qinfra store at all.
	ErrSchemaVersion = errors.New("unsupported store schema")
	// ErrCorrupt means the file is not a bbolt database or is damaged.
	ErrCorrupt = errors.New("database file is corrupt or not a bbolt database")
)

var (
	bucketMeta          = []byte("meta")
	bucketHosts         = []byte("hosts")
	bucketEnrollTokens  = []byte("enrollment_tokens")
	bucketEnrollHashes  = []byte("enrollment_token_hashes")
	bucketAPITokens     = []byte("api_tokens")
	bucketAPIHashes     = []byte("api_token_hashes")
	bucketInventory     = []byte("inventory")
	bucketAudit         = []byte("audit")
	keySchemaVersion    = []byte("schema_version")
	keyStreamState      = []byte("state")
	bucketInventoryItem = []byte("items")
)

// topBuckets are created when a store is initialised.
var topBuckets = [][]byte{
	bucketMeta, bucketHosts, bucketEnrollTokens, bucketEnrollHashes,
	bucketAPITokens, bucketAPIHashes, bucketInventory, bucketAudit,
}

// Options configures Open.
type Options struct {
	// LockTimeout is how long Open waits for another process to release
	// the file lock before failing with ErrLocked. Zero means
	// DefaultLockTimeout; a negative value fails at once.
	LockTimeout time.Duration
	// Logger receives the store's log records; nil discards them.
	Logger *slog.Logger
}

// Store is a store.Store on a bbolt file. It is safe for concurrent use.
type Store struct {
	db     *bolt.DB
	path   string
	logger *slog.Logger
}

var _ store.Store = (*Store)(nil)

// Open opens or creates the store file at path. It fails with an error
// wrapping ErrLocked when another process holds the file, ErrCorrupt when
// the file is not a readable bbolt database, and ErrSchemaVersion when its
// layout is newer than SchemaVersion or not a qinfra store. Commits are
// fsynced: an acknowledged write survives a crash.
func Open(path string, opts Options) (*Store, error) {
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	logger = logger.With("component", "bboltstore")
	timeout := opts.LockTimeout
	if timeout == 0 {
		timeout = DefaultLockTimeout
	}
	db, err := openBolt(path, timeout)
	if err != nil {
		return nil, err
	}
	created, err := initSchema(db)
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	logger.Info("store opened", "path", path, "schema_version", SchemaVersion, "created", created)
	return &Store{db: db, path: path, logger: logger}, nil
}

// openBolt opens the bbolt file, turning bbolt's errors and panics on a
// damaged file into errors that say what is wrong.
func openBolt(path string, timeout time.Duration) (db *bolt.DB, err error) {
	var file *os.File
	defer func() {
		if r := recover(); r != nil {
			// bbolt panics on some damaged files; release the descriptor
			// (and with it the lock) it could not close itself.
			if file != nil {
				_ = file.Close()
			}
			db, err = nil, fmt.Errorf("open store %s: %w: %v", path, ErrCorrupt, r)
		}
	}()
	db, err = bolt.Open(path, 0o600, &bolt.Options{
		Timeout: timeout,
		NoSync:  false,
		OpenFile: func(name string, flag int, perm os.FileMode) (*os.File, error) {
			f, err := os.OpenFile(name, flag, perm)
			file = f
			return f, err
		},
	})
	switch {
	case err == nil:
		return db, nil
	case errors.Is(err, berrors.ErrTimeout):
		return nil, fmt.Errorf("open store %s: %w (waited %s; is another qinfra-server using this data directory?): %w",
			path, ErrLocked, timeout, err)
	case errors.As(err, new(*fs.PathError)), errors.As(err, new(syscall.Errno)):
		// The file system refused: permissions, no space, no memory to map.
		return nil, fmt.Errorf("open store %s: %w", path, err)
	default:
		// bbolt's own complaints about the content (ErrInvalid,
		// ErrChecksum, ErrVersionMismatch, "file size too small", ...).
		return nil, fmt.Errorf("open store %s: %w: %w", path, ErrCorrupt, err)
	}
}

// initSchema creates the buckets of a new file, or checks the schema
// version of an existing one. It reports whether the file was new.
func initSchema(db *bolt.DB) (created bool, err error) {
	defer func() {
		if r := recover(); r != nil {
			created, err = false, fmt.Errorf("%w: %v", ErrCorrupt, r)
		}
	}()
	err = db.Update(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if meta == nil {
			foreign := false
			if err := tx.ForEach(func([]byte, *bolt.Bucket) error {
				foreign = true
				return nil
			}); err != nil {
				return err
			}
			if foreign {
				return fmt.Errorf("%w: a bbolt database without a %q bucket is not a qinfra store", ErrSchemaVersion, bucketMeta)
			}
			for _, name := range topBuckets {
				if _, err := tx.CreateBucket(name); err != nil {
					return fmt.Errorf("create bucket %s: %w", name, err)
				}
			}
			created = true
			return tx.Bucket(bucketMeta).Put(keySchemaVersion, u64(SchemaVersion))
		}
		v := meta.Get(keySchemaVersion)
		if len(v) != 8 {
			return fmt.Errorf("%w: schema version record is missing or %d bytes long", ErrSchemaVersion, len(v))
		}
		switch version := binary.BigEndian.Uint64(v); {
		case version > SchemaVersion:
			return fmt.Errorf("%w: schema version %d is newer than the %d this qinfra-server supports; run a newer release", ErrSchemaVersion, version, SchemaVersion)
		case version < SchemaVersion:
			// Version 1 is the first: there is nothing older to migrate.
			return fmt.Errorf("%w: schema version %d has no migration to %d", ErrSchemaVersion, version, SchemaVersion)
		}
		for _, name := range topBuckets {
			if tx.Bucket(name) == nil {
				return fmt.Errorf("%w: bucket %s is missing", ErrCorrupt, name)
			}
		}
		return nil
	})
	return created, err
}

// Close closes the file and releases its lock.
func (s *Store) Close() error {
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("close store %s: %w", s.path, err)
	}
	return nil
}

// Backup writes a consistent copy of the whole database to w while the
// store stays online, and returns the number of bytes written. The copy is
// itself a store file that Open accepts. It runs in one read transaction:
// other reads and writes go on meanwhile, except a write that must grow
// the file, which waits for the backup to finish, so w should be fast.
func (s *Store) Backup(w io.Writer) (int64, error) {
	var n int64
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		n, err = tx.WriteTo(w)
		return err
	})
	if err != nil {
		return n, fmt.Errorf("backup store %s: %w", s.path, err)
	}
	return n, nil
}

// u64 encodes v big-endian, so byte order is numeric order.
func u64(v uint64) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], v)
	return b[:]
}

// update runs fn in a read-write transaction, unless ctx is done before the
// transaction starts; bbolt cannot cancel one that has.
func (s *Store) update(ctx context.Context, fn func(*bolt.Tx) error) (err error) {
	if err := ctx.Err(); err != nil {
		return err
	}
	defer s.recoverCorrupt(&err)
	return s.db.Update(func(tx *bolt.Tx) error {
		// The write lock may have taken a while to get.
		if err := ctx.Err(); err != nil {
			return err
		}
		return fn(tx)
	})
}

// view runs fn in a read-only transaction, unless ctx is done.
func (s *Store) view(ctx context.Context, fn func(*bolt.Tx) error) (err error) {
	if err := ctx.Err(); err != nil {
		return err
	}
	defer s.recoverCorrupt(&err)
	return s.db.View(fn)
}

// callerPanic carries a panic of a caller's callback through
// recoverCorrupt, which raises it again.
type callerPanic struct{ value any }

// recoverCorrupt turns a panic of bbolt, which it raises when it meets a
// damaged page, into an error wrapping ErrCorrupt, so one bad page fails
// the requests that read it rather than the whole server. bbolt has
// already rolled the transaction back.
func (s *Store) recoverCorrupt(err *error) {
	r := recover()
	if r == nil {
		return
	}
	if p, ok := r.(callerPanic); ok {
		panic(p.value)
	}
	s.logger.Error("bbolt panicked: the database file is probably damaged; restore it from a backup",
		"path", s.path, "panic", r, "stack", string(debug.Stack()))
	*err = fmt.Errorf("%w: %v", ErrCorrupt, r)
}
