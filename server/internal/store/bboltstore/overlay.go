package bboltstore

// The stored form of a host's overlay (schema version 4).
//
// An overlay is one value in the overlays bucket: a header byte (bit 0: a
// base ID follows; bit 1: the rest is deflated, after its inflated length
// as a uvarint), the base ID, then the entries, each as a chunk's keys are (the length of the prefix shared
// with the previous key, the rest of the key) followed by its value:
//
//	0                  a tombstone
//	1, length, blob    the host's blob as stored
//	2, length, body    the host's blob without its leading item hash
//	                   field, which is the SHA-256 of the rest
//
// An overlay keeps its blobs inline rather than naming them in the blobs
// bucket: a host's differences from its base are mostly its own (a config
// file's hash, a local user), and a blob stored apart costs its 32-byte ID
// in the overlay, again as its key, and a reference count, each in pages
// of a bucket written at random. The second form drops the 34 bytes of
// item hash an honest agent's item carries, since inventory.Seal makes it
// the SHA-256 of the rest; a blob whose hash is not that keeps it. Either
// way the blob, and so its ID (the SHA-256 of the blob), reads back
// exactly: the rest of the package sees the entries it always did.
//
// What is left is mostly names and versions repeated across entries and
// hex digests, which DEFLATE with a preset dictionary of the fields'
// common words takes to about a quarter: small overlays pack several to a
// page.

import (
	"bytes"
	"compress/flate"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"sync"

	"github.com/quantumlayer/qinfra/server/internal/store"
)

const (
	ovHasBase  = 1 << 0
	ovDeflated = 1 << 1

	ovTombstone = 0
	ovBlob      = 1
	ovBody      = 2
)

// ovDict is the preset dictionary of deflated overlays: words common in
// items' bodies. It is part of the stored format: a different dictionary
// needs another header bit.
var ovDict = []byte("root/usr/lib/usr/bin/etc/sbin/var/optlockedpasswordnologinfileregulardirectorysymlink" +
	"systemdenabledstaticgenerateddisabledmaskedinactiveactiverunningexitedindirectalias.service.socket.timer" +
	"installedconfig-filesubuntudebianx86_64noarchall-amd64i386arm64aarch64dpkgrpmapkwindows")

// ovMinDeflate is the shortest body worth deflating.
const ovMinDeflate = 96

// ovMaxInflated caps an inflated overlay: a damaged value cannot make a
// read allocate without bound. No host's differences come near it.
const ovMaxInflated = 1 << 28

var (
	deflaters = sync.Pool{New: func() any {
		w, err := flate.NewWriterDict(io.Discard, flate.DefaultCompression, ovDict)
		if err != nil {
			panic(err) // only for a bad level
		}
		return w
	}}
	inflaters sync.Pool
)

// encodeOverlay encodes a host's base ID and overlay; blobOf returns the
// bytes of an upsert's blob.
func encodeOverlay(base []byte, ov []ovEntry, blobOf func(id []byte) ([]byte, error)) ([]byte, error) {
	body := make([]byte, 0, len(ov)*64)
	var prev []byte
	for _, e := range ov {
		body = appendKey(body, prev, e.key)
		prev = e.key
		if e.blob == nil {
			body = append(body, ovTombstone)
			continue
		}
		b, err := blobOf(e.blob)
		if err != nil {
			return nil, fmt.Errorf("overlay entry %q: %w", e.key, err)
		}
		if rest, ok := store.SealedRest(b); ok {
			body = append(body, ovBody)
			b = rest
		} else {
			body = append(body, ovBlob)
		}
		body = binary.AppendUvarint(body, uint64(len(b)))
		body = append(body, b...)
	}
	var hdr byte
	if base != nil {
		hdr |= ovHasBase
	}
	out := make([]byte, 1, 1+len(base)+len(body))
	out = append(out, base...)
	if len(body) >= ovMinDeflate {
		w := deflaters.Get().(*flate.Writer)
		defer deflaters.Put(w)
		var buf bytes.Buffer
		buf.Grow(len(body) / 2)
		w.Reset(&buf)
		if _, err := w.Write(body); err != nil {
			return nil, fmt.Errorf("deflate overlay: %w", err)
		}
		if err := w.Close(); err != nil {
			return nil, fmt.Errorf("deflate overlay: %w", err)
		}
		if n := binary.PutUvarint(make([]byte, binary.MaxVarintLen64), uint64(len(body))); buf.Len()+n < len(body) {
			hdr |= ovDeflated
			out = binary.AppendUvarint(out, uint64(len(body)))
			body = buf.Bytes()
		}
	}
	out[0] = hdr
	return append(out, body...), nil
}

