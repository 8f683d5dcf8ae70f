package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/quantumlayer/qinfra/agent/internal/collect"
	"github.com/quantumlayer/qinfra/agent/internal/config"
	"github.com/quantumlayer/qinfra/agent/internal/identity"
	"github.com/quantumlayer/qinfra/pkg/pki"

	commonv1 "github.com/quantumlayer/qinfra/proto/gen/qinfra/common/v1"
)

// serversFile in the state directory remembers the server enrolled with,
// so 'run' needs no flags on a freshly enrolled host.
const serversFile = "servers"

func cmdEnroll(args []string, stdout, stderr io.Writer) error {
	cfg := config.Default()
	fs := flag.NewFlagSet("enroll", flag.ContinueOnError)
	fs.SetOutput(stderr)
	server := fs.String("server", "", "server gRPC address, host:port (required)")
	token := fs.String("token", "", "enrollment token (required; or QINFRA_ENROLL_TOKEN)")
	fp := fs.String("ca-fingerprint", "", "server CA fingerprint, sha256:HEX (required)")
	serverName := fs.String("server-name", "", "name to verify in the server certificate (default: host of --server)")
	force := fs.Bool("force", false, "enroll again even if this state directory holds an identity")
	if err := loadConfig(fs, args, &cfg); err != nil {
		return err
	}
	if *token == "" {
		*token = os.Getenv("QINFRA_ENROLL_TOKEN")
	}
	if *server == "" || *token == "" || *fp == "" {
		return errors.New("--server, --token and --ca-fingerprint are required")
	}
	files := identity.Files{Dir: cfg.StateDir}
	if _, err := identity.Load(files); err == nil && !*force {
		return fmt.Errorf("%s already holds an enrolled identity; use --force to replace it", cfg.StateDir)
	}
	ctx := context.Background()
	facts := osFacts(ctx, cfg.HostRoot)
	resp, err := identity.Enroll(ctx, files, identity.EnrollOptions{
		Server:        *server,
		Token:         strings.TrimSpace(*token),
		CAFingerprint: *fp,
		ServerName:    *serverName,
		Hostname:      facts.GetHostname(),
		Facts:         facts,
	})
	if err != nil {
		return err
	}
	if err := pki.WriteFileAtomic(filepath.Join(cfg.StateDir, serversFile), []byte(*server+"\n"), 0o644); err != nil {
		return err
	}
	// A new identity starts a new stream history: forget the old spool.
	if *force {
		_ = os.Remove(files.SpoolPath())
	}
	fmt.Fprintf(stdout, "Enrolled as host %s (labels %v); identity saved in %s\n", resp.GetHostId(), resp.GetLabels(), cfg.StateDir)
	return nil
}

func readServers(stateDir string) []string {
	b, err := os.ReadFile(filepath.Join(stateDir, serversFile))
	if err != nil {
		return nil
	}
	return strings.Fields(string(b))
}

// osFacts collects only the OS facts, for enrollment.
func osFacts(ctx context.Context, root string) *commonv1.OSFacts {
	var others []string
	for _, n := range collect.New(collect.Config{Root: root}).Names() {
		if n != "os" {
			others = append(others, n)
		}
	}
	set := collect.New(collect.Config{Root: root, Disabled: others})
	items, _ := set.Collect(ctx)
	for _, it := range items {
		if f := it.GetOs(); f != nil {
			return f
		}
	}
	return nil
}
