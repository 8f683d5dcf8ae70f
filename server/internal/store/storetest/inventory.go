package storetest

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/quantumlayer/qinfra/pkg/inventory"
	commonv1 "github.com/quantumlayer/qinfra/proto/gen/qinfra/common/v1"
	"github.com/quantumlayer/qinfra/server/internal/store"
)

var inventoryTests = []test{
	{"Inventory/StreamStateOfNewHost", testStreamStateOfNewHost},
	{"Inventory/UnknownHost", testInventoryUnknownHost},
	{"Inventory/Full", testInventoryFull},
	{"Inventory/FullReplaces", testInventoryFullReplaces},
	{"Inventory/FullHashMismatch", testInventoryFullHashMismatch},
	{"Inventory/Delta", testInventoryDelta},
	{"Inventory/DeltaSameRefTwice", testInventoryDeltaSameRefTwice},
	{"Inventory/DuplicateSeq", testInventoryDuplicateSeq},
	{"Inventory/ConcurrentDuplicates", testInventoryConcurrentDuplicates},
	{"Inventory/DeltaHashMismatch", testInventoryDeltaHashMismatch},
	{"Inventory/FirstDeltaNeedsFull", testInventoryFirstDeltaNeedsFull},
	{"Inventory/NewSpoolScope", testInventoryNewSpoolScope},
	{"Inventory/RemoveMissingItem", testInventoryRemoveMissingItem},
	{"Inventory/InvalidUpdate", testInventoryInvalidUpdate},
	{"Inventory/HostsIsolated", testInventoryHostsIsolated},
	{"Inventory/Large", testInventoryLarge},
	{"Inventory/FindItems", testFindItems},
	{"Inventory/FindItemsLarge", testFindItemsLarge},
}

// baseItems is a small inventory of every kind, in no particular order,
// with keys whose byte order differs from a case-insensitive order.
func baseItems() []*commonv1.Item {
	return []*commonv1.Item{
		pkg("openssl", "3.0.11-1~deb12u2"),
		user("root", 0),
		service("ssh.service", "active"),
		pkg("bash", "5.2.15-2+b2"),
		file("/etc/ssh/sshd_config", "aa11"),
		user("Zed", 1001),
		user("alice", 1000),
		group("sudo", 27, "alice"),
		osItem("Debian GNU/Linux 12 (bookworm)"),
		pkg("Xorg", "1:7.7+23"),
		file("/etc/passwd", "bb22"),
	}
}

func refs(items ...*commonv1.Item) []inventory.Ref {
	var out []inventory.Ref
	for _, it := range items {
		out = append(out, inventory.RefOf(it))
	}
	return out
}

func wantInvalid(t *testing.T, s store.Store, u *store.InventoryUpdate, what string) {
	t.Helper()
	out, err := s.ApplyInventory(t.Context(), u)
	if !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("ApplyInventory with %s = %v, %v; want ErrInvalid", what, out, err)
	}
}

func testStreamStateOfNewHost(t *testing.T, s store.Store) {
	enrollHosts(t, s, "host-1")
	wantState(t, s, "host-1", store.StreamState{})
	wantItems(t, s, "host-1", nil)
}

func testInventoryUnknownHost(t *testing.T, s store.Store) {
	enrollHosts(t, s, "host-1")
	ctx := t.Context()
	for _, u := range []*store.InventoryUpdate{
		fullUpdate("ghost", "sp", 1, baseItems()),
		deltaUpdate("ghost", "sp", 1, nil, []*commonv1.Item{pkg("bash", "5")}, nil),
		fullUpdate("host-", "sp", 1, baseItems()),
	} {
		if out, err := s.ApplyInventory(ctx, u); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("ApplyInventory(%s, full %v) = %v, %v; want ErrNotFound", u.HostID, u.Full, out, err)
		}
	}
	if _, err := s.GetStreamState(ctx, "ghost"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("GetStreamState(unknown) error = %v, want ErrNotFound", err)
	}
	if _, err := s.ListItems(ctx, "ghost", ""); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("ListItems(unknown) error = %v, want ErrNotFound", err)
	}
	if _, err := s.CountItems(ctx, "ghost"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("CountItems(unknown) error = %v, want ErrNotFound", err)
	}
	// The refused updates left the enrolled host alone.
	wantState(t, s, "host-1", store.StreamState{})
}

