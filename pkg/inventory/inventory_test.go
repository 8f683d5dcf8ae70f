package inventory

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"

	commonv1 "github.com/quantumlayer/qinfra/proto/gen/qinfra/common/v1"
)

func pkg(t testing.TB, name, version string) *commonv1.Item {
	it := &commonv1.Item{Kind: KindPackage, Key: "dpkg:" + name + ":amd64",
		Body: &commonv1.Item_Package{Package: &commonv1.Package{Manager: "dpkg", Name: name, Version: version, Arch: "amd64"}}}
	if err := Seal(it); err != nil {
		t.Fatal(err)
	}
	return it
}

func TestSealDependsOnBodyOnly(t *testing.T) {
	a, b := pkg(t, "x", "1"), pkg(t, "x", "1")
	if !bytes.Equal(a.Hash, b.Hash) || len(a.Hash) != 32 {
		t.Fatal("equal bodies must hash equally")
	}
	if c := pkg(t, "x", "2"); bytes.Equal(a.Hash, c.Hash) {
		t.Fatal("a version change must change the hash")
	}
	// Resealing a sealed item gives the same hash: the hash field itself is
	// not hashed.
	h := append([]byte(nil), a.Hash...)
	if err := Seal(a); err != nil || !bytes.Equal(h, a.Hash) {
		t.Fatal("reseal changed the hash")
	}
}

func TestSetHashIsOrderIndependentAndSensitive(t *testing.T) {
	items := []*commonv1.Item{pkg(t, "a", "1"), pkg(t, "b", "1"), pkg(t, "c", "1")}
	h1 := SetOf(items).Hash()
	h2 := SetOf([]*commonv1.Item{items[2], items[0], items[1]}).Hash()
	if !bytes.Equal(h1, h2) {
		t.Fatal("order must not matter")
	}
	if bytes.Equal(h1, SetOf(items[:2]).Hash()) {
		t.Fatal("a missing item must change the hash")
	}
	if bytes.Equal(SetOf(nil).Hash(), SetOf(items[:1]).Hash()) {
		t.Fatal("empty and one-item sets must differ")
	}
	// The same item twice under different keys is two items.
	dup := pkg(t, "a", "1")
	dup.Key = "dpkg:a:i386"
	if bytes.Equal(SetOf(items[:1]).Hash(), SetOf([]*commonv1.Item{items[0], dup}).Hash()) {
		t.Fatal("two keys with the same body must count twice")
	}
}

// The incremental accumulator must equal a recomputation from scratch
// after any sequence of adds and removes.
func TestAccumulatorMatchesRecompute(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	set := Set{}
	var acc Accumulator
	for step := 0; step < 5000; step++ {
		r := Ref{Kind: KindPackage, Key: fmt.Sprintf("k%d", rng.IntN(200))}
		if old, ok := set[r]; ok && rng.IntN(2) == 0 {
			acc.Remove(r, old)
			delete(set, r)
		} else {
			if ok {
				acc.Remove(r, old)
			}
			h := []byte(fmt.Sprintf("%032d", rng.IntN(1000)))
			acc.Add(r, h)
			set[r] = h
		}
		if step%500 == 0 && !bytes.Equal(acc.Sum(), set.Hash()) {
			t.Fatalf("step %d: accumulator diverged", step)
		}
	}
	if !bytes.Equal(acc.Sum(), set.Hash()) {
		t.Fatal("accumulator diverged")
	}
}

func TestDiffApplyRoundTrip(t *testing.T) {
	prevItems := []*commonv1.Item{pkg(t, "a", "1"), pkg(t, "b", "1"), pkg(t, "c", "1")}
	cur := []*commonv1.Item{pkg(t, "a", "1"), pkg(t, "b", "2"), pkg(t, "d", "1")}
	prev := SetOf(prevItems)
	d := Diff(prev, cur)
	if len(d.Upserts) != 2 || len(d.Removed) != 1 || d.Removed[0].Key != "dpkg:c:amd64" {
		t.Fatalf("diff: %+v", d)
	}
	prev.Apply(d.Upserts, d.Removed)
	if !bytes.Equal(prev.Hash(), SetOf(cur).Hash()) {
		t.Fatal("applying the diff must give the current set")
	}
	if !Diff(SetOf(cur), cur).Empty() {
		t.Fatal("no change must give an empty delta")
	}
}

func TestValidate(t *testing.T) {
	good := pkg(t, "a", "1")
	if err := Validate(good); err != nil {
		t.Fatal(err)
	}
	cases := map[string]func(*commonv1.Item){
		"empty key":                          func(it *commonv1.Item) { it.Key = "" },
		"short hash":                         func(it *commonv1.Item) { it.Hash = it.Hash[:5] },
		"unknown kind":                       func(it *commonv1.Item) { it.Kind = "kernel-module" },
		"body mismatch":                      func(it *commonv1.Item) { it.Kind = KindUser },
		"no body":                            func(it *commonv1.Item) { it.Body = nil },
		"package key without a manager":      func(it *commonv1.Item) { it.Key = "a:amd64" },
		"package key of an unknown manager":  func(it *commonv1.Item) { it.Key = "pip:a:amd64" },
		"package key naming another package": func(it *commonv1.Item) { it.Key = "dpkg:ab:amd64" },
		"package key without an arch part":   func(it *commonv1.Item) { it.Key = "dpkg:a" },
		"package key of another manager than the body's": func(it *commonv1.Item) {
			it.Key = "rpm:a:amd64"
			it.GetPackage().Manager = "dpkg"
		},
	}
	for _, key := range []string{"dpkg:a:amd64", "rpm:a:x86_64:5.14.0-1", "apk:a:x86_64#2", "dpkg:a:"} {
		it := pkg(t, "a", "1")
		it.Key = key
		it.GetPackage().Manager = ""
		if err := Validate(it); err != nil {
			t.Errorf("key %q: %v", key, err)
		}
	}
	for name, mutate := range cases {
		it := pkg(t, "a", "1")
		mutate(it)
		if err := Validate(it); err == nil {
			t.Errorf("%s: want an error", name)
		}
	}
}

func BenchmarkSetHash2000(b *testing.B) {
	var items []*commonv1.Item
	for i := 0; i < 2000; i++ {
		items = append(items, pkg(b, fmt.Sprintf("p%d", i), "1.0"))
	}
	s := SetOf(items)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		s.Hash()
	}
}
