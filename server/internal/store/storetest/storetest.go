// Package storetest is the conformance suite every store.Store backend
// passes: a table of named subtests, each on a fresh, empty store.
//
// A backend's test calls Run:
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) store.Store {
//			s, err := bboltstore.Open(filepath.Join(t.TempDir(), "qinfra.db"), bboltstore.Options{})
//			if err != nil {
//				t.Fatal(err)
//			}
//			t.Cleanup(func() { s.Close() })
//			return s
//		})
//	}
//
// Times in the suite have microsecond precision at most, except where a test
// checks that the backend (or store.ChainAudit) copes with more.
package storetest

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/quantumlayer/qinfra/pkg/inventory"
	commonv1 "github.com/quantumlayer/qinfra/proto/gen/qinfra/common/v1"
	"github.com/quantumlayer/qinfra/server/internal/store"
)

// test is one named subtest; s is a fresh store.
type test struct {
	name string
	fn   func(t *testing.T, s store.Store)
}

// Run runs every conformance test as a subtest of t. newStore must return a
// new, empty store and arrange for it to be closed with t.Cleanup.
func Run(t *testing.T, newStore func(t *testing.T) store.Store) {
	var tests []test
	tests = append(tests, hostTests...)
	tests = append(tests, tokenTests...)
	tests = append(tests, inventoryTests...)
	tests = append(tests, historyTests...)
	tests = append(tests, commandTests...)
	tests = append(tests, auditTests...)
	tests = append(tests, retentionTests...)
	tests = append(tests, advisoryTests...)
	tests = append(tests, baselineTests...)
	tests = append(tests, driftTests...)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn(t, newStore(t))
		})
	}
}

// t0 is the suite's "now".
var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// secretHash is the stored hash of a token secret.
func secretHash(secret string) []byte {
	h := sha256.Sum256([]byte(secret))
	return h[:]
}

// newEnrollmentToken returns a token valid for uses enrollments for a day
// from t0.
func newEnrollmentToken(id string, uses int, labels map[string]string) *store.EnrollmentToken {
	return &store.EnrollmentToken{
		ID:          id,
		Hash:        secretHash("secret-" + id),
		Description: "token " + id,
		Labels:      labels,
		UsesAllowed: uses,
		ExpiresAt:   t0.Add(24 * time.Hour),
		CreatedAt:   t0.Add(-time.Hour),
		CreatedBy:   "admin@example.com",
	}
}

// enrollHosts enrolls hosts with the given IDs through a new token.
func enrollHosts(t *testing.T, s store.Store, ids ...string) {
	t.Helper()
	tok := newEnrollmentToken(fmt.Sprintf("tok-%s-%d", ids[0], len(ids)), len(ids), map[string]string{"env": "test"})
	if err := s.CreateEnrollmentToken(t.Context(), tok); err != nil {
		t.Fatalf("CreateEnrollmentToken: %v", err)
	}
	for _, id := range ids {
		h := &store.Host{ID: id, Hostname: id + ".example.com", EnrolledAt: t0}
		if err := s.EnrollHost(t.Context(), tok.Hash, t0, h); err != nil {
			t.Fatalf("EnrollHost(%s): %v", id, err)
		}
	}
}

// seal seals an item built by the suite, which is always well formed.
func seal(it *commonv1.Item) *commonv1.Item {
	if err := inventory.Seal(it); err != nil {
		panic(err)
	}
	return it
}

func pkg(name, version string) *commonv1.Item {
	return seal(&commonv1.Item{
		Kind: inventory.KindPackage, Key: "dpkg:" + name + ":amd64",
		Body: &commonv1.Item_Package{Package: &commonv1.Package{
			Manager: "dpkg", Name: name, Version: version, Arch: "amd64", SourceName: name, Status: "installed",
		}},
	})
}

