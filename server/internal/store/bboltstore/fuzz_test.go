package bboltstore

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"testing"

	"google.golang.org/protobuf/proto"
)

// FuzzDecodeOverlay: a stored overlay read back from a damaged file is
// refused with ErrCorrupt, never a panic; whatever decodes means the same
// after encoding it again (a damaged file may hold a non-canonical
// encoding, e.g. a padded varint, which reads as its canonical form), and
// each blob is stored under its ID.
func FuzzDecodeOverlay(f *testing.F) {
	sealed, sealedID, err := encodeBlob(testPkg(f, "a", "1.0-1"))
	if err != nil {
		f.Fatal(err)
	}
	forged := bytes.Clone(sealed)
	forged[5] ^= 1 // an item hash that is not its body's
	forgedID := sha256.Sum256(forged)
	blobs := map[string][]byte{string(sealedID): sealed, string(forgedID[:]): forged}
	blobOf := func(id []byte) ([]byte, error) { return blobs[string(id)], nil }
	id := bytes.Repeat([]byte{7}, sha256.Size)
	for _, ov := range [][]ovEntry{
		nil,
		{{key: []byte("package\x00dpkg:a:amd64"), blob: sealedID}, {key: []byte("package\x00dpkg:b:amd64")}},
		{{key: []byte("package\x00dpkg:a:amd64"), blob: forgedID[:]}, {key: []byte("package\x00dpkg:a:i386"), blob: sealedID}, {key: []byte("user\x00x"), blob: sealedID}},
	} {
		for _, base := range [][]byte{nil, id} {
			v, err := encodeOverlay(base, ov, blobOf)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(v)
		}
	}
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, b []byte) {
		base, ov, vals, err := decodeOverlay(b)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v does not wrap ErrCorrupt", err)
			}
			return
		}
		for id, v := range vals {
			if sum := sha256.Sum256(v); string(sum[:]) != id {
				t.Fatalf("blob %x read under ID %x", sum, id)
			}
		}
		// An item read without blob IDs (loadHostRead) is the one its
		// blob holds.
		_, lazy, err := readOverlay(b)
		if err != nil || len(lazy) != len(ov) {
			t.Fatalf("readOverlay: %d entries, %v; decodeOverlay %d", len(lazy), err, len(ov))
		}
		var ss sets
		for i := range lazy {
			if lazy[i].absent() != ov[i].absent() {
				t.Fatalf("entry %d: tombstone %v read lazily, %v in full", i, lazy[i].absent(), ov[i].absent())
			}
			if ov[i].absent() {
				continue
			}
			got, gerr := ss.ovItem(&lazy[i])
			want, werr := decodeItem(ov[i].key, vals[string(ov[i].blob)])
			if (gerr == nil) != (werr == nil) || (gerr == nil && !proto.Equal(got, want)) {
				t.Fatalf("entry %d: read lazily as %v (%v), in full as %v (%v)", i, got, gerr, want, werr)
			}
		}
		v, err := encodeOverlay(base, ov, func(id []byte) ([]byte, error) { return vals[string(id)], nil })
		if err != nil {
			t.Fatal(err)
		}
		base2, ov2, vals2, err := decodeOverlay(v)
		if err != nil || !bytes.Equal(base, base2) || len(ov) != len(ov2) || len(vals) != len(vals2) {
			t.Fatalf("re-encoded overlay reads differently: %v", err)
		}
		for i := range ov {
			if !bytes.Equal(ov[i].key, ov2[i].key) || !bytes.Equal(ov[i].blob, ov2[i].blob) || (ov[i].blob == nil) != (ov2[i].blob == nil) {
				t.Fatalf("entry %d: %q/%x became %q/%x", i, ov[i].key, ov[i].blob, ov2[i].key, ov2[i].blob)
			}
		}
	})
}

// FuzzDecodeChunk: the same for chunks (and bases, which share their
// encoding).
func FuzzDecodeChunk(f *testing.F) {
	id := bytes.Repeat([]byte{9}, sha256.Size)
	f.Add(encodeChunk([]entry{{key: []byte("file\x00/etc/a"), blob: id}, {key: []byte("file\x00/etc/ab"), blob: id}}))
	f.Add([]byte{0})
	f.Fuzz(func(t *testing.T, b []byte) {
		es, err := decodeChunk(b)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v does not wrap ErrCorrupt", err)
			}
			return
		}
		es2, err := decodeChunk(encodeChunk(es))
		if err != nil || len(es) != len(es2) {
			t.Fatalf("re-encoded chunk reads differently: %v", err)
		}
		for i := range es {
			if !bytes.Equal(es[i].key, es2[i].key) || !bytes.Equal(es[i].blob, es2[i].blob) {
				t.Fatalf("entry %d: %q/%x became %q/%x", i, es[i].key, es[i].blob, es2[i].key, es2[i].blob)
			}
		}
	})
}

// FuzzDecodeOverlayV3: schema version 3's overlays, which a read-write
// Open converts, are refused with ErrCorrupt when damaged, never a panic.
func FuzzDecodeOverlayV3(f *testing.F) {
	id := bytes.Repeat([]byte{7}, sha256.Size)
	f.Add(encodeOverlayV3(nil, nil))
	f.Add(encodeOverlayV3(id, []ovEntry{{key: []byte("package\x00dpkg:a:amd64"), blob: id}, {key: []byte("package\x00dpkg:b:amd64")}}))
	f.Fuzz(func(t *testing.T, b []byte) {
		base, ov, err := decodeOverlayV3(b)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v does not wrap ErrCorrupt", err)
			}
			return
		}
		base2, ov2, err := decodeOverlayV3(encodeOverlayV3(base, ov))
		if err != nil || !bytes.Equal(base, base2) || len(ov) != len(ov2) {
			t.Fatalf("re-encoded overlay reads differently: %v", err)
		}
	})
}
