package app

import (
	"context"
	"log/slog"
	"time"

	"github.com/quantumlayer/qinfra/server/internal/cluster"
	"github.com/quantumlayer/qinfra/server/internal/ingest"
)

// clusterLive is what the API sees of agent streams: connections held by
// this replica, and revocations and commands sent over the bus so the
// replica holding the stream acts, whichever it is.
type clusterLive struct {
	svc *ingest.Service
	bus cluster.Bus
	log *slog.Logger
}

func (l clusterLive) Connected(hostID string) bool { return l.svc.Connected(hostID) }

func (l clusterLive) Disconnect(hostID, reason string) {
	// Close a local stream at once, whatever the bus does.
	l.svc.Disconnect(hostID, reason)
	l.publish(cluster.Event{Type: cluster.EventRevoked, HostID: hostID})
}

func (l clusterLive) CommandQueued(hostID, commandID string) {
	l.publish(cluster.Event{Type: cluster.EventCommand, HostID: hostID, ID: commandID})
}

func (l clusterLive) publish(e cluster.Event) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := l.bus.Publish(ctx, e); err != nil {
		// The change is in the store; replicas catch up on their next
		// reconcile (a reconnecting agent gets its commands at Hello, a
		// revoked one is refused at its next RPC).
		l.log.Error("publish event", "type", e.Type, "host", e.HostID, "err", err)
	}
}
