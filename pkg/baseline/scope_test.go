package baseline

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/quantumlayer/qinfra/pkg/inventory"
	commonv1 "github.com/quantumlayer/qinfra/proto/gen/qinfra/common/v1"
)

// The pools are small so that random hosts and baselines collide often:
// names that are prefixes of each other, Windows names with colons,
// services named with and without ".service", multiarch packages.
var (
	poolPkgs     = []string{"a", "ab", "openssl", "Foo", "Foo: Bar", "kernel"}
	poolArchs    = []string{"amd64", "i386"}
	poolVersions = []string{"1.0", "1.1", "2.0", "10.0"}
	poolFiles    = []string{"/etc/a", "/etc/a.bak", "/etc/b"}
	poolUsers    = []string{"root", "toor", "alice", "bob"}
	poolSvcs     = []string{"nginx", "nginx.service", "sshd.service", "cups.socket"}
	poolStates   = []string{"enabled", "disabled", "masked", "static"}
	poolSums     = []string{sumA, sumB}
	poolModes    = []uint32{0o644, 0o600}
	poolOwners   = []string{"root", "www"}
)

func pick[T any](r *rand.Rand, s []T) T { return s[r.IntN(len(s))] }

func randItem(r *rand.Rand) *commonv1.Item {
	switch r.IntN(4) {
	case 0:
		name, arch, ver := pick(r, poolPkgs), pick(r, poolArchs), pick(r, poolVersions)
		mgr := pick(r, []string{"dpkg", "rpm", "windows"})
		key := mgr + ":" + name + ":" + arch
		if mgr == "rpm" && name == "kernel" {
			key += ":" + ver // several kernels installed at once
		}
		status := "installed"
		if r.IntN(6) == 0 {
			status = "config-files"
		}
		return &commonv1.Item{Kind: inventory.KindPackage, Key: key, Body: &commonv1.Item_Package{Package: &commonv1.Package{
			Manager: mgr, Name: name, Arch: arch, Version: ver, Status: status}}}
	case 1:
		p := pick(r, poolFiles)
		f := &commonv1.File{Path: p, Type: "file", Sha256: pick(r, poolSums), Mode: pick(r, poolModes), Owner: pick(r, poolOwners), Group: "root"}
		if r.IntN(8) == 0 {
			f = &commonv1.File{Path: p, Type: "missing"}
		}
		return &commonv1.Item{Kind: inventory.KindFile, Key: p, Body: &commonv1.Item_File{File: f}}
	case 2:
		n := pick(r, poolUsers)
		return &commonv1.Item{Kind: inventory.KindUser, Key: n, Body: &commonv1.Item_User{User: &commonv1.User{
			Name: n, Uid: uint32(pick(r, []int{0, 1000})), PasswordState: pick(r, []string{"locked", "set", "empty"})}}}
	default:
		n := pick(r, poolSvcs)
		return &commonv1.Item{Kind: inventory.KindService, Key: n, Body: &commonv1.Item_Service{Service: &commonv1.Service{
			Manager: "systemd", Name: n, UnitFileState: pick(r, poolStates), ActiveState: pick(r, []string{"active", "inactive"})}}}
	}
}

// randHost is a host's items, one per ref.
func randHost(r *rand.Rand) map[inventory.Ref]*commonv1.Item {
	h := map[inventory.Ref]*commonv1.Item{}
	for range r.IntN(30) {
		it := randItem(r)
		h[inventory.RefOf(it)] = it
	}
	return h
}

func itemsOf(h map[inventory.Ref]*commonv1.Item) []*commonv1.Item {
	out := make([]*commonv1.Item, 0, len(h))
	for _, it := range h {
		out = append(out, it)
	}
	slices.SortFunc(out, func(a, b *commonv1.Item) int {
		return strings.Compare(a.GetKind()+"\x00"+a.GetKey(), b.GetKind()+"\x00"+b.GetKey())
	})
	return out
}

