package cluster

import (
	"context"
	"testing"
	"time"
)

func TestLocalBusDeliversToAll(t *testing.T) {
	b := NewLocalBus()
	c1, done1 := b.Subscribe()
	c2, done2 := b.Subscribe()
	defer done1()
	defer done2()
	if err := b.Publish(context.Background(), Event{Type: EventRevoked, HostID: "h-1"}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []<-chan Event{c1, c2} {
		select {
		case e := <-c:
			if e.Type != EventRevoked || e.HostID != "h-1" {
				t.Fatalf("got %+v", e)
			}
		case <-time.After(time.Second):
			t.Fatal("event not delivered")
		}
	}
}

func TestSlowSubscriberGetsResync(t *testing.T) {
	b := NewLocalBus()
	c, done := b.Subscribe()
	defer done()
	for i := 0; i < 1000; i++ {
		b.Publish(context.Background(), Event{Type: EventCommand, HostID: "h"})
	}
	var sawResync bool
	for len(c) > 0 {
		if e := <-c; e.Type == EventResync {
			sawResync = true
		}
	}
	if !sawResync {
		t.Fatal("a subscriber that fell behind must be told to resync")
	}
}

func TestEventEncoding(t *testing.T) {
	b, err := Event{Type: EventCommand, HostID: "h-x", ID: "c-1"}.Encode()
	if err != nil {
		t.Fatal(err)
	}
	e, err := DecodeEvent(b)
	if err != nil || e.ID != "c-1" {
		t.Fatalf("%+v %v", e, err)
	}
	if _, err := DecodeEvent([]byte(`{}`)); err == nil {
		t.Fatal("an event without a type must be refused")
	}
	if _, err := DecodeEvent([]byte(`garbage`)); err == nil {
		t.Fatal("garbage must be refused")
	}
}

func FuzzDecodeEvent(f *testing.F) {
	f.Add([]byte(`{"type":"host.revoked","host_id":"h-1"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := DecodeEvent(b)
		if err == nil {
			if _, err := e.Encode(); err != nil && len(b) < 7000 {
				t.Fatalf("decoded event does not re-encode: %v", err)
			}
		}
	})
}

// TestConfigEventForEveryHost: a configuration event without a host (a
// baseline changed: any host may be concerned) stays small on the wire and
// decodes with no host.
func TestConfigEventForEveryHost(t *testing.T) {
	b, err := Event{Type: EventConfig}.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != `{"type":"host.config"}` {
		t.Fatalf("wire form %s", b)
	}
	e, err := DecodeEvent(b)
	if err != nil || e.Type != EventConfig || e.HostID != "" {
		t.Fatalf("decoded %+v, %v", e, err)
	}
}
