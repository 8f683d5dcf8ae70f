package versioncmp

import "testing"

// checkOrder fails unless Compare is a consistent three-way comparison on
// a, b and c: a value in {-1,0,1}, reflexive, antisymmetric, and transitive.
func checkOrder(t *testing.T, c Comparer, a, b, x string) {
	ab := c.Compare(a, b)
	if ab < -1 || ab > 1 {
		t.Fatalf("Compare(%q, %q) = %d", a, b, ab)
	}
	if got := c.Compare(a, a); got != 0 {
		t.Fatalf("Compare(%q, %q) = %d, want 0", a, a, got)
	}
	if ba := c.Compare(b, a); ba != -ab {
		t.Fatalf("Compare(%q, %q) = %d but Compare(%q, %q) = %d", a, b, ab, b, a, ba)
	}
	bx, ax := c.Compare(b, x), c.Compare(a, x)
	if ab <= 0 && bx <= 0 && ax > 0 || ab >= 0 && bx >= 0 && ax < 0 {
		t.Fatalf("not transitive: %q %q %q: %d %d %d", a, b, x, ab, bx, ax)
	}
	_ = c.Valid(a)
}

func FuzzDpkgCompare(f *testing.F) {
	for i := 0; i+2 < len(dpkgEdge); i++ {
		f.Add(dpkgEdge[i], dpkgEdge[i+1], dpkgEdge[i+2])
	}
	f.Fuzz(func(t *testing.T, a, b, c string) { checkOrder(t, Dpkg, a, b, c) })
}

func FuzzRPMCompare(f *testing.F) {
	for i := 0; i+2 < len(rpmEdge); i++ {
		f.Add(rpmEdge[i], rpmEdge[i+1], rpmEdge[i+2])
	}
	f.Fuzz(func(t *testing.T, a, b, c string) { checkOrder(t, RPM, a, b, c) })
}

func FuzzAPKCompare(f *testing.F) {
	seeds := []string{"1.0", "1.0-r1", "1.0_alpha", "1.0_p1", "1.01", "1.0a", "1.0_rc1-r2", "", "_", "-r"}
	for i := 0; i+2 < len(seeds); i++ {
		f.Add(seeds[i], seeds[i+1], seeds[i+2])
	}
	f.Fuzz(func(t *testing.T, a, b, c string) { checkOrder(t, APK, a, b, c) })
}
