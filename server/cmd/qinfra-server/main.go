// Command qinfra-server is the qinfra control plane: it enrolls agents,
// receives their inventories over mTLS gRPC, and serves the REST API.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/quantumlayer/qinfra/pkg/version"
	"github.com/quantumlayer/qinfra/server/internal/app"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

const usage = `qinfra-server — the qinfra control plane

Usage:
  qinfra-server init  --data DIR [--san NAME]...   create the CA, server certificate, store and first admin token
  qinfra-server serve --data DIR [flags]           run the server (initializes DIR on first start)
  qinfra-server backup  --data DIR --out FILE      copy the store of a stopped server to FILE
  qinfra-server restore --data DIR --in FILE [--force]
                                                   check a backup and put it in place as DIR's store
  qinfra-server migrate --store postgres://...     apply the PostgreSQL store's schema migrations
  qinfra-server version

Run 'qinfra-server <command> -h' for a command's flags.
`

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "init":
		err = cmdInit(args[1:], stdout, stderr)
	case "serve":
		err = cmdServe(args[1:], stdout, stderr)
	case "backup":
		err = cmdBackup(args[1:], stdout, stderr)
	case "restore":
		err = cmdRestore(args[1:], stdout, stderr)
	case "migrate":
		err = cmdMigrate(args[1:], stdout, stderr)
	case "version", "--version":
		fmt.Fprintln(stdout, version.Version)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
	default:
		fmt.Fprintf(stderr, "unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(stderr, "qinfra-server:", err)
		return 1
	}
	return 0
}

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func commonFlags(fs *flag.FlagSet, cfg *app.Config, sans *listFlag) {
	fs.StringVar(&cfg.DataDir, "data", cfg.DataDir, "data directory (CA, certificates, embedded store)")
	fs.Var(sans, "san", "extra DNS name or IP for the server certificate (repeatable; init only)")
	fs.StringVar(&cfg.Store, "store", os.Getenv("QINFRA_STORE"), "PostgreSQL URL (postgres://...) shared by replicas; empty: the embedded store in --data (env QINFRA_STORE)")
	fs.BoolVar(&cfg.UnsafeDurability, "unsafe-durability", false, "start even when PostgreSQL could lose committed data (fsync or synchronous_commit off)")
}

func printInit(w io.Writer, dir string, r *app.InitResult) {
	fmt.Fprintf(w, "Initialized %s\n", dir)
	fmt.Fprintf(w, "CA fingerprint: %s\n", r.CAFingerprint)
	fmt.Fprintf(w, "Admin API token (shown once, stored hashed): %s\n", r.AdminToken)
}

func writeTokenFile(path, token string) error {
	if path == "" {
		return nil
	}
	return os.WriteFile(path, []byte(token+"\n"), 0o600)
}

func cmdInit(args []string, stdout, stderr io.Writer) error {
	cfg := app.Default()
	var sans listFlag
	fs := flag.NewFlagSet("init", flag.ContinueOnError)
	fs.SetOutput(stderr)
	commonFlags(fs, &cfg, &sans)
	tokenFile := fs.String("admin-token-file", "", "also write the admin token to this file (mode 0600)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg.SANs = sans
	r, err := app.Init(context.Background(), cfg)
	if err != nil {
		return err
	}
	printInit(stdout, cfg.DataDir, r)
	return writeTokenFile(*tokenFile, r.AdminToken)
}

func cmdServe(args []string, stdout, stderr io.Writer) error {
	cfg := app.Default()
	var sans listFlag
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	commonFlags(fs, &cfg, &sans)
	fs.StringVar(&cfg.GRPCAddr, "grpc-addr", cfg.GRPCAddr, "listen address for agents (mTLS gRPC)")
	fs.StringVar(&cfg.APIAddr, "api-addr", cfg.APIAddr, "listen address for the REST API (TLS)")
	fs.StringVar(&cfg.AdvertiseAddr, "advertise-addr", "", "gRPC address agents should use, shown by the API (default: the listen address)")
	fs.DurationVar(&cfg.CertTTL, "cert-ttl", cfg.CertTTL, "lifetime of agent certificates (agents renew at half)")
	fs.DurationVar(&cfg.ScanInterval, "scan-interval", cfg.ScanInterval, "rescan interval pushed to every agent, overriding theirs (0: leave each agent's own)")
	fs.IntVar(&cfg.MaxMessageSize, "max-message-size", cfg.MaxMessageSize, "largest gRPC message accepted or sent, in bytes")
	fs.DurationVar(&cfg.HistoryRetention, "history-retention", cfg.HistoryRetention, "how long inventory history is kept (0: forever)")
	fs.DurationVar(&cfg.AuditRetention, "audit-retention", cfg.AuditRetention, "how long the audit log is kept (0: forever; SOX asks seven years, 61320h)")
	fs.DurationVar(&cfg.DriftSweep, "drift-sweep", cfg.DriftSweep, "re-check every host in full over this period, a few each minute, to heal drift incremental checks missed (0: never)")
	fs.DurationVar(&cfg.DriftRetention, "drift-retention", cfg.DriftRetention, "how long resolved drift is kept after its resolution (0: forever; open drift is always kept)")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	tokenFile := fs.String("admin-token-file", "", "on first start, also write the admin token to this file (mode 0600)")
	// Hidden: profiling for benchmarks, loopback only (see pprof.go).
	pprofAddr := fs.String("pprof-addr", "", "")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg.SANs = sans
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	cfg.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: lvl}))

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *pprofAddr != "" {
		if err := servePprof(ctx, *pprofAddr, cfg.Logger); err != nil {
			return fmt.Errorf("--pprof-addr: %w", err)
		}
	}
	if !app.Initialized(cfg.DataDir) {
		r, err := app.Init(ctx, cfg)
		if err != nil {
			return err
		}
		printInit(stdout, cfg.DataDir, r)
		if err := writeTokenFile(*tokenFile, r.AdminToken); err != nil {
			return err
		}
	}
	srv, err := app.Start(ctx, cfg)
	if err != nil {
		return err
	}
	err = srv.Wait(ctx)
	cfg.Logger.Info("shutting down")
	if cerr := srv.Close(); err == nil {
		err = cerr
	}
	return err
}
