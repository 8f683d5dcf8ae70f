package storetest

import (
	"errors"
	"testing"

	"github.com/quantumlayer/qinfra/pkg/baseline"
	"github.com/quantumlayer/qinfra/server/internal/store"
)

var baselineTests = []test{
	{"BaselineVersions", testBaselineVersions},
	{"BaselineListAndDelete", testBaselineListAndDelete},
}

func newBaseline(name, minVersion string) *baseline.Baseline {
	return &baseline.Baseline{
		Name:      name,
		Selector:  map[string]string{"role": "web"},
		Packages:  []baseline.PackageRule{{Name: "openssl", Constraint: baseline.ConstraintMinimum, Version: minVersion}},
		Users:     &baseline.UserRules{Allowed: []string{"root"}, UID0OnlyRoot: true},
		CreatedAt: t0,
		CreatedBy: "admin",
	}
}

func testBaselineVersions(t *testing.T, s store.Store) {
	ctx := t.Context()
	if _, err := s.GetBaseline(ctx, "web", 0); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("GetBaseline of nothing: %v, want ErrNotFound", err)
	}
	b1 := newBaseline("web", "3.0.1")
	if created, err := s.PutBaseline(ctx, b1); err != nil || !created || b1.Version != 1 {
		t.Fatalf("PutBaseline = %v, %v, version %d; want created version 1", created, err, b1.Version)
	}
	// The same content again, even with another author: no new version.
	same := newBaseline("web", "3.0.1")
	same.CreatedBy = "someone else"
	if created, err := s.PutBaseline(ctx, same); err != nil || created || same.Version != 1 {
		t.Fatalf("PutBaseline unchanged = %v, %v, version %d; want not created, version 1", created, err, same.Version)
	}
	b2 := newBaseline("web", "3.0.2")
	if created, err := s.PutBaseline(ctx, b2); err != nil || !created || b2.Version != 2 {
		t.Fatalf("PutBaseline changed = %v, %v, version %d; want created version 2", created, err, b2.Version)
	}
	latest, err := s.GetBaseline(ctx, "web", 0)
	if err != nil || latest.Version != 2 || latest.Packages[0].Version != "3.0.2" || !latest.CreatedAt.Equal(t0) || latest.CreatedBy != "admin" {
		t.Fatalf("GetBaseline latest = %+v, %v", latest, err)
	}
	v1, err := s.GetBaseline(ctx, "web", 1)
	if err != nil || v1.Version != 1 || v1.Packages[0].Version != "3.0.1" || v1.Selector["role"] != "web" || !v1.Users.UID0OnlyRoot {
		t.Fatalf("GetBaseline v1 = %+v, %v", v1, err)
	}
	if _, err := s.GetBaseline(ctx, "web", 3); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("GetBaseline v3: %v, want ErrNotFound", err)
	}
	vs, err := s.ListBaselineVersions(ctx, "web")
	if err != nil || len(vs) != 2 || vs[0].Version != 1 || vs[1].Version != 2 {
		t.Fatalf("ListBaselineVersions = %v, %v", vs, err)
	}
	if _, err := s.ListBaselineVersions(ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("ListBaselineVersions(nope): %v", err)
	}
}

func testBaselineListAndDelete(t *testing.T, s store.Store) {
	ctx := t.Context()
	for _, b := range []*baseline.Baseline{newBaseline("web", "1"), newBaseline("db", "1"), newBaseline("web", "2")} {
		if _, err := s.PutBaseline(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	bs, err := s.ListBaselines(ctx)
	if err != nil || len(bs) != 2 || bs[0].Name != "db" || bs[1].Name != "web" || bs[1].Version != 2 {
		t.Fatalf("ListBaselines = %v, %v; want db v1, web v2", bs, err)
	}
	if err := s.DeleteBaseline(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteBaseline(ctx, "web"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("second DeleteBaseline: %v, want ErrNotFound", err)
	}
	if _, err := s.GetBaseline(ctx, "web", 1); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("GetBaseline after delete: %v", err)
	}
	again := newBaseline("web", "9")
	if _, err := s.PutBaseline(ctx, again); err != nil || again.Version != 1 {
		t.Fatalf("PutBaseline after delete: version %d, %v; want 1", again.Version, err)
	}
}
