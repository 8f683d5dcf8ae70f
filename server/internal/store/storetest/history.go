package storetest

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/quantumlayer/qinfra/pkg/inventory"
	commonv1 "github.com/quantumlayer/qinfra/proto/gen/qinfra/common/v1"
	"github.com/quantumlayer/qinfra/server/internal/store"
)

var historyTests = []test{
	{"History/FirstFullNotRecorded", testHistoryFirstFull},
	{"History/Delta", testHistoryDelta},
	{"History/DeltaNetChanges", testHistoryDeltaNet},
	{"History/LaterFull", testHistoryLaterFull},
	{"History/OnlyApplied", testHistoryOnlyApplied},
	{"History/SinceLimit", testHistorySinceLimit},
	{"History/UnknownHost", testHistoryUnknownHost},
	{"History/HostsIsolated", testHistoryHostsIsolated},
}

// Expected changes of the update with sequence seq (received at
// received(seq)).
func added(seq uint64, after *commonv1.Item) *store.ItemChange {
	return &store.ItemChange{Seq: seq, Time: received(seq), Kind: after.GetKind(), Key: after.GetKey(), Op: store.ChangeAdded, After: after}
}

func changed(seq uint64, before, after *commonv1.Item) *store.ItemChange {
	return &store.ItemChange{Seq: seq, Time: received(seq), Kind: after.GetKind(), Key: after.GetKey(), Op: store.ChangeChanged,
		Before: before, After: after}
}

func removed(seq uint64, before *commonv1.Item) *store.ItemChange {
	return &store.ItemChange{Seq: seq, Time: received(seq), Kind: before.GetKind(), Key: before.GetKey(), Op: store.ChangeRemoved, Before: before}
}

func listChanges(t *testing.T, s store.Store, host string, since time.Time, limit int) []*store.ItemChange {
	t.Helper()
	got, err := s.ListChanges(t.Context(), host, since, limit)
	if err != nil {
		t.Fatalf("ListChanges(%s, %s, %d): %v", host, since.Format(time.RFC3339), limit, err)
	}
	return got
}

// byUpdateThenRef orders changes by time and seq, then by kind and key:
// the order of one update's changes is the backend's.
func byUpdateThenRef(a, b *store.ItemChange) int {
	return cmp.Or(a.Time.Compare(b.Time), cmp.Compare(a.Seq, b.Seq), cmp.Compare(a.Kind, b.Kind), cmp.Compare(a.Key, b.Key))
}

// wantChanges checks the host's changes since a time, up to limit. want
// is in order, but changes of one update may come in any order.
func wantChanges(t *testing.T, s store.Store, host string, since time.Time, limit int, want ...*store.ItemChange) {
	t.Helper()
	got := listChanges(t, s, host, since, limit)
	what := "ListChanges(" + host + ", " + since.Format(time.RFC3339) + ")"
	for i := 1; i < len(got); i++ {
		if got[i].Time.Before(got[i-1].Time) {
			t.Fatalf("%s: change %d (%s) is older than change %d (%s)", what, i, got[i].Time, i-1, got[i-1].Time)
		}
	}
	got = slices.Clone(got)
	slices.SortStableFunc(got, byUpdateThenRef)
	slices.SortStableFunc(want, byUpdateThenRef)
	if len(got) != len(want) {
		t.Fatalf("%s: %d changes, want %d:\n%s\nwant\n%s", what, len(got), len(want), fmtChanges(got), fmtChanges(want))
	}
	for i := range got {
		g, w := got[i], want[i]
		if g.HostID != host || g.Seq != w.Seq || !g.Time.Equal(w.Time) || g.Kind != w.Kind || g.Key != w.Key || g.Op != w.Op ||
			!sameItem(g.Before, w.Before) || !sameItem(g.After, w.After) {
			t.Fatalf("%s: change %d =\n%s\nwant\n%s", what, i, fmtChanges(got[i:i+1]), fmtChanges([]*store.ItemChange{{
				HostID: host, Seq: w.Seq, Time: w.Time, Kind: w.Kind, Key: w.Key, Op: w.Op, Before: w.Before, After: w.After}}))
		}
	}
}

// sameItem compares items, nil included.
func sameItem(a, b *commonv1.Item) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return proto.Equal(a, b)
}

func fmtChanges(changes []*store.ItemChange) string {
	var b strings.Builder
	for _, c := range changes {
		fmt.Fprintf(&b, "  host %s seq %d at %s: %s %s/%s", c.HostID, c.Seq, c.Time.Format(time.RFC3339Nano), c.Op, c.Kind, c.Key)
		if c.Before != nil {
			b.WriteString("\n    before " + c.Before.String())
		}
		if c.After != nil {
			b.WriteString("\n    after  " + c.After.String())
		}
		b.WriteString("\n")
	}
	return b.String()
}