func randBaseline(r *rand.Rand, name string) *Baseline {
	b := &Baseline{Name: name, Priority: r.IntN(3)}
	if r.IntN(3) == 0 {
		b.Selector = map[string]string{"role": pick(r, []string{"web", "db"})}
	}
	if r.IntN(4) == 0 {
		b.Policy = map[string]Policy{TypeVersion: {Severity: SeverityLow, Action: "alert"}}
	}
	for range r.IntN(5) {
		pr := PackageRule{Name: pick(r, poolPkgs), Constraint: pick(r, []string{ConstraintExact, ConstraintMinimum, ConstraintForbidden, ConstraintPresent})}
		if r.IntN(3) == 0 {
			pr.Arch = pick(r, poolArchs)
		}
		if pr.Constraint == ConstraintExact || pr.Constraint == ConstraintMinimum {
			pr.Version = pick(r, poolVersions)
		}
		b.Packages = append(b.Packages, pr)
	}
	for range r.IntN(3) {
		b.Files = append(b.Files, FileRule{Path: pick(r, poolFiles), Sha256: pick(r, append(poolSums, "")), Mode: pick(r, []string{"", "0644"}), Owner: pick(r, []string{"", "root"})})
	}
	if r.IntN(2) == 0 {
		b.Users = &UserRules{UID0OnlyRoot: r.IntN(2) == 0, NoEmptyPasswords: r.IntN(2) == 0}
		if r.IntN(2) == 0 {
			b.Users.Allowed = []string{"root", pick(r, poolUsers)}
		}
		if r.IntN(2) == 0 {
			b.Users.Forbidden = []string{pick(r, poolUsers)}
		}
	}
	for range r.IntN(3) {
		b.Services = append(b.Services, ServiceRule{Name: pick(r, poolSvcs), State: pick(r, []string{ServiceEnabled, ServiceDisabled, ServiceMasked, ServiceRunning, ServiceAbsent})})
	}
	// Validate refuses a subject listed twice; so must the generator.
	seen := map[string]bool{}
	b.Packages = slices.DeleteFunc(b.Packages, func(p PackageRule) bool { return dup(seen, "p"+p.subjectKey()) })
	b.Files = slices.DeleteFunc(b.Files, func(f FileRule) bool {
		return dup(seen, "f"+f.Path) || f.Sha256 == "" && f.Mode == "" && f.Owner == ""
	})
	b.Services = slices.DeleteFunc(b.Services, func(s ServiceRule) bool { return dup(seen, "s"+serviceKey(s.Name)) })
	if b.Users != nil && len(b.Users.Forbidden) > 0 && slices.Contains(b.Users.Allowed, b.Users.Forbidden[0]) {
		b.Users.Forbidden = nil
	}
	if err := b.Validate(); err != nil {
		panic(err)
	}
	return b
}

func dup(seen map[string]bool, k string) bool {
	if seen[k] {
		return true
	}
	seen[k] = true
	return false
}

// mutate changes one thing of a copy of b: a rule, the selector, the
// priority, the policy, or only the description.
func mutate(r *rand.Rand, b *Baseline) *Baseline {
	n := randBaseline(r, b.Name)
	c := *b
	c.Packages, c.Files, c.Services = slices.Clone(b.Packages), slices.Clone(b.Files), slices.Clone(b.Services)
	switch r.IntN(8) {
	case 0:
		c.Packages = n.Packages
	case 1:
		if len(c.Packages) > 0 {
			if p := &c.Packages[r.IntN(len(c.Packages))]; p.Version != "" {
				p.Version = pick(r, poolVersions)
			}
		}
	case 2:
		c.Files = n.Files
	case 3:
		c.Users = n.Users
	case 4:
		c.Services = n.Services
	case 5:
		c.Selector = n.Selector
	case 6:
		c.Priority, c.Policy = n.Priority, n.Policy
	default:
		c.Description = "only the text changed"
	}
	return &c
}

func randScope(r *rand.Rand) *Scope {
	s := &Scope{}
	for range r.IntN(3) {
		s.AddPackage(pick(r, poolPkgs))
	}
	for range r.IntN(2) {
		s.AddFile(pick(r, poolFiles))
	}
	for range r.IntN(2) {
		s.AddService(pick(r, poolSvcs))
	}
	for range r.IntN(2) {
		s.AddUser(pick(r, poolUsers))
	}
	s.AllUsers = r.IntN(5) == 0
	return s
}