func testInventoryFull(t *testing.T, s store.Store) {
	enrollHosts(t, s, "host-1")
	items := baseItems()
	u := fullUpdate("host-1", "spool-a", 1, items)
	apply(t, s, u, store.Applied)
	wantItems(t, s, "host-1", items)
	wantState(t, s, "host-1", stateOf(u, items))
	wantChanges(t, s, "host-1", time.Time{}, 0) // the starting point, not a change

	// Byte order, spelled out: kinds sorted, "Xorg" before "bash".
	got, err := s.ListItems(t.Context(), "host-1", "")
	if err != nil {
		t.Fatalf("ListItems: %v", err)
	}
	var order []string
	for _, it := range got {
		order = append(order, inventory.RefOf(it).String())
	}
	want := []string{
		"file//etc/passwd", "file//etc/ssh/sshd_config", "group/sudo", "os/host",
		"package/dpkg:Xorg:amd64", "package/dpkg:bash:amd64", "package/dpkg:openssl:amd64",
		"service/ssh.service", "user/Zed", "user/alice", "user/root",
	}
	if fmt.Sprint(order) != fmt.Sprint(want) {
		t.Fatalf("ListItems order:\n  %v\nwant\n  %v", order, want)
	}
	if got, err := s.ListItems(t.Context(), "host-1", "no-such-kind"); err != nil || len(got) != 0 {
		t.Fatalf("ListItems(unknown kind) = %d items, %v; want none", len(got), err)
	}
}

func testInventoryFullReplaces(t *testing.T, s store.Store) {
	enrollHosts(t, s, "host-1")
	apply(t, s, fullUpdate("host-1", "sp", 1, baseItems()), store.Applied)
	next := []*commonv1.Item{
		pkg("openssl", "3.0.13-1~deb12u1"), // changed
		pkg("curl", "7.88.1-10"),           // new
		user("root", 0),                    // kept
	}
	u := fullUpdate("host-1", "sp", 2, next)
	apply(t, s, u, store.Applied)
	wantItems(t, s, "host-1", next)
	wantState(t, s, "host-1", stateOf(u, next))

	// An empty full inventory empties the host.
	u = fullUpdate("host-1", "sp", 3, nil)
	apply(t, s, u, store.Applied)
	wantItems(t, s, "host-1", nil)
	wantState(t, s, "host-1", stateOf(u, nil))
}

func testInventoryFullHashMismatch(t *testing.T, s store.Store) {
	enrollHosts(t, s, "host-1")
	items := baseItems()
	first := fullUpdate("host-1", "sp", 1, items)
	apply(t, s, first, store.Applied)

	bad := fullUpdate("host-1", "sp", 2, []*commonv1.Item{pkg("bash", "5.2")})
	bad.SetHash = inventory.SetOf(items).Hash() // hash of some other set
	apply(t, s, bad, store.HashMismatch)
	wantItems(t, s, "host-1", items)
	want := stateOf(first, items)
	want.LastSeq, want.NeedsFull = 2, true
	wantState(t, s, "host-1", want)

	// A delta is now ignored, a correct full inventory clears NeedsFull.
	apply(t, s, deltaUpdate("host-1", "sp", 3, items, []*commonv1.Item{pkg("zsh", "5.9")}, nil), store.NeedsFull)
	wantChanges(t, s, "host-1", time.Time{}, 0)
	good := fullUpdate("host-1", "sp", 4, items[:3])
	apply(t, s, good, store.Applied)
	wantItems(t, s, "host-1", items[:3])
	wantState(t, s, "host-1", stateOf(good, items[:3]))
	var gone []*store.ItemChange
	for _, it := range items[3:] {
		gone = append(gone, removed(4, it))
	}
	wantChanges(t, s, "host-1", time.Time{}, 0, gone...)
}

func testInventoryDelta(t *testing.T, s store.Store) {
	enrollHosts(t, s, "host-1")
	base := baseItems()
	apply(t, s, fullUpdate("host-1", "sp", 1, base), store.Applied)

	// Change a package, add a file and a package, remove a user.
	ups := []*commonv1.Item{pkg("openssl", "3.0.13-1~deb12u1"), file("/etc/hosts", "cc33"), pkg("curl", "7.88.1-10")}
	rem := refs(user("alice", 1000))
	u := deltaUpdate("host-1", "sp", 2, base, ups, rem)
	apply(t, s, u, store.Applied)
	cur := applyDelta(base, ups, rem)
	wantItems(t, s, "host-1", cur)
	wantState(t, s, "host-1", stateOf(u, cur))

	// The stored accumulator carries on: remove what the last delta added,
	// re-add what it removed.
	ups = []*commonv1.Item{user("alice", 1000)}
	rem = refs(file("/etc/hosts", "cc33"), pkg("curl", "7.88.1-10"))
	u = deltaUpdate("host-1", "sp", 3, cur, ups, rem)
	apply(t, s, u, store.Applied)
	cur = applyDelta(cur, ups, rem)
	wantItems(t, s, "host-1", cur)
	wantState(t, s, "host-1", stateOf(u, cur))

	// A gap in sequence numbers is not an error: the set hash decides.
	ups = []*commonv1.Item{service("ssh.service", "failed")}
	u = deltaUpdate("host-1", "sp", 10, cur, ups, nil)
	apply(t, s, u, store.Applied)
	cur = applyDelta(cur, ups, nil)
	wantItems(t, s, "host-1", cur)
	wantState(t, s, "host-1", stateOf(u, cur))

	// An empty delta (a heartbeat of the set) changes nothing but the seq.
	u = deltaUpdate("host-1", "sp", 11, cur, nil, nil)
	apply(t, s, u, store.Applied)
	wantItems(t, s, "host-1", cur)
	wantState(t, s, "host-1", stateOf(u, cur))
}

