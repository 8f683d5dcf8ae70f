package pgstore

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/quantumlayer/qinfra/server/internal/store/pgstore/pgtest"
)

// pgBin returns the directory of the newest installed PostgreSQL server
// binaries (initdb, pg_ctl), or "".
func pgBin() string {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	slices.SortFunc(dirs, func(a, b string) int {
		va, _ := strconv.Atoi(filepath.Base(filepath.Dir(a)))
		vb, _ := strconv.Atoi(filepath.Base(filepath.Dir(b)))
		return va - vb
	})
	for i := len(dirs) - 1; i >= 0; i-- {
		if _, err := os.Stat(filepath.Join(dirs[i], "initdb")); err == nil {
			return dirs[i]
		}
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		return filepath.Dir(p)
	}
	return ""
}

// startCluster initializes and starts a throwaway PostgreSQL cluster
// listening only on a Unix socket in its own directory, with extra server
// settings (name=value), and stops it at cleanup. It returns its DSN.
// initdb refuses to run as root, so as root the cluster is run as the
// postgres user.
func startCluster(t *testing.T, settings ...string) string {
	t.Helper()
	bin := pgBin()
	if bin == "" {
		pgtest.Unavailable(t, "no PostgreSQL server binaries (initdb, pg_ctl) installed")
	}
	// A short path: a Unix socket's must fit in 107 bytes.
	dir, err := os.MkdirTemp("", "qinfra-pg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	var asUser []string
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			pgtest.Unavailable(t, "running as root and there is no postgres user to run initdb as")
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			t.Fatal(err)
		}
		asUser = []string{"runuser", "-u", "postgres", "--"}
	}
	run := func(name string, args ...string) error {
		argv := append(slices.Clone(asUser), append([]string{filepath.Join(bin, name)}, args...)...)
		cmd := exec.Command(argv[0], argv[1:]...)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("%s: %w\n%s", strings.Join(argv, " "), err, out)
		}
		return nil
	}
	data := filepath.Join(dir, "data")
	if err := run("initdb", "-D", data, "-A", "trust", "-U", "postgres", "--no-sync"); err != nil {
		t.Fatal(err)
	}
	const port = 5433 // only names the socket, in dir
	opts := fmt.Sprintf("-p %d -k %s -c listen_addresses=", port, dir)
	for _, s := range settings {
		opts += " -c " + s
	}
	if err := run("pg_ctl", "-D", data, "-o", opts, "-l", filepath.Join(dir, "log"), "-w", "-t", "60", "start"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := run("pg_ctl", "-D", data, "-m", "immediate", "-w", "stop"); err != nil {
			t.Errorf("stop the throwaway cluster: %v", err)
		}
	})
	return fmt.Sprintf("host=%s port=%d user=postgres dbname=postgres sslmode=disable", dir, port)
}

// TestFsyncOff runs a throwaway cluster with fsync=off: Open refuses it,
// naming the setting and the flag, unless UnsafeDurability.
func TestFsyncOff(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a PostgreSQL cluster")
	}
	dsn := startCluster(t, "fsync=off")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := Open(ctx, dsn, Options{})
	if err == nil {
		s.Close()
		t.Fatal("Open of a server with fsync=off succeeded")
	}
	if !errors.Is(err, ErrUnsafeDurability) || !strings.Contains(err.Error(), "fsync is off") ||
		!strings.Contains(err.Error(), "--unsafe-durability") {
		t.Fatalf("Open error = %v; want ErrUnsafeDurability naming fsync and --unsafe-durability", err)
	}
	s, err = Open(ctx, dsn, Options{UnsafeDurability: true})
	if err != nil {
		t.Fatalf("Open with UnsafeDurability: %v", err)
	}
	defer s.Close()
	// It is a working store.
	if _, err := s.ListHosts(ctx); err != nil {
		t.Fatal(err)
	}
}
