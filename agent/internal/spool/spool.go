// Package spool is the agent's durable outbound queue and stream state.
//
// Every message the agent sends on its Connect stream is first given the
// next sequence number and committed (fsync) to a bbolt file; it is deleted
// only once the server acknowledges it, and re-sent in order after a
// reconnect. The file also holds the state that must move in step with the
// queue: the spool ID that scopes the sequence numbers, the last assigned
// sequence number, the inventory set the last inventory message described
// (deltas are computed against it), the count of messages dropped because
// the spool was full, and small key/values of the agent's own.
//
// The queue is bounded by bytes and by entries. When a new message does not
// fit, the oldest entries are dropped and counted exactly; the count is
// stamped into the next inventory message and kept, in case that message is
// itself lost, until the server acknowledges it.
//
// Exactness of the drop count: each dropped message is reported by exactly
// one inventory that reaches the server. Stamping a count into an inventory
// moves it from "unreported" to a per-inventory report record (the reports
// bucket, keyed by that inventory's seq), so a second inventory queued before
// the first is acknowledged carries only newer drops and the server can
// simply add the counts up. If the reporting inventory is itself dropped, its
// record's count returns to "unreported" for the next inventory; Ack removes
// the record. Entries found damaged and quarantined count as dropped too: the
// server never sees them either.
//
// A Spool is safe for concurrent use. Only one process may hold a spool file
// open; a second Open fails with ErrLocked.
package spool

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"runtime/debug"
	"strconv"
	"sync"
	"time"

	agentv1 "github.com/quantumlayer/qinfra/proto/gen/qinfra/agent/v1"
	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// Defaults applied to zero Options fields.
const (
	// DefaultMaxBytes bounds the stored size of the queued messages.
	DefaultMaxBytes int64 = 64 << 20
	// DefaultMaxEntries bounds the number of queued messages; it keeps a
	// flood of tiny messages from growing the file's B-tree without limit.
	DefaultMaxEntries = 100_000
)

// lockTimeout is how long Open waits for another process to release the
// file. It is long enough to ride out a previous agent process that is still
// exiting during a restart and short enough for a clear, prompt failure when
// a second agent is started by mistake.
const lockTimeout = 2 * time.Second

// formatVersion is the layout of the file. Open refuses a file written by a
// newer agent instead of misreading it.
const formatVersion = 1

// Quarantine bounds: damaged entries are kept for inspection, but a badly
// damaged disk must not make the corrupt bucket the largest thing in the file.
const (
	quarantineKeep     = 64
	quarantineMaxValue = 64 << 10
)

var (
	// ErrLocked is returned by Open when another process holds the spool.
	ErrLocked = errors.New("spool: file is locked by another process")
	// ErrCorrupt is returned by Open when the file is not a usable bbolt
	// database. The caller may move it aside with Recover and open afresh.
	ErrCorrupt = errors.New("spool: file is not a usable spool")
	// ErrTooLarge is returned by Append when a single message is larger than
	// the whole spool may be.
	ErrTooLarge = errors.New("spool: message larger than the spool")
	// ErrClosed is returned by every method called after Close.
	ErrClosed = errors.New("spool: closed")
)

// Bucket names.
var (
	bucketMeta    = []byte("meta")
	bucketEntries = []byte("entries")
	bucketReports = []byte("reports")
	bucketSet     = []byte("set")
	bucketKV      = []byte("kv")
	bucketCorrupt = []byte("corrupt")
)

// Keys of the meta bucket.
var (
	metaFormat       = []byte("format")
	metaID           = []byte("id")
	metaLastSeq      = []byte("last_seq")
	metaDropped      = []byte("dropped")       // dropped, not yet stamped into an inventory
	metaDroppedTotal = []byte("dropped_total") // dropped since the file was created
	metaQuarantined  = []byte("quarantined")   // entries moved to the corrupt bucket, ever
)

// Options configures a Spool. Zero fields take the defaults.
type Options struct {
	// MaxBytes bounds the sum of the stored sizes of the queued messages
	// (key plus encoded value). The bbolt file itself is larger: B-tree
	// pages are not full, and bbolt never shrinks its file.
	MaxBytes int64
	// MaxEntries bounds the number of queued messages.
	MaxEntries int
	// Logger receives warnings about repairs and dropped messages.
	Logger *slog.Logger
}