func testInventoryDeltaSameRefTwice(t *testing.T, s store.Store) {
	enrollHosts(t, s, "host-1")
	base := baseItems()
	apply(t, s, fullUpdate("host-1", "sp", 1, base), store.Applied)
	// The later upsert of a ref wins, and removals come before upserts.
	ups := []*commonv1.Item{pkg("bash", "5.3-1"), pkg("bash", "5.3-2"), user("root", 0), user("bob", 1002)}
	rem := refs(user("root", 0), user("bob", 0), user("root", 0))
	u := deltaUpdate("host-1", "sp", 2, base, ups, rem)
	apply(t, s, u, store.Applied)
	cur := applyDelta(base, ups, rem)
	wantItems(t, s, "host-1", cur)
	wantState(t, s, "host-1", stateOf(u, cur))

	// The same in a full inventory: the last item of a ref counts.
	full := []*commonv1.Item{pkg("bash", "1"), pkg("bash", "2"), user("root", 0)}
	u = fullUpdate("host-1", "sp", 3, full)
	apply(t, s, u, store.Applied)
	cur = applyDelta(nil, full, nil)
	wantItems(t, s, "host-1", cur)
	wantState(t, s, "host-1", stateOf(u, cur))
}

func testInventoryDuplicateSeq(t *testing.T, s store.Store) {
	enrollHosts(t, s, "host-1")
	base := baseItems()
	apply(t, s, fullUpdate("host-1", "sp", 1, base), store.Applied)
	ups := []*commonv1.Item{pkg("bash", "5.3")}
	u := deltaUpdate("host-1", "sp", 2, base, ups, nil)
	apply(t, s, u, store.Applied)
	cur := applyDelta(base, ups, nil)
	state := stateOf(u, cur)
	bash := changed(2, pkg("bash", "5.2.15-2+b2"), ups[0])

	for _, dup := range []*store.InventoryUpdate{
		u, // redelivered as is
		deltaUpdate("host-1", "sp", 2, cur, []*commonv1.Item{pkg("zsh", "5.9")}, nil),
		deltaUpdate("host-1", "sp", 1, cur, nil, refs(user("root", 0))),
		fullUpdate("host-1", "sp", 1, base),
		fullUpdate("host-1", "sp", 2, nil),
		fullUpdate("host-1", "sp", 0, nil),
	} {
		apply(t, s, dup, store.Duplicate)
		wantItems(t, s, "host-1", cur)
		wantState(t, s, "host-1", state)
		wantChanges(t, s, "host-1", time.Time{}, 0, bash)
	}
}

func testInventoryConcurrentDuplicates(t *testing.T, s store.Store) {
	enrollHosts(t, s, "host-1")
	base := baseItems()
	apply(t, s, fullUpdate("host-1", "sp", 1, base), store.Applied)
	ups := []*commonv1.Item{pkg("bash", "5.3"), file("/etc/motd", "dd44")}
	u := deltaUpdate("host-1", "sp", 2, base, ups, nil)
	const racers = 8
	outs := make([]store.Outcome, racers)
	errs := make([]error, racers)
	var wg sync.WaitGroup
	for i := range racers {
		wg.Go(func() { outs[i], errs[i] = s.ApplyInventory(t.Context(), u) })
	}
	wg.Wait()
	applied := 0
	for i := range racers {
		if errs[i] != nil {
			t.Fatalf("racer %d: %v", i, errs[i])
		}
		switch outs[i] {
		case store.Applied:
			applied++
		case store.Duplicate:
		default:
			t.Fatalf("racer %d: outcome %v, want applied or duplicate", i, outs[i])
		}
	}
	if applied != 1 {
		t.Fatalf("the same update was applied %d times, want once", applied)
	}
	cur := applyDelta(base, ups, nil)
	wantItems(t, s, "host-1", cur)
	wantState(t, s, "host-1", stateOf(u, cur))
	// Its changes were recorded once.
	wantChanges(t, s, "host-1", time.Time{}, 0, changed(2, pkg("bash", "5.2.15-2+b2"), ups[0]), added(2, ups[1]))
}

