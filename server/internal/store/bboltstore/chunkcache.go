package bboltstore

import (
	"sync"

	commonv1 "github.com/quantumlayer/qinfra/proto/gen/qinfra/common/v1"
)

// chunkCache keeps decoded chunks by chunk ID. A chunk ID is the SHA-256 of
// the chunk's bytes and a chunk's entries name blobs by the SHA-256 of
// theirs, so an ID always decodes to the same items and a cached entry
// never goes stale. Hosts built from one image share almost all chunks:
// reading the whole fleet (a drift re-check after a baseline edit) then
// decodes each shared chunk once instead of once per host.
//
// The items are shared between callers, who must not modify them.
// Eviction is by generation: when the current map holds max items it
// becomes the previous one and a new map starts, so the working set stays
// and memory is bounded by about twice max items.
type chunkCache struct {
	mu         sync.Mutex
	max        int
	cur, prev  map[string][]*commonv1.Item
	curN       int
	hits, miss uint64
}

func newChunkCache(maxItems int) *chunkCache {
	return &chunkCache{max: maxItems, cur: make(map[string][]*commonv1.Item)}
}

func (c *chunkCache) get(id []byte) ([]*commonv1.Item, bool) {
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

func (c *chunkCache) put(id []byte, items []*commonv1.Item) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.putLocked(id, items)
}

func (c *chunkCache) putLocked(id []byte, items []*commonv1.Item) {
	if c.curN+len(items) > c.max {
		c.prev, c.cur, c.curN = c.cur, make(map[string][]*commonv1.Item), 0
	}
	if _, ok := c.cur[string(id)]; !ok {
		c.cur[string(id)] = items
		c.curN += len(items)
	}
}
