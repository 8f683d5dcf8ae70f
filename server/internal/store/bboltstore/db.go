// Package bboltstore is the embedded, single-node store of qinfra-server: one
// bbolt file holding hosts, tokens, inventories, their history, commands and
// the audit log.
//
// Every method runs inside one db.Update or db.View callback, so each is
// atomic and no transaction escapes the store. bbolt allows one writer at a
// time; readers never block.
//
// # Layout
//
// Top-level buckets, schema version 4:
//
//	meta                     "schema_version" → uint64, big-endian
//	                         "chunk_salt" → 16 random bytes (see sets.go)
//	                         "audit_pruned" → JSON of the last pruned audit entry
//	                         "drift_index_version" → uint64, the drift indexes' version (baselines.go)
//	hosts                    host ID → JSON host record (OS facts as proto bytes)
//	enrollment_tokens        token ID → JSON token record
//	enrollment_token_hashes  SHA-256 of the secret → token ID
//	api_tokens               token ID → JSON token record
//	api_token_hashes         SHA-256 of the secret → token ID
//	inventory                host ID → JSON stream state (spool, seq, accumulator)
//	overlays                 host ID → base ID and the host's differences from it, blobs inline (overlay.go)
//	bases                    base ID → chunk index: first item key of a chunk → chunk ID
//	base_refs                base ID → uint64 count of hosts' references
//	chunks                   chunk ID → the chunk's entries (item key → blob ID)
//	chunk_refs               chunk ID → uint64 count of bases' references
//	blobs                    blob ID → proto Item without kind and key
//	blob_refs                blob ID → uint64 count of chunks' references
//	history                  host ID → bucket: time + change number → JSON item change
//	history_by_time          time + change number → host ID
//	commands                 command ID → JSON command record
//	commands_by_host         host ID → bucket: creation time + command ID → nothing
//	commands_unfinished      host ID → bucket: creation time + command ID → nothing
//	commands_by_deadline     deadline + command ID → nothing (unfinished commands)
//	audit                    seq, uint64 big-endian → JSON audit entry
//
// Item keys are kind + "\x00" + key; times in keys are timeKey's 8 bytes.
// Per-host buckets hold no buckets, so bbolt stores a small one inline in
// its parent's page rather than in a page of its own.
// Inventories are content-addressed (sets.go): 1,000 hosts built from one
// image share the chunks and blobs of their common packages.
//
// Version 3 kept overlays naming their blobs by ID, counted in blob_refs;
// version 2 a chunk index per host, in a bucket under inventory_chunks. A
// read-write Open converts both (migrate.go).
//
// Version 1 kept every host's items as full copies; files of that version
// (written only by development builds) are refused, not converted.
package bboltstore

import (
	"bytes"
	"context"
	"crypto/rand"
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

	commonv1 "github.com/quantumlayer/qinfra/proto/gen/qinfra/common/v1"
	"github.com/quantumlayer/qinfra/server/internal/store"
)

// SchemaVersion is the bucket layout this package reads and writes. Open
// refuses a file with another version.
const SchemaVersion = 4

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
	bucketChunks        = []byte("chunks")
	bucketChunkRefs     = []byte("chunk_refs")
	bucketBlobs         = []byte("blobs")
	bucketBlobRefs      = []byte("blob_refs")
	bucketHistory       = []byte("history")
	bucketHistoryByTime = []byte("history_by_time")
	bucketCommands      = []byte("commands")
	bucketCmdByHost     = []byte("commands_by_host")
	bucketCmdUnfinished = []byte("commands_unfinished")
	bucketCmdByDeadline = []byte("commands_by_deadline")
	keySchemaVersion    = []byte("schema_version")
	keyChunkSalt        = []byte("chunk_salt")
	keyAuditPruned      = []byte("audit_pruned")
)

// topBuckets are created when a store is initialised.
var topBuckets = [][]byte{
	bucketMeta, bucketHosts, bucketEnrollTokens, bucketEnrollHashes,
	bucketAPITokens, bucketAPIHashes, bucketInventory, bucketAudit,
	bucketOverlays, bucketBases, bucketBaseRefs,
	bucketChunks, bucketChunkRefs, bucketBlobs, bucketBlobRefs,
	bucketHistory, bucketHistoryByTime,
	bucketCommands, bucketCmdByHost, bucketCmdUnfinished, bucketCmdByDeadline,
}

// Options configures Open.
type Options struct {
	// LockTimeout is how long Open waits for another process to release
	// the file lock before failing with ErrLocked. Zero means
	// DefaultLockTimeout; a negative value fails at once.
	LockTimeout time.Duration
	// Logger receives the store's log records; nil discards them.
	Logger *slog.Logger
	// ReadOnly opens an existing file for reading only, under a shared
	// lock: Open neither creates nor changes the file, every write fails,
	// and it waits (see LockTimeout) while a read-write Open holds the
	// file, as a running qinfra-server does. Offline backups use it.
	ReadOnly bool
}

