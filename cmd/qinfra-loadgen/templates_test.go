package main

import (
	"testing"

	"github.com/quantumlayer/qinfra/pkg/inventory"
)

func TestTemplatesDeterministicAndRealistic(t *testing.T) {
	a, err := makeTemplates(3, 42)
	if err != nil {
		t.Fatal(err)
	}
	b, err := makeTemplates(3, 42)
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]int{}
	for _, it := range a[0].items {
		counts[it.GetKind()]++
	}
	if counts["package"] != tmplPackages || counts["user"] != tmplUsers || counts["service"] != tmplServices || counts["file"] != tmplFiles {
		t.Fatalf("template shape: %v", counts)
	}
	for i := range a {
		if string(a[i].acc.Sum()) != string(b[i].acc.Sum()) {
			t.Fatalf("template %d differs between two builds with the same seed", i)
		}
	}
	if string(a[0].acc.Sum()) == string(a[1].acc.Sum()) {
		t.Fatal("templates 0 and 1 are identical")
	}
	for _, tm := range a {
		for _, it := range tm.items {
			if err := inventory.Validate(it); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func TestFullInventoryHashAndHostDifferences(t *testing.T) {
	tmpls, err := makeTemplates(2, 7)
	if err != nil {
		t.Fatal(err)
	}
	var sums [][]byte
	for host := range 3 {
		h, err := makeHostItems(tmpls[0], host, 0, hotMode)
		if err != nil {
			t.Fatal(err)
		}
		items, acc := fullInventory(tmpls[0], h)
		set := inventory.SetOf(items)
		if len(set) != len(items) {
			t.Fatalf("host %d: %d items but %d distinct refs", host, len(items), len(set))
		}
		if got, want := acc.Sum(), set.Hash(); string(got) != string(want) {
			t.Fatalf("host %d: accumulated set hash differs from SetOf(items).Hash()", host)
		}
		sums = append(sums, acc.Sum())
	}
	if string(sums[0]) == string(sums[1]) {
		t.Fatal("two hosts of one template have the same inventory")
	}
	// A delta (hot file to the next generation) keeps the accumulator in
	// step with the set.
	h, _ := makeHostItems(tmpls[0], 5, 0, hotMode)
	items, acc := fullInventory(tmpls[0], h)
	old, cur := hotItem(5, 0, hotMode), hotItem(5, 1, driftMode)
	if err := inventory.Seal(old); err != nil {
		t.Fatal(err)
	}
	if err := inventory.Seal(cur); err != nil {
		t.Fatal(err)
	}
	acc.Remove(inventory.RefOf(old), old.GetHash())
	acc.Add(inventory.RefOf(cur), cur.GetHash())
	set := inventory.SetOf(items)
	set[inventory.RefOf(cur)] = cur.GetHash()
	if string(acc.Sum()) != string(set.Hash()) {
		t.Fatal("delta accumulator out of step with the set")
	}
}