func file(path, sum string) *commonv1.Item {
	return seal(&commonv1.Item{
		Kind: inventory.KindFile, Key: path,
		Body: &commonv1.Item_File{File: &commonv1.File{
			Path: path, Type: "file", Sha256: sum, Mode: 0o644, Owner: "root", Group: "root", Size: 42,
		}},
	})
}

func user(name string, uid uint32) *commonv1.Item {
	return seal(&commonv1.Item{
		Kind: inventory.KindUser, Key: name,
		Body: &commonv1.Item_User{User: &commonv1.User{
			Name: name, Uid: uid, Gid: uid, Home: "/home/" + name, Shell: "/bin/bash",
		}},
	})
}

func group(name string, gid uint32, members ...string) *commonv1.Item {
	return seal(&commonv1.Item{
		Kind: inventory.KindGroup, Key: name,
		Body: &commonv1.Item_Group{Group: &commonv1.Group{Name: name, Gid: gid, Members: members}},
	})
}

func service(name, state string) *commonv1.Item {
	return seal(&commonv1.Item{
		Kind: inventory.KindService, Key: name,
		Body: &commonv1.Item_Service{Service: &commonv1.Service{
			Manager: "systemd", Name: name, UnitFileState: "enabled", ActiveState: state,
		}},
	})
}

func osItem(pretty string) *commonv1.Item {
	return seal(&commonv1.Item{
		Kind: inventory.KindOS, Key: "host",
		Body: &commonv1.Item_Os{Os: testFacts(pretty)},
	})
}

func testFacts(pretty string) *commonv1.OSFacts {
	return &commonv1.OSFacts{
		Hostname: "web-1", Os: "linux", Platform: "debian", PlatformFamily: "debian",
		PlatformVersion: "12.5", KernelVersion: "6.1.0-18-amd64", KernelArch: "x86_64",
		BootTime: 1767225600, MachineId: "0123456789abcdef", PrettyName: pretty, VersionCodename: "bookworm",
	}
}

// sortedItems returns items ordered as ListItems orders them: by kind,
// then key, in byte order.
func sortedItems(items []*commonv1.Item) []*commonv1.Item {
	out := slices.Clone(items)
	slices.SortFunc(out, func(a, b *commonv1.Item) int {
		return cmp.Or(cmp.Compare(a.GetKind(), b.GetKind()), cmp.Compare(a.GetKey(), b.GetKey()))
	})
	return out
}

// ofKind returns the items of one kind.
func ofKind(items []*commonv1.Item, kind string) []*commonv1.Item {
	var out []*commonv1.Item
	for _, it := range items {
		if it.GetKind() == kind {
			out = append(out, it)
		}
	}
	return out
}

// countKinds counts items per kind.
func countKinds(items []*commonv1.Item) map[string]int {
	m := map[string]int{}
	for _, it := range items {
		m[it.GetKind()]++
	}
	return m
}

// applyDelta returns the item set base becomes after removed, then
// upserts, as inventory.Set.Apply does.
func applyDelta(base, upserts []*commonv1.Item, removed []inventory.Ref) []*commonv1.Item {
	m := make(map[inventory.Ref]*commonv1.Item, len(base))
	for _, it := range base {
		m[inventory.RefOf(it)] = it
	}
	for _, r := range removed {
		delete(m, r)
	}
	for _, it := range upserts {
		m[inventory.RefOf(it)] = it
	}
	return sortedItems(slices.Collect(maps.Values(m)))
}

// received is when the server received update seq.
func received(seq uint64) time.Time { return t0.Add(time.Duration(seq) * time.Minute) }

// fullUpdate is a full inventory of items with their true set hash.
func fullUpdate(host, spool string, seq uint64, items []*commonv1.Item) *store.InventoryUpdate {
	return &store.InventoryUpdate{
		HostID: host, SpoolID: spool, Seq: seq, Full: true,
		Upserts:     items,
		SetHash:     inventory.SetOf(items).Hash(),
		CollectedAt: received(seq).Add(-time.Second),
		ReceivedAt:  received(seq),
	}
}