func testInventoryDeltaHashMismatch(t *testing.T, s store.Store) {
	enrollHosts(t, s, "host-1")
	base := baseItems()
	first := fullUpdate("host-1", "sp", 1, base)
	apply(t, s, first, store.Applied)

	// Delta 2 was lost; delta 3 is computed on top of it.
	lost := applyDelta(base, []*commonv1.Item{pkg("curl", "7.88")}, nil)
	u := deltaUpdate("host-1", "sp", 3, lost, []*commonv1.Item{pkg("bash", "5.3")}, refs(user("Zed", 1001)))
	apply(t, s, u, store.HashMismatch)
	wantItems(t, s, "host-1", base)
	want := stateOf(first, base)
	want.LastSeq, want.NeedsFull = 3, true
	wantState(t, s, "host-1", want)

	// Until a full inventory arrives, deltas are ignored, even ones that
	// would match, but their seqs are consumed.
	apply(t, s, deltaUpdate("host-1", "sp", 4, base, []*commonv1.Item{pkg("zsh", "5.9")}, nil), store.NeedsFull)
	want.LastSeq = 4
	wantItems(t, s, "host-1", base)
	wantState(t, s, "host-1", want)
	apply(t, s, deltaUpdate("host-1", "sp", 4, base, nil, nil), store.Duplicate)
	apply(t, s, deltaUpdate("host-1", "sp", 3, base, nil, nil), store.Duplicate)

	cur := applyDelta(lost, []*commonv1.Item{pkg("bash", "5.3")}, refs(user("Zed", 1001)))
	full := fullUpdate("host-1", "sp", 5, cur)
	apply(t, s, full, store.Applied)
	wantItems(t, s, "host-1", cur)
	wantState(t, s, "host-1", stateOf(full, cur))

	// Deltas apply again.
	ups := []*commonv1.Item{pkg("zsh", "5.9")}
	d := deltaUpdate("host-1", "sp", 6, cur, ups, nil)
	apply(t, s, d, store.Applied)
	cur = applyDelta(cur, ups, nil)
	wantItems(t, s, "host-1", cur)
	wantState(t, s, "host-1", stateOf(d, cur))
}

func testInventoryFirstDeltaNeedsFull(t *testing.T, s store.Store) {
	enrollHosts(t, s, "host-1")
	u := deltaUpdate("host-1", "spool-a", 7, nil, []*commonv1.Item{pkg("bash", "5.2")}, nil)
	apply(t, s, u, store.NeedsFull)
	wantItems(t, s, "host-1", nil)
	wantState(t, s, "host-1", store.StreamState{
		SpoolID: "spool-a", LastSeq: 7, SetHash: inventory.SetOf(nil).Hash(), NeedsFull: true,
	})
	full := fullUpdate("host-1", "spool-a", 8, baseItems())
	apply(t, s, full, store.Applied)
	wantItems(t, s, "host-1", baseItems())
	wantState(t, s, "host-1", stateOf(full, baseItems()))
}

func testInventoryNewSpoolScope(t *testing.T, s store.Store) {
	enrollHosts(t, s, "host-1")
	base := baseItems()
	apply(t, s, fullUpdate("host-1", "spool-a", 1, base), store.Applied)
	ups := []*commonv1.Item{pkg("bash", "5.3")}
	d := deltaUpdate("host-1", "spool-a", 9, base, ups, nil)
	apply(t, s, d, store.Applied)
	cur := applyDelta(base, ups, nil)

	// The agent's spool was recreated: seqs restart at 1, the items are
	// kept, and a delta (even a matching one) needs a full inventory first.
	u := deltaUpdate("host-1", "spool-b", 1, cur, []*commonv1.Item{pkg("zsh", "5.9")}, nil)
	apply(t, s, u, store.NeedsFull)
	wantItems(t, s, "host-1", cur)
	want := stateOf(d, cur)
	want.SpoolID, want.LastSeq, want.NeedsFull = "spool-b", 1, true
	wantState(t, s, "host-1", want)
	apply(t, s, u, store.Duplicate)

	full := fullUpdate("host-1", "spool-b", 2, base)
	apply(t, s, full, store.Applied)
	wantItems(t, s, "host-1", base)
	wantState(t, s, "host-1", stateOf(full, base))

	// A full inventory starting a new scope applies at once, whatever its
	// seq compared with the old scope's.
	full = fullUpdate("host-1", "spool-c", 1, cur)
	apply(t, s, full, store.Applied)
	wantItems(t, s, "host-1", cur)
	wantState(t, s, "host-1", stateOf(full, cur))

	// Going back to an earlier spool ID is a new scope too.
	full = fullUpdate("host-1", "spool-a", 1, base)
	apply(t, s, full, store.Applied)
	wantState(t, s, "host-1", stateOf(full, base))
}

