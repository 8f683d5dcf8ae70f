package pgstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/quantumlayer/qinfra/server/internal/store"
	"github.com/quantumlayer/qinfra/server/internal/store/pgstore/pgtest"
	"github.com/quantumlayer/qinfra/server/internal/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		return openTest(t)
	})
}

// openTest opens a store in a fresh schema, closed at cleanup.
func openTest(t testing.TB) *Store {
	t.Helper()
	return openDSN(t, pgtest.DSN(t), Options{})
}

func openDSN(t testing.TB, dsn string, opts Options) *Store {
	t.Helper()
	s, err := Open(context.Background(), dsn, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestConcurrentOpen starts several replicas at once on a fresh schema:
// each migration is applied once and every replica opens.
func TestConcurrentOpen(t *testing.T) {
	dsn := pgtest.DSN(t)
	const replicas = 4
	stores := make([]*Store, replicas)
	errs := make([]error, replicas)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range replicas {
		wg.Go(func() {
			<-start
			stores[i], errs[i] = Open(context.Background(), dsn, Options{MaxConns: 2})
		})
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("replica %d: Open: %v", i, err)
		}
		defer stores[i].Close()
	}
	rows, err := stores[0].pool.Query(context.Background(), `SELECT version FROM schema_migrations ORDER BY version`)
	if err != nil {
		t.Fatal(err)
	}
	var versions []int
	for rows.Next() {
		var v int
		if err := rows.Scan(&v); err != nil {
			t.Fatal(err)
		}
		versions = append(versions, v)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(versions) != fmt.Sprint(wantVersions()) {
		t.Fatalf("schema_migrations = %v, want %v", versions, wantVersions())
	}
	// The replicas share one store.
	ctx := context.Background()
	if err := stores[1].AppendAudit(ctx, &store.AuditEntry{Action: "a"}); err != nil {
		t.Fatal(err)
	}
	if err := stores[2].AppendAudit(ctx, &store.AuditEntry{Action: "b"}); err != nil {
		t.Fatal(err)
	}
	entries, err := stores[3].ListAudit(ctx, 0, 0)
	if err != nil || len(entries) != 2 {
		t.Fatalf("ListAudit = %d entries, %v; want 2", len(entries), err)
	}
	if err := store.VerifyAuditChain(nil, entries); err != nil {
		t.Fatal(err)
	}
}

func wantVersions() []int {
	var v []int
	for i := 1; i <= SchemaVersion; i++ {
		v = append(v, i)
	}
	return v
}

func TestMigrate(t *testing.T) {
	dsn := pgtest.DSN(t)
	ctx := context.Background()
	from, to, err := Migrate(ctx, dsn)
	if err != nil || from != 0 || to != SchemaVersion {
		t.Fatalf("Migrate on an empty schema = %d, %d, %v; want 0, %d", from, to, err, SchemaVersion)
	}
	from, to, err = Migrate(ctx, dsn)
	if err != nil || from != SchemaVersion || to != SchemaVersion {
		t.Fatalf("second Migrate = %d, %d, %v; want nothing to do", from, to, err)
	}
	s := openDSN(t, dsn, Options{})

	// A schema from a newer release is refused.
	if _, err := s.pool.Exec(ctx, `INSERT INTO schema_migrations (version, name) VALUES ($1, 'future')`, SchemaVersion+1); err != nil {
		t.Fatal(err)
	}
	for name, open := range map[string]func() error{
		"Open": func() error {
			s, err := Open(ctx, dsn, Options{})
			if err == nil {
				s.Close()
			}
			return err
		},
		"Migrate": func() error { _, _, err := Migrate(ctx, dsn); return err },
	} {
		if err := open(); !errors.Is(err, ErrSchemaVersion) || !strings.Contains(err.Error(), "newer") {
			t.Fatalf("%s of a newer schema: error = %v, want ErrSchemaVersion saying newer", name, err)
		}
	}
}

func TestLoadMigrations(t *testing.T) {
	ms, err := loadMigrations()
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != SchemaVersion {
		t.Fatalf("%d migrations, SchemaVersion %d", len(ms), SchemaVersion)
	}
}

func TestOpenBadDSN(t *testing.T) {
	ctx := context.Background()
	if _, err := Open(ctx, "postgres://u:secret@[::1", Options{}); err == nil || strings.Contains(err.Error(), "secret") {
		t.Fatalf("Open of a malformed DSN: error = %v; want an error not showing the password", err)
	}
	// A search_path naming no schema leaves nowhere to create tables.
	dsn, err := pgtest.WithParam(pgtest.ServerDSN(), "search_path", "qinfra_no_such_schema")
	if err != nil {
		t.Fatal(err)
	}
	pgtest.Connect(t).Close(ctx)
	if s, err := Open(ctx, dsn, Options{}); err == nil {
		s.Close()
		t.Fatal("Open with a search_path naming no schema succeeded")
	}
}

// TestSynchronousCommitOff: a DSN turning synchronous_commit off for the
// store's sessions is refused, and accepted with UnsafeDurability.
func TestSynchronousCommitOff(t *testing.T) {
	dsn, err := pgtest.WithParam(pgtest.DSN(t), "synchronous_commit", "off")
	if err != nil {
		t.Fatal(err)
	}
	s, err := Open(context.Background(), dsn, Options{})
	if err == nil {
		s.Close()
		t.Fatal("Open with synchronous_commit off succeeded")
	}
	if !errors.Is(err, ErrUnsafeDurability) || !strings.Contains(err.Error(), "synchronous_commit is off") ||
		!strings.Contains(err.Error(), "--unsafe-durability") {
		t.Fatalf("Open error = %v; want ErrUnsafeDurability naming synchronous_commit and --unsafe-durability", err)
	}
	openDSN(t, dsn, Options{UnsafeDurability: true})
	// "local" still flushes the commit locally.
	dsn, err = pgtest.WithParam(pgtest.DSN(t), "synchronous_commit", "local")
	if err != nil {
		t.Fatal(err)
	}
	openDSN(t, dsn, Options{})
}

// TestPoolConfig: pool settings come from the DSN, MaxConns overrides
// pool_max_conns.
func TestPoolConfig(t *testing.T) {
	dsn, err := pgtest.WithParam(pgtest.DSN(t), "pool_max_conns", "3")
	if err != nil {
		t.Fatal(err)
	}
	if got := openDSN(t, dsn, Options{}).pool.Config().MaxConns; got != 3 {
		t.Fatalf("MaxConns with pool_max_conns=3 = %d", got)
	}
	if got := openDSN(t, dsn, Options{MaxConns: 7}).pool.Config().MaxConns; got != 7 {
		t.Fatalf("MaxConns with Options.MaxConns 7 = %d", got)
	}
	var app string
	s := openDSN(t, dsn, Options{})
	if err := s.pool.QueryRow(context.Background(), `SELECT current_setting('application_name')`).Scan(&app); err != nil || app != "qinfra-server" {
		t.Fatalf("application_name = %q, %v", app, err)
	}
}