func testHistoryFirstFull(t *testing.T, s store.Store) {
	enrollHosts(t, s, "host-1")
	apply(t, s, fullUpdate("host-1", "sp", 1, baseItems()), store.Applied)
	wantChanges(t, s, "host-1", time.Time{}, 0)
}

func testHistoryDelta(t *testing.T, s store.Store) {
	enrollHosts(t, s, "host-1")
	base := baseItems()
	apply(t, s, fullUpdate("host-1", "sp", 1, base), store.Applied)

	oldSSL, newSSL := pkg("openssl", "3.0.11-1~deb12u2"), pkg("openssl", "3.0.13-1~deb12u1")
	hosts, curl, alice := file("/etc/hosts", "cc33"), pkg("curl", "7.88.1-10"), user("alice", 1000)
	ups := []*commonv1.Item{newSSL, hosts, curl}
	apply(t, s, deltaUpdate("host-1", "sp", 2, base, ups, refs(alice)), store.Applied)
	cur := applyDelta(base, ups, refs(alice))
	want := []*store.ItemChange{changed(2, oldSSL, newSSL), added(2, hosts), added(2, curl), removed(2, alice)}
	wantChanges(t, s, "host-1", time.Time{}, 0, want...)

	// Undo it: every change is recorded again, the other way round.
	ups = []*commonv1.Item{oldSSL, alice}
	rem := refs(hosts, curl)
	apply(t, s, deltaUpdate("host-1", "sp", 3, cur, ups, rem), store.Applied)
	want = append(want, changed(3, newSSL, oldSSL), added(3, alice), removed(3, hosts), removed(3, curl))
	wantChanges(t, s, "host-1", time.Time{}, 0, want...)
}

func testHistoryDeltaNet(t *testing.T, s store.Store) {
	enrollHosts(t, s, "host-1")
	base := baseItems()
	apply(t, s, fullUpdate("host-1", "sp", 1, base), store.Applied)

	// An upsert of an unchanged item, a removal then re-upsert of the
	// same item, a removal of an absent item and an item upserted twice:
	// only the net change of bash is recorded, with its last value.
	root, bash := user("root", 0), pkg("bash", "5.2.15-2+b2")
	ups := []*commonv1.Item{root, pkg("bash", "5.3-1"), pkg("bash", "5.3-2"), service("ssh.service", "active")}
	rem := refs(root, pkg("nope", "1"))
	apply(t, s, deltaUpdate("host-1", "sp", 2, base, ups, rem), store.Applied)
	wantChanges(t, s, "host-1", time.Time{}, 0, changed(2, bash, pkg("bash", "5.3-2")))

	// An item added and removed by one update was never there.
	cur := applyDelta(base, ups, rem)
	tmp := pkg("tmp", "1")
	apply(t, s, deltaUpdate("host-1", "sp", 3, cur, []*commonv1.Item{tmp}, nil), store.Applied)
	cur = applyDelta(cur, []*commonv1.Item{tmp}, nil)
	apply(t, s, deltaUpdate("host-1", "sp", 4, cur, []*commonv1.Item{pkg("tmp", "2")}, refs(tmp)), store.Applied)
	wantChanges(t, s, "host-1", received(3), 0, added(3, tmp), changed(4, tmp, pkg("tmp", "2")))
}

func testHistoryLaterFull(t *testing.T, s store.Store) {
	enrollHosts(t, s, "host-1")
	base := baseItems()
	apply(t, s, fullUpdate("host-1", "sp", 1, base), store.Applied)

	// The difference from the stored set, compared by item hash.
	next := []*commonv1.Item{
		pkg("openssl", "3.0.13-1~deb12u1"), // changed
		pkg("curl", "7.88.1-10"),           // new
	}
	kept := map[inventory.Ref]bool{}
	for _, it := range base {
		switch it.GetKey() {
		case "root", "ssh.service", "/etc/passwd", "host":
			next = append(next, it)
			kept[inventory.RefOf(it)] = true
		}
	}
	apply(t, s, fullUpdate("host-1", "sp", 2, next), store.Applied)
	want := []*store.ItemChange{changed(2, base[0], next[0]), added(2, next[1])}
	for _, it := range base[1:] {
		if !kept[inventory.RefOf(it)] {
			want = append(want, removed(2, it))
		}
	}
	wantChanges(t, s, "host-1", time.Time{}, 0, want...)

	// The same set again changes nothing; a new spool's full is compared
	// with the stored set too.
	apply(t, s, fullUpdate("host-1", "sp", 3, next), store.Applied)
	wantChanges(t, s, "host-1", received(3), 0)
	apply(t, s, fullUpdate("host-1", "sp-new", 4, next[1:]), store.Applied)
	wantChanges(t, s, "host-1", received(3), 0, removed(4, next[0]))

	// Emptied and refilled: a full inventory after an empty one is not the
	// first.
	apply(t, s, fullUpdate("host-1", "sp-new", 5, nil), store.Applied)
	apply(t, s, fullUpdate("host-1", "sp-new", 6, next[:1]), store.Applied)
	wantChanges(t, s, "host-1", received(6), 0, added(6, next[0]))
	if got := listChanges(t, s, "host-1", received(5), 0); len(got) != len(next) {
		t.Fatalf("ListChanges since the empty full: %d changes, want %d", len(got), len(next))
	}
}

