package drift

import (
	"context"
	"crypto/sha256"
	"fmt"
	"maps"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/quantumlayer/qinfra/pkg/baseline"
	"github.com/quantumlayer/qinfra/pkg/inventory"
	commonv1 "github.com/quantumlayer/qinfra/proto/gen/qinfra/common/v1"
	"github.com/quantumlayer/qinfra/server/internal/store"
	"github.com/quantumlayer/qinfra/server/internal/store/bboltstore"
	"github.com/quantumlayer/qinfra/server/internal/store/pgstore"
	"github.com/quantumlayer/qinfra/server/internal/store/pgstore/pgtest"
)

// storeUnderTest is what the model test needs of a backend.
type storeUnderTest interface {
	Store
	store.Tokens
}

// TestEngineIncrementalBbolt and TestEngineIncrementalPostgres drive the
// engine through random deltas, baseline edits, creations, deletions and
// label changes on real stores, as ingest and the API do, and after every
// step compare each host's open drift with a full evaluation from scratch:
// the incremental path must never differ from it.
func TestEngineIncrementalBbolt(t *testing.T) {
	st, err := bboltstore.Open(filepath.Join(t.TempDir(), "qinfra.db"), bboltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	runEngineModel(t, st, 250)
}

func TestEngineIncrementalPostgres(t *testing.T) {
	st, err := pgstore.Open(context.Background(), pgtest.DSN(t), pgstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	runEngineModel(t, st, 120)
}

// model items: few names, so that changes hit rules often.
func modelItem(r *rand.Rand) *commonv1.Item {
	switch r.IntN(4) {
	case 0:
		name := fmt.Sprintf("pkg%d", r.IntN(6))
		it := pkgItem(name, fmt.Sprintf("1.%d", r.IntN(3)))
		if r.IntN(4) == 0 { // multiarch
			it = seal(&commonv1.Item{Kind: inventory.KindPackage, Key: "dpkg:" + name + ":i386", Body: &commonv1.Item_Package{Package: &commonv1.Package{
				Manager: "dpkg", Name: name, Version: fmt.Sprintf("1.%d", r.IntN(3)), Arch: "i386", Status: "installed"}}})
		}
		return it
	case 1:
		return fileItem(fmt.Sprintf("/etc/f%d", r.IntN(4)), r.IntN(2))
	case 2:
		return userItem(fmt.Sprintf("u%d", r.IntN(4)), uint32(r.IntN(2)*1000))
	default:
		return serviceItem(fmt.Sprintf("s%d.service", r.IntN(4)), []string{"enabled", "disabled", "masked"}[r.IntN(3)])
	}
}

func modelBaseline(r *rand.Rand, name string) *baseline.Baseline {
	b := &baseline.Baseline{Name: name, Priority: r.IntN(2)}
	if r.IntN(2) == 0 {
		b.Selector = map[string]string{"role": []string{"web", "db"}[r.IntN(2)]}
	}
	seen := map[string]bool{}
	for range r.IntN(5) {
		p := baseline.PackageRule{Name: fmt.Sprintf("pkg%d", r.IntN(6)), Constraint: []string{"exact", "minimum", "forbidden", "present"}[r.IntN(4)]}
		if p.Constraint == "exact" || p.Constraint == "minimum" {
			p.Version = fmt.Sprintf("1.%d", r.IntN(3))
		}
		if !seen[p.Name] {
			seen[p.Name] = true
			b.Packages = append(b.Packages, p)
		}
	}
	for range r.IntN(3) {
		p := fmt.Sprintf("/etc/f%d", r.IntN(4))
		if !seen[p] {
			seen[p] = true
			b.Files = append(b.Files, baseline.FileRule{Path: p, Sha256: fmt.Sprintf("%064x", r.IntN(2))})
		}
	}
	for range r.IntN(3) {
		s := fmt.Sprintf("s%d", r.IntN(4))
		if !seen[s] {
			seen[s] = true
			b.Services = append(b.Services, baseline.ServiceRule{Name: s, State: []string{"enabled", "disabled", "masked", "absent"}[r.IntN(4)]})
		}
	}
	if r.IntN(2) == 0 {
		b.Users = &baseline.UserRules{UID0OnlyRoot: true, Allowed: []string{"u0", "u1"}[:1+r.IntN(2)]}
	}
	return b
}

type modelHost struct {
	id   string
	full map[inventory.Ref]*commonv1.Item
	seq  uint64
}

func runEngineModel(t *testing.T, st storeUnderTest, steps int) {
	ctx := t.Context()
	now := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	e := New(st, nil, func() time.Time { return now })
	r := rand.New(rand.NewPCG(7, 7))
	hash := sha256.Sum256([]byte("model"))
	if err := st.CreateEnrollmentToken(ctx, &store.EnrollmentToken{ID: "model", Hash: hash[:], UsesAllowed: 10,
		Labels: map[string]string{"role": "web"}, ExpiresAt: now.Add(time.Hour), CreatedAt: now}); err != nil {
		t.Fatal(err)
	}
	var hosts []*modelHost
	for i := range 5 {
		h := &modelHost{id: fmt.Sprintf("host-%d", i), full: map[inventory.Ref]*commonv1.Item{}}
		if err := st.EnrollHost(ctx, hash[:], now, &store.Host{ID: h.id, EnrolledAt: now}); err != nil {
			t.Fatal(err)
		}
		for range 12 {
			it := modelItem(r)
			h.full[inventory.RefOf(it)] = it
		}
		h.seq = 1
		items := slices.Collect(maps.Values(h.full))
		if _, err := st.ApplyInventory(ctx, &store.InventoryUpdate{HostID: h.id, SpoolID: "s", Seq: 1, Full: true,
			Upserts: items, SetHash: inventory.SetOf(items).Hash(), ReceivedAt: now}); err != nil {
			t.Fatal(err)
		}
		e.OnInventory(ctx, h.id, true, nil)
		hosts = append(hosts, h)
	}
	names := []string{"alpha", "beta", "gamma"}
	ops := map[string]int{}
	for step := range steps {
		now = now.Add(time.Minute)
		var what string
		switch k := r.IntN(10); {
		case k < 5: // a delta
			h := hosts[r.IntN(len(hosts))]
			var ups []*commonv1.Item
			var removed, changed []inventory.Ref
			for range 1 + r.IntN(3) {
				if r.IntN(3) == 0 && len(h.full) > 0 {
					refs := slices.SortedFunc(maps.Keys(h.full), func(a, b inventory.Ref) int { return strings.Compare(a.String(), b.String()) })
					ref := refs[r.IntN(len(refs))]
					if slices.ContainsFunc(ups, func(it *commonv1.Item) bool { return inventory.RefOf(it) == ref }) {
						continue
					}
					delete(h.full, ref)
					removed = append(removed, ref)
					changed = append(changed, ref)
					continue
				}
				it := modelItem(r)
				ref := inventory.RefOf(it)
				if slices.Contains(removed, ref) || slices.ContainsFunc(ups, func(u *commonv1.Item) bool { return inventory.RefOf(u) == ref }) {
					continue
				}
				h.full[ref] = it
				ups = append(ups, it)
				changed = append(changed, ref)
			}
			h.seq++
			items := slices.Collect(maps.Values(h.full))
			out, err := st.ApplyInventory(ctx, &store.InventoryUpdate{HostID: h.id, SpoolID: "s", Seq: h.seq, Upserts: ups, Removed: removed,
				SetHash: inventory.SetOf(items).Hash(), ReceivedAt: now})
			if err != nil || out != store.Applied {
				t.Fatalf("step %d: delta: %v %v", step, out, err)
			}
			e.OnInventory(ctx, h.id, false, changed)
			what = fmt.Sprintf("delta on %s: %v", h.id, changed)
		case k < 8: // edit or create a baseline
			name := names[r.IntN(len(names))]
			old, err := st.GetBaseline(ctx, name, 0)
			if err != nil {
				old = nil
			}
			next := modelBaseline(r, name)
			if old != nil && r.IntN(3) > 0 {
				// A small edit keeps most of it.
				c := *old
				c.Packages = slices.Clone(old.Packages)
				switch r.IntN(5) {
				case 0:
					c.Packages = next.Packages
				case 1:
					c.Files = next.Files
				case 2:
					c.Users, c.Services = next.Users, next.Services
				case 3:
					c.Selector = next.Selector
				default:
					c.Priority = 1 - old.Priority
				}
				next = &c
			}
			if err := next.Validate(); err != nil {
				t.Fatalf("step %d: generated an invalid baseline: %v", step, err)
			}
			if _, err := st.PutBaseline(ctx, next); err != nil {
				t.Fatal(err)
			}
			if _, err := e.BaselineChanged(ctx, old, next); err != nil {
				t.Fatal(err)
			}
			what = "put baseline " + name
		case k < 9: // delete a baseline
			name := names[r.IntN(len(names))]
			old, err := st.GetBaseline(ctx, name, 0)
			if err != nil {
				continue
			}
			if err := st.DeleteBaseline(ctx, name); err != nil {
				t.Fatal(err)
			}
			if _, err := e.BaselineChanged(ctx, old, nil); err != nil {
				t.Fatal(err)
			}
			what = "delete baseline " + name
		default: // relabel a host, as the API does
			h := hosts[r.IntN(len(hosts))]
			role := []string{"web", "db"}[r.IntN(2)]
			if err := st.UpdateHost(ctx, h.id, func(x *store.Host) error { x.Labels = map[string]string{"role": role}; return nil }); err != nil {
				t.Fatal(err)
			}
			if _, err := e.CheckHost(ctx, h.id); err != nil {
				t.Fatal(err)
			}
			what = "relabel " + h.id
		}
		ops[strings.Fields(what)[0]]++
		checkAgainstFull(t, st, fmt.Sprintf("step %d (%s)", step, what))
	}
	t.Logf("operations: %v", ops)
	// And a full re-check of everything finds nothing to change.
	if ev, err := e.check(ctx, mustHosts(t, st), mustBaselines(t, st), nil); err != nil || len(ev) != 0 {
		t.Fatalf("a full re-check after the incremental ones changed %d drift (%v)", len(ev), err)
	}
}

func mustHosts(t *testing.T, st Store) []*store.Host {
	hs, err := st.ListHosts(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return hs
}

func mustBaselines(t *testing.T, st Store) []*baseline.Baseline {
	bs, err := st.ListBaselines(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return bs
}

// checkAgainstFull compares every host's open drift with a from-scratch
// evaluation of its stored inventory.
func checkAgainstFull(t *testing.T, st Store, when string) {
	t.Helper()
	bs := mustBaselines(t, st)
	for _, h := range mustHosts(t, st) {
		items, err := st.ListItems(t.Context(), h.ID, "")
		if err != nil {
			t.Fatal(err)
		}
		var want []string
		seen := map[string]bool{}
		for _, d := range baseline.Evaluate(Matching(bs, h.Labels), items, Comparer(items)) {
			if !seen[d.Identity()] {
				seen[d.Identity()] = true
				want = append(want, fmtDev(&d))
			}
		}
		ds, err := st.ListDrift(t.Context(), store.DriftFilter{HostID: h.ID})
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, d := range ds {
			got = append(got, fmtDev(&d.Deviation))
		}
		slices.Sort(want)
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Fatalf("%s: host %s drift differs from a full evaluation:\n got  %q\n want %q", when, h.ID, got, want)
		}
	}
}

func fmtDev(d *baseline.Deviation) string {
	return fmt.Sprintf("%s %s %s %s: %s / %s (%s %s)", d.Baseline, d.Rule, d.Kind, d.Key, d.Expected, d.Actual, d.Severity, d.Type)
}

// TestDescriptionEditRechecksNothing: a change that cannot change drift
// touches no host.
func TestDescriptionEditRechecksNothing(t *testing.T) {
	st, err := bboltstore.Open(filepath.Join(t.TempDir(), "qinfra.db"), bboltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	e := New(st, nil, nil)
	old := &baseline.Baseline{Name: "b", Packages: []baseline.PackageRule{{Name: "x", Constraint: "present"}}}
	upd := *old
	upd.Description = "now with words"
	if n, err := e.BaselineChanged(t.Context(), old, &upd); err != nil || n != 0 {
		t.Fatalf("re-checked %d hosts (%v), want none", n, err)
	}
}
