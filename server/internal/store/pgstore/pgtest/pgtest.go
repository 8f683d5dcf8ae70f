// Package pgtest gives tests a PostgreSQL database of their own: a fresh
// schema in the test server's database, dropped when the test ends.
//
// The server is the one named by QINFRA_TEST_POSTGRES (a DSN), by default
// postgres://postgres@127.0.0.1:5432/test. When it does not answer, tests
// using DSN are skipped, except when the CI environment variable is true:
// then they fail, so a CI run cannot pass without testing PostgreSQL.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// EnvDSN names the environment variable holding the test server's DSN.
const EnvDSN = "QINFRA_TEST_POSTGRES"

// DefaultDSN is the test server used when EnvDSN is not set: the one on
// every qinfra development and CI machine.
const DefaultDSN = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

// SchemaPrefix starts the name of every schema DSN creates.
const SchemaPrefix = "qinfra_test_"

// ServerDSN returns the DSN of the test server, without a schema.
func ServerDSN() string {
	if dsn := os.Getenv(EnvDSN); dsn != "" {
		return dsn
	}
	return DefaultDSN
}

// inCI reports whether the CI environment variable is set to true, as CI
// systems set it.
func inCI() bool {
	ci, err := strconv.ParseBool(os.Getenv("CI"))
	return err == nil && ci
}

// down remembers, per DSN, why the test server did not answer, so the
// tests after the first skip (or fail) at once rather than each waiting
// for a timeout.
var down sync.Map

// Connect connects to the test server, skipping t when it does not answer
// (failing it under CI=true).
func Connect(t testing.TB) *pgx.Conn {
	t.Helper()
	dsn := ServerDSN()
	if why, ok := down.Load(dsn); ok {
		Unavailable(t, why.(string))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		why := fmt.Sprintf("no PostgreSQL at %s: %v", redact(dsn), err)
		down.Store(dsn, why)
		Unavailable(t, why)
	}
	return conn
}

// Unavailable skips t because something the test needs is missing, or
// fails it under CI=true.
func Unavailable(t testing.TB, why string) {
	t.Helper()
	if inCI() {
		t.Fatalf("%s (CI=true: PostgreSQL tests must run; start the server or set %s)", why, EnvDSN)
	}
	t.Skipf("%s; skipping (set %s to a server's DSN; with CI=true this fails)", why, EnvDSN)
}

// DSN creates a fresh, empty schema on the test server and returns a DSN
// whose connections use it (search_path), so the tables a store creates
// are the test's alone. The schema and everything in it is dropped at the
// end of the test, after cleanups registered later (closing the store)
// have run.
func DSN(t testing.TB) string {
	t.Helper()
	conn := Connect(t)
	defer conn.Close(context.Background())
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	schema := SchemaPrefix + hex.EncodeToString(b[:])
	ctx := context.Background()
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatalf("create schema %s: %v", schema, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, ServerDSN())
		if err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
	})
	dsn, err := WithParam(ServerDSN(), "search_path", schema)
	if err != nil {
		t.Fatal(err)
	}
	return dsn
}

// WithParam returns dsn with a run-time parameter (or a pgx pool
// parameter) set, for a postgres:// URL or a key=value DSN.
func WithParam(dsn, key, value string) (string, error) {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			return "", fmt.Errorf("parse DSN: %w", err)
		}
		q := u.Query()
		q.Set(key, value)
		u.RawQuery = q.Encode()
		return u.String(), nil
	}
	return dsn + " " + key + "='" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(value) + "'", nil
}

var passwordParam = regexp.MustCompile(`password\s*=\s*('(\\.|[^'])*'|\S+)`)

// redact hides the password of a DSN.
func redact(dsn string) string {
	if strings.Contains(dsn, "://") {
		if u, err := url.Parse(dsn); err == nil && u.User != nil {
			if _, ok := u.User.Password(); ok {
				u.User = url.UserPassword(u.User.Username(), "xxxxx")
			}
			return u.String()
		}
		return "(unparsable DSN)"
	}
	return passwordParam.ReplaceAllString(dsn, "password=xxxxx")
}