// Store is a store.Store on a bbolt file. It is safe for concurrent use.
type Store struct {
	db     *bolt.DB
	path   string
	logger *slog.Logger
	// salt keys the chunk boundaries of inventories (sets.go); it is
	// fixed when the file is created.
	salt []byte
	// chunks caches decoded inventory chunks for ListItems.
	chunks *chunkCache[*commonv1.Item]
	// entries caches decoded chunk entries for reads and updates.
	entries *chunkCache[entry]
	// mru lists recently used bases, the candidates for a host's base.
	mru *baseMRU
}

// chunkCacheItems bounds the decoded items kept in memory (about twice
// this many at most): enough for the shared chunks of dozens of images.
const chunkCacheItems = 200_000

var _ store.Store = (*Store)(nil)

// Open opens or creates the store file at path. It fails with an error
// wrapping ErrLocked when another process holds the file, ErrCorrupt when
// the file is not a readable bbolt database, and ErrSchemaVersion when its
// layout is not SchemaVersion or not a qinfra store. Commits are fsynced:
// an acknowledged write survives a crash.
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
	if opts.ReadOnly {
		// bbolt would try to initialise an empty file, and fail to write.
		if fi, err := os.Stat(path); err == nil && fi.Size() == 0 {
			return nil, fmt.Errorf("open store %s: %w: the file is empty", path, ErrCorrupt)
		}
	}
	db, err := openBolt(path, timeout, opts.ReadOnly)
	if err != nil {
		return nil, err
	}
	var created bool
	var salt []byte
	if opts.ReadOnly {
		salt, err = checkSchema(db)
	} else {
		created, salt, err = initSchema(db)
	}
	if err == nil && !opts.ReadOnly {
		err = indexDrift(db, logger)
	}
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	logger.Info("store opened", "path", path, "schema_version", SchemaVersion, "created", created, "read_only", opts.ReadOnly)
	// bbolt waits up to MaxBatchDelay (10 ms by default) for more calls
	// to join a group commit. A commit's fsync takes a few milliseconds
	// here, so 2 ms still gathers the concurrent writes of a busy server
	// while a lone agent's delta is not held up by 10 ms.
	db.MaxBatchDelay = 2 * time.Millisecond
	return &Store{db: db, path: path, logger: logger, salt: salt,
		chunks:  newChunkCache[*commonv1.Item](chunkCacheItems),
		entries: newChunkCache[entry](chunkCacheItems),
		mru:     &baseMRU{},
	}, nil
}

// openBolt opens the bbolt file, turning bbolt's errors and panics on a
// damaged file into errors that say what is wrong.
func openBolt(path string, timeout time.Duration, readOnly bool) (db *bolt.DB, err error) {
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
		Timeout:  timeout,
		NoSync:   false,
		ReadOnly: readOnly,
		OpenFile: func(name string, flag int, perm os.FileMode) (*os.File, error) {
			f, err := os.OpenFile(name, flag, perm)
			file = f
			return f, err
		},
	})
	switch {
	case err == nil:
		if err := checkSize(db, file); err != nil {
			_ = db.Close()
			return nil, fmt.Errorf("open store %s: %w", path, err)
		}
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

// checkSize refuses a file shorter than its pages, a truncated copy say:
// reading a page past the end of the mapped file is a fault (SIGBUS) that
// no recover catches.
func checkSize(db *bolt.DB, file *os.File) error {
	fi, err := file.Stat()
	if err != nil {
		return err
	}
	return db.View(func(tx *bolt.Tx) error {
		if need := tx.Size(); need > fi.Size() {
			return fmt.Errorf("%w: the file is %d bytes long, its pages need %d: is it truncated?", ErrCorrupt, fi.Size(), need)
		}
		return nil
	})
}

// initSchema creates the buckets of a new file, or checks the schema
// version of an existing one. It reports whether the file was new, and
// returns the chunk salt.
func initSchema(db *bolt.DB) (created bool, salt []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			created, salt, err = false, nil, fmt.Errorf("%w: %v", ErrCorrupt, r)
		}
	}()
	err = db.Update(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketMeta) != nil {
			if err := migrateSchema(tx); err != nil {
				return err
			}
			var err error
			salt, err = checkTx(tx)
			return err
		}
		if err := checkEmpty(tx); err != nil {
			return err
		}
		for _, name := range topBuckets {
			if _, err := tx.CreateBucket(name); err != nil {
				return fmt.Errorf("create bucket %s: %w", name, err)
			}
		}
		salt = make([]byte, 16)
		if _, err := rand.Read(salt); err != nil {
			return fmt.Errorf("chunk salt: %w", err)
		}
		meta := tx.Bucket(bucketMeta)
		if err := meta.Put(keyChunkSalt, salt); err != nil {
			return err
		}
		created = true
		return meta.Put(keySchemaVersion, u64(SchemaVersion))
	})
	return created, salt, err
}

