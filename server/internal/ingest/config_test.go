package ingest_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/quantumlayer/qinfra/server/internal/cluster"
	"github.com/quantumlayer/qinfra/server/internal/ingest"
)

// pathSource stands in for the drift engine's WatchPaths.
type pathSource struct {
	mu    sync.Mutex
	paths map[string][]string
	err   error
	calls map[string]int
}

func (p *pathSource) get(_ context.Context, hostID string) ([]string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.calls == nil {
		p.calls = map[string]int{}
	}
	p.calls[hostID]++
	if p.err != nil {
		return nil, p.err
	}
	return slices.Clone(p.paths[hostID]), nil
}

func (p *pathSource) set(hostID string, paths ...string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.paths[hostID] = paths
}

func (p *pathSource) fail(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.err = err
}

// expectConfig reads the next message, which must be a ConfigUpdate with
// the given baseline paths.
func (s *stream) expectConfig(want ...string) {
	s.t.Helper()
	m := s.recv()
	if m.GetConfig() == nil {
		s.t.Fatalf("want a ConfigUpdate, got %v", m)
	}
	if got := m.GetConfig().GetBaselinePaths(); !slices.Equal(got, want) {
		s.t.Fatalf("baseline paths %q, want %q", got, want)
	}
}

// TestBaselinePathsPushed: the Welcome carries the host's baseline paths;
// a configuration event on the bus, for the host or for every host, pushes
// them again when they changed and sends nothing when they did not; an
// error sends nothing, so the agent keeps its list.
func TestBaselinePathsPushed(t *testing.T) {
	src := &pathSource{paths: map[string][]string{}}
	bus := cluster.NewLocalBus()
	h := newHarness(t, ingest.Options{BaselinePaths: src.get, Bus: bus, ScanInterval: 30 * time.Second})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go h.svc.Run(ctx)

	a := h.mustEnroll()
	src.set(a.hostID, "/etc/app/extra.conf", "/etc/ssh/sshd_config")
	s, w := h.connect(a, "spool-1")
	cfg := w.GetConfig()
	if !slices.Equal(cfg.GetBaselinePaths(), []string{"/etc/app/extra.conf", "/etc/ssh/sshd_config"}) || cfg.GetScanIntervalSeconds() != 30 {
		t.Fatalf("welcome config %v", cfg)
	}

	publish := func(hostID string) {
		t.Helper()
		if err := bus.Publish(ctx, cluster.Event{Type: cluster.EventConfig, HostID: hostID}); err != nil {
			t.Fatal(err)
		}
	}
	// Unchanged: nothing is sent. The change after it is the next message.
	publish(a.hostID)
	publish("")
	src.set(a.hostID, "/etc/app/extra.conf")
	publish(a.hostID)
	s.expectConfig("/etc/app/extra.conf")

	// For every host; an empty list clears.
	src.set(a.hostID)
	publish("")
	s.expectConfig()

	// An error sends nothing; the next good list goes out.
	src.fail(errors.New("store down"))
	h.svc.PushConfig([]string{a.hostID})
	h.svc.PushConfig(nil)
	src.fail(nil)
	src.set(a.hostID, "/etc/hosts")
	h.svc.PushConfig([]string{a.hostID})
	s.expectConfig("/etc/hosts")

	// Hosts without a stream here cost nothing.
	h.svc.PushConfig([]string{"not-connected"})
	publish("not-connected")
	src.set(a.hostID, "/etc/hosts", "/etc/motd")
	h.svc.PushConfig(nil)
	s.expectConfig("/etc/hosts", "/etc/motd")
	src.mu.Lock()
	defer src.mu.Unlock()
	if n := src.calls["not-connected"]; n != 0 {
		t.Fatalf("%d baseline path lookups for a host not connected, want none", n)
	}
}

// TestWelcomeWithoutBaselinePathsOnError: when the paths cannot be had the
// Welcome carries no configuration at all, which the agent takes as "keep
// yours", rather than an empty list, which would clear it.
func TestWelcomeWithoutBaselinePathsOnError(t *testing.T) {
	src := &pathSource{paths: map[string][]string{}, err: errors.New("store down")}
	h := newHarness(t, ingest.Options{BaselinePaths: src.get})
	a := h.mustEnroll()
	_, w := h.connect(a, "spool-1")
	if w.GetConfig() != nil {
		t.Fatalf("welcome config %v, want none", w.GetConfig())
	}
	if w.GetHostId() != a.hostID {
		t.Fatalf("welcome %v", w)
	}
}

// TestPushConfigConcurrent: concurrent pushes for many hosts, racing with
// connects and disconnects, neither block nor race.
func TestPushConfigConcurrent(t *testing.T) {
	src := &pathSource{paths: map[string][]string{}}
	h := newHarness(t, ingest.Options{BaselinePaths: src.get})
	a := h.mustEnroll()
	src.set(a.hostID, "/etc/a")
	s, _ := h.connect(a, "spool-1")
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for range 50 {
				if i%2 == 0 {
					h.svc.PushConfig(nil)
				} else {
					h.svc.PushConfig([]string{a.hostID, "other"})
				}
			}
		})
	}
	wg.Wait()
	src.set(a.hostID, "/etc/b")
	h.svc.PushConfig(nil)
	s.expectConfig("/etc/b")
}

// TestBaselinesChangedEvent: a baseline change published by any replica
// reaches Options.BaselinesChanged (the drift engine drops its cached
// baselines), as does a configuration event for every host.
func TestBaselinesChangedEvent(t *testing.T) {
	bus := cluster.NewLocalBus()
	calls := make(chan struct{}, 4)
	h := newHarness(t, ingest.Options{Bus: bus, BaselinesChanged: func() { calls <- struct{}{} }})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go h.svc.Run(ctx)
	for _, e := range []cluster.Event{{Type: cluster.EventBaselines}, {Type: cluster.EventConfig}} {
		// Run subscribes asynchronously: publish until the event lands.
		deadline := time.After(5 * time.Second)
	wait:
		for {
			if err := bus.Publish(ctx, e); err != nil {
				t.Fatal(err)
			}
			select {
			case <-calls:
				break wait
			case <-time.After(50 * time.Millisecond):
			case <-deadline:
				t.Fatalf("%s: BaselinesChanged not called", e.Type)
			}
		}
		// Publishes made while waiting may still be handled: let them
		// land, then drop them.
		time.Sleep(300 * time.Millisecond)
		for len(calls) > 0 {
			<-calls
		}
	}
	// A configuration event for one host is not a baseline change.
	if err := bus.Publish(ctx, cluster.Event{Type: cluster.EventConfig, HostID: "h-1"}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-calls:
		t.Fatal("BaselinesChanged called for one host's configuration event")
	case <-time.After(200 * time.Millisecond):
	}
}
