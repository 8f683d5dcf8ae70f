package spool

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"

	"github.com/quantumlayer/qinfra/pkg/inventory"
	agentv1 "github.com/quantumlayer/qinfra/proto/gen/qinfra/agent/v1"
	"google.golang.org/protobuf/proto"
)

// Stored entry layout (entries bucket value):
//
//	offset 0  format version (entryVersion)
//	offset 1  CRC-32C (Castagnoli), big endian, of every byte from offset 5 on
//	offset 5  message kind (the ConnectRequest oneof field number)
//	offset 6  protobuf encoding of the ConnectRequest
//
// bbolt checksums only its meta pages, not the data pages, so a flipped bit
// in an entry would otherwise reach the server as a message that happens to
// parse. The kind byte lets eviction tell an inventory from other messages
// without unmarshalling it.
const (
	entryVersion    = 1
	entryHeaderSize = 6
)

// Message kinds, equal to the field numbers of the ConnectRequest oneof.
const (
	kindHello         byte = 1
	kindInventory     byte = 2
	kindCommandResult byte = 3
	kindHeartbeat     byte = 4
	kindRenew         byte = 5
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// errEmptyMessage is returned for a ConnectRequest without a body: it would
// tell the server nothing and cannot be classified.
var errEmptyMessage = errors.New("spool: message has no body")

// kindOf returns the stored kind of a message, or 0 when it has no body.
func kindOf(m *agentv1.ConnectRequest) byte {
	switch m.GetMsg().(type) {
	case *agentv1.ConnectRequest_Hello:
		return kindHello
	case *agentv1.ConnectRequest_Inventory:
		return kindInventory
	case *agentv1.ConnectRequest_CommandResult:
		return kindCommandResult
	case *agentv1.ConnectRequest_Heartbeat:
		return kindHeartbeat
	case *agentv1.ConnectRequest_Renew:
		return kindRenew
	}
	return 0
}

// encodeEntry returns the stored form of a message.
func encodeEntry(m *agentv1.ConnectRequest) ([]byte, error) {
	kind := kindOf(m)
	if kind == 0 {
		return nil, errEmptyMessage
	}
	size := proto.Size(m)
	buf := make([]byte, entryHeaderSize, entryHeaderSize+size)
	buf[0] = entryVersion
	buf[5] = kind
	buf, err := proto.MarshalOptions{}.MarshalAppend(buf, m)
	if err != nil {
		return nil, fmt.Errorf("spool: marshal message: %w", err)
	}
	binary.BigEndian.PutUint32(buf[1:5], crc32.Checksum(buf[5:], castagnoli))
	return buf, nil
}

// entryKind returns the kind byte of a stored entry without decoding it,
// or 0 when the entry is too short to have one.
func entryKind(v []byte) byte {
	if len(v) < entryHeaderSize {
		return 0
	}
	return v[5]
}

// decodeEntry parses a stored entry. It never panics, whatever v holds: the
// bytes come from a file that may have been damaged.
func decodeEntry(v []byte) (*agentv1.ConnectRequest, error) {
	if len(v) < entryHeaderSize {
		return nil, fmt.Errorf("entry is %d bytes, shorter than its %d-byte header", len(v), entryHeaderSize)
	}
	if v[0] != entryVersion {
		return nil, fmt.Errorf("entry format version %d, want %d", v[0], entryVersion)
	}
	if want, got := binary.BigEndian.Uint32(v[1:5]), crc32.Checksum(v[5:], castagnoli); want != got {
		return nil, fmt.Errorf("entry checksum %08x does not match stored %08x", got, want)
	}
	m := new(agentv1.ConnectRequest)
	if err := proto.Unmarshal(v[entryHeaderSize:], m); err != nil {
		return nil, fmt.Errorf("entry does not unmarshal: %w", err)
	}
	if k := kindOf(m); k == 0 || k != v[5] {
		return nil, fmt.Errorf("entry kind %d does not match its message (kind %d)", v[5], k)
	}
	return m, nil
}

// seqKey returns the bucket key of a sequence number; big endian so that
// bbolt's byte order is numeric order.
func seqKey(seq uint64) []byte {
	var k [8]byte
	binary.BigEndian.PutUint64(k[:], seq)
	return k[:]
}

// parseSeqKey is the inverse of seqKey; it reports false for a key that no
// seqKey call produced.
func parseSeqKey(k []byte) (uint64, bool) {
	if len(k) != 8 {
		return 0, false
	}
	seq := binary.BigEndian.Uint64(k)
	return seq, seq != 0
}

// u64 encodes a counter stored in the meta bucket.
func u64(v uint64) []byte { return seqKey(v) }

// parseU64 decodes a counter stored in the meta bucket.
func parseU64(b []byte) (uint64, bool) {
	if len(b) != 8 {
		return 0, false
	}
	return binary.BigEndian.Uint64(b), true
}

// encodeRef returns the set bucket key of a reference: the kind's length as
// a uvarint, the kind, then the key. The length prefix keeps ("a","bc") and
// ("ab","c") apart.
func encodeRef(r inventory.Ref) []byte {
	b := make([]byte, 0, binary.MaxVarintLen64+len(r.Kind)+len(r.Key))
	b = binary.AppendUvarint(b, uint64(len(r.Kind)))
	b = append(b, r.Kind...)
	return append(b, r.Key...)
}

// decodeRef is the inverse of encodeRef. It never panics.
func decodeRef(b []byte) (inventory.Ref, error) {
	n, w := binary.Uvarint(b)
	if w <= 0 {
		return inventory.Ref{}, errors.New("set key has no valid kind length")
	}
	rest := b[w:]
	if n > uint64(len(rest)) {
		return inventory.Ref{}, fmt.Errorf("set key kind length %d exceeds the %d bytes left", n, len(rest))
	}
	return inventory.Ref{Kind: string(rest[:n]), Key: string(rest[n:])}, nil
}