// Entry is a queued message and its sequence number.
type Entry struct {
	Seq uint64
	Msg *agentv1.ConnectRequest
}

// Stats describes the spool's contents.
type Stats struct {
	// Entries and Bytes are the queued (unacknowledged) messages and their
	// stored size.
	Entries int
	Bytes   int64
	// Dropped counts messages dropped (or quarantined) that the server has
	// not yet acknowledged hearing about: those not yet reported plus those
	// reported in inventories still unacknowledged. It returns to zero once
	// an inventory reporting them is acknowledged.
	Dropped uint64
	// DroppedUnreported is the part of Dropped that the next inventory will
	// carry.
	DroppedUnreported uint64
	// DroppedTotal counts every message dropped since the file was created.
	DroppedTotal uint64
	// Quarantined counts entries found damaged and moved aside, ever.
	Quarantined uint64
}

// state is the in-memory mirror of the counters kept in the file. Writers
// build a new state inside their transaction and publish it only after the
// commit succeeded, so a failed commit leaves memory agreeing with disk.
type state struct {
	lastSeq      uint64
	entries      int
	bytes        int64
	oldest       uint64 // lowest queued seq; 0 when empty
	dropped      uint64 // not yet stamped into an inventory
	inflight     uint64 // stamped into inventories not yet acknowledged
	droppedTotal uint64
	quarantined  uint64
}

// Spool is an open spool file.
type Spool struct {
	db         *bolt.DB
	log        *slog.Logger
	id         string
	maxBytes   int64
	maxEntries int

	// life is held shared by every operation and exclusively by Close, so
	// Close waits for operations in flight and later calls see ErrClosed.
	life   sync.RWMutex
	closed bool

	// mu serialises writers. bbolt does too, but the writers also read and
	// update st and reports between and after their transactions.
	mu sync.Mutex
	// reports maps an unacknowledged inventory's seq to the dropped count
	// it carried; guarded by mu. Kept in memory so Ack can tell cheaply
	// whether it has anything to do.
	reports map[uint64]uint64

	// stMu guards st for readers; writers hold mu as well when they change it.
	stMu sync.Mutex
	st   state
}

// Open opens the spool file at path, creating it (and a new spool ID) if it
// does not exist. Damaged entries are quarantined and counted as dropped;
// damaged stream state is repaired so that the next inventory is a full one.
// A file that is not a bbolt database fails with an error matching
// ErrCorrupt; a file held by another process fails with ErrLocked.
func Open(path string, opts Options) (*Spool, error) {
	s := &Spool{
		log:        opts.Logger,
		maxBytes:   opts.MaxBytes,
		maxEntries: opts.MaxEntries,
		reports:    make(map[uint64]uint64),
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.maxBytes <= 0 {
		s.maxBytes = DefaultMaxBytes
	}
	if s.maxEntries <= 0 {
		s.maxEntries = DefaultMaxEntries
	}
	s.log = s.log.With("spool", path)

	db, err := openBolt(path)
	if err != nil {
		return nil, err
	}
	s.db = db
	if err := s.load(); err != nil {
		_ = db.Close()
		return nil, err
	}
	return s, nil
}

// openBolt opens the bbolt file and maps its errors onto ErrLocked and
// ErrCorrupt.
func openBolt(path string) (db *bolt.DB, err error) {
	// Keep hold of the file bbolt opens: if bbolt panics, its DB is lost
	// and closing the file ourselves is the only way to release the lock.
	var file *os.File
	openFile := func(name string, flag int, perm os.FileMode) (*os.File, error) {
		f, err := os.OpenFile(name, flag, perm)
		file = f
		return f, err
	}
	defer func() {
		// bbolt trusts its meta pages; a file whose meta pages look valid
		// but lie (a truncated copy, say) may make it panic while opening.
		// That is the caller's file being unusable, not a bug to crash on.
		// The memory mapping, if bbolt made one, stays behind: a one-off
		// cost on a path that ends with the file moved aside.
		if r := recover(); r != nil {
			if file != nil {
				unlockFile(file)
				_ = file.Close()
			}
			db, err = nil, fmt.Errorf("%w: open %s: bbolt panicked: %v", ErrCorrupt, path, r)
		}
	}()
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	db, err = bolt.Open(path, 0o600, &bolt.Options{Timeout: lockTimeout, OpenFile: openFile})
	switch {
	case err == nil:
		return db, nil
	case errors.Is(err, bolterrors.ErrTimeout):
		return nil, fmt.Errorf("%w: %s (waited %s; is another agent running?)", ErrLocked, path, lockTimeout)
	case errors.Is(err, bolterrors.ErrInvalid), errors.Is(err, bolterrors.ErrVersionMismatch),
		errors.Is(err, bolterrors.ErrChecksum), errors.Is(err, bolterrors.ErrInvalidMapping):
		return nil, fmt.Errorf("%w: %s: %w", ErrCorrupt, path, err)
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, fs.ErrPermission):
		return nil, fmt.Errorf("spool: open %s: %w", path, err)
	default:
		// Anything else bbolt says about the content (short reads of a tiny
		// file, bad page sizes) also means the file cannot be used.
		var pe *fs.PathError
		if errors.As(err, &pe) {
			return nil, fmt.Errorf("spool: open %s: %w", path, err)
		}
		return nil, fmt.Errorf("%w: %s: %w", ErrCorrupt, path, err)
	}
}