// checkSchema checks the schema of a file opened read-only and returns
// its chunk salt.
func checkSchema(db *bolt.DB) (salt []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			salt, err = nil, fmt.Errorf("%w: %v", ErrCorrupt, r)
		}
	}()
	err = db.View(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketMeta) == nil {
			if err := checkEmpty(tx); err != nil {
				return err
			}
			return fmt.Errorf("%w: the file is an empty bbolt database, not a qinfra store", ErrSchemaVersion)
		}
		var err error
		salt, err = checkTx(tx)
		return err
	})
	return salt, err
}

// checkEmpty refuses a database without a meta bucket that holds other
// buckets: another application's file.
func checkEmpty(tx *bolt.Tx) error {
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
	return nil
}

// checkTx checks the schema version and buckets of an existing store and
// returns a copy of its chunk salt.
func checkTx(tx *bolt.Tx) ([]byte, error) {
	meta := tx.Bucket(bucketMeta)
	v := meta.Get(keySchemaVersion)
	if len(v) != 8 {
		return nil, fmt.Errorf("%w: schema version record is missing or %d bytes long", ErrSchemaVersion, len(v))
	}
	switch version := binary.BigEndian.Uint64(v); {
	case version > SchemaVersion:
		return nil, fmt.Errorf("%w: schema version %d is newer than the %d this qinfra-server supports; run a newer release", ErrSchemaVersion, version, SchemaVersion)
	case version == 1:
		// Only development builds wrote version 1: nothing to migrate.
		return nil, fmt.Errorf("%w: schema version 1 (a development build's layout, with a full copy of every host's items) is not supported by this release, which needs version %d; "+
			"move the file aside and let qinfra-server create a new store (agents resend their full inventories), or open it with the build that wrote it", ErrSchemaVersion, SchemaVersion)
	case version == 2 || version == 3:
		// A read-write Open has converted it already.
		return nil, fmt.Errorf("%w: schema version %d is converted to %d by a read-write open; start qinfra-server on the file once first", ErrSchemaVersion, version, SchemaVersion)
	case version < SchemaVersion:
		return nil, fmt.Errorf("%w: schema version %d has no migration to %d", ErrSchemaVersion, version, SchemaVersion)
	}
	for _, name := range topBuckets {
		if tx.Bucket(name) == nil {
			return nil, fmt.Errorf("%w: bucket %s is missing", ErrCorrupt, name)
		}
	}
	salt := meta.Get(keyChunkSalt)
	if len(salt) != 16 {
		return nil, fmt.Errorf("%w: chunk salt is missing or %d bytes long", ErrCorrupt, len(salt))
	}
	return bytes.Clone(salt), nil
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

// Check verifies the consistency of every page of the file, in one read
// transaction: each page reachable once, none both used and free. It
// returns an error wrapping ErrCorrupt for the first problem found.
func (s *Store) Check(ctx context.Context) error {
	err := s.view(ctx, func(tx *bolt.Tx) error {
		var first error
		n := 0
		// Drain the channel, so Check's goroutine ends.
		for err := range tx.Check() {
			if first == nil {
				first = err
			}
			n++
		}
		if first != nil {
			return fmt.Errorf("%w: %d problems, the first: %w", ErrCorrupt, n, first)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("check store %s: %w", s.path, err)
	}
	return nil
}

// appendFill is the FillPercent of the buckets whose keys mostly grow (a
// sequence or a time first): drift, drift_resolved, drift_by_host's host
// buckets, audit, history's host buckets and history_by_time. bbolt splits
// a full page at its bucket's FillPercent, 50% by default, which suits
// random inserts; with growing keys the left half is never written again,
// so every page but the last stays half empty (98,520 drifts took 85 MB,
// 47% full). Splitting at 90% leaves pages 90% full and 10% for values
// that grow in place (a drift resolved, updated or accepted). A bucket
// handle's FillPercent lasts for its transaction only: every transaction
// that writes one of these buckets sets it.
const appendFill = 0.9

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

// batch is update for the hot paths (inventories, command results, host
// touches): concurrent calls from many agent streams share one transaction
// and one fsync (bbolt's group commit), which turns a per-message disk
// flush into a per-batch one. fn may run more than once — bbolt re-runs a
// failed call on its own — so it must only change the transaction and
// variables it assigns afresh.
func (s *Store) batch(ctx context.Context, fn func(*bolt.Tx) error) (err error) {
	if err := ctx.Err(); err != nil {
		return err
	}
	defer s.recoverCorrupt(&err)
	return s.db.Batch(func(tx *bolt.Tx) error {
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
