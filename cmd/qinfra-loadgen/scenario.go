package main

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	agentv1 "github.com/quantumlayer/qinfra/proto/gen/qinfra/agent/v1"
)

// Results is what one run writes.
type Results struct {
	Store           string         `json:"store"`
	Agents          int            `json:"agents_requested"`
	Connected       int            `json:"agents_connected"`
	ConnectFailures int            `json:"connect_failures"`
	StreamErrors    int            `json:"stream_errors"`
	LastStreamError string         `json:"last_stream_error,omitempty"`
	Resyncs         int            `json:"resyncs"`
	Templates       int            `json:"templates"`
	ItemsPerFull    int            `json:"items_per_full_inventory"`
	LoadAvgStart    string         `json:"load_average_start"`
	LoadAvgEnd      string         `json:"load_average_end"`
	Enroll          EnrollResult   `json:"enroll"`
	Connect         PhaseResult    `json:"connect"`
	Server          ServerResult   `json:"server"`
	Full            PhaseResult    `json:"full_inventories"`
	Delta           DeltaResult    `json:"deltas"`
	Fanout          FanoutResult   `json:"fanout"`
	Drift           DriftResult    `json:"drift"`
	LoadgenRSSMiB   float64        `json:"loadgen_rss_mib"`
	ResultAck       LatencySummary `json:"command_result_ack_latency"`
}

// EnrollResult covers the enrollment phase.
type EnrollResult struct {
	Enrolled  int64          `json:"enrolled"`
	Cached    int64          `json:"from_cache"`
	Seconds   float64        `json:"seconds"`
	PerSecond float64        `json:"per_second"`
	Latency   LatencySummary `json:"latency"`
}

// PhaseResult is a count over a time, with the latency of each.
type PhaseResult struct {
	Count     int            `json:"count"`
	Seconds   float64        `json:"seconds"`
	PerSecond float64        `json:"per_second"`
	Latency   LatencySummary `json:"ack_latency"`
	CPUCores  float64        `json:"server_cpu_cores"`
}

// DeltaResult covers the delta phase.
type DeltaResult struct {
	TargetRate float64 `json:"target_rate"`
	Sent       int64   `json:"sent"`
	PhaseResult
}

// FanoutResult covers one command to each of Count agents through the API.
type FanoutResult struct {
	Count     int     `json:"count"`
	Delivered int     `json:"delivered"`
	Completed int     `json:"results_acked"`
	Seconds   float64 `json:"api_seconds"`
	APIPerSec float64 `json:"api_commands_per_second"`
	// FromStart is the time from the fan-out's start (the operator's
	// first request) to each agent receiving its command.
	FromStart LatencySummary `json:"from_start"`
	// FromRequest is the time from each command's own API request.
	FromRequest LatencySummary `json:"from_request"`
	// AllStoredSec is from the start to every agent's result being stored
	// (acked by the server).
	AllStoredSec float64 `json:"all_results_stored_seconds"`
	CPUCores     float64 `json:"server_cpu_cores"`
}

// DriftResult is the latency from a file changing on a simulated host to
// the change being visible through the API.
type DriftResult struct {
	Measured string         `json:"measured"`
	Latency  LatencySummary `json:"latency"`
	Timeouts int            `json:"timeouts"`
}

// ServerResult is the server process's memory and CPU.
type ServerResult struct {
	RSSNoneMiB         float64 `json:"rss_no_agents_mib"`
	RSSIdleMiB         float64 `json:"rss_idle_agents_mib"`
	RSSAnonNoneMiB     float64 `json:"rss_anon_no_agents_mib"`
	RSSAnonIdleMiB     float64 `json:"rss_anon_idle_agents_mib"`
	RSSPerIdleAgentKiB float64 `json:"rss_per_idle_agent_kib"`
	RSSAnonPerIdleKiB  float64 `json:"rss_anon_per_idle_agent_kib"`
	RSSAfterFullMiB    float64 `json:"rss_after_full_mib"`
	RSSPeakMiB         float64 `json:"rss_end_mib"`
	IdleCPUCores       float64 `json:"idle_cpu_cores"`
	ThreadsIdle        int     `json:"threads_idle"`
}

func mib(b int64) float64 { return math.Round(float64(b)/(1<<20)*10) / 10 }