// Recover moves a spool file that Open rejected aside, to
// path+".corrupt-<unix time>", so that the next Open starts a fresh spool,
// and returns the new name. The file is kept rather than deleted so that it
// can be inspected.
func Recover(path string) (string, error) {
	if _, err := os.Lstat(path); err != nil {
		return "", fmt.Errorf("spool: recover %s: %w", path, err)
	}
	base := path + ".corrupt-" + strconv.FormatInt(time.Now().Unix(), 10)
	name := base
	for i := 1; ; i++ {
		if _, err := os.Lstat(name); errors.Is(err, fs.ErrNotExist) {
			break
		}
		// Two recoveries within a second must not overwrite the first.
		name = base + "-" + strconv.Itoa(i)
	}
	if err := os.Rename(path, name); err != nil {
		return "", fmt.Errorf("spool: recover %s: %w", path, err)
	}
	return name, nil
}

// Close closes the file. Operations in flight finish first; later calls
// return ErrClosed. Closing twice is not an error.
func (s *Spool) Close() error {
	s.life.Lock()
	defer s.life.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	return s.db.Close()
}

// ID returns the spool ID, a random UUID created with the file. Sequence
// numbers are scoped to it: a recreated spool has a new ID and starts again
// at 1.
func (s *Spool) ID() string { return s.id }

// LastSeq returns the highest sequence number ever assigned, 0 for none.
func (s *Spool) LastSeq() uint64 {
	s.stMu.Lock()
	defer s.stMu.Unlock()
	return s.st.lastSeq
}

// Stats returns the spool's counters.
func (s *Spool) Stats() Stats {
	s.stMu.Lock()
	defer s.stMu.Unlock()
	return Stats{
		Entries:           s.st.entries,
		Bytes:             s.st.bytes,
		Dropped:           s.st.dropped + s.st.inflight,
		DroppedUnreported: s.st.dropped,
		DroppedTotal:      s.st.droppedTotal,
		Quarantined:       s.st.quarantined,
	}
}

// begin takes the shared lifetime lock; the caller must call s.life.RUnlock.
func (s *Spool) begin() error {
	s.life.RLock()
	if s.closed {
		s.life.RUnlock()
		return ErrClosed
	}
	return nil
}

// publish replaces the in-memory state after a successful commit.
func (s *Spool) publish(st state) {
	s.stMu.Lock()
	s.st = st
	s.stMu.Unlock()
}

// newID returns a random RFC 4122 version 4 UUID.
func newID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("spool: spool ID: %w", err)
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16]), nil
}

