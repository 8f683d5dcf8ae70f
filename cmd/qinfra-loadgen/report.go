package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"time"
)

// Report is bench/results.json: every run and ramp of one `make bench`,
// the operating system limits met, and the targets checked.
type Report struct {
	GeneratedAt time.Time     `json:"generated_at"`
	Machine     Machine       `json:"machine"`
	Limits      []string      `json:"os_limits"`
	Runs        []*Results    `json:"runs"`
	Ramps       []*RampResult `json:"ramps,omitempty"`
	Targets     []Target      `json:"targets"`
}

// Machine describes where the figures were taken.
type Machine struct {
	CPUs     int    `json:"cpus"`
	MemTotal string `json:"mem_total"`
	LoadAvg  string `json:"load_average_at_report"`
}

// Target is one goal of the issue and whether this bench met it.
type Target struct {
	Name     string `json:"name"`
	Goal     string `json:"goal"`
	Measured string `json:"measured"`
	Met      bool   `json:"met"`
}

// runReport merges result files into bench/results.json and results.md.
func runReport(args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("report", flag.ContinueOnError)
	fs.SetOutput(stderr)
	limits := fs.String("limits", "", "file of notes on operating system limits (one per line)")
	jsonOut := fs.String("json", "bench/results.json", "merged JSON output")
	mdOut := fs.String("md", "bench/results.md", "markdown output")
	if err := fs.Parse(args); err != nil {
		return err
	}
	rep := &Report{GeneratedAt: time.Now().UTC().Truncate(time.Second), Machine: machine()}
	if *limits != "" {
		b, err := os.ReadFile(*limits)
		if err != nil {
			return err
		}
		for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			if l != "" {
				rep.Limits = append(rep.Limits, l)
			}
		}
	}
	for _, path := range fs.Args() {
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if strings.Contains(string(b), `"steps"`) {
			var r RampResult
			if err := json.Unmarshal(b, &r); err != nil {
				return fmt.Errorf("%s: %w", path, err)
			}
			rep.Ramps = append(rep.Ramps, &r)
			continue
		}
		var r Results
		if err := json.Unmarshal(b, &r); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		rep.Runs = append(rep.Runs, &r)
	}
	rep.Targets = targets(rep)
	if err := writeJSON(*jsonOut, rep); err != nil {
		return err
	}
	return os.WriteFile(*mdOut, []byte(markdown(rep)), 0o644)
}

func machine() Machine {
	m := Machine{CPUs: runtime.NumCPU(), LoadAvg: loadAverage()}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "MemTotal:") {
				m.MemTotal = strings.TrimSpace(strings.TrimPrefix(l, "MemTotal:"))
			}
		}
	}
	return m
}

func targets(rep *Report) []Target {
	maxConn := 0
	for _, r := range rep.Runs {
		maxConn = max(maxConn, r.Connected)
	}
	for _, r := range rep.Ramps {
		maxConn = max(maxConn, r.MaxAgents)
	}
	out := []Target{{Name: "connected agents, one server", Goal: ">= 100000", Measured: fmt.Sprint(maxConn), Met: maxConn >= 100000}}
	for _, r := range rep.Runs {
		out = append(out,
			Target{Name: r.Store + ": server RSS per idle agent", Goal: "<= 40 KiB",
				Measured: fmt.Sprintf("%.1f KiB (anon %.1f KiB) at %d agents", r.Server.RSSPerIdleAgentKiB, r.Server.RSSAnonPerIdleKiB, r.Connected),
				Met:      r.Server.RSSPerIdleAgentKiB <= 40},
			Target{Name: r.Store + ": full inventories ingested/s", Goal: ">= 2000/s",
				Measured: fmt.Sprintf("%.1f/s (%d items each)", r.Full.PerSecond, r.ItemsPerFull), Met: r.Full.PerSecond >= 2000},
			Target{Name: r.Store + ": command fan-out p99", Goal: "10000 agents, p99 < 2 s",
				Measured: fmt.Sprintf("%d agents, p99 %.0f ms from start", r.Fanout.Delivered, r.Fanout.FromStart.P99ms),
				Met:      r.Fanout.Delivered >= 10000 && r.Fanout.FromStart.P99ms < 2000},
			Target{Name: r.Store + ": drift p99" + map[bool]string{true: "", false: " (proxy)"}[strings.HasPrefix(r.Drift.Measured, "drift:")], Goal: "< 1 s",
				Measured: fmt.Sprintf("%.0f ms over %d changes", r.Drift.Latency.P99ms, r.Drift.Latency.Count),
				Met:      r.Drift.Latency.Count > 0 && r.Drift.Latency.P99ms < 1000})
	}
	return out
}

