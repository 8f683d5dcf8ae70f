package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/quantumlayer/qinfra/server/internal/app"
	"github.com/quantumlayer/qinfra/server/internal/store"
	"github.com/quantumlayer/qinfra/server/internal/store/bboltstore"
)

// runCmd runs qinfra-server with args and returns its exit code and output.
func runCmd(args ...string) (code int, stdout, stderr string) {
	var out, errOut bytes.Buffer
	code = run(args, &out, &errOut)
	return code, out.String(), errOut.String()
}

// newStore creates a store in dir holding one host.
func newStore(t *testing.T, dir string) {
	t.Helper()
	st, err := bboltstore.Open(app.Paths{Dir: dir}.Store(), bboltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	hash := sha256.Sum256([]byte("secret"))
	now := time.Now()
	if err := st.CreateEnrollmentToken(ctx, &store.EnrollmentToken{ID: "t", Hash: hash[:], UsesAllowed: 1, ExpiresAt: now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if err := st.EnrollHost(ctx, hash[:], now, &store.Host{ID: "host-1", Hostname: "web-1"}); err != nil {
		t.Fatal(err)
	}
}

func TestBackupRestore(t *testing.T) {
	dir := t.TempDir()
	newStore(t, dir)
	out := filepath.Join(t.TempDir(), "qinfra-backup.db")

	code, _, stderr := runCmd("backup", "--data", dir, "--out", out)
	if code != 0 || !strings.Contains(stderr, "1 hosts") {
		t.Fatalf("backup: exit %d, stderr %q", code, stderr)
	}

	// While a server holds the store, backup says to go through it.
	held, err := bboltstore.Open(app.Paths{Dir: dir}.Store(), bboltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	code, _, stderr = runCmd("backup", "--data", dir, "--out", out+"2", "--lock-timeout", "100ms")
	held.Close()
	if code != 1 || !strings.Contains(stderr, "POST /api/v1/admin/backup") {
		t.Fatalf("backup of a store in use: exit %d, stderr %q", code, stderr)
	}
	if _, err := os.Stat(out + "2"); !os.IsNotExist(err) {
		t.Fatalf("a failed backup left a file: %v", err)
	}
	if code, _, stderr = runCmd("backup", "--data", dir); code != 1 || !strings.Contains(stderr, "--out FILE is required") {
		t.Fatalf("backup without --out: exit %d, stderr %q", code, stderr)
	}

	target := filepath.Join(t.TempDir(), "restored")
	code, stdout, stderr := runCmd("restore", "--data", target, "--in", out)
	if code != 0 || !strings.Contains(stdout, "1 hosts") || !strings.Contains(stdout, "holds no CA") {
		t.Fatalf("restore: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	if code, _, stderr = runCmd("restore", "--data", target, "--in", out); code != 1 || !strings.Contains(stderr, "--force") {
		t.Fatalf("restore over a store: exit %d, stderr %q", code, stderr)
	}
	if code, stdout, _ = runCmd("restore", "--data", target, "--in", out, "--force"); code != 0 || !strings.Contains(stdout, "kept as") {
		t.Fatalf("forced restore: exit %d, stdout %q", code, stdout)
	}
	if code, _, stderr = runCmd("restore", "--data", target, "--in", filepath.Join(dir, "nope"), "--force"); code != 1 {
		t.Fatalf("restore of a missing file: exit %d, stderr %q", code, stderr)
	}

	st, err := bboltstore.Open(app.Paths{Dir: target}.Store(), bboltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if h, err := st.GetHost(context.Background(), "host-1"); err != nil || h.Hostname != "web-1" {
		t.Fatalf("restored host = %+v, %v", h, err)
	}
}
