package main

import (
	"bufio"
	"bytes"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// Histogram buckets grow by 2% from 1µs, so a quantile is within 2% of the
// true value; 1,200 buckets reach beyond 10 minutes.
const (
	histBase    = time.Microsecond
	histGrowth  = 1.02
	histBuckets = 1200
)

var logGrowth = math.Log(histGrowth)

// Histogram records latencies without locks in fixed memory.
type Histogram struct {
	counts [histBuckets]atomic.Uint64
	n      atomic.Uint64
	max    atomic.Int64
}

func bucketOf(d time.Duration) int {
	if d <= histBase {
		return 0
	}
	b := int(math.Ceil(math.Log(float64(d)/float64(histBase)) / logGrowth))
	return min(b, histBuckets-1)
}

// bucketUpper is the largest duration bucket b holds.
func bucketUpper(b int) time.Duration {
	return time.Duration(float64(histBase) * math.Pow(histGrowth, float64(b)))
}

// Observe records one latency.
func (h *Histogram) Observe(d time.Duration) {
	h.counts[bucketOf(d)].Add(1)
	h.n.Add(1)
	for {
		m := h.max.Load()
		if int64(d) <= m || h.max.CompareAndSwap(m, int64(d)) {
			return
		}
	}
}

// Count returns the number of observations.
func (h *Histogram) Count() uint64 { return h.n.Load() }

// Quantile returns the q-quantile (0 < q <= 1), or 0 without observations.
func (h *Histogram) Quantile(q float64) time.Duration {
	n := h.n.Load()
	if n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(n)))
	var seen uint64
	for b := range h.counts {
		seen += h.counts[b].Load()
		if seen >= rank {
			return min(bucketUpper(b), time.Duration(h.max.Load()))
		}
	}
	return time.Duration(h.max.Load())
}

// LatencySummary is a histogram as reported in results.json, in
// milliseconds.
type LatencySummary struct {
	Count uint64  `json:"count"`
	P50ms float64 `json:"p50_ms"`
	P99ms float64 `json:"p99_ms"`
	MaxMs float64 `json:"max_ms"`
}

// Summary returns the histogram's summary.
func (h *Histogram) Summary() LatencySummary {
	return LatencySummary{Count: h.Count(), P50ms: ms(h.Quantile(0.5)), P99ms: ms(h.Quantile(0.99)), MaxMs: ms(time.Duration(h.max.Load()))}
}

func ms(d time.Duration) float64 { return math.Round(float64(d)/1e3) / 1e3 }

// procSample is a process's memory and CPU time from /proc.
type procSample struct {
	At      time.Time
	RSS     int64 // bytes
	RSSAnon int64 // bytes; excludes file mappings such as bbolt's mmap
	CPU     time.Duration
	Threads int
}

// clockTick is USER_HZ, 100 on every Linux platform Go supports.
const clockTick = 100

// sampleProc reads /proc/<pid>/status and /proc/<pid>/stat.
func sampleProc(pid int) (procSample, error) {
	s := procSample{At: time.Now()}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s, fmt.Errorf("read process status: %w", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 {
			continue
		}
		v, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "VmRSS:":
			s.RSS = v << 10
		case "RssAnon:":
			s.RSSAnon = v << 10
		case "Threads:":
			s.Threads = int(v)
		}
	}
	b, err = os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return s, fmt.Errorf("read process stat: %w", err)
	}
	// Fields after the command name, which is in parentheses and may hold
	// spaces: utime and stime are the 12th and 13th of them.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return s, fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return s, fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	s.CPU = time.Duration(ut+st) * time.Second / clockTick
	return s, nil
}

// cpuCores is the average number of cores a process used between two
// samples.
func cpuCores(a, b procSample) float64 {
	wall := b.At.Sub(a.At)
	if wall <= 0 {
		return 0
	}
	return math.Round(float64(b.CPU-a.CPU)/float64(wall)*100) / 100
}
