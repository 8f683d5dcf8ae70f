package app

import (
	"context"
	"encoding/json"
	"time"

	"github.com/quantumlayer/qinfra/server/internal/store"
)

// expireDriftAcceptances ends drift acceptances past their time, so the
// drift shows again, and audits each.
func (s *Server) expireDriftAcceptances(ctx context.Context) {
	ds, err := s.drift.ExpireAcceptances(ctx)
	if err != nil {
		s.log.Error("expire drift acceptances", "err", err)
		return
	}
	for _, d := range ds {
		detail, _ := json.Marshal(map[string]any{"drift_id": d.ID, "baseline": d.Baseline, "rule": d.Rule, "key": d.Key})
		if err := s.store.AppendAudit(ctx, &store.AuditEntry{Time: time.Now().UTC(), Actor: "qinfra-server", Action: "drift.acceptance_expired",
			Target: "host/" + d.HostID, Detail: string(detail)}); err != nil {
			s.log.Error("audit drift acceptance expiry", "drift", d.ID, "err", err)
		}
	}
}
