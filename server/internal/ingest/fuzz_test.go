package ingest

import (
	"testing"

	"github.com/quantumlayer/qinfra/pkg/inventory"
	"google.golang.org/protobuf/proto"

	agentv1 "github.com/quantumlayer/qinfra/proto/gen/qinfra/agent/v1"
	commonv1 "github.com/quantumlayer/qinfra/proto/gen/qinfra/common/v1"
)

// FuzzConnectRequest feeds arbitrary bytes through what the server does
// with an agent message before it touches the store: decode, then
// validation. Neither may panic, and whatever validation accepts must be
// safe to hash.
func FuzzConnectRequest(f *testing.F) {
	it := &commonv1.Item{Kind: "package", Key: "dpkg:a:amd64", Body: &commonv1.Item_Package{Package: &commonv1.Package{Name: "a"}}}
	_ = inventory.Seal(it)
	inv := &agentv1.Inventory{Seq: 1, Full: true, Items: []*commonv1.Item{it}, SetHash: inventory.SetOf([]*commonv1.Item{it}).Hash()}
	b, _ := proto.Marshal(&agentv1.ConnectRequest{Msg: &agentv1.ConnectRequest_Inventory{Inventory: inv}})
	f.Add(b)
	b, _ = proto.Marshal(&agentv1.ConnectRequest{Msg: &agentv1.ConnectRequest_Hello{Hello: &agentv1.Hello{HostId: "h-x", SpoolId: "s"}}})
	f.Add(b)
	f.Add([]byte{0x12, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, data []byte) {
		var m agentv1.ConnectRequest
		if err := proto.Unmarshal(data, &m); err != nil {
			return
		}
		if inv := m.GetInventory(); inv != nil {
			if err := validateInventory(inv); err == nil {
				s := inventory.SetOf(inv.GetItems())
				_ = s.Hash()
			}
		}
	})
}
