package spool

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"path/filepath"
	"testing"

	"github.com/quantumlayer/qinfra/pkg/inventory"
	agentv1 "github.com/quantumlayer/qinfra/proto/gen/qinfra/agent/v1"
	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"
)

// fuzzSeeds returns valid stored entries and some near misses.
func fuzzSeeds(t testing.TB) [][]byte {
	var seeds [][]byte
	msgs := []*agentv1.ConnectRequest{
		heartbeat(),
		result("cmd-1", 100),
		inventoryMsg(packages(t, 3, 1, 1), true),
		{Msg: &agentv1.ConnectRequest_Hello{Hello: &agentv1.Hello{AgentVersion: "1.0", SpoolId: "x", LastSeq: 9}}},
		{Msg: &agentv1.ConnectRequest_Renew{Renew: &agentv1.RenewRequest{Csr: []byte{1, 2, 3}}}},
	}
	for _, m := range msgs {
		b, err := encodeEntry(m)
		if err != nil {
			t.Fatal(err)
		}
		seeds = append(seeds, b, b[:len(b)/2])
	}
	seeds = append(seeds, nil, []byte{entryVersion}, []byte{entryVersion, 0, 0, 0, 0, kindHeartbeat})
	return seeds
}

// FuzzDecodeEntry checks that decoding stored bytes never panics, and that
// whatever it accepts survives a round trip.
func FuzzDecodeEntry(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		checkDecode(t, b)
		// The checksum rejects nearly all random input before it reaches
		// the protobuf decoder; give b a valid header too, so the fuzzer
		// explores the decoder behind it.
		if len(b) > 0 {
			framed := make([]byte, entryHeaderSize-1, entryHeaderSize+len(b))
			framed[0] = entryVersion
			framed = append(framed, b...)
			binary.BigEndian.PutUint32(framed[1:5], crc32.Checksum(framed[5:], castagnoli))
			checkDecode(t, framed)
		}
	})
}

func checkDecode(t *testing.T, b []byte) {
	m, err := decodeEntry(b)
	_ = entryKind(b)
	if err != nil {
		return
	}
	{
		again, err := encodeEntry(m)
		if err != nil {
			t.Fatalf("accepted entry does not re-encode: %v", err)
		}
		m2, err := decodeEntry(again)
		if err != nil || !proto.Equal(m, m2) {
			t.Fatalf("round trip changed the message: %v", err)
		}
	}
}

// FuzzDecodeRef checks the set key decoder the same way.
func FuzzDecodeRef(f *testing.F) {
	for _, r := range []inventory.Ref{{}, {Kind: "package", Key: "dpkg:openssl:amd64"}, {Kind: "a", Key: "bc"}} {
		f.Add(encodeRef(r))
	}
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := decodeRef(b)
		if err != nil {
			return
		}
		if !bytes.Equal(encodeRef(r), b) {
			// Non-minimal uvarints decode but encode differently; they must
			// still decode to the same reference.
			r2, err := decodeRef(encodeRef(r))
			if err != nil || r2 != r {
				t.Fatalf("round trip changed %v to %v (%v)", r, r2, err)
			}
		}
	})
}

// FuzzLoadEntry stores arbitrary bytes as a queued entry between two good
// ones and opens the spool: Open must succeed, never panic, and either
// accept the bytes as a message or quarantine them.
func FuzzLoadEntry(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		path := filepath.Join(t.TempDir(), "spool.db")
		s, err := Open(path, Options{})
		if err != nil {
			t.Fatal(err)
		}
		for range 3 {
			if _, err := s.Append(heartbeat(), noSeq); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		db, err := bolt.Open(path, 0o600, nil)
		if err != nil {
			t.Fatal(err)
		}
		if b == nil {
			b = []byte{} // bbolt stores nil as empty
		}
		if err := db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketEntries).Put(seqKey(2), b) }); err != nil {
			t.Fatal(err)
		}
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}

		s, err = Open(path, Options{})
		if err != nil {
			t.Fatalf("Open with a fuzzed entry: %v", err)
		}
		defer s.Close()
		es, err := s.Pending(0, 0)
		if err != nil {
			t.Fatal(err)
		}
		_, decErr := decodeEntry(b)
		st := s.Stats()
		switch {
		case decErr == nil && (len(es) != 3 || st.Quarantined != 0):
			t.Fatalf("valid entry: %d pending, %d quarantined", len(es), st.Quarantined)
		case decErr != nil && (len(es) != 2 || st.Quarantined != 1 || st.DroppedUnreported != 1):
			t.Fatalf("invalid entry: %d pending, stats %+v", len(es), st)
		}
	})
}
