package pgstore

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"log/slog"
	"path"
	"regexp"
	"slices"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// SchemaVersion is the newest schema version this build knows: the number
// of the last file in migrations/. Open and Migrate refuse a database
// whose schema is newer.
const SchemaVersion = 6

//go:embed migrations/*.sql
var migrationFiles embed.FS

// migration is one file of migrations/, named NNNN_what.sql.
type migration struct {
	version int
	name    string
	sql     string
}

var migrationName = regexp.MustCompile(`^(\d{4})_([a-z0-9_]+)\.sql$`)

// loadMigrations returns the embedded migrations in order, checking that
// they are numbered 1, 2, ... SchemaVersion.
func loadMigrations() ([]migration, error) {
	entries, err := fs.ReadDir(migrationFiles, "migrations")
	if err != nil {
		return nil, err
	}
	var out []migration
	for _, e := range entries {
		m := migrationName.FindStringSubmatch(e.Name())
		if m == nil {
			return nil, fmt.Errorf("migration file %s is not named NNNN_name.sql", e.Name())
		}
		b, err := fs.ReadFile(migrationFiles, path.Join("migrations", e.Name()))
		if err != nil {
			return nil, err
		}
		v, _ := strconv.Atoi(m[1])
		out = append(out, migration{version: v, name: m[2], sql: string(b)})
	}
	slices.SortFunc(out, func(a, b migration) int { return a.version - b.version })
	for i, m := range out {
		if m.version != i+1 {
			return nil, fmt.Errorf("migration %04d_%s: expected version %d", m.version, m.name, i+1)
		}
	}
	if len(out) != SchemaVersion {
		return nil, fmt.Errorf("%d migrations embedded, SchemaVersion is %d", len(out), SchemaVersion)
	}
	return out, nil
}

// Migrate applies the embedded migrations to the database named by dsn,
// as Open does, and returns the schema version found and the one left. It
// is safe to run while servers are starting or running: migrations are
// applied under an advisory lock, each in its own transaction.
func Migrate(ctx context.Context, dsn string) (from, to int, err error) {
	pool, err := newPool(ctx, dsn, 1)
	if err != nil {
		return 0, 0, fmt.Errorf("migrate: %w", err)
	}
	defer pool.Close()
	from, to, err = migrate(ctx, pool, slog.New(slog.DiscardHandler))
	if err != nil {
		return from, to, fmt.Errorf("migrate: %w", err)
	}
	return from, to, nil
}

// migrate brings the schema of the connection's search_path up to
// SchemaVersion. The session advisory lock serializes migrators: a second
// replica waits for the first, then finds nothing to do.
func migrate(ctx context.Context, pool *pgxpool.Pool, logger *slog.Logger) (from, to int, err error) {
	migrations, err := loadMigrations()
	if err != nil {
		return 0, 0, err
	}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return 0, 0, err
	}
	defer conn.Release()
	const lockArgs = `$1, hashtext(current_schema())`
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock(`+lockArgs+`)`, lockMigrate); err != nil {
		return 0, 0, fmt.Errorf("take the migration lock: %w", err)
	}
	defer func() {
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if _, err := conn.Exec(uctx, `SELECT pg_advisory_unlock(`+lockArgs+`)`, lockMigrate); err != nil {
			// The lock belongs to the session: end it.
			_ = conn.Hijack().Close(uctx)
		}
	}()

	if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    integer PRIMARY KEY,
		name       text NOT NULL,
		applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		return 0, 0, fmt.Errorf("create schema_migrations: %w", err)
	}
	if err := conn.QueryRow(ctx, `SELECT coalesce(max(version), 0) FROM schema_migrations`).Scan(&from); err != nil {
		return 0, 0, fmt.Errorf("read schema version: %w", err)
	}
	if from > SchemaVersion {
		return from, from, fmt.Errorf("%w: schema version %d is newer than the %d this qinfra-server supports; run a newer release",
			ErrSchemaVersion, from, SchemaVersion)
	}
	to = from
	for _, m := range migrations[from:] {
		start := time.Now()
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, m.sql); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version, name) VALUES ($1, $2)`, m.version, m.name)
			return err
		})
		if err != nil {
			return from, to, fmt.Errorf("apply migration %04d_%s: %w", m.version, m.name, err)
		}
		to = m.version
		logger.Info("schema migrated", "version", m.version, "name", m.name, "took", time.Since(start))
	}
	return from, to, nil
}
