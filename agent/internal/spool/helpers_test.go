package spool

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"

	"github.com/quantumlayer/qinfra/pkg/inventory"
	agentv1 "github.com/quantumlayer/qinfra/proto/gen/qinfra/agent/v1"
	commonv1 "github.com/quantumlayer/qinfra/proto/gen/qinfra/common/v1"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// logBuffer collects log output for assertions; slog handlers may be called
// from several goroutines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func testLogger(t testing.TB) (*slog.Logger, *logBuffer) {
	t.Helper()
	lb := &logBuffer{}
	return slog.New(slog.NewTextHandler(lb, &slog.HandlerOptions{Level: slog.LevelDebug})), lb
}

// openTest opens a spool in a fresh temporary directory and closes it when
// the test ends.
func openTest(t testing.TB, opts Options) (*Spool, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "spool.db")
	if opts.Logger == nil {
		opts.Logger, _ = testLogger(t)
	}
	s, err := Open(path, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s, path
}

func reopen(t testing.TB, s *Spool, path string, opts Options) *Spool {
	t.Helper()
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	s2, err := Open(path, opts)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	t.Cleanup(func() { _ = s2.Close() })
	return s2
}

// heartbeat returns a small message, the size of a heartbeat.
func heartbeat() *agentv1.ConnectRequest {
	return &agentv1.ConnectRequest{Msg: &agentv1.ConnectRequest_Heartbeat{
		Heartbeat: &agentv1.Heartbeat{SentAt: timestamppb.Now()},
	}}
}

// result returns a command result carrying output of n bytes.
func result(id string, n int) *agentv1.ConnectRequest {
	return &agentv1.ConnectRequest{Msg: &agentv1.ConnectRequest_CommandResult{
		CommandResult: &agentv1.CommandResult{CommandId: id, Status: "succeeded", Output: string(bytes.Repeat([]byte("x"), n))},
	}}
}

func setResultSeq(m *agentv1.ConnectRequest, seq uint64) {
	if r := m.GetCommandResult(); r != nil {
		r.Seq = seq
	}
}

func noSeq(*agentv1.ConnectRequest, uint64) {}

// packages returns n sealed package items; gen changes the versions of the
// first changed items so successive generations differ a little.
func packages(t testing.TB, n, changed, gen int) []*commonv1.Item {
	t.Helper()
	items := make([]*commonv1.Item, n)
	for i := range items {
		ver := "1.0.0-1"
		if i < changed {
			ver = fmt.Sprintf("1.0.%d-1", gen)
		}
		name := fmt.Sprintf("libexample%04d", i)
		it := &commonv1.Item{
			Kind: inventory.KindPackage,
			Key:  "dpkg:" + name + ":amd64",
			Body: &commonv1.Item_Package{Package: &commonv1.Package{
				Manager: "dpkg", Name: name, Version: ver, Arch: "amd64",
				SourceName: name, SourceVersion: ver, Status: "installed",
				UpstreamVersion: "1.0.0", Release: "1", Vendor: "Debian",
				InstallTime: 1_700_000_000 + int64(i),
			}},
		}
		if err := inventory.Seal(it); err != nil {
			t.Fatal(err)
		}
		items[i] = it
	}
	return items
}

func inventoryMsg(items []*commonv1.Item, full bool) *agentv1.ConnectRequest {
	set := inventory.SetOf(items)
	return &agentv1.ConnectRequest{Msg: &agentv1.ConnectRequest_Inventory{Inventory: &agentv1.Inventory{
		Full: full, Items: items, SetHash: set.Hash(), CollectedAt: timestamppb.Now(),
	}}}
}

// smallSet returns a set whose content is a function of tag.
func smallSet(tag string, n int) inventory.Set {
	s := make(inventory.Set, n)
	for i := range n {
		h := sha256.Sum256([]byte(fmt.Sprintf("%s/%d", tag, i)))
		s[inventory.Ref{Kind: inventory.KindPackage, Key: fmt.Sprintf("p%d", i)}] = h[:]
	}
	return s
}

func setsEqual(a, b inventory.Set) bool {
	if len(a) != len(b) {
		return false
	}
	for r, h := range a {
		if g, ok := b[r]; !ok || !bytes.Equal(g, h) {
			return false
		}
	}
	return true
}

func pendingSeqs(t testing.TB, s *Spool) []uint64 {
	t.Helper()
	es, err := s.Pending(0, 0)
	if err != nil {
		t.Fatalf("Pending: %v", err)
	}
	out := make([]uint64, len(es))
	for i, e := range es {
		out[i] = e.Seq
	}
	return out
}

func seqRange(from, to uint64) []uint64 {
	var out []uint64
	for i := from; i <= to; i++ {
		out = append(out, i)
	}
	return out
}

func mustAppend(t testing.TB, s *Spool, m *agentv1.ConnectRequest) uint64 {
	t.Helper()
	seq, err := s.Append(m, setResultSeq)
	if err != nil {
		t.Fatalf("Append: %v", err)
	}
	return seq
}