func markdown(rep *Report) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# qinfra bench (%s)\n\n", rep.GeneratedAt.Format(time.RFC3339))
	fmt.Fprintf(&b, "Machine: %d CPUs, %s RAM; load average at report %s. Server and load generator share the machine.\n\n",
		rep.Machine.CPUs, rep.Machine.MemTotal, rep.Machine.LoadAvg)
	if len(rep.Runs) > 0 {
		b.WriteString("| figure |")
		for _, r := range rep.Runs {
			fmt.Fprintf(&b, " %s |", r.Store)
		}
		b.WriteString("\n|---|")
		for range rep.Runs {
			b.WriteString("---|")
		}
		b.WriteString("\n")
		row := func(name string, f func(r *Results) string) {
			fmt.Fprintf(&b, "| %s |", name)
			for _, r := range rep.Runs {
				fmt.Fprintf(&b, " %s |", f(r))
			}
			b.WriteString("\n")
		}
		row("agents connected / requested", func(r *Results) string {
			return fmt.Sprintf("%d / %d (%d failed)", r.Connected, r.Agents, r.ConnectFailures)
		})
		row("load average start → end", func(r *Results) string { return r.LoadAvgStart + " → " + r.LoadAvgEnd })
		row("enrollments/s (new, cached)", func(r *Results) string {
			return fmt.Sprintf("%.0f (%d, %d), p99 %.0f ms", r.Enroll.PerSecond, r.Enroll.Enrolled, r.Enroll.Cached, r.Enroll.Latency.P99ms)
		})
		row("connects/s", func(r *Results) string { return fmt.Sprintf("%.0f", r.Connect.PerSecond) })
		row("server RSS, no agents → idle agents", func(r *Results) string {
			return fmt.Sprintf("%.1f → %.1f MiB", r.Server.RSSNoneMiB, r.Server.RSSIdleMiB)
		})
		row("server RSS per idle agent (anon)", func(r *Results) string {
			return fmt.Sprintf("%.1f KiB (%.1f KiB)", r.Server.RSSPerIdleAgentKiB, r.Server.RSSAnonPerIdleKiB)
		})
		row("server RSS after full inventories / at end", func(r *Results) string {
			return fmt.Sprintf("%.1f / %.1f MiB", r.Server.RSSAfterFullMiB, r.Server.RSSPeakMiB)
		})
		row("server CPU idle / full / deltas / fan-out (cores)", func(r *Results) string {
			return fmt.Sprintf("%.2f / %.2f / %.2f / %.2f", r.Server.IdleCPUCores, r.Full.CPUCores, r.Delta.CPUCores, r.Fanout.CPUCores)
		})
		row("full inventories ingested/s (items each)", func(r *Results) string {
			return fmt.Sprintf("%.1f (%d)", r.Full.PerSecond, r.ItemsPerFull)
		})
		row("full inventory ack p50 / p99", func(r *Results) string { return lat(r.Full.Latency) })
		row("deltas/s acked (target)", func(r *Results) string {
			return fmt.Sprintf("%.0f (%.0f)", r.Delta.PerSecond, r.Delta.TargetRate)
		})
		row("delta ack p50 / p99", func(r *Results) string { return lat(r.Delta.Latency) })
		row("fan-out: agents reached / sent", func(r *Results) string {
			return fmt.Sprintf("%d / %d, API %.0f req/s", r.Fanout.Delivered, r.Fanout.Count, r.Fanout.APIPerSec)
		})
		row("fan-out p50 / p99 from start", func(r *Results) string { return lat(r.Fanout.FromStart) })
		row("fan-out p50 / p99 from each request", func(r *Results) string { return lat(r.Fanout.FromRequest) })
		row("fan-out: all results stored", func(r *Results) string { return fmt.Sprintf("%.2f s", r.Fanout.AllStoredSec) })
		row("drift p50 / p99 (file change → visible in API)", func(r *Results) string {
			return lat(r.Drift.Latency) + fmt.Sprintf(", %d timeouts", r.Drift.Timeouts)
		})
		row("stream errors / resyncs", func(r *Results) string { return fmt.Sprintf("%d / %d", r.StreamErrors, r.Resyncs) })
		row("load generator RSS", func(r *Results) string { return fmt.Sprintf("%.0f MiB", r.LoadgenRSSMiB) })
		for _, r := range rep.Runs {
			fmt.Fprintf(&b, "\nDrift (%s): %s.\n", r.Store, r.Drift.Measured)
		}
	}
	for _, r := range rep.Ramps {
		fmt.Fprintf(&b, "\n## Ramp (%s, idle agents, limit %d MiB): %d agents, stopped: %s\n\n", r.Store, r.MemLimitMiB, r.MaxAgents, r.StopReason)
		b.WriteString("| agents | server RSS MiB | anon MiB | KiB/agent | failed | load |\n|---|---|---|---|---|---|\n")
		for _, s := range r.Steps {
			fmt.Fprintf(&b, "| %d | %.1f | %.1f | %.1f | %d | %s |\n", s.Agents, s.RSSMiB, s.RSSAnonMiB, s.KiBPerAgent, s.Failures, s.LoadAvg)
		}
	}
	b.WriteString("\n## Targets\n\n| target | goal | measured | met |\n|---|---|---|---|\n")
	for _, t := range rep.Targets {
		met := "no"
		if t.Met {
			met = "yes"
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", t.Name, t.Goal, t.Measured, met)
	}
	if len(rep.Limits) > 0 {
		b.WriteString("\n## Operating system limits\n\n")
		for _, l := range rep.Limits {
			fmt.Fprintf(&b, "- %s\n", l)
		}
	}
	return b.String()
}

func lat(s LatencySummary) string {
	return fmt.Sprintf("%.0f / %.0f ms", s.P50ms, s.P99ms)
}