func perSec(n int, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return math.Round(float64(n)/d.Seconds()*10) / 10
}

// bench holds what both modes set up: API client, enroller, fleet.
type bench struct {
	cfg   *config
	log   *slog.Logger
	api   *apiClient
	enr   *enroller
	fleet *fleet
	// drift is whether the hot-file baseline is in place, so real drift
	// is measured rather than its proxy.
	drift bool
}

func setup(ctx context.Context, cfg *config, log *slog.Logger) (*bench, error) {
	ca, err := loadCA(cfg.CAFile)
	if err != nil {
		return nil, err
	}
	tok, err := readToken(cfg.AdminTokenFile)
	if err != nil {
		return nil, err
	}
	api, err := newAPIClient(cfg.API, tok, ca)
	if err != nil {
		return nil, err
	}
	srcs, err := sourceAddrs(cfg.SrcAddrs)
	if err != nil {
		return nil, err
	}
	cache, err := newCertCache(cfg.CertCache, ca)
	if err != nil {
		return nil, err
	}
	tokens, err := api.enrollmentTokens(ctx, cfg.Agents)
	if err != nil {
		return nil, fmt.Errorf("create enrollment tokens: %w", err)
	}
	enr, err := newEnroller(cfg.GRPCAddr, ca, srcs, cache, tokens, maxTokenUses)
	if err != nil {
		return nil, err
	}
	tmpls, err := makeTemplates(cfg.Templates, cfg.Seed)
	if err != nil {
		return nil, err
	}
	f := &fleet{grpcAddr: cfg.GRPCAddr, ca: ca, srcs: srcs, templates: tmpls, spoolID: "loadgen-" + randomID(), maxMsg: 16 << 20}
	drift := false
	if cfg.DriftBaseline {
		if drift, err = api.hotFileBaseline(ctx); err != nil {
			log.Warn("no hot-file baseline: measuring the drift proxy", "err", err)
		}
	}
	return &bench{cfg: cfg, log: log, api: api, enr: enr, fleet: f, drift: drift}, nil
}

func (b *bench) sample() procSample {
	if b.cfg.ServerPID == 0 {
		return procSample{At: time.Now()}
	}
	s, err := sampleProc(b.cfg.ServerPID)
	if err != nil {
		b.log.Warn("sample server", "err", err)
	}
	return s
}

// settledSample waits, collects the server's garbage and samples it.
func (b *bench) settledSample(ctx context.Context) procSample {
	select {
	case <-time.After(b.cfg.Settle):
	case <-ctx.Done():
	}
	serverGC(ctx, b.cfg.Pprof)
	return b.sample()
}

// connectAll connects agents with at most conc handshakes in flight and
// returns those connected.
func (b *bench) connectAll(ctx context.Context, agents []*simAgent) (ok []*simAgent, failed int) {
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, b.cfg.ConnectConc)
	var lastErr error
	for _, a := range agents {
		if ctx.Err() != nil {
			failed++
			continue
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			var err error
			for attempt := 0; attempt < 3; attempt++ {
				cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
				_, err = a.connect(cctx)
				cancel()
				if err == nil || ctx.Err() != nil {
					break
				}
				time.Sleep(time.Duration(attempt+1) * 500 * time.Millisecond)
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				failed++
				lastErr = err
				return
			}
			ok = append(ok, a)
		})
	}
	wg.Wait()
	if lastErr != nil {
		b.log.Warn("connect failures", "failed", failed, "last_err", lastErr)
	}
	return ok, failed
}

