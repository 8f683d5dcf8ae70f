package ingest

import (
	"context"
	"slices"
	"time"

	agentv1 "github.com/quantumlayer/qinfra/proto/gen/qinfra/agent/v1"
)

const (
	// pushTimeout bounds the computation of one host's configuration.
	pushTimeout = 30 * time.Second
	// welcomeRetryDelay is how long after a Welcome sent without a
	// configuration (its baseline paths could not be had) the push is
	// tried again.
	welcomeRetryDelay = 5 * time.Second
)

// configUpdate returns the configuration of hostID's agent: the intervals
// and watch paths of Options, and the files its baselines check.
func (s *Service) configUpdate(ctx context.Context, hostID string) (*agentv1.ConfigUpdate, error) {
	cu := &agentv1.ConfigUpdate{
		WatchPaths:               s.opts.WatchPaths,
		ScanIntervalSeconds:      uint32(s.opts.ScanInterval / time.Second),
		HeartbeatIntervalSeconds: uint32(s.opts.HeartbeatInterval / time.Second),
	}
	if s.opts.BaselinePaths != nil {
		paths, err := s.opts.BaselinePaths(ctx, hostID)
		if err != nil {
			return nil, err
		}
		cu.BaselinePaths = paths
	}
	return cu, nil
}

// welcomeConfig returns the configuration the Welcome of stream c carries.
// When the host's baseline paths cannot be had it returns nil, which the
// agent takes as "keep what you have" (an empty list would clear its
// baseline paths and show their files as absent), and a push is tried again
// shortly.
func (s *Service) welcomeConfig(ctx context.Context, c *conn) *agentv1.ConfigUpdate {
	cu, err := s.configUpdate(ctx, c.hostID)
	if err != nil {
		s.log.Error("configuration for the welcome; sending none, retrying shortly", "host", c.hostID, "err", err)
		time.AfterFunc(welcomeRetryDelay, func() { s.PushConfig([]string{c.hostID}) })
		return nil
	}
	c.cfgMu.Lock()
	defer c.cfgMu.Unlock()
	// The Welcome goes out before anything queued on c.out: a push queued
	// already is what the agent ends up with, so it stays the last sent.
	if !c.pathsSent {
		c.sentPaths, c.pathsSent = cu.GetBaselinePaths(), true
	}
	return cu
}

// PushConfig sends a fresh ConfigUpdate on the streams this replica holds
// of hostIDs, or of every host it holds for nil; hosts without a stream
// here are skipped (they get their configuration with the next Welcome).
// It never blocks: the configurations are computed and queued by one
// background goroutine, so that bursts of calls coalesce and each host's
// updates are queued in the order they were computed. A stream whose
// baseline paths are the same as in the last configuration it was sent is
// sent nothing. Safe for concurrent use.
func (s *Service) PushConfig(hostIDs []string) {
	s.pushMu.Lock()
	defer s.pushMu.Unlock()
	if hostIDs == nil {
		s.pushAll = true
	} else {
		if s.pushHosts == nil {
			s.pushHosts = make(map[string]struct{}, len(hostIDs))
		}
		for _, id := range hostIDs {
			s.pushHosts[id] = struct{}{}
		}
	}
	if s.pushing || (!s.pushAll && len(s.pushHosts) == 0) {
		return
	}
	s.pushing = true
	go s.pushLoop()
}

// pushLoop pushes configurations until none is waiting.
func (s *Service) pushLoop() {
	for {
		s.pushMu.Lock()
		all, hosts := s.pushAll, s.pushHosts
		s.pushAll, s.pushHosts = false, nil
		if !all && len(hosts) == 0 {
			s.pushing = false
			s.pushMu.Unlock()
			return
		}
		s.pushMu.Unlock()
		var ids []string
		if all {
			ids = s.liveHosts()
		} else {
			ids = make([]string, 0, len(hosts))
			for id := range hosts {
				ids = append(ids, id)
			}
		}
		slices.Sort(ids)
		for _, id := range ids {
			s.pushConfig(id)
		}
	}
}

// pushConfig computes the host's configuration and queues it on its
// stream, if this replica holds one and the baseline paths changed. On an
// error nothing is sent: the agent keeps its current list.
func (s *Service) pushConfig(hostID string) {
	s.mu.Lock()
	c := s.live[hostID]
	s.mu.Unlock()
	if c == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), pushTimeout)
	defer cancel()
	cu, err := s.configUpdate(ctx, hostID)
	if err != nil {
		s.log.Error("configuration not pushed", "host", hostID, "err", err)
		return
	}
	c.cfgMu.Lock()
	defer c.cfgMu.Unlock()
	if c.pathsSent && slices.Equal(c.sentPaths, cu.GetBaselinePaths()) {
		return
	}
	if err := c.send(&agentv1.ConnectResponse{Msg: &agentv1.ConnectResponse_Config{Config: cu}}); err != nil {
		s.log.Warn("configuration not pushed", "host", hostID, "err", err)
		return
	}
	c.sentPaths, c.pathsSent = cu.GetBaselinePaths(), true
	s.log.Info("configuration pushed", "host", hostID, "baseline_paths", len(cu.GetBaselinePaths()))
}