func testInventoryRemoveMissingItem(t *testing.T, s store.Store) {
	enrollHosts(t, s, "host-1")
	a, b, c := pkg("a", "1"), pkg("b", "1"), pkg("c", "1")
	base := []*commonv1.Item{a, b}
	apply(t, s, fullUpdate("host-1", "sp", 1, base), store.Applied)

	// Removing an item that is not there changes nothing; the set still
	// matches, including for refs no stored item could have.
	missing := []inventory.Ref{inventory.RefOf(c), {Kind: "package", Key: ""}, {Kind: "nope", Key: "x"}, {Kind: "package\x00dpkg:a", Key: "amd64"}}
	u := deltaUpdate("host-1", "sp", 2, base, nil, missing)
	apply(t, s, u, store.Applied)
	wantItems(t, s, "host-1", base)
	wantState(t, s, "host-1", stateOf(u, base))

	// The agent removes b and c, believing c stored (a delta the store
	// never saw added it). Both sides end with {a}: a store that
	// subtracted c's digest without holding c would not match.
	d := deltaUpdate("host-1", "sp", 3, []*commonv1.Item{a, b, c}, nil, refs(b, c))
	apply(t, s, d, store.Applied)
	wantItems(t, s, "host-1", []*commonv1.Item{a})
	wantState(t, s, "host-1", stateOf(d, []*commonv1.Item{a}))

	// A removal names an item by ref: the stored item goes whatever hash
	// the agent thought it had.
	d = deltaUpdate("host-1", "sp", 4, []*commonv1.Item{a}, []*commonv1.Item{c, pkg("d", "1")}, refs(pkg("a", "0.9")))
	apply(t, s, d, store.Applied)
	cur := []*commonv1.Item{c, pkg("d", "1")}
	wantItems(t, s, "host-1", cur)
	wantState(t, s, "host-1", stateOf(d, cur))
}

func testInventoryInvalidUpdate(t *testing.T, s store.Store) {
	enrollHosts(t, s, "host-1")
	base := baseItems()
	first := fullUpdate("host-1", "sp", 1, base)
	apply(t, s, first, store.Applied)

	wrongBody := seal(&commonv1.Item{
		Kind: inventory.KindPackage, Key: "dpkg:evil:amd64",
		Body: &commonv1.Item_File{File: &commonv1.File{Path: "/evil"}},
	})
	noKey := pkg("x", "1")
	noKey.Key = ""
	badKind := pkg("y", "1")
	badKind.Kind = "gadget"
	shortHash := pkg("z", "1")
	shortHash.Hash = shortHash.Hash[:8]
	for name, it := range map[string]*commonv1.Item{
		"a body of the wrong kind": wrongBody,
		"an empty key":             noKey,
		"an unknown kind":          badKind,
		"a short hash":             shortHash,
		"a nil item":               nil,
	} {
		// A valid upsert before the invalid one is not applied either.
		ups := []*commonv1.Item{pkg("bash", "9"), it}
		wantInvalid(t, s, deltaUpdate("host-1", "sp", 2, base, ups, refs(user("root", 0))), "a delta with "+name)
		wantInvalid(t, s, fullUpdate("host-1", "sp", 2, append(baseItems(), it)), "a full inventory with "+name)
	}
	withRemovals := fullUpdate("host-1", "sp", 2, base)
	withRemovals.Removed = refs(user("root", 0))
	wantInvalid(t, s, withRemovals, "a full inventory listing removals")

	// Nothing changed and seq 2 is still free.
	wantItems(t, s, "host-1", base)
	wantState(t, s, "host-1", stateOf(first, base))
	wantChanges(t, s, "host-1", time.Time{}, 0)
	ups := []*commonv1.Item{pkg("bash", "9")}
	u := deltaUpdate("host-1", "sp", 2, base, ups, nil)
	apply(t, s, u, store.Applied)
	cur := applyDelta(base, ups, nil)
	wantItems(t, s, "host-1", cur)
	wantState(t, s, "host-1", stateOf(u, cur))
}

func testInventoryHostsIsolated(t *testing.T, s store.Store) {
	enrollHosts(t, s, "h1", "h10", "h2")
	one := baseItems()
	ten := []*commonv1.Item{pkg("nginx", "1.22"), user("www-data", 33)}
	u1 := fullUpdate("h1", "sp", 1, one)
	u10 := fullUpdate("h10", "sp", 5, ten)
	apply(t, s, u1, store.Applied)
	apply(t, s, u10, store.Applied)
	wantItems(t, s, "h1", one)
	wantItems(t, s, "h10", ten)
	wantItems(t, s, "h2", nil)
	wantState(t, s, "h1", stateOf(u1, one))
	wantState(t, s, "h10", stateOf(u10, ten))
	wantState(t, s, "h2", store.StreamState{})

	// Seqs are per host too.
	u := deltaUpdate("h1", "sp", 2, one, nil, refs(one[0]))
	apply(t, s, u, store.Applied)
	apply(t, s, deltaUpdate("h10", "sp", 2, ten, nil, nil), store.Duplicate)
	wantItems(t, s, "h1", one[1:])
	wantItems(t, s, "h10", ten)
}

