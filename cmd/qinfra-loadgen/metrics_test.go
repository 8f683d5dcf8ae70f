package main

import (
	"os"
	"testing"
	"time"
)

func TestHistogramQuantiles(t *testing.T) {
	var h Histogram
	if h.Quantile(0.5) != 0 {
		t.Fatal("empty histogram has a quantile")
	}
	for i := 1; i <= 1000; i++ {
		h.Observe(time.Duration(i) * time.Millisecond)
	}
	check := func(q float64, want time.Duration) {
		t.Helper()
		got := h.Quantile(q)
		if got < want*97/100 || got > want*103/100 {
			t.Fatalf("q%.2f = %v, want about %v", q, got, want)
		}
	}
	check(0.5, 500*time.Millisecond)
	check(0.99, 990*time.Millisecond)
	check(1, time.Second)
	if s := h.Summary(); s.Count != 1000 || s.MaxMs != 1000 {
		t.Fatalf("summary %+v", s)
	}
}

func TestSampleProcSelf(t *testing.T) {
	s, err := sampleProc(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if s.RSS <= 0 || s.Threads <= 0 {
		t.Fatalf("sample %+v", s)
	}
}

func TestLoopbackOnly(t *testing.T) {
	for _, ok := range []string{"127.0.0.1:8440", "127.3.2.1:1", "[::1]:8440"} {
		if err := loopbackHostPort(ok); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
	for _, bad := range []string{"10.0.0.1:8440", "example.com:8440", "localhost:8440", "0.0.0.0:1", "8440"} {
		if err := loopbackHostPort(bad); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
	c := &config{GRPCAddr: "127.0.0.1:1", API: "https://192.168.1.1:8443", CAFile: "x", AdminTokenFile: "y", Agents: 1, Templates: 1, Mode: "run",
		EnrollConc: 1, ConnectConc: 1, FullInFlight: 1, FanoutConc: 1, RampStep: 1}
	if err := c.validate(); err == nil {
		t.Fatal("non-loopback API accepted")
	}
}