// load creates the buckets of a new file, or checks and repairs those of an
// existing one, and fills in the in-memory state.
func (s *Spool) load() (err error) {
	defer func() {
		// Reading every page once here means later transactions do not meet
		// damaged B-tree pages for the first time in the middle of the
		// stream; bbolt panics (or faults) on those rather than erroring.
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: %s: reading the file failed: %v", ErrCorrupt, s.db.Path(), r)
		}
	}()
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	return s.db.Update(func(tx *bolt.Tx) error {
		var created bool
		for _, name := range [][]byte{bucketMeta, bucketEntries, bucketReports, bucketSet, bucketKV, bucketCorrupt} {
			if tx.Bucket(name) == nil {
				if _, err := tx.CreateBucket(name); err != nil {
					return fmt.Errorf("spool: create bucket %s: %w", name, err)
				}
				if string(name) == string(bucketMeta) {
					created = true
				}
			}
		}
		meta := tx.Bucket(bucketMeta)
		if v := meta.Get(metaFormat); v != nil {
			f, ok := parseU64(v)
			if !ok {
				return fmt.Errorf("%w: %s: unreadable format version", ErrCorrupt, s.db.Path())
			}
			if f > formatVersion {
				return fmt.Errorf("spool: %s has format version %d; this agent reads up to %d", s.db.Path(), f, formatVersion)
			}
		} else if err := meta.Put(metaFormat, u64(formatVersion)); err != nil {
			return err
		}

		var st state
		resetSet := false
		counter := func(key []byte) uint64 {
			v := meta.Get(key)
			if v == nil {
				return 0
			}
			n, ok := parseU64(v)
			if !ok {
				s.log.Warn("spool counter unreadable; reset to 0", "counter", string(key))
			}
			return n
		}
		st.lastSeq = counter(metaLastSeq)
		st.dropped = counter(metaDropped)
		st.droppedTotal = counter(metaDroppedTotal)
		st.quarantined = counter(metaQuarantined)

		if id := meta.Get(metaID); len(id) > 0 {
			s.id = string(id)
		} else {
			id, err := newID()
			if err != nil {
				return err
			}
			s.id = id
			if err := meta.Put(metaID, []byte(id)); err != nil {
				return err
			}
			if !created {
				// The server knows this host's history under the old ID, if
				// any; a new ID is a new stream, so start it with a full
				// inventory.
				s.log.Warn("spool ID missing; created a new one", "id", id)
				resetSet = true
			}
		}

		// Check every queued entry.
		entries := tx.Bucket(bucketEntries)
		type bad struct {
			key, val []byte
			reason   string
		}
		var bads []bad
		c := entries.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			seq, ok := parseSeqKey(k)
			var derr error
			if !ok {
				derr = fmt.Errorf("key %x is not a sequence number", k)
			} else if v == nil {
				derr = errors.New("entry is a bucket")
			} else {
				_, derr = decodeEntry(v)
			}
			if derr != nil {
				bads = append(bads, bad{key: clone(k), val: clone(v), reason: derr.Error()})
				continue
			}
			st.entries++
			st.bytes += int64(len(k) + len(v))
			if st.oldest == 0 {
				st.oldest = seq
			}
			if seq > st.lastSeq {
				s.log.Warn("spool entry beyond the last assigned seq; raising it", "seq", seq, "last_seq", st.lastSeq)
				st.lastSeq = seq
			}
		}

		// Load drop reports of unacknowledged inventories. A report without
		// its entry cannot arise (ack and eviction remove both in one
		// transaction); treat it as unreported again rather than lose it.
		reports := tx.Bucket(bucketReports)
		var strays [][]byte
		c = reports.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			seq, ok1 := parseSeqKey(k)
			n, ok2 := parseU64(v)
			if !ok1 || !ok2 {
				s.log.Warn("spool drop report unreadable; removed", "key", fmt.Sprintf("%x", k))
				strays = append(strays, clone(k))
				continue
			}
			if entries.Get(k) == nil {
				s.log.Warn("spool drop report without its entry; counting it as unreported", "seq", seq, "dropped", n)
				st.dropped += n
				strays = append(strays, clone(k))
				continue
			}
			s.reports[seq] = n
			st.inflight += n
		}

		// Quarantine damaged entries. Each is a message the server will never
		// see, so it counts as dropped; it may have been an inventory, so the
		// next inventory must be full.
		for i, b := range bads {
			if i < 10 {
				s.log.Warn("spool entry damaged; quarantined", "key", fmt.Sprintf("%x", b.key), "reason", b.reason)
			}
			if err := entries.Delete(b.key); err != nil {
				if !errors.Is(err, bolterrors.ErrIncompatibleValue) {
					return err
				}
				if err := entries.DeleteBucket(b.key); err != nil {
					return err
				}
			}
			if err := quarantine(tx, b.key, b.val); err != nil {
				return err
			}
			if seq, ok := parseSeqKey(b.key); ok {
				if n, ok := s.reports[seq]; ok {
					st.inflight -= n
					st.dropped += n
					delete(s.reports, seq)
					strays = append(strays, b.key)
				}
			}
			st.dropped++
			st.droppedTotal++
			st.quarantined++
			resetSet = true
		}
		if len(bads) > 0 {
			s.log.Warn("spool entries quarantined", "count", len(bads), "quarantined_total", st.quarantined)
		}
		for _, k := range strays {
			if err := reports.Delete(k); err != nil {
				return err
			}
		}

		// Check the last-sent set; if any of it is unreadable, forget it all
		// so the next inventory is full rather than a delta against a guess.
		set := tx.Bucket(bucketSet)
		c = set.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if _, err := decodeRef(k); err != nil || v == nil {
				s.log.Warn("spool inventory set damaged; it will be sent in full", "reason", err)
				resetSet = true
				break
			}
		}
		if resetSet {
			if err := clearBucket(tx, bucketSet); err != nil {
				return err
			}
		}

		// Read the kv bucket's pages too, for the reason given above.
		if err := tx.Bucket(bucketKV).ForEach(func(k, v []byte) error { return nil }); err != nil {
			return err
		}

		if err := putState(meta, st); err != nil {
			return err
		}
		s.st = st
		return nil
	})
}

