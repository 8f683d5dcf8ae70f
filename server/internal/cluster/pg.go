package cluster

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// pgChannel is the NOTIFY channel every replica listens on.
const pgChannel = "qinfra_events"

// PGBus is the bus of replicas sharing a PostgreSQL database: NOTIFY to
// publish, one dedicated LISTEN connection per replica to receive. The
// listener waits on its socket, so an idle cluster sends no queries.
type PGBus struct {
	f    fanout
	dsn  string
	pool *pgxpool.Pool
	log  *slog.Logger
	done chan struct{}
}

// NewPGBus connects and starts listening; Close stops it.
func NewPGBus(ctx context.Context, dsn string, log *slog.Logger) (*PGBus, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("bus: %w", err)
	}
	cfg.MaxConns = 2
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("bus: %w", err)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	b := &PGBus{dsn: dsn, pool: pool, log: log.With("component", "bus"), done: make(chan struct{})}
	// The first LISTEN happens before NewPGBus returns, so no event
	// published after it can be missed.
	conn, err := b.listen(ctx)
	if err != nil {
		pool.Close()
		return nil, err
	}
	lctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-b.done
		cancel()
	}()
	go b.loop(lctx, conn)
	return b, nil
}

func (b *PGBus) listen(ctx context.Context) (*pgx.Conn, error) {
	conn, err := pgx.Connect(ctx, b.dsn)
	if err != nil {
		return nil, fmt.Errorf("bus: connect listener: %w", err)
	}
	if _, err := conn.Exec(ctx, "LISTEN "+pgChannel); err != nil {
		conn.Close(ctx)
		return nil, fmt.Errorf("bus: listen: %w", err)
	}
	return conn, nil
}

func (b *PGBus) loop(ctx context.Context, conn *pgx.Conn) {
	defer func() {
		if conn != nil {
			conn.Close(context.Background())
		}
	}()
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		if conn == nil {
			c, err := b.listen(ctx)
			if err != nil {
				b.log.Warn("bus listener down; retrying", "err", err, "in", backoff)
				select {
				case <-ctx.Done():
					return
				case <-time.After(backoff + time.Duration(rand.Int64N(int64(backoff)))):
				}
				backoff = min(backoff*2, 10*time.Second)
				continue
			}
			conn, backoff = c, 100*time.Millisecond
			b.log.Info("bus listener reconnected")
			// Whatever was published while we were away is lost: tell the
			// subscribers to reconcile from the store.
			b.f.deliver(Event{Type: EventResync})
		}
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			b.log.Warn("bus listener lost its connection", "err", err)
			conn.Close(context.Background())
			conn = nil
			continue
		}
		e, err := DecodeEvent([]byte(n.Payload))
		if err != nil {
			b.log.Warn("ignoring malformed bus event", "err", err)
			continue
		}
		b.f.deliver(e)
	}
}

// Publish sends e to every replica's subscribers, this one's included.
func (b *PGBus) Publish(ctx context.Context, e Event) error {
	payload, err := e.Encode()
	if err != nil {
		return err
	}
	if _, err := b.pool.Exec(ctx, "SELECT pg_notify($1, $2)", pgChannel, string(payload)); err != nil {
		return fmt.Errorf("bus: publish %s: %w", e.Type, err)
	}
	return nil
}

// Subscribe implements Bus.
func (b *PGBus) Subscribe() (<-chan Event, func()) { return b.f.subscribe() }

// Close stops listening.
func (b *PGBus) Close() {
	close(b.done)
	b.pool.Close()
}

// PGLeader elects one replica per name with a session-level advisory lock
// held on a dedicated connection. Waiting replicas block inside
// pg_advisory_lock, so they take over the moment the leader's connection
// ends (a crash closes its socket) without polling.
type PGLeader struct {
	DSN string
	Log *slog.Logger
	// CheckEvery is how often the leader checks that its connection, and so
	// its lock, is still there.
	CheckEvery time.Duration
}

func lockKey(name string) int64 {
	h := fnv.New64a()
	h.Write([]byte("qinfra/leader/" + name))
	return int64(h.Sum64())
}

// Run implements Leader.
func (l PGLeader) Run(ctx context.Context, name string, fn func(ctx context.Context)) {
	log := l.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "leader", "role", name)
	every := l.CheckEvery
	if every <= 0 {
		every = 2 * time.Second
	}
	backoff := 200 * time.Millisecond
	for ctx.Err() == nil {
		err := l.term(ctx, name, every, fn, log)
		if ctx.Err() != nil {
			return
		}
		log.Warn("leadership attempt ended", "err", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff + time.Duration(rand.Int64N(int64(backoff)))):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

// term waits for the lock, runs fn while it is held, and returns when the
// lock is lost or ctx ends.
func (l PGLeader) term(ctx context.Context, name string, every time.Duration, fn func(context.Context), log *slog.Logger) error {
	conn, err := pgx.Connect(ctx, l.DSN)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", lockKey(name)); err != nil {
		return fmt.Errorf("wait for lock: %w", err)
	}
	log.Info("became leader")
	fctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn(fctx)
	}()
	defer func() {
		cancel()
		<-done
		log.Info("leadership released")
	}()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-done:
			return errors.New("leader work returned")
		case <-t.C:
			pctx, pcancel := context.WithTimeout(ctx, every)
			err := conn.Ping(pctx)
			pcancel()
			if err != nil && ctx.Err() == nil {
				return fmt.Errorf("lost the lock's connection: %w", err)
			}
		}
	}
}
