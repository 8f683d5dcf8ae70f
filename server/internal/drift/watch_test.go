package drift

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/quantumlayer/qinfra/pkg/baseline"
	"github.com/quantumlayer/qinfra/server/internal/store"
	"github.com/quantumlayer/qinfra/server/internal/store/bboltstore"
)

// TestWatchPaths: the files of the baselines matching the host's labels,
// sorted and de-duplicated; other baselines' files are not named, a label
// change or a deleted baseline changes the list, and it is capped.
func TestWatchPaths(t *testing.T) {
	st, err := bboltstore.Open(filepath.Join(t.TempDir(), "qinfra.db"), bboltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx := t.Context()
	now := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	e := New(st, nil, func() time.Time { return now })

	hash := sha256.Sum256([]byte("watch"))
	if err := st.CreateEnrollmentToken(ctx, &store.EnrollmentToken{ID: "watch", Hash: hash[:], UsesAllowed: 2,
		Labels: map[string]string{"role": "web"}, ExpiresAt: now.Add(time.Hour), CreatedAt: now}); err != nil {
		t.Fatal(err)
	}
	if err := st.EnrollHost(ctx, hash[:], now, &store.Host{ID: "web-1", EnrolledAt: now}); err != nil {
		t.Fatal(err)
	}

	got, err := e.WatchPaths(ctx, "web-1")
	if err != nil || len(got) != 0 {
		t.Fatalf("no baselines: got %q, %v; want none", got, err)
	}

	put := func(b *baseline.Baseline) {
		t.Helper()
		if err := b.Validate(); err != nil {
			t.Fatal(err)
		}
		if _, err := st.PutBaseline(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	rule := func(p string) baseline.FileRule { return baseline.FileRule{Path: p, Mode: "0644"} }
	put(&baseline.Baseline{Name: "all", Files: []baseline.FileRule{rule("/etc/ssh/sshd_config"), rule("/etc/hosts")}})
	put(&baseline.Baseline{Name: "web", Selector: map[string]string{"role": "web"},
		Files: []baseline.FileRule{rule("/etc/nginx/nginx.conf"), rule("/etc/hosts")}})
	put(&baseline.Baseline{Name: "db", Selector: map[string]string{"role": "db"},
		Files: []baseline.FileRule{rule("/etc/postgresql/pg_hba.conf")}})
	put(&baseline.Baseline{Name: "pkgs", Packages: []baseline.PackageRule{{Name: "openssl", Constraint: "present"}}})

	want := []string{"/etc/hosts", "/etc/nginx/nginx.conf", "/etc/ssh/sshd_config"}
	if got, err := e.WatchPaths(ctx, "web-1"); err != nil || !slices.Equal(got, want) {
		t.Fatalf("web host: got %q, %v; want %q", got, err, want)
	}

	if err := st.UpdateHost(ctx, "web-1", func(h *store.Host) error { h.Labels = map[string]string{"role": "db"}; return nil }); err != nil {
		t.Fatal(err)
	}
	want = []string{"/etc/hosts", "/etc/postgresql/pg_hba.conf", "/etc/ssh/sshd_config"}
	if got, err := e.WatchPaths(ctx, "web-1"); err != nil || !slices.Equal(got, want) {
		t.Fatalf("after relabelling to db: got %q, %v; want %q", got, err, want)
	}

	if err := st.DeleteBaseline(ctx, "all"); err != nil {
		t.Fatal(err)
	}
	// Baselines are cached; a change through the API re-checks drift,
	// which drops them (a change on another replica: the bus event).
	e.InvalidateBaselines()
	want = []string{"/etc/postgresql/pg_hba.conf"}
	if got, err := e.WatchPaths(ctx, "web-1"); err != nil || !slices.Equal(got, want) {
		t.Fatalf("after deleting a baseline: got %q, %v; want %q", got, err, want)
	}

	if _, err := e.WatchPaths(ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unknown host: got %v, want ErrNotFound", err)
	}

	// Above the cap the list is cut to the first MaxWatchPaths in order.
	big := &baseline.Baseline{Name: "big"}
	for i := range MaxWatchPaths + 10 {
		big.Files = append(big.Files, rule(fmt.Sprintf("/srv/f%05d", i)))
	}
	put(big)
	e.InvalidateBaselines()
	got, err = e.WatchPaths(ctx, "web-1")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != MaxWatchPaths || got[0] != "/etc/postgresql/pg_hba.conf" || got[len(got)-1] != fmt.Sprintf("/srv/f%05d", MaxWatchPaths-2) {
		t.Fatalf("capped list: %d paths, first %q, last %q", len(got), got[0], got[len(got)-1])
	}
	if !slices.IsSorted(got) {
		t.Fatal("capped list is not sorted")
	}
}
