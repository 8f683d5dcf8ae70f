// Package pgstore is the PostgreSQL store of qinfra-server, for several
// server replicas sharing one database. It passes the same conformance
// suite (storetest) as the embedded bboltstore.
//
// # Schema
//
// The schema is created and upgraded by the SQL files in migrations/,
// embedded in the binary and applied by Open (or by Migrate, for
// `qinfra-server migrate`) under a PostgreSQL advisory lock, so replicas
// starting together apply each migration once. Applied versions are
// recorded in schema_migrations. Tables live in the first schema of the
// connection's search_path, so one database can hold several stores in
// several schemas (the tests do).
//
// # Concurrency
//
// Every method is one transaction at READ COMMITTED, made safe by explicit
// locks rather than by retrying serialization failures:
//
//   - each host has one streams row; every message of its stream
//     (inventory or command result) locks it FOR UPDATE, checks and
//     consumes its (spool, seq) and applies its effect in the same
//     transaction, so a (host, spool, seq) is applied once whichever
//     replica receives it, however often;
//   - enrollment locks the token row, so a token's uses are never
//     exceeded;
//   - AppendAudit locks the audit chain's head row, so entries form one
//     chain across replicas;
//   - item bodies are shared between hosts (see "Inventory"); ingest holds
//     a shared advisory lock while it references bodies and the garbage
//     collector of PruneHistory an exclusive one while it deletes them, so
//     a body is never deleted under a transaction that is about to
//     reference it.
//
// # Inventory
//
// Hosts built from the same image hold the same items: each distinct item
// body (its deterministic protobuf encoding without kind and key) is
// stored once in items, keyed by its SHA-256 computed by the server (an
// agent cannot make another host's item resolve to a body it chose). Item
// sets are content-addressed too: a set of (kind, key, body hash) rows is
// stored once as a base, shared by the hosts that hold it or nearly, and
// each host keeps its base's ID and an overlay of its own differences,
// one value holding their bodies too (see bases.go and overlay.go).
// The stream row keeps the host's inventory.Accumulator, so a delta is
// checked against the agent's set hash reading only the items it touches;
// a full inventory is compared with the stored set, and only the
// difference is recorded. The item changes of the history reference bodies
// too. Unreferenced bodies are deleted by PruneHistory, not on every
// update: an update only ever inserts bodies, and bodies lose their last
// reference when the history that names them is pruned.
//
// # Durability
//
// Open refuses a server that could lose an acknowledged commit, i.e. one
// with fsync off or synchronous_commit off ("local", "remote_write", "on"
// and "remote_apply" all flush the commit record locally before the commit
// returns). Options.UnsafeDurability overrides the check, for tests.
package pgstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/quantumlayer/qinfra/server/internal/store"
)

// Errors returned by Open and Migrate, checked with errors.Is.
var (
	// ErrUnsafeDurability means the server is configured so that a commit
	// it acknowledged could be lost in a crash; the wrapping error names
	// the setting.
	ErrUnsafeDurability = errors.New("PostgreSQL may lose acknowledged commits")
	// ErrSchemaVersion means the database's schema is newer than this
	// build knows.
	ErrSchemaVersion = errors.New("unsupported store schema")
)

// Options configures Open.
type Options struct {
	// MaxConns, when positive, caps the connection pool, overriding the
	// DSN's pool_max_conns. Other pool settings (pool_min_conns,
	// pool_max_conn_lifetime, ...) are read from the DSN.
	MaxConns int32
	// UnsafeDurability makes Open accept a server with fsync or
	// synchronous_commit off, which can lose acknowledged writes in a
	// crash. For tests and throwaway setups only; qinfra-server exposes it
	// as --unsafe-durability.
	UnsafeDurability bool
	// Logger receives the store's log records; nil discards them.
	Logger *slog.Logger
}

