package main

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"os"
	"time"
)

// RampStep is the server's state after one ramp step.
type RampStep struct {
	Agents      int     `json:"agents"`
	RSSMiB      float64 `json:"rss_mib"`
	RSSAnonMiB  float64 `json:"rss_anon_mib"`
	KiBPerAgent float64 `json:"rss_kib_per_agent"`
	Failures    int     `json:"connect_failures"`
	ConnectSec  float64 `json:"connect_seconds"`
	LoadAvg     string  `json:"load_average"`
}

// RampResult is the outcome of ramp mode.
type RampResult struct {
	Store       string     `json:"store"`
	MemLimitMiB int64      `json:"mem_limit_mib"`
	MaxAgents   int        `json:"max_agents_within_limit"`
	StopReason  string     `json:"stop_reason"`
	BaseRSSMiB  float64    `json:"base_rss_mib"`
	Steps       []RampStep `json:"steps"`
	Loadgen     float64    `json:"loadgen_rss_mib"`
}

// runRamp adds idle agents RampStep at a time until the server's RSS
// passes the limit, connections start failing, or -agents is reached:
// the most agents one server holds in that memory.
func runRamp(ctx context.Context, cfg *config, log *slog.Logger) (*RampResult, error) {
	b, err := setup(ctx, cfg, log)
	if err != nil {
		return nil, err
	}
	defer b.enr.close()
	res := &RampResult{Store: cfg.Store, MemLimitMiB: cfg.RampMemLimit, StopReason: "reached -agents"}
	base := b.settledSample(ctx)
	res.BaseRSSMiB = mib(base.RSS)
	var all []*simAgent
	defer func() {
		for _, a := range all {
			a.close()
		}
	}()
	for n := 0; n < cfg.Agents; {
		step := min(cfg.RampStep, cfg.Agents-n)
		ids, err := b.enr.identities(ctx, n, n+step, cfg.EnrollConc)
		if err != nil {
			res.StopReason = fmt.Sprintf("enrollment failed: %v", err)
			break
		}
		agents := make([]*simAgent, step)
		for i, id := range ids {
			agents[i] = newSimAgent(b.fleet, n+i, id)
		}
		t0 := time.Now()
		ok, failed := b.connectAll(ctx, agents)
		el := time.Since(t0)
		all = append(all, ok...)
		n += step
		s := b.settledSample(ctx)
		st := RampStep{Agents: len(all), RSSMiB: mib(s.RSS), RSSAnonMiB: mib(s.RSSAnon), Failures: failed,
			ConnectSec: math.Round(el.Seconds()*10) / 10, LoadAvg: loadAverage()}
		if len(all) > 0 {
			st.KiBPerAgent = math.Round(float64(s.RSS-base.RSS)/1024/float64(len(all))*10) / 10
		}
		res.Steps = append(res.Steps, st)
		log.Info("ramp", "agents", st.Agents, "rss_mib", st.RSSMiB, "kib_per_agent", st.KiBPerAgent, "failed", failed)
		if cfg.RampMemLimit > 0 && st.RSSMiB > float64(cfg.RampMemLimit) {
			res.StopReason = "server RSS passed the limit"
			break
		}
		res.MaxAgents = len(all)
		if failed > step/100 {
			res.StopReason = fmt.Sprintf("%d of %d connections failed: %v", failed, step, b.fleet.lastErr)
			break
		}
		if ctx.Err() != nil {
			res.StopReason = "time limit"
			break
		}
	}
	if s, err := sampleProc(os.Getpid()); err == nil {
		res.Loadgen = mib(s.RSS)
	}
	return res, nil
}