func testInventoryLarge(t *testing.T, s store.Store) {
	enrollHosts(t, s, "host-1")
	const n = 3000
	items := make([]*commonv1.Item, 0, n)
	for i := range n {
		switch i % 6 {
		case 0, 1, 2:
			items = append(items, pkg(fmt.Sprintf("lib%04d", i), fmt.Sprintf("1.%d-1", i)))
		case 3:
			items = append(items, file(fmt.Sprintf("/etc/app/conf.d/%04d.conf", i), fmt.Sprintf("%064x", i)))
		case 4:
			items = append(items, user(fmt.Sprintf("user%04d", i), uint32(1000+i)))
		case 5:
			items = append(items, service(fmt.Sprintf("unit%04d.service", i), "active"))
		}
	}
	u := fullUpdate("host-1", "sp", 1, items)
	apply(t, s, u, store.Applied)
	wantItems(t, s, "host-1", items)
	wantState(t, s, "host-1", stateOf(u, items))

	// A delta on top touches only its items.
	ups := []*commonv1.Item{pkg("lib0000", "2.0-1"), pkg("new", "1"), file("/etc/new", "ee55")}
	rem := refs(items[1], items[3], items[4], items[5])
	d := deltaUpdate("host-1", "sp", 2, items, ups, rem)
	apply(t, s, d, store.Applied)
	cur := applyDelta(items, ups, rem)
	wantItems(t, s, "host-1", cur)
	wantState(t, s, "host-1", stateOf(d, cur))
}

func pkgArch(name, version, arch string) *commonv1.Item {
	return seal(&commonv1.Item{
		Kind: inventory.KindPackage, Key: "dpkg:" + name + ":" + arch,
		Body: &commonv1.Item_Package{Package: &commonv1.Package{
			Manager: "dpkg", Name: name, Version: version, Arch: arch, SourceName: name, Status: "installed",
		}},
	})
}

// findItems calls FindItems and checks its result against the host's
// items that ListItems returns, filtered by the prefixes.
func findItems(t *testing.T, s store.Store, host string, prefixes ...inventory.Ref) []*commonv1.Item {
	t.Helper()
	all, err := s.ListItems(t.Context(), host, "")
	if err != nil {
		t.Fatalf("ListItems(%s): %v", host, err)
	}
	return findIn(t, s, host, all, prefixes...)
}

// findIn is findItems given the host's items as ListItems returns them.
func findIn(t *testing.T, s store.Store, host string, all []*commonv1.Item, prefixes ...inventory.Ref) []*commonv1.Item {
	t.Helper()
	got, err := s.FindItems(t.Context(), host, prefixes)
	if err != nil {
		t.Fatalf("FindItems(%s, %q): %v", host, prefixes, err)
	}
	var want []*commonv1.Item
	for _, it := range all {
		for _, p := range prefixes {
			if it.GetKind() == p.Kind && strings.HasPrefix(it.GetKey(), p.Key) {
				want = append(want, it)
				break
			}
		}
	}
	sameItems(t, fmt.Sprintf("FindItems(%s, %q)", host, prefixes), got, want)
	return got
}

// refStrings returns the items' refs as strings.
func refStrings(items []*commonv1.Item) []string {
	out := []string{}
	for _, it := range items {
		out = append(out, inventory.RefOf(it).String())
	}
	return out
}

func pkgRef(prefix string) inventory.Ref {
	return inventory.Ref{Kind: inventory.KindPackage, Key: prefix}
}

func fileRef(prefix string) inventory.Ref {
	return inventory.Ref{Kind: inventory.KindFile, Key: prefix}
}

