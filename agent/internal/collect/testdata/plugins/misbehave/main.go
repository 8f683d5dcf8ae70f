// Command misbehave is a collector plugin for the agent's tests. Its file
// name, "misbehave-<mode>", chooses how it behaves: "ok" answers well, the
// other modes fail in one way each.
package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/quantumlayer/qinfra/plugins/collector"
	commonv1 "github.com/quantumlayer/qinfra/proto/gen/qinfra/common/v1"
)

type misbehave struct{ name, mode string }

func (m misbehave) Info(context.Context) (collector.Info, error) {
	name := m.name
	if m.mode == "wrongname" {
		name = "someone-else"
	}
	return collector.Info{Name: name, Version: "0.0.1", Kinds: []string{"probe"}}, nil
}

func (m misbehave) Collect(ctx context.Context, root string) ([]*commonv1.Item, error) {
	fmt.Fprintln(os.Stderr, "collecting under", root)
	ok := collector.Item(m.name, "probe", "root", map[string]string{"root": root, "pid": fmt.Sprint(os.Getpid())})
	switch m.mode {
	case "crash":
		os.Exit(3)
	case "panic":
		panic("plugin bug")
	case "hang":
		select {} // ignores ctx, as a stuck plugin would
	case "error":
		return nil, fmt.Errorf("cannot read %s", root)
	case "garbage":
		return []*commonv1.Item{ok, {Kind: "package", Key: "dpkg:evil:amd64", Body: &commonv1.Item_Package{Package: &commonv1.Package{Name: "evil"}}}}, nil
	case "foreign":
		return []*commonv1.Item{collector.Item("sysctl", "probe", "x", nil)}, nil
	case "undeclared":
		return []*commonv1.Item{collector.Item(m.name, "other", "x", nil)}, nil
	case "badkey":
		it := collector.Item(m.name, "probe", "x", nil)
		it.Key = m.name + ":probe:y"
		return []*commonv1.Item{it}, nil
	case "dup":
		return []*commonv1.Item{ok, collector.Item(m.name, "probe", "root", nil)}, nil
	case "slow":
		select {
		case <-time.After(time.Hour):
		case <-ctx.Done():
		}
		return nil, ctx.Err()
	}
	return []*commonv1.Item{ok, collector.Item(m.name, "probe", "second", map[string]string{"k": "v"})}, nil
}

func main() {
	name := strings.TrimSuffix(filepath.Base(os.Args[0]), ".exe")
	_, mode, _ := strings.Cut(name, "-")
	if mode == "nostart" {
		time.Sleep(time.Hour)
	}
	collector.Serve(misbehave{name: name, mode: mode})
}