// drift is deviations by identity, as the store keeps them.
func drift(ds []Deviation) map[string]Deviation {
	m := map[string]Deviation{}
	for _, d := range ds {
		if _, dup := m[d.Identity()]; !dup {
			m[d.Identity()] = d
		}
	}
	return m
}

// patch is what the store does with a scoped replace: keep what is
// outside the scope, take the scoped evaluation for the rest.
func patch(old map[string]Deviation, s *Scope, scoped []Deviation) map[string]Deviation {
	out := map[string]Deviation{}
	for id, d := range old {
		if !s.ContainsIdentity(id) {
			out[id] = d
		}
	}
	for id, d := range drift(scoped) {
		out[id] = d
	}
	return out
}

func sameDrift(t *testing.T, what string, got, want map[string]Deviation) {
	t.Helper()
	ids := func(m map[string]Deviation) []string {
		var out []string
		for id, d := range m {
			out = append(out, strings.ReplaceAll(id, "\x00", "/")+" = "+d.Expected+" / "+d.Actual+" "+d.Severity)
		}
		slices.Sort(out)
		return out
	}
	if g, w := ids(got), ids(want); !slices.Equal(g, w) {
		t.Fatalf("%s:\n got  %q\n want %q", what, g, w)
	}
}

// find is what store.FindItems does: the items with a key prefix.
func find(items []*commonv1.Item, prefixes []inventory.Ref) []*commonv1.Item {
	if prefixes == nil {
		return items
	}
	var out []*commonv1.Item
	for _, it := range items {
		for _, p := range prefixes {
			if it.GetKind() == p.Kind && strings.HasPrefix(it.GetKey(), p.Key) {
				out = append(out, it)
				break
			}
		}
	}
	return out
}

func baselines(r *rand.Rand) []*Baseline {
	var bs []*Baseline
	for i := range 1 + r.IntN(3) {
		bs = append(bs, randBaseline(r, fmt.Sprintf("b%d", i)))
	}
	return bs
}

var labelsWeb = map[string]string{"role": "web"}

func matching(bs []*Baseline) []*Baseline {
	var out []*Baseline
	for _, b := range bs {
		if b.Matches(labelsWeb) {
			out = append(out, b)
		}
	}
	return out
}

// TestScopedEvaluation: a scoped evaluation is the full one restricted to
// the scope, and needs only the items the scope names.
func TestScopedEvaluation(t *testing.T) {
	for seed := range uint64(3000) {
		r := rand.New(rand.NewPCG(seed, 1))
		bs := baselines(r)
		items := itemsOf(randHost(r))
		s := randScope(r)
		full := Evaluate(bs, items, nil)
		var want []Deviation
		for _, d := range full {
			if s.Contains(d.Kind, d.Key) {
				want = append(want, d)
			}
		}
		got := EvaluateScope(bs, items, nil, s)
		sameDrift(t, fmt.Sprintf("seed %d: scoped vs full", seed), drift(got), drift(want))
		few := find(items, s.ItemPrefixes(bs, 1000))
		sameDrift(t, fmt.Sprintf("seed %d: scoped on found items", seed), drift(EvaluateScope(bs, few, nil, s)), drift(want))
		if !s.Touches(bs) && len(want) > 0 {
			t.Fatalf("seed %d: scope does not touch the baselines but has deviations %v", seed, want)
		}
	}
}