func runScenario(ctx context.Context, cfg *config, log *slog.Logger) (*Results, error) {
	res := &Results{Store: cfg.Store, Agents: cfg.Agents, Templates: cfg.Templates, LoadAvgStart: loadAverage()}
	b, err := setup(ctx, cfg, log)
	if err != nil {
		return nil, err
	}
	defer b.enr.close()
	f := b.fleet
	{
		h, err := makeHostItems(f.templates[0], 0, 0, hotMode)
		if err != nil {
			return nil, err
		}
		items, _ := fullInventory(f.templates[0], h)
		res.ItemsPerFull = len(items)
	}

	// Enrollment.
	log.Info("enrolling", "agents", cfg.Agents)
	t0 := time.Now()
	ids, err := b.enr.identities(ctx, 0, cfg.Agents, cfg.EnrollConc)
	if err != nil {
		return nil, err
	}
	el := time.Since(t0)
	res.Enroll = EnrollResult{Enrolled: b.enr.enrolled.Load(), Cached: b.enr.cached.Load(), Seconds: el.Seconds(),
		PerSecond: perSec(int(b.enr.enrolled.Load()), el), Latency: b.enr.latency.Summary()}
	log.Info("enrolled", "new", res.Enroll.Enrolled, "cached", res.Enroll.Cached, "per_second", res.Enroll.PerSecond)

	none := b.settledSample(ctx)

	// Connections.
	agents := make([]*simAgent, len(ids))
	for i, id := range ids {
		agents[i] = newSimAgent(f, i, id)
	}
	t0 = time.Now()
	conn, failed := b.connectAll(ctx, agents)
	el = time.Since(t0)
	defer func() {
		for _, a := range conn {
			a.close()
		}
	}()
	res.Connected, res.ConnectFailures = len(conn), failed
	res.Connect = PhaseResult{Count: len(conn), Seconds: el.Seconds(), PerSecond: perSec(len(conn), el)}
	log.Info("connected", "agents", len(conn), "failed", failed, "per_second", res.Connect.PerSecond)
	if len(conn) == 0 {
		return res, fmt.Errorf("no agent connected: %v", f.lastErr)
	}

	idle := b.settledSample(ctx)
	idle2 := b.settledSample(ctx)
	res.Server = ServerResult{
		RSSNoneMiB: mib(none.RSS), RSSIdleMiB: mib(idle2.RSS), RSSAnonNoneMiB: mib(none.RSSAnon), RSSAnonIdleMiB: mib(idle2.RSSAnon),
		RSSPerIdleAgentKiB: math.Round(float64(idle2.RSS-none.RSS)/1024/float64(len(conn))*10) / 10,
		RSSAnonPerIdleKiB:  math.Round(float64(idle2.RSSAnon-none.RSSAnon)/1024/float64(len(conn))*10) / 10,
		IdleCPUCores:       cpuCores(idle, idle2), ThreadsIdle: idle2.Threads,
	}
	log.Info("idle", "rss_per_agent_kib", res.Server.RSSPerIdleAgentKiB, "anon_per_agent_kib", res.Server.RSSAnonPerIdleKiB)

	// Full inventories, at most FullInFlight unacknowledged at a time.
	res.Full = b.fullPhase(ctx, conn)
	log.Info("full inventories", "per_second", res.Full.PerSecond, "p99_ms", res.Full.Latency.P99ms)
	res.Server.RSSAfterFullMiB = mib(b.settledSample(ctx).RSS)

	// Deltas at the set rate, with drift probes on agents kept out of them.
	probes := min(cfg.DriftSample, len(conn)/2)
	res.Delta, res.Drift = b.deltaPhase(ctx, conn[probes:], conn[:probes])
	log.Info("deltas", "per_second", res.Delta.PerSecond, "p99_ms", res.Delta.Latency.P99ms, "drift_p99_ms", res.Drift.Latency.P99ms)

	// Command fan-out.
	if cfg.Fanout > 0 {
		res.Fanout = b.fanoutPhase(ctx, conn[:min(cfg.Fanout, len(conn))])
		log.Info("fanout", "delivered", res.Fanout.Delivered, "p99_ms", res.Fanout.FromStart.P99ms)
	}
	res.ResultAck = f.ackLatency[msgResult].Summary()
	res.Server.RSSPeakMiB = mib(b.sample().RSS)
	f.mu.Lock()
	res.StreamErrors, res.Resyncs = f.streamErr, f.resyncs
	if f.lastErr != nil {
		res.LastStreamError = f.lastErr.Error()
	}
	f.mu.Unlock()
	if s, err := sampleProc(os.Getpid()); err == nil {
		res.LoadgenRSSMiB = mib(s.RSS)
	}
	res.LoadAvgEnd = loadAverage()
	return res, ctx.Err()
}

