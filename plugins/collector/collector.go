// Package collector is the contract of collector plugins: the go-plugin
// handshake, the Go interface a plugin implements, its gRPC transport
// (proto/qinfra/plugin/v1) and Serve, the one call a plugin's main makes.
//
// A plugin reports items of kind "ext" whose Extension body names the
// plugin, a kind of its own and a key; build them with Item. The agent
// starts the plugin for each collection, asks Info and then Collect within
// the plugin's timeout, refuses the whole answer if any item is malformed
// or claims another plugin's name, and stops the process.
//
//	func main() {
//		collector.Serve(myCollector{})
//	}
package collector

import (
	"context"
	"errors"

	"github.com/hashicorp/go-plugin"
	"github.com/quantumlayer/qinfra/pkg/inventory"
	commonv1 "github.com/quantumlayer/qinfra/proto/gen/qinfra/common/v1"
	pluginv1 "github.com/quantumlayer/qinfra/proto/gen/qinfra/plugin/v1"
	"google.golang.org/grpc"
)

// ProtocolVersion is the version of the collector contract; it changes
// with an incompatible change of proto/qinfra/plugin/v1.
const ProtocolVersion = 1

// PluginName is the name the collector is dispensed under in go-plugin's
// plugin set.
const PluginName = "collector"

// Handshake is the configuration agent and plugin must share. The cookie is
// not a security measure: it only tells a user who runs a plugin binary by
// hand that it is not a program to run that way.
var Handshake = plugin.HandshakeConfig{
	ProtocolVersion:  ProtocolVersion,
	MagicCookieKey:   "QINFRA_PLUGIN",
	MagicCookieValue: "collector",
}

// Info describes a plugin.
type Info struct {
	// Name is the plugin's name (inventory.ValidExtensionName); it must
	// match the name the agent's configuration gives it.
	Name string
	// Version is the plugin's own version.
	Version string
	// Kinds are the extension kinds the plugin reports.
	Kinds []string
}

// Collector is what a collector plugin implements.
type Collector interface {
	// Info describes the plugin; the agent calls it before Collect.
	Info(ctx context.Context) (Info, error)
	// Collect returns the plugin's items for the host whose root file
	// system is at root ("/", or "/host" in a DaemonSet). Items need not
	// be sealed: the agent seals what it accepts.
	Collect(ctx context.Context, root string) ([]*commonv1.Item, error)
}

// Item builds an item of the plugin's kind with the given key and
// attributes.
func Item(plugin, kind, key string, attributes map[string]string) *commonv1.Item {
	return &commonv1.Item{
		Kind: inventory.KindExt,
		Key:  plugin + ":" + kind + ":" + key,
		Body: &commonv1.Item_Extension{Extension: &commonv1.Extension{
			Plugin: plugin, Kind: kind, Key: key, Attributes: attributes,
		}},
	}
}

// Serve serves impl to the agent that started this process, and returns
// when the agent stops it. It is the whole of a plugin's main.
func Serve(impl Collector) {
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: Handshake,
		Plugins:         PluginSet(impl),
		GRPCServer:      plugin.DefaultGRPCServer,
	})
}

// PluginSet is the go-plugin plugin set of a collector: impl on the plugin's
// side, nil on the agent's.
func PluginSet(impl Collector) plugin.PluginSet {
	return plugin.PluginSet{PluginName: &GRPCPlugin{Impl: impl}}
}

// GRPCPlugin is the go-plugin binding of a Collector over gRPC.
type GRPCPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	// Impl is the plugin's implementation; nil on the agent's side.
	Impl Collector
}

// GRPCServer registers the implementation with the plugin's gRPC server.
func (p *GRPCPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	if p.Impl == nil {
		return errors.New("collector plugin: no implementation to serve")
	}
	pluginv1.RegisterCollectorServiceServer(s, &server{impl: p.Impl})
	return nil
}

// GRPCClient returns the agent's Collector talking to the plugin over c.
func (p *GRPCPlugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, c *grpc.ClientConn) (any, error) {
	return &Client{c: pluginv1.NewCollectorServiceClient(c)}, nil
}

// server adapts a Collector to the gRPC service.
type server struct {
	pluginv1.UnimplementedCollectorServiceServer
	impl Collector
}

func (s *server) Info(ctx context.Context, _ *pluginv1.InfoRequest) (*pluginv1.InfoResponse, error) {
	info, err := s.impl.Info(ctx)
	if err != nil {
		return nil, err
	}
	return &pluginv1.InfoResponse{Name: info.Name, Version: info.Version, Kinds: info.Kinds}, nil
}

func (s *server) Collect(ctx context.Context, req *pluginv1.CollectRequest) (*pluginv1.CollectResponse, error) {
	items, err := s.impl.Collect(ctx, req.GetRoot())
	if err != nil {
		return nil, err
	}
	return &pluginv1.CollectResponse{Items: items}, nil
}

// Client is the agent's side of a running plugin: a Collector whose calls
// go to the plugin process.
type Client struct {
	c pluginv1.CollectorServiceClient
}

// Info asks the plugin to describe itself.
func (c *Client) Info(ctx context.Context) (Info, error) {
	r, err := c.c.Info(ctx, &pluginv1.InfoRequest{})
	if err != nil {
		return Info{}, err
	}
	return Info{Name: r.GetName(), Version: r.GetVersion(), Kinds: r.GetKinds()}, nil
}

// Collect asks the plugin for its items.
func (c *Client) Collect(ctx context.Context, root string) ([]*commonv1.Item, error) {
	r, err := c.c.Collect(ctx, &pluginv1.CollectRequest{Root: root})
	if err != nil {
		return nil, err
	}
	return r.GetItems(), nil
}

var _ Collector = (*Client)(nil)
