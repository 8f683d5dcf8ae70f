// Command qinfra-loadgen simulates a fleet of agents against one
// qinfra-server on this machine: N agents in one process, each enrolled
// for real with its own certificate and holding its own mTLS gRPC stream,
// sending full inventories drawn from K image templates, then deltas at a
// set rate, and answering commands. It measures what the server sustains
// and writes the figures as JSON (see scripts/bench.sh, `make bench`).
//
// It only ever connects to loopback addresses (127.0.0.0/8, ::1): any
// other server address is refused.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

// config is the load generator's configuration.
type config struct {
	// GRPCAddr is the server's agent listener, a loopback host:port.
	GRPCAddr string
	// API is the server's REST base URL, https://127.0.0.x:port.
	API string
	// CAFile is the server's CA certificate (PEM).
	CAFile string
	// AdminTokenFile holds an API token allowed to create enrollment
	// tokens and commands.
	AdminTokenFile string
	// ServerPID, when set, is sampled from /proc for RSS and CPU.
	ServerPID int
	// Pprof, when set, is the server's pprof base URL, used to run a
	// garbage collection before each memory sample.
	Pprof string
	// Store labels the results (bbolt, postgres).
	Store string

	Agents    int
	Templates int
	Seed      uint64
	SrcAddrs  int
	CertCache string

	EnrollConc   int
	ConnectConc  int
	FullInFlight int
	DeltaRate    float64
	DeltaFor     time.Duration
	Fanout       int
	FanoutConc   int
	DriftSample  int
	// DriftBaseline applies the hot-file baseline so real drift latency is
	// measured; off, the inventory proxy is measured instead.
	DriftBaseline bool
	Settle        time.Duration
	MaxDuration   time.Duration

	Mode         string
	RampStep     int
	RampMemLimit int64 // MiB of server RSS
	Out          string
}

