package bboltstore

import (
	"sync"
)

// chunkCache keeps decoded chunks by chunk ID. A chunk ID is the SHA-256 of
// the chunk's bytes and a chunk's entries name blobs by the SHA-256 of
// theirs, so an ID always decodes to the same items and a cached entry
// never goes stale. Hosts built from one image share the chunks of their
// base (sets.go): reading the whole fleet (a drift re-check after a
// baseline edit) then decodes each shared chunk once instead of once per
// host, and choosing a host's base compares its entries with candidates'
// without decoding their chunks again.
//
// The values are shared between callers, who must not modify them.
// Eviction is by generation: when the current map holds max values it
// becomes the previous one and a new map starts, so the working set stays
// and memory is bounded by about twice max values.
type chunkCache[T any] struct {
	mu         sync.Mutex
	max        int
	cur, prev  map[string][]T
	curN       int
	hits, miss uint64
}

func newChunkCache[T any](maxItems int) *chunkCache[T] {
	return &chunkCache[T]{max: maxItems, cur: make(map[string][]T)}
}

func (c *chunkCache[T]) get(id []byte) ([]T, bool) {
	if c == nil {
		return nil, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if items, ok := c.cur[string(id)]; ok {
		c.hits++
		return items, true
	}
	if items, ok := c.prev[string(id)]; ok {
		c.hits++
		c.putLocked(id, items)
		return items, true
	}
	c.miss++
	return nil, false
}

func (c *chunkCache[T]) put(id []byte, items []T) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.putLocked(id, items)
}

func (c *chunkCache[T]) putLocked(id []byte, items []T) {
	if c.curN+len(items) > c.max {
		c.prev, c.cur, c.curN = c.cur, make(map[string][]T), 0
	}
	if _, ok := c.cur[string(id)]; !ok {
		c.cur[string(id)] = items
		c.curN += len(items)
	}
}
