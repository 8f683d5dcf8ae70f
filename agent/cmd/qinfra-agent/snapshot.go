package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/quantumlayer/qinfra/agent/internal/collect"
	"github.com/quantumlayer/qinfra/agent/internal/config"
	"github.com/quantumlayer/qinfra/pkg/inventory"
	"google.golang.org/protobuf/encoding/protojson"
)

func cmdSnapshot(args []string, stdout, stderr io.Writer) error {
	cfg := config.Default()
	fs := flag.NewFlagSet("snapshot", flag.ContinueOnError)
	fs.SetOutput(stderr)
	asJSON := fs.Bool("json", false, "print every item as JSON")
	if err := loadConfig(fs, args, &cfg); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	items, err := collect.New(collect.Config{
		Root:       cfg.HostRoot,
		WatchPaths: cfg.WatchPaths,
		Disabled:   cfg.DisabledCollectors,
		Plugins:    cfg.Plugins,
	}).Collect(ctx)
	if err != nil {
		// Print what was collected, then fail: a partial snapshot is still
		// useful to look at, but must not pass for a whole one.
		defer fmt.Fprintln(stderr, "qinfra-agent: some collectors failed:", err)
	}
	if *asJSON {
		out := struct {
			HostRoot    string            `json:"host_root"`
			CollectedAt time.Time         `json:"collected_at"`
			SetHash     string            `json:"set_hash"`
			Items       []json.RawMessage `json:"items"`
		}{HostRoot: cfg.HostRoot, CollectedAt: time.Now().UTC(), SetHash: fmt.Sprintf("%x", inventory.SetOf(items).Hash())}
		mo := protojson.MarshalOptions{UseProtoNames: true}
		for _, it := range items {
			b, merr := mo.Marshal(it)
			if merr != nil {
				return merr
			}
			out.Items = append(out.Items, b)
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(out); err != nil {
			return err
		}
	} else {
		counts := map[string]int{}
		for _, it := range items {
			counts[it.GetKind()]++
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "KIND\tITEMS")
		for _, k := range inventory.Kinds {
			fmt.Fprintf(tw, "%s\t%d\n", k, counts[k])
		}
		tw.Flush()
	}
	return err
}
