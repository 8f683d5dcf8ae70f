package collect

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// ndbFixture returns the SUSE NDB database of testdata, uncompressed.
func ndbFixture(t testing.TB) []byte {
	t.Helper()
	f, err := os.Open("testdata/rpm/sle15-bci/Packages.db.gz")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if _, err := b.ReadFrom(zr); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// TestRPMNDB reads a SUSE NDB database where SUSE keeps it and compares with
// the packages go-rpmdb's own NDB reader lists.
func TestRPMNDB(t *testing.T) {
	root := t.TempDir()
	writeFile(t, root, "/usr/lib/sysimage/rpm/Packages.db", string(ndbFixture(t)))
	symlink(t, root, "../../usr/lib/sysimage/rpm", "/var/lib/rpm")
	items, err := rpmCollector{}.Collect(context.Background(), HostFS{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	checkItems(t, items)
	var got []string
	for _, it := range items {
		p := it.GetPackage()
		got = append(got, fmt.Sprintf("%s %d:%s-%s %s %s-%s.src.rpm %s", p.GetName(), p.GetEpoch(), p.GetUpstreamVersion(), p.GetRelease(),
			p.GetArch(), p.GetSourceName(), p.GetSourceVersion(), p.GetVendor()))
		if p.GetInstallTime() == 0 {
			t.Errorf("%s: no install time", it.GetKey())
		}
	}
	want, err := os.ReadFile("testdata/rpm/sle15-bci/packages.txt")
	if err != nil {
		t.Fatal(err)
	}
	diffSets(t, "go-rpmdb's list", lines(string(want)), lines(strings.Join(got, "\n")))
	if it := itemByKey(items, "rpm:glibc:x86_64"); it == nil || it.GetPackage().GetVersion() != "2.31-9.3.2" {
		t.Errorf("glibc: %v", it)
	}
}

// ndbSlots returns the used slots of an NDB database: offset in the file,
// package index, block offset and count.
func ndbSlots(db []byte) [][4]uint32 {
	le := binary.LittleEndian
	var out [][4]uint32
	npages := le.Uint32(db[12:])
	for off := uint32(2 * ndbSlotSize); off < npages*ndbPageSize; off += ndbSlotSize {
		if idx := le.Uint32(db[off+4:]); idx != 0 {
			out = append(out, [4]uint32{off, idx, le.Uint32(db[off+8:]), le.Uint32(db[off+12:])})
		}
	}
	return out
}

func TestRPMNDBDamaged(t *testing.T) {
	db := ndbFixture(t)
	slot := ndbSlots(db)[3]
	blob := int(slot[2]) * ndbBlockSize
	le := binary.LittleEndian
	for name, damage := range map[string]func(b []byte) []byte{
		"header magic":  func(b []byte) []byte { b[0] = 'X'; return b },
		"version":       func(b []byte) []byte { b[4] = 1; return b },
		"no slot pages": func(b []byte) []byte { le.PutUint32(b[12:], 0); return b },
		"huge slots":    func(b []byte) []byte { le.PutUint32(b[12:], 1<<30); return b },
		"slot magic":    func(b []byte) []byte { b[slot[0]] = 'X'; return b },
		"blob outside":  func(b []byte) []byte { le.PutUint32(b[slot[0]+8:], 1<<30); return b },
		"blob magic":    func(b []byte) []byte { b[blob] = 'X'; return b },
		"blob index":    func(b []byte) []byte { b[blob+4]++; return b },
		"blob length":   func(b []byte) []byte { le.PutUint32(b[blob+12:], 1<<20); return b },
		"blob content":  func(b []byte) []byte { b[blob+ndbBlobHead+100] ^= 0xff; return b },
		"tail":          func(b []byte) []byte { b[blob+int(slot[3])*ndbBlockSize-1] = 'X'; return b },
		"truncated":     func(b []byte) []byte { return b[:blob+40] },
		"short":         func(b []byte) []byte { return b[:20] },
	} {
		b := damage(bytes.Clone(db))
		if _, err := parseRPMNDB(context.Background(), bytes.NewReader(b), int64(len(b))); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	// Through the collector, damage is an error, not a host without packages.
	root := t.TempDir()
	writeFile(t, root, "/var/lib/rpm/Packages.db", string(db[:blob+40]))
	if items, err := (rpmCollector{}).Collect(context.Background(), HostFS{Root: root}); err == nil || len(items) != 0 {
		t.Errorf("truncated database: %d items, %v", len(items), err)
	}
	mkdir(t, root, "/var/lib/rpm/dir")
	if _, err := readRPMNDB(context.Background(), filepath.Join(root, "/var/lib/rpm/dir")); err == nil {
		t.Error("directory: no error")
	}
}

func FuzzParseRPMNDB(f *testing.F) {
	db := ndbFixture(f)
	// The first slot page and the first blob keep the seed small.
	slot := ndbSlots(db)[0]
	end := int(slot[2]+slot[3]) * ndbBlockSize
	seed := bytes.Clone(db[:end])
	binary.LittleEndian.PutUint32(seed[12:], 1)
	for _, s := range ndbSlots(seed[:ndbPageSize])[1:] {
		binary.LittleEndian.PutUint32(seed[s[0]+4:], 0)
	}
	f.Add(seed)
	f.Add(seed[:ndbPageSize])
	f.Fuzz(func(t *testing.T, b []byte) {
		pkgs, err := parseRPMNDB(context.Background(), bytes.NewReader(b), int64(len(b)))
		if err != nil {
			return
		}
		for _, p := range pkgs {
			if p.GetName() == "" {
				t.Fatal("package without a name")
			}
		}
	})
}
