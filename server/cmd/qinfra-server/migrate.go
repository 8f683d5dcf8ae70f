package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/quantumlayer/qinfra/server/internal/store/pgstore"
)

// envStore names the environment variable --store defaults to, so a DSN
// holding a password need not appear in the process list.
const envStore = "QINFRA_STORE"

// cmdMigrate applies the embedded schema migrations of the PostgreSQL
// store. Servers apply them too when they start; this lets an operator do
// it first, from a deploy job, with rights the servers need not have.
func cmdMigrate(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("migrate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dsn := fs.String("store", os.Getenv(envStore),
		"PostgreSQL store, as postgres://USER@HOST:PORT/DB?sslmode=... (default $"+envStore+
			"; a password can come from PGPASSWORD or ~/.pgpass)")
	timeout := fs.Duration("timeout", 5*time.Minute, "give up after this long, waiting for another migration included")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("migrate: unexpected argument %q", fs.Arg(0))
	}
	switch {
	case *dsn == "":
		return errors.New("migrate: --store postgres://... is required")
	case !strings.HasPrefix(*dsn, "postgres://") && !strings.HasPrefix(*dsn, "postgresql://"):
		return errors.New("migrate: --store must be a postgres:// URL; the embedded bbolt store is upgraded when the server opens it")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	from, to, err := pgstore.Migrate(ctx, *dsn)
	if err != nil {
		return err
	}
	if from == to {
		fmt.Fprintf(stdout, "Schema already at version %d\n", to)
	} else {
		fmt.Fprintf(stdout, "Schema migrated from version %d to %d\n", from, to)
	}
	return nil
}
