package drift

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/quantumlayer/qinfra/pkg/inventory"
)

func TestQueueCoalescesPerHost(t *testing.T) {
	q := NewQueue(nil)
	// Updates before any worker runs merge into one check per host.
	q.Enqueue(context.Background(), "h-1", false, []inventory.Ref{{Kind: "file", Key: "/a"}})
	q.Enqueue(context.Background(), "h-1", false, []inventory.Ref{{Kind: "file", Key: "/b"}})
	q.Enqueue(context.Background(), "h-2", false, nil)
	q.Enqueue(context.Background(), "h-1", true, nil)
	if q.Len() != 2 {
		t.Fatalf("queued hosts = %d, want 2", q.Len())
	}
	id, p := q.next()
	if id != "h-1" || !p.full {
		t.Fatalf("first = %s %+v", id, p)
	}
	// While h-1 is being checked, a new update waits and is queued after.
	q.Enqueue(context.Background(), "h-1", false, []inventory.Ref{{Kind: "user", Key: "x"}})
	id2, _ := q.next()
	if id2 != "h-2" {
		t.Fatalf("second = %s, want h-2 (h-1 is in flight)", id2)
	}
	if id, _ := q.next(); id != "" {
		t.Fatalf("h-1 must not be handed out twice at once, got %q", id)
	}
	q.done("h-1")
	id3, p3 := q.next()
	if id3 != "h-1" || p3.full || len(p3.changed) != 1 {
		t.Fatalf("after done = %s %+v", id3, p3)
	}
}

func TestQueueManyRefsBecomeFull(t *testing.T) {
	q := NewQueue(nil)
	refs := make([]inventory.Ref, maxQueuedRefs+1)
	for i := range refs {
		refs[i] = inventory.Ref{Kind: "package", Key: string(rune(i))}
	}
	q.Enqueue(context.Background(), "h", false, refs)
	if _, p := q.next(); !p.full {
		t.Fatal("too many changed refs must become a full check")
	}
}

func TestQueueRunStopsWithContext(t *testing.T) {
	q := NewQueue(nil)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); q.Run(ctx, 2) }()
	cancel()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}