func testFindItems(t *testing.T, s store.Store) {
	enrollHosts(t, s, "host-1", "host-2", "empty")
	items := append(baseItems(),
		pkgArch("openssl", "3.0.11-1~deb12u2", "i386"),
		pkg("openssl-dev", "3.0.11-1~deb12u2"),
		pkg("openssh-server", "1:9.2p1-2"),
		pkg("opens", "1"),
		file("/etc/ssh/sshd_config.d/extra.conf", "cc33"),
		file("/etc/ssh/sshd_config~", "dd44"),
		user("alice2", 1002),
	)
	base := fullUpdate("host-1", "sp", 1, items)
	apply(t, s, base, store.Applied)
	// Another host's items are not found.
	apply(t, s, fullUpdate("host-2", "sp", 1, []*commonv1.Item{pkg("openssl", "9"), file("/etc/passwd", "ff")}), store.Applied)

	for _, tc := range []struct {
		name     string
		prefixes []inventory.Ref
		want     []string
	}{
		{"several kinds", []inventory.Ref{
			{Kind: inventory.KindUser, Key: "alice"}, pkgRef("dpkg:openssl:"), fileRef("/etc/passwd"), {Kind: inventory.KindOS},
		}, []string{
			"file//etc/passwd", "os/host", "package/dpkg:openssl:amd64", "package/dpkg:openssl:i386", "user/alice", "user/alice2",
		}},
		{"overlapping", []inventory.Ref{pkgRef("dpkg:openssl:"), pkgRef("dpkg:open"), pkgRef("dpkg:openssl-dev:"), pkgRef("dpkg:open")}, []string{
			"package/dpkg:opens:amd64", "package/dpkg:openssh-server:amd64", "package/dpkg:openssl-dev:amd64",
			"package/dpkg:openssl:amd64", "package/dpkg:openssl:i386",
		}},
		{"one name of several sharing a prefix", []inventory.Ref{pkgRef("dpkg:opens:")}, []string{"package/dpkg:opens:amd64"}},
		{"exact file path prefixing others", []inventory.Ref{fileRef("/etc/ssh/sshd_config")}, []string{
			"file//etc/ssh/sshd_config", "file//etc/ssh/sshd_config.d/extra.conf", "file//etc/ssh/sshd_config~",
		}},
		{"whole kind", []inventory.Ref{{Kind: inventory.KindUser}, {Kind: inventory.KindUser, Key: "alice"}}, []string{
			"user/Zed", "user/alice", "user/alice2", "user/root",
		}},
		{"whole kinds", []inventory.Ref{{Kind: inventory.KindService}, {Kind: inventory.KindGroup}}, []string{
			"group/sudo", "service/ssh.service",
		}},
		{"no match", []inventory.Ref{pkgRef("dpkg:nope:"), pkgRef("rpm:"), fileRef("/etc/ssh/sshd_config.e"), fileRef("/etc/z")}, []string{}},
		{"kind without items", []inventory.Ref{{Kind: inventory.KindPort}, {Kind: inventory.KindProcess, Key: "x"}}, []string{}},
		{"unknown kinds", []inventory.Ref{{Kind: "gadget"}, {Kind: "package\x00dpkg:openssl"}, {Kind: "packag"}, {Kind: ""}}, []string{}},
		{"unknown kind beside a known one", []inventory.Ref{{Kind: "gadget"}, pkgRef("dpkg:bash:")}, []string{"package/dpkg:bash:amd64"}},
		{"0xff bytes", []inventory.Ref{fileRef("\xff"), fileRef("/etc/passwd\xff"), fileRef("/etc/ssh/sshd_config\xff\xff")}, []string{}},
		{"no prefixes", nil, []string{}},
	} {
		got := findItems(t, s, "host-1", tc.prefixes...)
		if rs := refStrings(got); !slices.Equal(rs, tc.want) {
			t.Errorf("%s: FindItems(%q) = %q, want %q", tc.name, tc.prefixes, rs, tc.want)
		}
	}

	// A host without items, an unknown host.
	if got, err := s.FindItems(t.Context(), "empty", []inventory.Ref{{Kind: inventory.KindPackage}}); err != nil || len(got) != 0 {
		t.Fatalf("FindItems(host without items) = %d items, %v", len(got), err)
	}
	for _, host := range []string{"ghost", "host-", ""} {
		if _, err := s.FindItems(t.Context(), host, []inventory.Ref{{Kind: inventory.KindPackage}}); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("FindItems(%q) error = %v, want ErrNotFound", host, err)
		}
		if _, err := s.FindItems(t.Context(), host, nil); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("FindItems(%q, no prefixes) error = %v, want ErrNotFound", host, err)
		}
	}

	// After a delta: a changed, an added and a removed item.
	ups := []*commonv1.Item{pkg("openssl", "3.0.13-1~deb12u1"), pkgArch("openssl", "3.0.13-1~deb12u1", "arm64"), file("/etc/ssh/sshd_config.d/more.conf", "ee55")}
	rem := []inventory.Ref{pkgRef("dpkg:openssl:i386"), fileRef("/etc/ssh/sshd_config~"), {Kind: inventory.KindUser, Key: "alice2"}}
	apply(t, s, deltaUpdate("host-1", "sp", 2, items, ups, rem), store.Applied)
	got := findItems(t, s, "host-1", pkgRef("dpkg:openssl:"), fileRef("/etc/ssh/sshd_config"), inventory.Ref{Kind: inventory.KindUser, Key: "alice"})
	if rs, want := refStrings(got), []string{
		"file//etc/ssh/sshd_config", "file//etc/ssh/sshd_config.d/extra.conf", "file//etc/ssh/sshd_config.d/more.conf",
		"package/dpkg:openssl:amd64", "package/dpkg:openssl:arm64", "user/alice",
	}; !slices.Equal(rs, want) {
		t.Fatalf("FindItems after a delta = %q, want %q", rs, want)
	}
	if v := got[3].GetPackage().GetVersion(); v != "3.0.13-1~deb12u1" {
		t.Fatalf("FindItems after a delta: openssl version %q", v)
	}
	// The other host still has its own.
	got = findItems(t, s, "host-2", pkgRef("dpkg:openssl:"), fileRef("/etc/"))
	if rs := refStrings(got); !slices.Equal(rs, []string{"file//etc/passwd", "package/dpkg:openssl:amd64"}) || got[1].GetPackage().GetVersion() != "9" {
		t.Fatalf("FindItems(host-2) = %q", rs)
	}
}

