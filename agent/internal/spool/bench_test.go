package spool

import (
	"testing"

	"github.com/quantumlayer/qinfra/pkg/inventory"
	agentv1 "github.com/quantumlayer/qinfra/proto/gen/qinfra/agent/v1"
	"google.golang.org/protobuf/proto"
)

// BenchmarkAppend measures one durable Append. Each Append is one bbolt
// commit with fsync, so the figure is bound by the disk's sync latency
// rather than by CPU. The spool is acknowledged every 64 appends, as a
// connected agent's would be, so the inventory case measures steady state
// rather than eviction.
func BenchmarkAppend(b *testing.B) {
	cases := []struct {
		name string
		msg  *agentv1.ConnectRequest
	}{
		{"inventory-2000-items", inventoryMsg(packages(b, 2000, 0, 0), true)},
		{"heartbeat", heartbeat()},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			s, _ := openTest(b, Options{})
			b.SetBytes(int64(proto.Size(c.msg)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := s.Append(c.msg, noSeq); err != nil {
					b.Fatal(err)
				}
				if s.LastSeq()%64 == 0 {
					if err := s.Ack(s.LastSeq()); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}

// BenchmarkAppendInventoryDelta measures the common inventory case: a delta
// of 10 changed packages against a stored set of 2,000, where the set update
// rides in the same fsync'd transaction.
func BenchmarkAppendInventoryDelta(b *testing.B) {
	s, _ := openTest(b, Options{})
	base := packages(b, 2000, 10, 0)
	if _, err := s.AppendInventory(inventoryMsg(base, true), inventory.SetOf(base)); err != nil {
		b.Fatal(err)
	}
	sets := make([]inventory.Set, 4)
	deltas := make([]*agentv1.ConnectRequest, 4)
	prev := inventory.SetOf(base)
	for g := range sets {
		items := packages(b, 2000, 10, g+1)
		sets[g] = inventory.SetOf(items)
		deltas[g] = inventoryMsg(inventory.Diff(prev, items).Upserts, false)
		prev = sets[g]
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		// Cycling through generations keeps every set a 10-item change from
		// the stored one, except at the wrap, which changes 10 back.
		g := i % len(sets)
		if _, err := s.AppendInventory(deltas[g], sets[g]); err != nil {
			b.Fatal(err)
		}
		if i%64 == 63 {
			if err := s.Ack(s.LastSeq()); err != nil {
				b.Fatal(err)
			}
		}
		i++
	}
}
