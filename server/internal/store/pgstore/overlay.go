package pgstore

// A host's overlay is one value, the overlay column of its host_sets row,
// rather than a row per entry: a host_overlay row (schema version 5) cost
// about 200 bytes on disk, tuple header, item pointer and two index
// entries, for some 50 bytes of data, and hosts keep tens of entries
// each. The value holds the entries' bodies too, so the bodies only
// overlays use (most of them one host's alone) need no items row, index
// entry or body hash. PostgreSQL compresses a row over about 2 kB, in the
// row (STORAGE MAIN): that takes care of what entries repeat, kinds, key
// prefixes, field names and common values.
//
// BenchmarkPGInventoryStorage (package drift), 10,000 hosts of 5 images
// with about 50 differences each: 21,228 bytes per host in the inventory
// tables with host_overlay rows (16,689 of them host_overlay's, 4,004 the
// items'), 2,286 with overlay values (1,826 host_sets'), against 66,476
// for the keys and bodies alone of a row per host×item.
//
// Encoding: a format byte (overlayFormat), then the entries in (kind,
// key) byte order, each as
//
//	uvarint len(kind), kind, uvarint len(key), key, tag
//
// and after tag:
//
//	tagTombstone: nothing; the host lacks the base's item.
//	tagBody:      uvarint len(body), body: the item's stored body
//	              (encodeBody).
//	tagSealed:    uvarint len(rest), rest: a stored body that is the
//	              item's hash field (0x1a 0x20 and the 32-byte hash)
//	              followed by rest, rest hashing to that hash with
//	              SHA-256. That is the body of every item an agent sealed
//	              (inventory.Seal): its hash, 34 bytes no compression can
//	              shrink, is left out, and computed again when decoding.
//
// The migration to schema version 6 writes tagTombstone and tagBody
// entries in SQL.

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/quantumlayer/qinfra/pkg/inventory"
	"github.com/quantumlayer/qinfra/server/internal/store"
)

// overlayFormat is the first byte of an overlay value.
const overlayFormat = 1

// Entry tags of an overlay value.
const (
	tagTombstone = 0
	tagBody      = 1
	tagSealed    = 2
)

// encodeOverlay encodes entries, sorted by ref, each a tombstone (nil
// bodyHash) or an item with its body; nil for no entries (a NULL value).
func encodeOverlay(entries []ovEntry) ([]byte, error) {
	if len(entries) == 0 {
		return nil, nil
	}
	n := 1
	for _, e := range entries {
		n += 3*binary.MaxVarintLen32 + 1 + len(e.ref.Kind) + len(e.ref.Key) + len(e.body)
	}
	b := make([]byte, 1, n)
	b[0] = overlayFormat
	for i, e := range entries {
		if i > 0 && compareRefs(entries[i-1].ref, e.ref) >= 0 {
			return nil, fmt.Errorf("encode overlay: entry %s is not after %s", e.ref, entries[i-1].ref)
		}
		b = binary.AppendUvarint(b, uint64(len(e.ref.Kind)))
		b = append(b, e.ref.Kind...)
		b = binary.AppendUvarint(b, uint64(len(e.ref.Key)))
		b = append(b, e.ref.Key...)
		switch {
		case e.bodyHash == nil:
			b = append(b, tagTombstone)
		case e.body == nil:
			// Every writer has the bodies of the entries it writes
			// (fillBodies): a missing one is a bug, not a tombstone.
			return nil, fmt.Errorf("encode overlay: entry %s has no body", e.ref)
		default:
			if rest, ok := store.SealedRest(e.body); ok {
				b = append(b, tagSealed)
				b = binary.AppendUvarint(b, uint64(len(rest)))
				b = append(b, rest...)
			} else {
				b = append(b, tagBody)
				b = binary.AppendUvarint(b, uint64(len(e.body)))
				b = append(b, e.body...)
			}
		}
	}
	return b, nil
}

// errOverlay is wrapped by the errors of decodeOverlay.
var errOverlay = errors.New("malformed overlay value")

// decodeOverlay decodes an overlay value into entries in ref order, with
// their bodies (copies) and body hashes; nil (a NULL value) has none.
func decodeOverlay(b []byte) ([]ovEntry, error) {
	if b == nil {
		return nil, nil
	}
	if len(b) == 0 || b[0] != overlayFormat {
		return nil, fmt.Errorf("%w: unknown format", errOverlay)
	}
	d := overlayDecoder{b: b[1:]}
	var out []ovEntry
	for len(d.b) > 0 {
		kind, key := d.bytes(), d.bytes()
		tag := d.byte()
		if d.err != nil {
			return nil, fmt.Errorf("%w: entry %d: %w", errOverlay, len(out), d.err)
		}
		e := ovEntry{ref: inventory.Ref{Kind: string(kind), Key: string(key)}}
		if e.ref.Kind == "" || e.ref.Key == "" {
			return nil, fmt.Errorf("%w: entry %d has an empty kind or key", errOverlay, len(out))
		}
		if len(out) > 0 && compareRefs(out[len(out)-1].ref, e.ref) >= 0 {
			return nil, fmt.Errorf("%w: entry %s is not after %s", errOverlay, e.ref, out[len(out)-1].ref)
		}
		switch tag {
		case tagTombstone:
		case tagBody:
			e.body = bytes.Clone(d.bytes())
		case tagSealed:
			e.body = store.SealedBody(d.bytes())
		default:
			return nil, fmt.Errorf("%w: entry %s has tag %d", errOverlay, e.ref, tag)
		}
		if d.err != nil {
			return nil, fmt.Errorf("%w: entry %s: %w", errOverlay, e.ref, d.err)
		}
		if e.body != nil {
			sum := sha256.Sum256(e.body)
			e.bodyHash = sum[:]
		}
		out = append(out, e)
	}
	return out, nil
}

// overlayDecoder reads an overlay value's fields; the first error sticks,
// and every read after it returns nothing.
type overlayDecoder struct {
	b   []byte
	err error
}

func (d *overlayDecoder) byte() byte {
	if d.err != nil {
		return 0
	}
	if len(d.b) == 0 {
		d.err = errors.New("truncated")
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

// bytes reads a uvarint length and that many bytes, aliasing the value.
func (d *overlayDecoder) bytes() []byte {
	if d.err != nil {
		return nil
	}
	n, k := binary.Uvarint(d.b)
	if k <= 0 || n > uint64(len(d.b)-k) {
		d.err = errors.New("bad or truncated length")
		return nil
	}
	v := d.b[k : k+int(n)]
	d.b = d.b[k+int(n):]
	return v
}

// overlayMap returns entries by ref.
func overlayMap(entries []ovEntry) map[inventory.Ref]ovEntry {
	m := make(map[inventory.Ref]ovEntry, len(entries))
	for _, e := range entries {
		m[e.ref] = e
	}
	return m
}