func (b *bench) fullPhase(ctx context.Context, agents []*simAgent) PhaseResult {
	f := b.fleet
	var acked atomic.Int64
	var last atomic.Int64
	s0 := b.sample()
	t0 := time.Now()
	// FullInFlight senders, each sending one agent's full inventory and
	// waiting for its Ack before the next: a single sender would be held
	// back by each stream's flow-control window, not by the server.
	work := make(chan *simAgent)
	var wg sync.WaitGroup
	for range b.cfg.FullInFlight {
		wg.Go(func() {
			for a := range work {
				done := make(chan struct{})
				err := a.sendFull(func(at time.Time) {
					acked.Add(1)
					last.Store(at.UnixNano())
					close(done)
				})
				if err != nil {
					f.streamFailed(err)
					continue
				}
				select {
				case <-done:
				case <-ctx.Done():
				case <-time.After(2 * time.Minute):
				}
			}
		})
	}
	for _, a := range agents {
		if ctx.Err() != nil {
			break
		}
		work <- a
	}
	close(work)
	wg.Wait()
	s1 := b.sample()
	el := time.Unix(0, last.Load()).Sub(t0)
	return PhaseResult{Count: int(acked.Load()), Seconds: el.Seconds(), PerSecond: perSec(int(acked.Load()), el),
		Latency: f.ackLatency[msgFull].Summary(), CPUCores: cpuCores(s0, s1)}
}

// waitTimeout waits for wg, ctx or the timeout, whichever comes first.
func waitTimeout(ctx context.Context, wg *sync.WaitGroup, d time.Duration) bool {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
		return true
	case <-ctx.Done():
	case <-time.After(d):
	}
	return false
}

func (b *bench) deltaPhase(ctx context.Context, agents, probes []*simAgent) (DeltaResult, DriftResult) {
	f := b.fleet
	res := DeltaResult{TargetRate: b.cfg.DeltaRate}
	var acked atomic.Int64
	var sent atomic.Int64
	onAck := func(time.Time) { acked.Add(1) }
	pctx, cancel := context.WithTimeout(ctx, b.cfg.DeltaFor)
	defer cancel()

	// Probes run alongside the deltas, one change at a time.
	drift := DriftResult{Measured: "proxy: hot file changed on a simulated agent -> new sha256 visible via GET /api/v1/hosts/{id}/inventory (no baseline applied)"}
	if b.drift {
		drift.Measured = "drift: hot file chmod 0640->0666 on a simulated agent -> open file.mode drift visible via GET /api/v1/hosts/{id}/drift (baseline qinfra-loadgen-hot-file)"
	}
	var dh Histogram
	var pwg sync.WaitGroup
	// Five probers, each changing its share of the probe agents one at a
	// time, spread over the phase.
	const probers = 5
	var dmu sync.Mutex
	for w := range probers {
		pwg.Go(func() {
			var mine []*simAgent
			for i := w; i < len(probes); i += probers {
				mine = append(mine, probes[i])
			}
			gap := b.cfg.DeltaFor / time.Duration(len(mine)+1)
			for _, a := range mine {
				if pctx.Err() != nil {
					return
				}
				sha, at, err := a.sendDelta(nil, b.drift)
				if err != nil {
					f.streamFailed(err)
					continue
				}
				ok := false
				for time.Since(at) < 10*time.Second && ctx.Err() == nil {
					var seen bool
					if b.drift {
						seen, err = b.api.hotFileDrift(ctx, a.id.hostID)
					} else {
						var got string
						got, err = b.api.fileSHA(ctx, a.id.hostID, hotFile)
						seen = got == sha
					}
					if err == nil && seen {
						dh.Observe(time.Since(at))
						ok = true
						break
					}
					time.Sleep(5 * time.Millisecond)
				}
				if !ok {
					dmu.Lock()
					drift.Timeouts++
					dmu.Unlock()
				}
				select {
				case <-time.After(gap - min(gap, time.Since(at))):
				case <-pctx.Done():
				}
			}
		})
	}

	s0 := b.sample()
	t0 := time.Now()
	work := make(chan *simAgent, 1024)
	var wwg sync.WaitGroup
	for range min(32, runtime.GOMAXPROCS(0)*8) {
		wwg.Go(func() {
			for a := range work {
				if _, _, err := a.sendDelta(onAck, false); err != nil {
					f.streamFailed(err)
					continue
				}
				sent.Add(1)
			}
		})
	}
	if len(agents) > 0 && b.cfg.DeltaRate > 0 {
		const tick = 10 * time.Millisecond
		t := time.NewTicker(tick)
		next, owed := 0, 0.0
	loop:
		for {
			select {
			case <-pctx.Done():
				break loop
			case <-t.C:
				owed += b.cfg.DeltaRate * tick.Seconds()
				for ; owed >= 1; owed-- {
					select {
					case work <- agents[next%len(agents)]:
						next++
					default:
						// The senders are behind: the rate is not reached,
						// which the result shows.
					}
				}
			}
		}
		t.Stop()
	}
	close(work)
	wwg.Wait()
	el := time.Since(t0)
	// Give the last deltas time to be acked.
	deadline := time.Now().Add(10 * time.Second)
	for acked.Load() < sent.Load() && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(20 * time.Millisecond)
	}
	s1 := b.sample()
	pwg.Wait()
	res.Sent = sent.Load()
	res.PhaseResult = PhaseResult{Count: int(acked.Load()), Seconds: el.Seconds(), PerSecond: perSec(int(acked.Load()), el),
		Latency: f.ackLatency[msgDelta].Summary(), CPUCores: cpuCores(s0, s1)}
	drift.Latency = dh.Summary()
	return res, drift
}

