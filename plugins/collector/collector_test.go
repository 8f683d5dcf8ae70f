package collector

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/hashicorp/go-plugin"
	"github.com/quantumlayer/qinfra/pkg/inventory"
	commonv1 "github.com/quantumlayer/qinfra/proto/gen/qinfra/common/v1"
)

type fake struct{ err error }

func (f fake) Info(context.Context) (Info, error) {
	return Info{Name: "fake", Version: "1.2.3", Kinds: []string{"thing"}}, f.err
}

func (f fake) Collect(_ context.Context, root string) ([]*commonv1.Item, error) {
	return []*commonv1.Item{Item("fake", "thing", "a", map[string]string{"root": root})}, f.err
}

// dispense connects a Client to impl over gRPC in process.
func dispense(t *testing.T, impl Collector) Collector {
	t.Helper()
	client, _ := plugin.TestPluginGRPCConn(t, false, PluginSet(impl))
	t.Cleanup(func() { client.Close() })
	raw, err := client.Dispense(PluginName)
	if err != nil {
		t.Fatal(err)
	}
	c, ok := raw.(Collector)
	if !ok {
		t.Fatalf("dispensed %T", raw)
	}
	return c
}

func TestRoundTrip(t *testing.T) {
	c := dispense(t, fake{})
	info, err := c.Info(context.Background())
	if err != nil || info.Name != "fake" || info.Version != "1.2.3" || len(info.Kinds) != 1 || info.Kinds[0] != "thing" {
		t.Fatalf("Info = %+v, %v", info, err)
	}
	items, err := c.Collect(context.Background(), "/host")
	if err != nil || len(items) != 1 {
		t.Fatalf("Collect = %v, %v", items, err)
	}
	it := items[0]
	if err := inventory.Seal(it); err != nil {
		t.Fatal(err)
	}
	if err := inventory.Validate(it); err != nil {
		t.Error(err)
	}
	if it.GetKey() != "fake:thing:a" || it.GetExtension().GetAttributes()["root"] != "/host" {
		t.Errorf("item %v", it)
	}
}

func TestErrorsCross(t *testing.T) {
	c := dispense(t, fake{err: errors.New("no access to /proc")})
	if _, err := c.Info(context.Background()); err == nil || !strings.Contains(err.Error(), "no access to /proc") {
		t.Errorf("Info error %v", err)
	}
	if _, err := c.Collect(context.Background(), "/"); err == nil || !strings.Contains(err.Error(), "no access to /proc") {
		t.Errorf("Collect error %v", err)
	}
}

func TestServerWithoutImpl(t *testing.T) {
	if err := (&GRPCPlugin{}).GRPCServer(nil, nil); err == nil {
		t.Error("no error")
	}
}