func testHistoryOnlyApplied(t *testing.T, s store.Store) {
	enrollHosts(t, s, "host-1")
	base := baseItems()
	// A delta before any full, and a mismatching full, leave no set: the
	// first full applied is still the starting point.
	apply(t, s, deltaUpdate("host-1", "sp", 1, nil, []*commonv1.Item{pkg("bash", "5")}, nil), store.NeedsFull)
	bad := fullUpdate("host-1", "sp", 2, base)
	bad.SetHash = inventory.SetOf(nil).Hash()
	apply(t, s, bad, store.HashMismatch)
	apply(t, s, fullUpdate("host-1", "sp", 3, base), store.Applied)
	wantChanges(t, s, "host-1", time.Time{}, 0)

	// Duplicates, mismatches, ignored deltas and empty deltas record
	// nothing.
	ups := []*commonv1.Item{pkg("zsh", "5.9")}
	apply(t, s, deltaUpdate("host-1", "sp", 3, base, ups, nil), store.Duplicate)
	apply(t, s, deltaUpdate("host-1", "sp", 5, applyDelta(base, []*commonv1.Item{pkg("lost", "1")}, nil), ups, nil), store.HashMismatch)
	apply(t, s, deltaUpdate("host-1", "sp", 6, base, ups, nil), store.NeedsFull)
	bad = fullUpdate("host-1", "sp", 7, nil)
	bad.SetHash = inventory.SetOf(base).Hash()
	apply(t, s, bad, store.HashMismatch)
	apply(t, s, fullUpdate("host-1", "sp", 8, base), store.Applied)
	apply(t, s, deltaUpdate("host-1", "sp", 9, base, nil, nil), store.Applied)
	wantChanges(t, s, "host-1", time.Time{}, 0)
}

func testHistorySinceLimit(t *testing.T, s store.Store) {
	enrollHosts(t, s, "host-1")
	cur := []*commonv1.Item{pkg("bash", "1")}
	apply(t, s, fullUpdate("host-1", "sp", 1, cur), store.Applied)
	var want []*store.ItemChange
	for seq := uint64(2); seq <= 6; seq++ {
		next := pkg("bash", fmt.Sprintf("5.%d", seq))
		apply(t, s, deltaUpdate("host-1", "sp", seq, cur, []*commonv1.Item{next}, nil), store.Applied)
		want = append(want, changed(seq, cur[0], next))
		cur = []*commonv1.Item{next}
	}
	wantChanges(t, s, "host-1", time.Time{}, 0, want...)
	wantChanges(t, s, "host-1", time.Time{}, -1, want...)
	// since is inclusive.
	wantChanges(t, s, "host-1", received(4), 0, want[2:]...)
	wantChanges(t, s, "host-1", received(4).Add(-time.Microsecond), 0, want[2:]...)
	wantChanges(t, s, "host-1", received(4).Add(time.Microsecond), 0, want[3:]...)
	wantChanges(t, s, "host-1", received(3), 2, want[1:3]...)
	wantChanges(t, s, "host-1", time.Time{}, 1, want[0])
	wantChanges(t, s, "host-1", received(7), 0)
}

func testHistoryUnknownHost(t *testing.T, s store.Store) {
	enrollHosts(t, s, "host-1")
	for _, host := range []string{"ghost", "host-", ""} {
		if _, err := s.ListChanges(t.Context(), host, time.Time{}, 0); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("ListChanges(%q) error = %v, want ErrNotFound", host, err)
		}
	}
	wantChanges(t, s, "host-1", time.Time{}, 0)
}

func testHistoryHostsIsolated(t *testing.T, s store.Store) {
	enrollHosts(t, s, "h1", "h10", "h2")
	base := baseItems()
	for _, h := range []string{"h1", "h10", "h2"} {
		apply(t, s, fullUpdate(h, "sp", 1, base), store.Applied)
	}
	ups := []*commonv1.Item{pkg("nginx", "1.22")}
	apply(t, s, deltaUpdate("h1", "sp", 2, base, ups, nil), store.Applied)
	apply(t, s, deltaUpdate("h10", "sp", 3, base, nil, refs(base[0])), store.Applied)
	wantChanges(t, s, "h1", time.Time{}, 0, added(2, ups[0]))
	wantChanges(t, s, "h10", time.Time{}, 0, removed(3, base[0]))
	wantChanges(t, s, "h2", time.Time{}, 0)
}