// putState writes the persistent counters of st.
func putState(meta *bolt.Bucket, st state) error {
	for _, kv := range []struct {
		k []byte
		v uint64
	}{
		{metaLastSeq, st.lastSeq},
		{metaDropped, st.dropped},
		{metaDroppedTotal, st.droppedTotal},
		{metaQuarantined, st.quarantined},
	} {
		if err := meta.Put(kv.k, u64(kv.v)); err != nil {
			return fmt.Errorf("spool: write %s: %w", kv.k, err)
		}
	}
	return nil
}

// quarantine stores a damaged entry in the corrupt bucket, keyed by time so
// that the oldest is evicted first, keeping at most quarantineKeep of them.
func quarantine(tx *bolt.Tx, key, val []byte) error {
	b := tx.Bucket(bucketCorrupt)
	seq, err := b.NextSequence()
	if err != nil {
		return err
	}
	k := make([]byte, 0, 16+len(key))
	k = append(k, u64(uint64(time.Now().UnixNano()))...)
	k = append(k, u64(seq)...)
	k = append(k, key...)
	if len(val) > quarantineMaxValue {
		val = val[:quarantineMaxValue]
	}
	if err := b.Put(k, val); err != nil {
		return err
	}
	// Count with a cursor: Bucket.Stats reads committed pages only and would
	// miss what this transaction added.
	n := 0
	c := b.Cursor()
	for k, _ := c.First(); k != nil; k, _ = c.Next() {
		n++
	}
	for ; n > quarantineKeep; n-- {
		first, _ := b.Cursor().First()
		if first == nil {
			break
		}
		if err := b.Delete(first); err != nil {
			return err
		}
	}
	return nil
}

// clearBucket empties a top-level bucket.
func clearBucket(tx *bolt.Tx, name []byte) error {
	if err := tx.DeleteBucket(name); err != nil && !errors.Is(err, bolterrors.ErrBucketNotFound) {
		return err
	}
	_, err := tx.CreateBucket(name)
	return err
}

// clone copies a slice that bbolt owns; its memory is valid only during the
// transaction.
func clone(b []byte) []byte {
	if b == nil {
		return nil
	}
	return append([]byte(nil), b...)
}
