package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/quantumlayer/qinfra/server/internal/app"
	"github.com/quantumlayer/qinfra/server/internal/store/bboltstore"
)

// onlineBackupHint is what to do when the server holds the store.
const onlineBackupHint = "the store is in use by a running qinfra-server: back it up through the server " +
	"(POST /api/v1/admin/backup with an admin token), or stop the server and run this again"

// cmdBackup copies the store of a stopped server to a file. bbolt's lock
// is per process: while the server runs, only the server can read the
// file, so an online backup goes through its API.
func cmdBackup(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("backup", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dataDir := fs.String("data", app.Default().DataDir, "data directory of a stopped qinfra-server")
	out := fs.String("out", "", "backup file to write (required; - for standard output)")
	lockTimeout := fs.Duration("lock-timeout", 2*time.Second, "how long to wait for the store's lock")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *out == "" || fs.NArg() > 0 {
		fs.Usage()
		return errors.New("backup: --out FILE is required, and there are no arguments")
	}
	path := app.Paths{Dir: *dataDir}.Store()
	st, err := bboltstore.Open(path, bboltstore.Options{ReadOnly: true, LockTimeout: *lockTimeout})
	if errors.Is(err, bboltstore.ErrLocked) {
		return fmt.Errorf("%w\n%s", err, onlineBackupHint)
	}
	if err != nil {
		return err
	}
	defer st.Close()
	start := time.Now()
	if *out == "-" {
		_, err := st.Backup(stdout)
		return err
	}
	n, err := backupToFile(st, *out)
	if err != nil {
		return err
	}
	hosts, err := st.ListHosts(context.Background())
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "Backed up %s to %s: %d bytes, %d hosts, schema version %d, in %s.\n",
		path, *out, n, len(hosts), bboltstore.SchemaVersion, time.Since(start).Round(time.Millisecond))
	return nil
}

// backupToFile writes the backup to a temporary file next to out, checks
// that it opens as a store with every page sound, and renames it to out.
func backupToFile(st *bboltstore.Store, out string) (int64, error) {
	f, err := os.CreateTemp(filepath.Dir(out), filepath.Base(out)+".tmp-*")
	if err != nil {
		return 0, err
	}
	tmp := f.Name()
	done := false
	defer func() {
		if !done {
			_ = os.Remove(tmp)
		}
	}()
	n, err := st.Backup(f)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return 0, err
	}
	copy, err := bboltstore.Open(tmp, bboltstore.Options{ReadOnly: true})
	if err != nil {
		return 0, fmt.Errorf("the backup written does not open: %w", err)
	}
	err = copy.Check(context.Background())
	if cerr := copy.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return 0, fmt.Errorf("the backup written is damaged: %w", err)
	}
	if err := os.Rename(tmp, out); err != nil {
		return 0, err
	}
	done = true
	return n, nil
}

// cmdRestore puts a backup in place as the store of a stopped server.
func cmdRestore(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("restore", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dataDir := fs.String("data", app.Default().DataDir, "data directory of a stopped qinfra-server (created if need be)")
	in := fs.String("in", "", "backup file to restore (required; - for standard input)")
	force := fs.Bool("force", false, "replace an existing store (it is kept as qinfra.db.pre-restore-<time>)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *in == "" || fs.NArg() > 0 {
		fs.Usage()
		return errors.New("restore: --in FILE is required, and there are no arguments")
	}
	var r io.Reader = os.Stdin
	if *in != "-" {
		f, err := os.Open(*in)
		if err != nil {
			return err
		}
		defer f.Close()
		r = f
	}
	path := app.Paths{Dir: *dataDir}.Store()
	start := time.Now()
	res, err := bboltstore.Restore(context.Background(), r, path, bboltstore.RestoreOptions{Force: *force})
	switch {
	case errors.Is(err, bboltstore.ErrExists):
		return fmt.Errorf("%w; pass --force to replace it", err)
	case err != nil:
		return err
	}
	fmt.Fprintf(stdout, "Restored %s to %s: %d bytes, %d hosts, in %s.\n",
		*in, path, res.Bytes, res.Hosts, time.Since(start).Round(time.Millisecond))
	if res.Replaced != "" {
		fmt.Fprintf(stdout, "The store it replaced is kept as %s.\n", res.Replaced)
	}
	if !app.Initialized(*dataDir) {
		fmt.Fprintf(stdout, "Note: %s holds no CA. A backup holds the store only: restore ca.crt, ca.key, server.crt and server.key "+
			"from the old data directory too, or 'serve' will create a new CA that enrolled agents do not trust.\n", *dataDir)
	}
	return nil
}