func main() {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if len(os.Args) > 1 && os.Args[1] == "report" {
		if err := runReport(os.Args[2:], os.Stderr); err != nil && !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "qinfra-loadgen report:", err)
			os.Exit(1)
		}
		return
	}
	cfg, err := parseFlags(os.Args[1:], os.Stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintln(os.Stderr, "qinfra-loadgen:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, cfg.MaxDuration)
	defer cancel()
	var res any
	switch cfg.Mode {
	case "run":
		res, err = runScenario(ctx, cfg, log)
	case "ramp":
		res, err = runRamp(ctx, cfg, log)
	}
	if res != nil {
		if werr := writeJSON(cfg.Out, res); werr != nil && err == nil {
			err = werr
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "qinfra-loadgen:", err)
		os.Exit(1)
	}
}

func parseFlags(args []string, stderr io.Writer) (*config, error) {
	c := &config{}
	fs := flag.NewFlagSet("qinfra-loadgen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.GRPCAddr, "grpc-addr", "127.0.0.1:8440", "server agent listener (loopback only)")
	fs.StringVar(&c.API, "api", "https://127.0.0.1:8443", "server REST API base URL (loopback only)")
	fs.StringVar(&c.CAFile, "ca-file", "", "server CA certificate (PEM), e.g. DATA/ca.crt")
	fs.StringVar(&c.AdminTokenFile, "admin-token-file", "", "file holding an admin API token")
	fs.IntVar(&c.ServerPID, "server-pid", 0, "server process to sample RSS and CPU from /proc (0: none)")
	fs.StringVar(&c.Pprof, "pprof", "", "server pprof base URL (http://127.0.0.1:PORT), to force a GC before memory samples")
	fs.StringVar(&c.Store, "store-label", "bbolt", "label of the server's store in the results")
	fs.IntVar(&c.Agents, "agents", 1000, "simulated agents")
	fs.IntVar(&c.Templates, "templates", 5, "image templates the inventories are drawn from")
	fs.Uint64Var(&c.Seed, "seed", 1, "seed of the templates")
	fs.IntVar(&c.SrcAddrs, "src-addrs", 8, "loopback source addresses 127.0.0.2... to spread connections over")
	fs.StringVar(&c.CertCache, "cert-cache", "", "directory caching issued certificates across runs (empty: none)")
	fs.IntVar(&c.EnrollConc, "enroll-concurrency", 32, "enrollments in flight")
	fs.IntVar(&c.ConnectConc, "connect-concurrency", 64, "connection handshakes in flight")
	fs.IntVar(&c.FullInFlight, "full-inflight", 32, "full inventories in flight (sent, not yet acked)")
	fs.Float64Var(&c.DeltaRate, "delta-rate", 500, "deltas per second over the whole fleet")
	fs.DurationVar(&c.DeltaFor, "delta-duration", 20*time.Second, "length of the delta phase")
	fs.IntVar(&c.Fanout, "fanout", 1000, "agents sent one command each in the fan-out phase (0: skip)")
	fs.IntVar(&c.FanoutConc, "fanout-concurrency", 32, "API requests in flight during the fan-out")
	fs.IntVar(&c.DriftSample, "drift-samples", 50, "file changes timed until visible through the API")
	fs.BoolVar(&c.DriftBaseline, "drift-baseline", true, "apply a baseline to the simulated hosts and time real drift (false: time the inventory proxy)")
	fs.DurationVar(&c.Settle, "settle", 3*time.Second, "wait before each memory sample")
	fs.DurationVar(&c.MaxDuration, "max-duration", 20*time.Minute, "hard limit on the whole run")
	fs.StringVar(&c.Mode, "mode", "run", "run (the fixed scenario) or ramp (most idle agents within -ramp-mem-limit)")
	fs.IntVar(&c.RampStep, "ramp-step", 1000, "agents added per ramp step")
	fs.Int64Var(&c.RampMemLimit, "ramp-mem-limit", 4096, "ramp: stop when server RSS passes this many MiB")
	fs.StringVar(&c.Out, "out", "-", "results JSON file (- for stdout)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	return c, c.validate()
}

func (c *config) validate() error {
	if err := loopbackHostPort(c.GRPCAddr); err != nil {
		return fmt.Errorf("-grpc-addr: %w", err)
	}
	u, err := url.Parse(c.API)
	if err != nil {
		return fmt.Errorf("-api: %w", err)
	}
	if err := loopbackHostPort(u.Host); err != nil {
		return fmt.Errorf("-api: %w", err)
	}
	if c.Pprof != "" {
		u, err := url.Parse(c.Pprof)
		if err != nil {
			return fmt.Errorf("-pprof: %w", err)
		}
		if err := loopbackHostPort(u.Host); err != nil {
			return fmt.Errorf("-pprof: %w", err)
		}
	}
	switch {
	case c.CAFile == "" || c.AdminTokenFile == "":
		return errors.New("-ca-file and -admin-token-file are required")
	case c.Agents < 1 || c.Templates < 1:
		return errors.New("-agents and -templates must be at least 1")
	case c.Mode != "run" && c.Mode != "ramp":
		return fmt.Errorf("-mode %q: want run or ramp", c.Mode)
	case c.EnrollConc < 1 || c.ConnectConc < 1 || c.FullInFlight < 1 || c.FanoutConc < 1 || c.RampStep < 1:
		return errors.New("concurrency limits and -ramp-step must be at least 1")
	}
	return nil
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	b = append(b, '\n')
	if path == "-" {
		_, err = os.Stdout.Write(b)
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

func randomID() string {
	b := make([]byte, 8)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func readToken(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

// serverGC asks the server for a heap profile with gc=1, which runs a
// collection first, so memory samples do not count garbage.
func serverGC(ctx context.Context, base string) {
	if base == "" {
		return
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(base, "/")+"/debug/pprof/heap?gc=1", nil)
	if err != nil {
		return
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
}

func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	return strings.Join(f[:min(3, len(f))], " ")
}
