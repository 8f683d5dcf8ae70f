package store

import (
	"bytes"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/quantumlayer/qinfra/pkg/inventory"
	commonv1 "github.com/quantumlayer/qinfra/proto/gen/qinfra/common/v1"
)

// TestSealed: a sealed item's stored body (Item{Hash, Body} marshalled
// deterministically) loses exactly its hash field, and comes back whole;
// a body whose hash is not its rest's keeps it.
func TestSealed(t *testing.T) {
	it := &commonv1.Item{Kind: inventory.KindPackage, Key: "dpkg:a:amd64", Body: &commonv1.Item_Package{Package: &commonv1.Package{
		Manager: "dpkg", Name: "a", Version: "1.0-1", Arch: "amd64"}}}
	if err := inventory.Seal(it); err != nil {
		t.Fatal(err)
	}
	body, err := proto.MarshalOptions{Deterministic: true}.Marshal(&commonv1.Item{Hash: it.Hash, Body: it.Body})
	if err != nil {
		t.Fatal(err)
	}
	rest, ok := SealedRest(body)
	if !ok || len(rest) != len(body)-34 {
		t.Fatalf("SealedRest of a sealed body: %d bytes, %v; want %d, true", len(rest), ok, len(body)-34)
	}
	if back := SealedBody(rest); !bytes.Equal(back, body) {
		t.Fatalf("SealedBody = %x, want %x", back, body)
	}
	forged := bytes.Clone(body)
	forged[2] ^= 1
	if _, ok := SealedRest(forged); ok {
		t.Fatal("SealedRest took a body whose hash is not its rest's")
	}
	for _, b := range [][]byte{nil, body[:33], body[1:]} {
		if _, ok := SealedRest(b); ok {
			t.Fatalf("SealedRest(%x) = true", b)
		}
	}
}