// fanoutLimit bounds the whole fan-out phase, so a server that stops
// answering the API does not hold the bench.
const fanoutLimit = 2 * time.Minute

func (b *bench) fanoutPhase(ctx context.Context, agents []*simAgent) FanoutResult {
	f := b.fleet
	ctx, cancel := context.WithTimeout(ctx, fanoutLimit)
	defer cancel()
	res := FanoutResult{Count: len(agents)}
	marker := "loadgen-fanout-" + randomID()
	reqAt := make([]atomic.Int64, len(agents))
	byHost := make(map[string]int, len(agents))
	for i, a := range agents {
		byHost[a.id.hostID] = i
	}
	var fromStart, fromReq Histogram
	var delivered sync.WaitGroup
	delivered.Add(len(agents))
	var got = make([]atomic.Bool, len(agents))
	var ndel, ncomp atomic.Int64
	t0 := time.Now()
	var hook commandHook = func(a *simAgent, cmd *agentv1.Command, at time.Time) {
		i, ok := byHost[a.id.hostID]
		if !ok || cmd.GetRunScript().GetBody() != marker || got[i].Swap(true) {
			return
		}
		fromStart.Observe(at.Sub(t0))
		if r := reqAt[i].Load(); r != 0 {
			fromReq.Observe(at.Sub(time.Unix(0, r)))
		}
		ndel.Add(1)
		delivered.Done()
	}
	f.onCommand.Store(&hook)
	// The result is sent right after onCommand returns; completion is
	// its Ack (the server stored it).
	prev := f.ackLatency[msgResult].Count()
	s0 := b.sample()
	sem := make(chan struct{}, b.cfg.FanoutConc)
	var wg sync.WaitGroup
	for i, a := range agents {
		if ctx.Err() != nil {
			break
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			reqAt[i].Store(time.Now().UnixNano())
			if _, err := b.api.runScript(ctx, a.id.hostID, marker); err != nil {
				b.log.Warn("fanout request", "err", err)
			}
		})
	}
	wg.Wait()
	res.Seconds = time.Since(t0).Seconds()
	res.APIPerSec = perSec(len(agents), time.Since(t0))
	waitTimeout(ctx, &delivered, 60*time.Second)
	// Completion: wait until the result acks have all come back.
	deadline := time.Now().Add(30 * time.Second)
	for f.ackLatency[msgResult].Count()-prev < uint64(ndel.Load()) && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(10 * time.Millisecond)
	}
	res.AllStoredSec = time.Since(t0).Seconds()
	ncomp.Store(int64(f.ackLatency[msgResult].Count() - prev))
	s1 := b.sample()
	f.onCommand.Store(nil)
	res.Delivered, res.Completed = int(ndel.Load()), int(ncomp.Load())
	res.FromStart, res.FromRequest = fromStart.Summary(), fromReq.Summary()
	res.CPUCores = cpuCores(s0, s1)
	return res
}
