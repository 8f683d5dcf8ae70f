package app

import (
	"context"
	"time"
)

// maintain is the leader's background work: expire commands whose deadline
// passed, prune history, resolved drift and audit entries past their
// retention.
func (s *Server) maintain(ctx context.Context) {
	t := time.NewTicker(s.cfg.MaintenanceEvery)
	defer t.Stop()
	for {
		s.maintainOnce(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (s *Server) maintainOnce(ctx context.Context) {
	now := time.Now()
	if n, err := s.store.ExpireCommands(ctx, now); err != nil {
		s.log.Error("expire commands", "err", err)
	} else if n > 0 {
		s.log.Info("commands expired", "count", n)
	}
	s.expireDriftAcceptances(ctx)
	if s.cfg.DriftSweep > 0 {
		parts := max(1, int(s.cfg.DriftSweep/max(s.cfg.MaintenanceEvery, time.Second)))
		next, _, err := s.drift.Sweep(ctx, s.sweepAfter, parts)
		if err != nil {
			s.log.Error("drift sweep", "err", err)
		}
		s.sweepAfter = next
	}
	if s.cfg.HistoryRetention > 0 {
		if n, err := s.store.PruneHistory(ctx, now.Add(-s.cfg.HistoryRetention)); err != nil {
			s.log.Error("prune history", "err", err)
		} else if n > 0 {
			s.log.Info("history pruned", "changes", n)
		}
	}
	if s.cfg.DriftRetention > 0 {
		if n, err := s.store.PruneDrift(ctx, now.Add(-s.cfg.DriftRetention)); err != nil {
			s.log.Error("prune drift", "err", err)
		} else if n > 0 {
			s.log.Info("resolved drift pruned", "drifts", n)
		}
	}
	if s.cfg.AuditRetention > 0 {
		if n, err := s.store.PruneAudit(ctx, now.Add(-s.cfg.AuditRetention)); err != nil {
			s.log.Error("prune audit", "err", err)
		} else if n > 0 {
			s.log.Info("audit log pruned", "entries", n)
		}
	}
}