// deltaUpdate is a delta from base, with the set hash of the result.
func deltaUpdate(host, spool string, seq uint64, base, upserts []*commonv1.Item, removed []inventory.Ref) *store.InventoryUpdate {
	return &store.InventoryUpdate{
		HostID: host, SpoolID: spool, Seq: seq,
		Upserts:     upserts,
		Removed:     removed,
		SetHash:     inventory.SetOf(applyDelta(base, upserts, removed)).Hash(),
		CollectedAt: received(seq).Add(-time.Second),
		ReceivedAt:  received(seq),
	}
}

// apply applies u and checks the outcome.
func apply(t *testing.T, s store.Store, u *store.InventoryUpdate, want store.Outcome) {
	t.Helper()
	got, err := s.ApplyInventory(t.Context(), u)
	if err != nil {
		t.Fatalf("ApplyInventory(host %s, spool %s, seq %d, full %v): %v", u.HostID, u.SpoolID, u.Seq, u.Full, err)
	}
	if got != want {
		t.Fatalf("ApplyInventory(host %s, spool %s, seq %d, full %v) = %v, want %v", u.HostID, u.SpoolID, u.Seq, u.Full, got, want)
	}
}

// wantItems checks the host's items, all and per kind, and their counts.
func wantItems(t *testing.T, s store.Store, host string, want []*commonv1.Item) {
	t.Helper()
	want = sortedItems(want)
	got, err := s.ListItems(t.Context(), host, "")
	if err != nil {
		t.Fatalf("ListItems(%s, all): %v", host, err)
	}
	sameItems(t, "ListItems("+host+", all)", got, want)
	for _, kind := range inventory.Kinds {
		got, err := s.ListItems(t.Context(), host, kind)
		if err != nil {
			t.Fatalf("ListItems(%s, %s): %v", host, kind, err)
		}
		sameItems(t, "ListItems("+host+", "+kind+")", got, ofKind(want, kind))
	}
	counts, err := s.CountItems(t.Context(), host)
	if err != nil {
		t.Fatalf("CountItems(%s): %v", host, err)
	}
	if wantCounts := countKinds(want); !maps.Equal(counts, wantCounts) {
		t.Fatalf("CountItems(%s) = %v, want %v", host, counts, wantCounts)
	}
}

func sameItems(t *testing.T, what string, got, want []*commonv1.Item) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d items, want %d", what, len(got), len(want))
	}
	for i := range got {
		if !proto.Equal(got[i], want[i]) {
			t.Fatalf("%s: item %d is %v, want %v", what, i, got[i], want[i])
		}
	}
}

// wantState checks the host's stream state.
func wantState(t *testing.T, s store.Store, host string, want store.StreamState) {
	t.Helper()
	got, err := s.GetStreamState(t.Context(), host)
	if err != nil {
		t.Fatalf("GetStreamState(%s): %v", host, err)
	}
	if got.SpoolID != want.SpoolID || got.LastSeq != want.LastSeq || !bytes.Equal(got.SetHash, want.SetHash) ||
		got.Items != want.Items || got.NeedsFull != want.NeedsFull || !got.UpdatedAt.Equal(want.UpdatedAt) {
		t.Fatalf("GetStreamState(%s) =\n  %s\nwant\n  %s", host, fmtState(got), fmtState(want))
	}
}

func fmtState(s store.StreamState) string {
	return fmt.Sprintf("{spool %q, last seq %d, set hash %x, %d items, needs full %v, updated %s}",
		s.SpoolID, s.LastSeq, s.SetHash, s.Items, s.NeedsFull, s.UpdatedAt.Format(time.RFC3339Nano))
}

// stateOf is the stream state after items were applied by update u.
func stateOf(u *store.InventoryUpdate, items []*commonv1.Item) store.StreamState {
	return store.StreamState{
		SpoolID:   u.SpoolID,
		LastSeq:   u.Seq,
		SetHash:   inventory.SetOf(items).Hash(),
		Items:     len(items),
		UpdatedAt: u.ReceivedAt,
	}
}