// Store is a store.Store on a PostgreSQL database. It is safe for
// concurrent use, also by several processes on one database.
type Store struct {
	pool   *pgxpool.Pool
	logger *slog.Logger
	// lockKey is the second key of the store's advisory locks, derived
	// from the schema name so stores in different schemas do not contend.
	lockKey int32
	// bases caches the contents of bases, mru lists the bases this
	// replica's hosts took last (see bases.go).
	bases baseCache
	mru   baseMRU
}

var _ store.Store = (*Store)(nil)

// Advisory lock classes, the first key of pg_advisory_lock(int, int).
const (
	lockMigrate int32 = 0x71696e00 // "qin\x00"
	lockItemsGC int32 = 0x71696e01
)

// Open connects to the database named by dsn (a postgres:// URL or a
// key=value string, pool_* parameters included), checks that it is
// durable, and applies the embedded migrations. It fails with an error
// wrapping ErrUnsafeDurability for a server with fsync or
// synchronous_commit off, unless opts.UnsafeDurability, and with
// ErrSchemaVersion for a schema newer than this build.
func Open(ctx context.Context, dsn string, opts Options) (*Store, error) {
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	logger = logger.With("component", "pgstore")
	pool, err := newPool(ctx, dsn, opts.MaxConns)
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	s := &Store{pool: pool, logger: logger}
	if err := s.init(ctx, opts); err != nil {
		pool.Close()
		return nil, err
	}
	cfg := pool.Config().ConnConfig
	logger.Info("store opened", "host", cfg.Host, "port", cfg.Port, "database", cfg.Database,
		"max_conns", pool.Config().MaxConns)
	return s, nil
}

func newPool(ctx context.Context, dsn string, maxConns int32) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// pgx's parse errors do not repeat the password.
		return nil, fmt.Errorf("parse PostgreSQL DSN: %w", err)
	}
	if maxConns > 0 {
		cfg.MaxConns = maxConns
	}
	if _, ok := cfg.ConnConfig.RuntimeParams["application_name"]; !ok {
		cfg.ConnConfig.RuntimeParams["application_name"] = "qinfra-server"
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("connect to PostgreSQL at %s:%d: %w", cfg.ConnConfig.Host, cfg.ConnConfig.Port, err)
	}
	return pool, nil
}

func (s *Store) init(ctx context.Context, opts Options) error {
	if err := checkDurability(ctx, s.pool, opts.UnsafeDurability, s.logger); err != nil {
		return fmt.Errorf("open store: %w", err)
	}
	var hasSchema bool
	err := s.pool.QueryRow(ctx, `SELECT current_schema() IS NOT NULL, coalesce(hashtext(current_schema()), 0)`).
		Scan(&hasSchema, &s.lockKey)
	if err != nil {
		return fmt.Errorf("open store: %w", err)
	}
	if !hasSchema {
		return fmt.Errorf("open store: the search_path names no existing schema to create the tables in")
	}
	if _, _, err := migrate(ctx, s.pool, s.logger); err != nil {
		return fmt.Errorf("open store: %w", err)
	}
	return nil
}

// checkDurability refuses a server that can lose acknowledged commits.
// synchronous_commit "local", "remote_write", "on" and "remote_apply" all
// flush the commit to the local WAL before the commit returns; only "off"
// does not. full_page_writes off is only warned about: it is safe on file
// systems that write pages atomically (ZFS), which PostgreSQL cannot know.
func checkDurability(ctx context.Context, pool *pgxpool.Pool, unsafe bool, logger *slog.Logger) error {
	var fsync, syncCommit, fullPages string
	err := pool.QueryRow(ctx, `SELECT current_setting('fsync'), current_setting('synchronous_commit'), current_setting('full_page_writes')`).
		Scan(&fsync, &syncCommit, &fullPages)
	if err != nil {
		return fmt.Errorf("read durability settings: %w", err)
	}
	var problems []string
	if fsync == "off" {
		problems = append(problems, "fsync is off")
	}
	if syncCommit == "off" {
		problems = append(problems, "synchronous_commit is off")
	}
	if fullPages == "off" {
		logger.Warn("PostgreSQL runs with full_page_writes off: a crash can leave torn pages unless the file system writes pages atomically")
	}
	if len(problems) == 0 {
		return nil
	}
	what := strings.Join(problems, " and ")
	if unsafe {
		logger.Warn("PostgreSQL can lose acknowledged commits in a crash; accepted because of --unsafe-durability", "problem", what)
		return nil
	}
	return fmt.Errorf("%w: %s; fix the server configuration, or start with --unsafe-durability to accept losing data in a crash",
		ErrUnsafeDurability, what)
}

