package cluster

import (
	"context"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// testDSN returns the local PostgreSQL, skipping when there is none — but
// failing under CI, where the PostgreSQL tests must run.
func testDSN(t *testing.T) string {
	t.Helper()
	dsn := os.Getenv("QINFRA_TEST_POSTGRES")
	if dsn == "" {
		dsn = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true but no PostgreSQL at %s: %v", dsn, err)
		}
		t.Skipf("no PostgreSQL at %s (set QINFRA_TEST_POSTGRES): %v", dsn, err)
	}
	conn.Close(ctx)
	return dsn
}

func recvType(t *testing.T, c <-chan Event, want string) Event {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case e := <-c:
			if e.Type == want {
				return e
			}
		case <-deadline:
			t.Fatalf("no %s event within 10s", want)
		}
	}
}

func TestPGBusAcrossReplicas(t *testing.T) {
	dsn := testDSN(t)
	ctx := context.Background()
	a, err := NewPGBus(ctx, dsn, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := NewPGBus(ctx, dsn, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ca, da := a.Subscribe()
	defer da()
	cb, db := b.Subscribe()
	defer db()
	if err := a.Publish(ctx, Event{Type: EventRevoked, HostID: "h-bus-test"}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []<-chan Event{ca, cb} {
		if e := recvType(t, c, EventRevoked); e.HostID != "h-bus-test" {
			t.Fatalf("got %+v", e)
		}
	}

	// Kill b's listening connection from the server side: b must say it
	// may have missed events, and hear later ones again.
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
		WHERE query LIKE 'LISTEN qinfra_events%' OR (wait_event = 'ClientRead' AND query LIKE '%LISTEN%')`); err != nil {
		t.Fatal(err)
	}
	recvType(t, cb, EventResync)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if err := a.Publish(ctx, Event{Type: EventCommand, HostID: "h-after"}); err != nil {
			t.Fatal(err)
		}
		select {
		case e := <-cb:
			if e.Type == EventCommand {
				return
			}
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("b never heard events again after reconnecting")
		}
	}
}

func TestPGLeaderFailover(t *testing.T) {
	dsn := testDSN(t)
	name := "test-" + time.Now().Format("150405.000000")
	var active, maxActive atomic.Int32
	var turns atomic.Int32
	work := func(ctx context.Context) {
		n := active.Add(1)
		for {
			m := maxActive.Load()
			if n <= m || maxActive.CompareAndSwap(m, n) {
				break
			}
		}
		turns.Add(1)
		<-ctx.Done()
		active.Add(-1)
	}
	l := PGLeader{DSN: dsn, CheckEvery: 200 * time.Millisecond}
	ctx1, stop1 := context.WithCancel(context.Background())
	ctx2, stop2 := context.WithCancel(context.Background())
	defer stop2()
	done1 := make(chan struct{})
	go func() { l.Run(ctx1, name, work); close(done1) }()
	waitUntil(t, func() bool { return turns.Load() == 1 })
	go l.Run(ctx2, name, work)
	time.Sleep(500 * time.Millisecond)
	if turns.Load() != 1 {
		t.Fatal("a second replica became leader while the first held the lock")
	}
	// The leader stops: the other takes over.
	stop1()
	<-done1
	waitUntil(t, func() bool { return turns.Load() == 2 })

	// The new leader's connection is killed from the server side (as when
	// its host dies): it notices and gives up, and wins the lock again
	// since nobody else waits.
	conn, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(context.Background(), `SELECT pg_terminate_backend(l.pid) FROM pg_locks l
		WHERE l.locktype = 'advisory' AND l.granted AND l.pid <> pg_backend_pid()
		AND ((l.classid::bigint << 32) | l.objid::bigint) = $1`, lockKey(name)); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, func() bool { return turns.Load() == 3 })
	if maxActive.Load() != 1 {
		t.Fatalf("%d replicas were leader at once", maxActive.Load())
	}
}

func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 15s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