func testFindItemsLarge(t *testing.T, s store.Store) {
	enrollHosts(t, s, "host-1")
	const n = 3000
	items := make([]*commonv1.Item, 0, n+40)
	for i := range n {
		items = append(items, pkg(fmt.Sprintf("lib%04d", i), fmt.Sprintf("1.%d-1", i)))
	}
	for i := range 20 {
		items = append(items, file(fmt.Sprintf("/etc/app/%02d.conf", i), fmt.Sprintf("%064x", i)), user(fmt.Sprintf("user%02d", i), uint32(1000+i)))
	}
	apply(t, s, fullUpdate("host-1", "sp", 1, items), store.Applied)

	check := func(cur []*commonv1.Item) {
		t.Helper()
		all, err := s.ListItems(t.Context(), "host-1", "")
		if err != nil {
			t.Fatal(err)
		}
		// Single lookups spread over the host, the first and the last.
		for i := 0; i < n; i += 97 {
			findIn(t, s, "host-1", all, pkgRef(fmt.Sprintf("dpkg:lib%04d:", i)))
		}
		findIn(t, s, "host-1", all, pkgRef("dpkg:lib0000:"))
		findIn(t, s, "host-1", all, pkgRef(fmt.Sprintf("dpkg:lib%04d:", n-1)))
		// Every package by its exact key, in one call: each chunk
		// boundary lies between two prefixes.
		var every []inventory.Ref
		for _, it := range ofKind(cur, inventory.KindPackage) {
			every = append(every, inventory.RefOf(it))
		}
		if got := findIn(t, s, "host-1", all, every...); len(got) != len(every) {
			t.Fatalf("FindItems(every package) = %d items, want %d", len(got), len(every))
		}
		// Consecutive names, which share chunks, and ranges that span many.
		var run []inventory.Ref
		for i := 1490; i < 1530; i++ {
			run = append(run, pkgRef(fmt.Sprintf("dpkg:lib%04d:", i)))
		}
		findIn(t, s, "host-1", all, run...)
		if got := findIn(t, s, "host-1", all, pkgRef("dpkg:lib1"), pkgRef("dpkg:lib25"), inventory.Ref{Kind: inventory.KindUser}); len(got) == 0 {
			t.Fatal("FindItems of ranges found nothing")
		}
		findIn(t, s, "host-1", all, pkgRef("dpkg:lib"), fileRef("/etc/app/1"))
		findIn(t, s, "host-1", all, pkgRef(""))
	}
	check(items)

	// A delta in the middle of the packages rewrites some chunks.
	var ups []*commonv1.Item
	var rem []inventory.Ref
	for i := 1000; i < 1100; i += 3 {
		rem = append(rem, inventory.RefOf(items[i]))
		ups = append(ups, pkg(fmt.Sprintf("lib%04d", i+1), "2.0-1"), pkgArch(fmt.Sprintf("lib%04d", i+2), "2.0-1", "i386"))
	}
	apply(t, s, deltaUpdate("host-1", "sp", 2, items, ups, rem), store.Applied)
	cur := applyDelta(items, ups, rem)
	wantItems(t, s, "host-1", cur)
	check(cur)
	got := findItems(t, s, "host-1", pkgRef("dpkg:lib1000:"), pkgRef("dpkg:lib1001:"), pkgRef("dpkg:lib1002:"))
	if rs, want := refStrings(got), []string{"package/dpkg:lib1001:amd64", "package/dpkg:lib1002:amd64", "package/dpkg:lib1002:i386"}; !slices.Equal(rs, want) {
		t.Fatalf("FindItems after a delta = %q, want %q", rs, want)
	}
}
