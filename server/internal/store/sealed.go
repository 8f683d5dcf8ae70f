package store

import (
	"bytes"
	"crypto/sha256"
)

// Both backends store an item's body as its proto Item without kind and
// key, the item hash (field 3) first: what deterministic marshalling of
// Item{Hash, Body} writes. An honest agent's item hash is the SHA-256 of
// the rest (inventory.Seal), so a store that keeps a body for one host
// alone can leave those 34 incompressible bytes out and compute them again
// on reading. SealedRest and SealedBody are that pair.

// hashField is how such a body starts: the tag of Item's field 3
// (length-delimited) and the hash's length.
var hashField = []byte{3<<3 | 2, sha256.Size}

// SealedRest returns body without its leading item hash field if that
// hash is the SHA-256 of the rest.
func SealedRest(body []byte) ([]byte, bool) {
	n := len(hashField) + sha256.Size
	if len(body) < n || !bytes.HasPrefix(body, hashField) {
		return nil, false
	}
	rest := body[n:]
	sum := sha256.Sum256(rest)
	return rest, bytes.Equal(sum[:], body[len(hashField):n])
}

// SealedBody returns the body SealedRest made rest of: rest preceded by
// its SHA-256 as the item hash field.
func SealedBody(rest []byte) []byte {
	sum := sha256.Sum256(rest)
	body := make([]byte, 0, len(hashField)+sha256.Size+len(rest))
	return append(append(append(body, hashField...), sum[:]...), rest...)
}