// Close closes the connection pool, waiting for connections in use.
func (s *Store) Close() error {
	s.pool.Close()
	return nil
}

// inTx runs fn in a transaction and commits it if fn returns nil. fn's
// error is returned as is; a panic in fn rolls the transaction back.
func (s *Store) inTx(ctx context.Context, fn func(pgx.Tx) error) (err error) {
	if err := ctx.Err(); err != nil {
		return err
	}
	// READ COMMITTED whatever the server's default: the store's
	// correctness rests on its explicit locks, and it does not retry
	// serialization failures.
	tx, err := s.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.ReadCommitted})
	if err != nil {
		return err
	}
	defer func() {
		// Roll back on error or panic, even when ctx is done; after a
		// commit this does nothing.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		_ = tx.Rollback(rctx)
	}()
	if err := fn(tx); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// PostgreSQL error codes the store maps.
const (
	codeUniqueViolation = "23505"
	// codeBadText: invalid UTF-8 or a NUL byte in a text value.
	codeBadText = "22021"
	// codeBadJSONText: a \u0000 or otherwise untranslatable JSON escape.
	codeBadJSONText = "22P05"
)

// pgCode returns the SQLSTATE of a PostgreSQL error, "" for others.
func pgCode(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

// mapErr turns PostgreSQL's refusal of a value into ErrInvalid.
func mapErr(err error) error {
	switch pgCode(err) {
	case codeBadText, codeBadJSONText:
		return fmt.Errorf("%w: %w", store.ErrInvalid, err)
	}
	return err
}

// textOK reports whether s can be stored in a text column: PostgreSQL
// refuses NUL bytes and invalid UTF-8.
func textOK(s string) bool {
	return utf8.ValidString(s) && strings.IndexByte(s, 0) < 0
}

// checkText returns an error wrapping ErrInvalid naming the first field
// whose value a text column cannot hold. fields alternates names and
// values.
func checkText(fields ...string) error {
	for i := 0; i+1 < len(fields); i += 2 {
		if !textOK(fields[i+1]) {
			return fmt.Errorf("%w: %s holds a NUL byte or invalid UTF-8", store.ErrInvalid, fields[i])
		}
	}
	return nil
}

// checkLabels is checkText for a label map.
func checkLabels(field string, labels map[string]string) error {
	for k, v := range labels {
		if !textOK(k) || !textOK(v) {
			return fmt.Errorf("%w: %s holds a NUL byte or invalid UTF-8", store.ErrInvalid, field)
		}
	}
	return nil
}

// ts is a timestamptz parameter: NULL for the zero time.
func ts(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t
}

// fromTS is the time of a nullable timestamptz, in UTC; the zero time for
// NULL.
func fromTS(t pgtype.Timestamptz) time.Time {
	if !t.Valid {
		return time.Time{}
	}
	return t.Time.UTC()
}

// labelsArg is a labels map as a jsonb parameter: {} for nil.
func labelsArg(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

// hostKey returns the internal key of a host, or ErrNotFound.
func hostKey(ctx context.Context, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}, id string) (int64, error) {
	if !textOK(id) {
		return 0, store.ErrNotFound
	}
	var hkey int64
	err := q.QueryRow(ctx, `SELECT hkey FROM hosts WHERE id = $1`, id).Scan(&hkey)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, store.ErrNotFound
	}
	return hkey, err
}