// TestScopeOfRefs: after an inventory change, re-evaluating only the
// scope of the changed refs and keeping the rest gives the full result.
func TestScopeOfRefs(t *testing.T) {
	for seed := range uint64(3000) {
		r := rand.New(rand.NewPCG(seed, 2))
		bs := baselines(r)
		before := randHost(r)
		after := map[inventory.Ref]*commonv1.Item{}
		for ref, it := range before {
			after[ref] = it
		}
		var changed []inventory.Ref
		for range 1 + r.IntN(4) {
			if r.IntN(3) == 0 && len(after) > 0 {
				refs := slices.Collect(func(yield func(inventory.Ref) bool) {
					for ref := range after {
						if !yield(ref) {
							return
						}
					}
				})
				slices.SortFunc(refs, func(a, b inventory.Ref) int { return strings.Compare(a.String(), b.String()) })
				ref := pick(r, refs)
				delete(after, ref)
				changed = append(changed, ref)
				continue
			}
			it := randItem(r)
			after[inventory.RefOf(it)] = it
			changed = append(changed, inventory.RefOf(it))
		}
		old := drift(Evaluate(bs, itemsOf(before), nil))
		items := itemsOf(after)
		s := ScopeOfRefs(changed)
		scoped := EvaluateScope(bs, find(items, s.ItemPrefixes(bs, 1000)), nil, s)
		sameDrift(t, fmt.Sprintf("seed %d: incremental after %v", seed, changed), patch(old, s, scoped), drift(Evaluate(bs, items, nil)))
	}
}

// TestScopeOfChange: after a baseline edit, re-evaluating only the scope
// of the change on a host either version selects gives the full result.
func TestScopeOfChange(t *testing.T) {
	for seed := range uint64(3000) {
		r := rand.New(rand.NewPCG(seed, 3))
		bs := baselines(r)
		items := itemsOf(randHost(r))
		i := r.IntN(len(bs))
		var old, updated *Baseline
		next := slices.Clone(bs)
		switch r.IntN(5) {
		case 0: // created
			updated = randBaseline(r, "new")
			next = append(next, updated)
		case 1: // deleted
			old = bs[i]
			next = slices.Delete(next, i, i+1)
		default:
			old, updated = bs[i], mutate(r, bs[i])
			next[i] = updated
		}
		s := ScopeOfChange(old, updated)
		before := drift(Evaluate(matching(bs), items, nil))
		scoped := EvaluateScope(matching(next), find(items, s.ItemPrefixes(matching(next), 1000)), nil, s)
		sameDrift(t, fmt.Sprintf("seed %d: after editing %v", seed, old), patch(before, s, scoped), drift(Evaluate(matching(next), items, nil)))
	}
}

func TestScopeContains(t *testing.T) {
	s := &Scope{}
	s.AddPackage("Foo")
	s.AddService("nginx")
	s.AddUser("alice")
	for _, c := range []struct {
		kind, key string
		want      bool
	}{
		{inventory.KindPackage, "Foo", true},
		{inventory.KindPackage, "Foo:amd64", true},
		{inventory.KindPackage, "Foo: Bar", true}, // taken in, and so evaluated too
		{inventory.KindPackage, "Foobar", false},
		{inventory.KindService, "nginx.service", true},
		{inventory.KindService, "nginx", true},
		{inventory.KindService, "nginx.socket", false},
		{inventory.KindUser, "alice", true},
		{inventory.KindUser, "bob", false},
		{inventory.KindFile, "/etc/a", false},
		{inventory.KindGroup, "alice", false},
	} {
		if got := s.Contains(c.kind, c.key); got != c.want {
			t.Errorf("Contains(%s, %q) = %v", c.kind, c.key, got)
		}
	}
	var all *Scope
	if !all.Contains(inventory.KindFile, "/x") || !all.ContainsIdentity("garbage") {
		t.Error("a nil scope must contain everything")
	}
	if (&Scope{}).ContainsIdentity("b\x00rule\x00file") {
		t.Error("a malformed identity is in no scope")
	}
	if got := ScopeOfRefs([]inventory.Ref{{Kind: inventory.KindPackage, Key: "rpm:kernel:x86_64:5.14.0"}}); !got.Contains(inventory.KindPackage, "kernel") {
		t.Errorf("an rpm kernel key with a version must name the kernel: %+v", got)
	}
	if !ScopeOfChange(&Baseline{Name: "x", Description: "a"}, &Baseline{Name: "x", Description: "b"}).IsEmpty() {
		t.Error("a description change must have an empty scope")
	}
}