// decodeOverlay decodes a stored overlay: the host's base ID (nil for
// none), its entries, each upsert with its blob ID, and the upserts'
// blobs by ID. This is the form the rest of the package works with.
func decodeOverlay(v []byte) (base []byte, ov []ovEntry, vals map[string][]byte, err error) {
	base, ov, err = readOverlay(v)
	if err != nil {
		return nil, nil, nil, err
	}
	vals = make(map[string][]byte, len(ov))
	for i := range ov {
		e := &ov[i]
		if e.val == nil {
			continue
		}
		blob := e.val
		if e.sealed {
			blob = store.SealedBody(e.val)
		}
		id := sha256.Sum256(blob)
		e.blob, e.val, e.sealed = id[:], nil, false
		vals[string(e.blob)] = blob
	}
	return base, ov, vals, nil
}

// readOverlay decodes a stored overlay without computing blob IDs: each
// upsert holds its value as stored (val, sealed), which is all a read of
// a few items needs; decodeOverlay completes the entries.
func readOverlay(v []byte) (base []byte, ov []ovEntry, err error) {
	if len(v) == 0 || v[0]&^(ovHasBase|ovDeflated) != 0 {
		return nil, nil, corruptf("overlay: bad header")
	}
	hdr, b := v[0], v[1:]
	if hdr&ovHasBase != 0 {
		if len(b) < sha256.Size {
			return nil, nil, corruptf("overlay: truncated base ID")
		}
		base = bytes.Clone(b[:sha256.Size])
		b = b[sha256.Size:]
	}
	if hdr&ovDeflated != 0 {
		if b, err = inflate(b); err != nil {
			return nil, nil, err
		}
	} else {
		b = bytes.Clone(b) // entries keep sub-slices; v is only valid in its transaction
	}
	// Keys share one buffer: one allocation rather than one per entry.
	keys := make([]byte, 0, len(b))
	var prev []byte
	for len(b) > 0 {
		start := len(keys)
		var rest []byte
		keys, rest, err = appendReadKey(keys, b, prev, 1)
		if err != nil {
			return nil, nil, corruptf("overlay entry %d: %v", len(ov), err)
		}
		key := keys[start:len(keys):len(keys)]
		b = rest
		if len(ov) > 0 && bytes.Compare(ov[len(ov)-1].key, key) >= 0 {
			return nil, nil, corruptf("overlay entry %d: out of order", len(ov))
		}
		e := ovEntry{key: key}
		tag := b[0]
		b = b[1:]
		switch tag {
		case ovTombstone:
		case ovBlob, ovBody:
			l, n := binary.Uvarint(b)
			if n <= 0 || l > uint64(len(b)-n) {
				return nil, nil, corruptf("overlay entry %d: bad value length", len(ov))
			}
			e.val = b[n : n+int(l) : n+int(l)]
			e.sealed = tag == ovBody
			b = b[n+int(l):]
			if _, ok := store.SealedRest(e.val); ok && tag == ovBlob {
				// encodeOverlay writes such a blob in the second form:
				// this one is not what it stored.
				return nil, nil, corruptf("overlay entry %d: blob in the wrong form", len(ov))
			}
		default:
			return nil, nil, corruptf("overlay entry %d: bad value", len(ov))
		}
		ov = append(ov, e)
		prev = key
	}
	return base, ov, nil
}

// inflate returns the inflated body of a deflated overlay: its length,
// then the DEFLATE stream.
func inflate(b []byte) ([]byte, error) {
	size, n := binary.Uvarint(b)
	// DEFLATE expands at most about 1,032 times.
	if n <= 0 || size > ovMaxInflated || size > 1100*uint64(len(b)-n) {
		return nil, corruptf("inflate overlay: bad length")
	}
	src := bytes.NewReader(b[n:])
	var r io.ReadCloser
	if p := inflaters.Get(); p != nil {
		r = p.(io.ReadCloser)
		if err := r.(flate.Resetter).Reset(src, ovDict); err != nil {
			return nil, corruptf("inflate overlay: %v", err)
		}
	} else {
		r = flate.NewReaderDict(src, ovDict)
	}
	defer inflaters.Put(r)
	// The length is checked as the stream is read: a damaged one costs
	// at most the allocation it claims, which the checks above bound.
	out := make([]byte, size)
	if _, err := io.ReadFull(r, out); err != nil {
		return nil, corruptf("inflate overlay: %v", err)
	}
	var one [1]byte
	if k, err := r.Read(one[:]); k != 0 || err != io.EOF {
		return nil, corruptf("inflate overlay: longer than its length %d", size)
	}
	return out, nil
}
