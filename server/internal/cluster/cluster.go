// Package cluster lets server replicas that share one store act as one:
// a bus that carries events (a host revoked, a command queued, an agent's
// configuration changed) to the replica holding the host's stream, and
// leader election so background work runs on exactly one replica at a
// time.
//
// With the embedded store there is one replica and both are in-process.
// With PostgreSQL the bus is LISTEN/NOTIFY and leadership an advisory lock,
// so nothing polls the database at rest.
package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
)

// Event types.
const (
	// EventRevoked: close the host's stream, refuse it from now on.
	EventRevoked = "host.revoked"
	// EventCommand: a command was queued for the host.
	EventCommand = "command.queued"
	// EventConfig: the host's agent configuration changed (the files its
	// baselines check, say); without a HostID, that of any host may have.
	EventConfig = "host.config"
	// EventBaselines: a baseline was stored or deleted; replicas drop the
	// baselines they cached for drift checks.
	EventBaselines = "baselines.changed"
	// EventResync is delivered locally (never published) after the bus lost
	// and regained its connection: events may have been missed, so every
	// subscriber should reconcile from the store.
	EventResync = "bus.resync"
)

// Event is one message on the bus. Payloads stay small (PostgreSQL limits
// a notification to 8000 bytes): they name what changed, and the receiver
// reads the details from the store.
type Event struct {
	Type   string `json:"type"`
	HostID string `json:"host_id,omitempty"`
	ID     string `json:"id,omitempty"`
}

// Encode returns the event's wire form.
func (e Event) Encode() ([]byte, error) {
	b, err := json.Marshal(e)
	if err != nil {
		return nil, err
	}
	if len(b) > 7900 {
		return nil, fmt.Errorf("event too large for the bus: %d bytes", len(b))
	}
	return b, nil
}

// DecodeEvent parses an event's wire form.
func DecodeEvent(b []byte) (Event, error) {
	var e Event
	if err := json.Unmarshal(b, &e); err != nil {
		return Event{}, fmt.Errorf("decode bus event: %w", err)
	}
	if e.Type == "" {
		return Event{}, fmt.Errorf("decode bus event: no type")
	}
	return e, nil
}

// Bus delivers published events to every subscriber on every replica,
// including the publisher's own.
type Bus interface {
	Publish(ctx context.Context, e Event) error
	// Subscribe returns a channel of events and a function that ends the
	// subscription. A subscriber that falls behind loses events and gets an
	// EventResync instead, so it must be able to reconcile from the store.
	Subscribe() (<-chan Event, func())
}

// fanout is the subscriber registry shared by the bus implementations.
type fanout struct {
	mu   sync.Mutex
	subs map[chan Event]struct{}
}

func (f *fanout) subscribe() (<-chan Event, func()) {
	ch := make(chan Event, 256)
	f.mu.Lock()
	if f.subs == nil {
		f.subs = make(map[chan Event]struct{})
	}
	f.subs[ch] = struct{}{}
	f.mu.Unlock()
	var once sync.Once
	return ch, func() {
		once.Do(func() {
			f.mu.Lock()
			delete(f.subs, ch)
			f.mu.Unlock()
		})
	}
}

func (f *fanout) deliver(e Event) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for ch := range f.subs {
		// Only deliver writes to the channels, under the lock, so their
		// length can only shrink meanwhile. The last slot is kept for a
		// resync: a subscriber that fell behind loses events but always
		// learns that it must reconcile.
		switch n := len(ch); {
		case n < cap(ch)-1:
			ch <- e
		case n == cap(ch)-1:
			ch <- Event{Type: EventResync}
		}
	}
}

// LocalBus is the in-process bus of a single replica.
type LocalBus struct{ f fanout }

// NewLocalBus returns a LocalBus.
func NewLocalBus() *LocalBus { return &LocalBus{} }

// Publish delivers e to this process's subscribers.
func (b *LocalBus) Publish(_ context.Context, e Event) error {
	b.f.deliver(e)
	return nil
}

// Subscribe implements Bus.
func (b *LocalBus) Subscribe() (<-chan Event, func()) { return b.f.subscribe() }

// Leader runs work that must run on exactly one replica at a time.
type Leader interface {
	// Run calls fn whenever this replica holds the named leadership, with
	// a context that ends when leadership is lost; it returns when ctx
	// ends.
	Run(ctx context.Context, name string, fn func(ctx context.Context))
}

// LocalLeader is always the leader: there is only one replica.
type LocalLeader struct{}

// Run implements Leader.
func (LocalLeader) Run(ctx context.Context, _ string, fn func(ctx context.Context)) {
	fn(ctx)
	<-ctx.Done()
}
