package drift

import (
	"context"
	"sync"

	"github.com/quantumlayer/qinfra/pkg/inventory"
)

// maxQueuedRefs is how many changed refs a pending check keeps before it
// is simply treated as a full re-check.
const maxQueuedRefs = 4096

// Queue runs inventory-triggered drift checks off the agents' receive
// paths. Checks are coalesced per host: while a host waits, or is being
// checked, further updates merge into one pending check, so a burst of
// deltas costs one evaluation rather than one each, and a slow evaluation
// never holds up a stream's acks.
type Queue struct {
	e *Engine

	mu       sync.Mutex
	pending  map[string]*pendingCheck
	order    []string
	inflight map[string]bool
	wake     chan struct{}
}

type pendingCheck struct {
	full    bool
	changed map[inventory.Ref]struct{}
}

// NewQueue returns a Queue for e; call Run to process it.
func NewQueue(e *Engine) *Queue {
	return &Queue{e: e, pending: map[string]*pendingCheck{}, inflight: map[string]bool{}, wake: make(chan struct{}, 1)}
}

// Enqueue records that hostID's inventory changed; it has OnInventory's
// signature so it can serve as the ingest hook, and returns at once.
func (q *Queue) Enqueue(_ context.Context, hostID string, full bool, changed []inventory.Ref) {
	q.mu.Lock()
	p, ok := q.pending[hostID]
	if !ok {
		p = &pendingCheck{changed: map[inventory.Ref]struct{}{}}
		q.pending[hostID] = p
		if !q.inflight[hostID] {
			q.order = append(q.order, hostID)
		}
	}
	p.full = p.full || full || len(p.changed)+len(changed) > maxQueuedRefs
	if !p.full {
		for _, r := range changed {
			p.changed[r] = struct{}{}
		}
	} else {
		p.changed = nil
	}
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// Len is the number of hosts waiting for a check.
func (q *Queue) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.order)
}

// Run processes the queue with workers goroutines until ctx ends.
func (q *Queue) Run(ctx context.Context, workers int) {
	var wg sync.WaitGroup
	for range max(1, workers) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			q.work(ctx)
		}()
	}
	wg.Wait()
}

func (q *Queue) work(ctx context.Context) {
	for {
		hostID, p := q.next()
		if p == nil {
			select {
			case <-ctx.Done():
				return
			case <-q.wake:
				continue
			}
		}
		var changed []inventory.Ref
		for r := range p.changed {
			changed = append(changed, r)
		}
		q.e.OnInventory(ctx, hostID, p.full, changed)
		q.done(hostID)
	}
}

// next takes the oldest waiting host that is not being checked.
func (q *Queue) next() (string, *pendingCheck) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.order) > 0 {
		id := q.order[0]
		q.order = q.order[1:]
		p := q.pending[id]
		if p == nil {
			continue
		}
		delete(q.pending, id)
		q.inflight[id] = true
		return id, p
	}
	return "", nil
}

// done ends a host's check; updates that arrived meanwhile are queued.
func (q *Queue) done(hostID string) {
	q.mu.Lock()
	delete(q.inflight, hostID)
	requeue := q.pending[hostID] != nil
	if requeue {
		q.order = append(q.order, hostID)
	}
	q.mu.Unlock()
	if requeue {
		select {
		case q.wake <- struct{}{}:
		default:
		}
	}
}
