package app

import (
	"context"
	"log/slog"
	"time"

	"github.com/quantumlayer/qinfra/server/internal/cluster"
	"github.com/quantumlayer/qinfra/server/internal/ingest"
)

// clusterLive is what the API sees of agent streams: connections held by
// this replica, and revocations, commands and configuration changes sent
// over the bus so the replica holding the stream acts, whichever it is.
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

// ConfigChanged has the replica holding each host's stream (every replica
// for nil) push the host's agent configuration again. Should the bus fail,
// this replica's own streams are still told; the others get theirs at the
// agents' next connect, or at the replicas' next reconcile.
func (l clusterLive) ConfigChanged(hostIDs []string) {
	events := []cluster.Event{{Type: cluster.EventConfig}}
	if hostIDs != nil {
		events = events[:0]
		for _, id := range hostIDs {
			events = append(events, cluster.Event{Type: cluster.EventConfig, HostID: id})
		}
	}
	for _, e := range events {
		if !l.publish(e) {
			l.svc.PushConfig(hostIDs)
			return
		}
	}
}

// BaselinesChanged has every replica drop its cached baselines. Should the
// bus fail, this replica's are dropped; the others' expire within a second.
func (l clusterLive) BaselinesChanged() {
	if !l.publish(cluster.Event{Type: cluster.EventBaselines}) {
		l.svc.BaselinesChanged()
	}
}

// publish puts e on the bus, reporting whether that worked.
func (l clusterLive) publish(e cluster.Event) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := l.bus.Publish(ctx, e); err != nil {
		// The change is in the store; replicas catch up on their next
		// reconcile (a reconnecting agent gets its commands and
		// configuration at Hello, a revoked one is refused at its next
		// RPC).
		l.log.Error("publish event", "type", e.Type, "host", e.HostID, "err", err)
		return false
	}
	return true
}
