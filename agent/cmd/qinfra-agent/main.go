// Command qinfra-agent collects this host's inventory and streams it to a
// qinfra server over mTLS gRPC.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/quantumlayer/qinfra/agent/internal/config"
	"github.com/quantumlayer/qinfra/pkg/version"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

const usage = `qinfra-agent — collects this host's inventory and streams it to a qinfra server

Usage:
  qinfra-agent enroll --server ADDR --token TOKEN --ca-fingerprint sha256:HEX [--state-dir DIR]
  qinfra-agent run [--config FILE] [--server ADDR]... [--state-dir DIR] [--host-root DIR]
  qinfra-agent snapshot [--host-root DIR] [--json]      print the inventory, no server needed
  qinfra-agent version

Run 'qinfra-agent <command> -h' for a command's flags.
`

// defaultConfigPath is read when present and no --config is given.
const defaultConfigPath = "/etc/qinfra/agent.yaml"

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "enroll":
		err = cmdEnroll(args[1:], stdout, stderr)
	case "run":
		err = cmdRun(args[1:], stdout, stderr)
	case "snapshot":
		err = cmdSnapshot(args[1:], stdout, stderr)
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
		fmt.Fprintln(stderr, "qinfra-agent:", err)
		return 1
	}
	return 0
}

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

// loadConfig applies defaults < file < flags. The flags are parsed twice:
// once to find --config, then over the loaded file so they win.
func loadConfig(fs *flag.FlagSet, args []string, cfg *config.Config) error {
	path := fs.String("config", "", "configuration file (default "+defaultConfigPath+" when present)")
	fs.StringVar(&cfg.StateDir, "state-dir", cfg.StateDir, "directory for the agent's key, certificates and spool")
	fs.StringVar(&cfg.HostRoot, "host-root", cfg.HostRoot, "where the host's filesystem is mounted (/host in a DaemonSet)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	p := *path
	if p == "" {
		if _, err := os.Stat(defaultConfigPath); err == nil {
			p = defaultConfigPath
		}
	}
	if p != "" {
		if err := cfg.Load(p); err != nil {
			return err
		}
		if err := fs.Parse(args); err != nil {
			return err
		}
	}
	return cfg.Validate()
}

func newLogger(w io.Writer, level string) *slog.Logger {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(level))
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: lvl}))
}
