package collect

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"github.com/quantumlayer/qinfra/agent/internal/config"
	"github.com/quantumlayer/qinfra/pkg/inventory"
	"github.com/quantumlayer/qinfra/plugins/collector"
	commonv1 "github.com/quantumlayer/qinfra/proto/gen/qinfra/common/v1"
	"google.golang.org/grpc"
)

const (
	// maxPluginMessage bounds a plugin's answer: a plugin cannot make the
	// agent hold more than this at once.
	maxPluginMessage = 64 << 20
	// maxPluginItems bounds the items one plugin reports.
	maxPluginItems = 100_000
)

// pluginEnv are the variables of the agent's environment a plugin gets;
// the rest (proxy credentials, tokens) stay with the agent. Windows needs
// SystemRoot for networking.
var pluginEnv = []string{"PATH", "TMPDIR", "TEMP", "TMP", "SystemRoot", "SYSTEMROOT"}

// pluginCollector runs a collector plugin (plugins/collector) out of
// process: it starts the executable for each collection, asks its Info and
// items within the timeout, and stops it. A plugin that overruns the
// timeout, crashes, or answers with anything but well-formed items of its
// own name and declared kinds is killed and its whole answer refused, while
// the other collectors go on.
type pluginCollector struct {
	name    string
	path    string
	timeout time.Duration
	log     *slog.Logger
	// started, when set, is told the plugin's process id (for tests).
	started func(pid int)
}

func newPluginCollector(p config.Plugin, log *slog.Logger) *pluginCollector {
	name := p.PluginName()
	return &pluginCollector{
		name:    name,
		path:    p.Path,
		timeout: p.PluginTimeout(),
		log:     log.With("plugin", name),
	}
}

// pluginCollectorName is the collector name of the plugin called name.
func pluginCollectorName(name string) string { return "plugin:" + name }

func (c *pluginCollector) Name() string { return pluginCollectorName(c.name) }

func (c *pluginCollector) Collect(ctx context.Context, h HostFS) (items []*commonv1.Item, err error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()

	cmd := exec.Command(c.path)
	for _, k := range pluginEnv {
		if v, ok := os.LookupEnv(k); ok {
			cmd.Env = append(cmd.Env, k+"="+v)
		}
	}
	client := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  collector.Handshake,
		Plugins:          collector.PluginSet(nil),
		Cmd:              cmd,
		SkipHostEnv:      true,
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		AutoMTLS:         true,
		StartTimeout:     c.timeout,
		Logger:           c.hclog(),
		GRPCDialOptions:  []grpc.DialOption{grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxPluginMessage))},
	})
	defer func() { c.stop(client, err != nil) }()

	rpc, err := client.Client()
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", c.path, err)
	}
	if c.started != nil {
		if rc := client.ReattachConfig(); rc != nil {
			c.started(rc.Pid)
		}
	}
	raw, err := rpc.Dispense(collector.PluginName)
	if err != nil {
		return nil, fmt.Errorf("dispense: %w", err)
	}
	impl, ok := raw.(collector.Collector)
	if !ok {
		return nil, fmt.Errorf("dispense: %T is not a collector", raw)
	}
	info, err := impl.Info(ctx)
	if err != nil {
		return nil, c.callError("info", ctx, err)
	}
	if err := c.checkInfo(info); err != nil {
		return nil, err
	}
	items, err = impl.Collect(ctx, h.Path("/"))
	if err != nil {
		return nil, c.callError("collect", ctx, err)
	}
	return c.accept(info, items)
}

// callError names a timeout as such rather than as gRPC's status.
func (c *pluginCollector) callError(call string, ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("%s: plugin did not answer within %s: %w", call, c.timeout, ctx.Err())
	}
	return fmt.Errorf("%s: %w", call, err)
}

// checkInfo checks that the plugin is the one configured and declares
// valid kinds.
func (c *pluginCollector) checkInfo(info collector.Info) error {
	if info.Name != c.name {
		return fmt.Errorf("plugin calls itself %q, configured as %q", info.Name, c.name)
	}
	if len(info.Kinds) == 0 {
		return errors.New("plugin declares no kinds")
	}
	for _, k := range info.Kinds {
		if !inventory.ValidExtensionName(k) {
			return fmt.Errorf("plugin declares invalid kind %q", k)
		}
	}
	c.log.Debug("plugin info", "version", info.Version, "kinds", info.Kinds)
	return nil
}

// accept checks every item the plugin returned and seals it; one bad item
// refuses the whole answer, since a plugin that sends garbage cannot be
// trusted for the rest.
func (c *pluginCollector) accept(info collector.Info, items []*commonv1.Item) ([]*commonv1.Item, error) {
	if len(items) > maxPluginItems {
		return nil, fmt.Errorf("plugin returned %d items, more than %d", len(items), maxPluginItems)
	}
	seen := make(map[string]bool, len(items))
	for i, it := range items {
		if it == nil {
			return nil, fmt.Errorf("item %d is empty", i)
		}
		e := it.GetExtension()
		switch {
		case it.GetKind() != inventory.KindExt:
			return nil, fmt.Errorf("item %d (%q) is of kind %q, not %q", i, it.GetKey(), it.GetKind(), inventory.KindExt)
		case e == nil:
			return nil, fmt.Errorf("item %d (%q) has no extension body", i, it.GetKey())
		case e.GetPlugin() != c.name:
			return nil, fmt.Errorf("item %d (%q) claims plugin %q", i, it.GetKey(), e.GetPlugin())
		case !slices.Contains(info.Kinds, e.GetKind()):
			return nil, fmt.Errorf("item %d (%q) is of undeclared kind %q", i, it.GetKey(), e.GetKind())
		case seen[it.GetKey()]:
			return nil, fmt.Errorf("item %d: duplicate key %q", i, it.GetKey())
		}
		seen[it.GetKey()] = true
		it.Hash = nil
		if err := inventory.Seal(it); err != nil {
			return nil, err
		}
		if err := inventory.Validate(it); err != nil {
			return nil, err
		}
	}
	return items, nil
}

// stop ends the plugin's process. After a failure (a timeout, a crash,
// garbage) it is killed at once; after a good answer it is asked to exit and
// killed only if it does not within go-plugin's grace period. Either way the
// process has been waited for when stop returns.
func (c *pluginCollector) stop(client *plugin.Client, failed bool) {
	if failed && !client.Exited() {
		if rc := client.ReattachConfig(); rc != nil && rc.Pid > 0 {
			if p, err := os.FindProcess(rc.Pid); err == nil {
				_ = p.Kill()
			}
		}
	}
	client.Kill()
}

// hclog routes go-plugin's logs, and the plugin's standard error, to the
// agent's logger at debug level.
func (c *pluginCollector) hclog() hclog.Logger {
	level := hclog.Warn
	if c.log.Enabled(context.Background(), slog.LevelDebug) {
		level = hclog.Debug
	}
	return hclog.New(&hclog.LoggerOptions{
		Name:       "plugin",
		Level:      level,
		Output:     slogWriter{c.log},
		JSONFormat: false,
	})
}

// slogWriter writes each line it is given as a debug log.
type slogWriter struct{ log *slog.Logger }

func (w slogWriter) Write(p []byte) (int, error) {
	for _, l := range strings.Split(strings.TrimRight(string(p), "\n"), "\n") {
		if l != "" {
			w.log.Debug(l)
		}
	}
	return len(p), nil
}
