package runner

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/quantumlayer/qinfra/agent/internal/collect"
	"github.com/quantumlayer/qinfra/agent/internal/spool"
	"github.com/quantumlayer/qinfra/pkg/inventory"

	agentv1 "github.com/quantumlayer/qinfra/proto/gen/qinfra/agent/v1"
	commonv1 "github.com/quantumlayer/qinfra/proto/gen/qinfra/common/v1"
)

// scripted is a Scanner that returns what the test says, in turn.
type scripted struct {
	steps []step
}

type step struct {
	items []*commonv1.Item
	err   error
}

func (s *scripted) Collect(context.Context) ([]*commonv1.Item, error) {
	st := s.steps[0]
	s.steps = s.steps[1:]
	return st.items, st.err
}

func item(t *testing.T, kind, key, v string) *commonv1.Item {
	it := &commonv1.Item{Kind: kind, Key: key}
	switch kind {
	case inventory.KindPackage:
		it.Body = &commonv1.Item_Package{Package: &commonv1.Package{Name: key, Version: v}}
	case inventory.KindUser:
		it.Body = &commonv1.Item_User{User: &commonv1.User{Name: key, Shell: v}}
	}
	if err := inventory.Seal(it); err != nil {
		t.Fatal(err)
	}
	return it
}

func TestScanKeepsItemsOfFailedCollectors(t *testing.T) {
	sp, err := spool.Open(filepath.Join(t.TempDir(), "spool.db"), spool.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	pkgA := item(t, "package", "dpkg:a:amd64", "1")
	pkgR := item(t, "package", "rpm:r:x86_64", "1")
	user1 := item(t, "user", "alice", "/bin/sh")
	user2 := item(t, "user", "alice", "/bin/bash")
	dpkgFailed := &collect.CollectorError{Collector: "dpkg", Err: errors.New("status unreadable")}
	sc := &scripted{steps: []step{
		{items: []*commonv1.Item{pkgA, pkgR, user1}},
		{items: []*commonv1.Item{pkgR, user2}, err: errors.Join(dpkgFailed)},
		{items: []*commonv1.Item{pkgA, pkgR, user2}},
		{items: []*commonv1.Item{pkgR, user2}},
	}}
	r := New(Options{Servers: []string{"x"}, Spool: sp, Scanner: sc})
	ctx := context.Background()
	for i := 0; i < 4; i++ {
		if err := r.Scan(ctx); err != nil {
			t.Fatalf("scan %d: %v", i, err)
		}
	}
	entries, err := sp.Pending(0, 10)
	if err != nil {
		t.Fatal(err)
	}
	// Scan 1: full. Scan 2: alice changed, dpkg failed: the dpkg package is
	// neither removed nor dropped from the set hash. Scan 3: nothing new.
	// Scan 4: dpkg works and a is gone: now it is removed.
	if len(entries) != 3 {
		t.Fatalf("want 3 spooled inventories, got %d", len(entries))
	}
	full, d1, d2 := entries[0].Msg.GetInventory(), entries[1].Msg.GetInventory(), entries[2].Msg.GetInventory()
	if !full.GetFull() || len(full.GetItems()) != 3 {
		t.Fatalf("first: %v", full)
	}
	if d1.GetFull() || len(d1.GetItems()) != 1 || d1.GetItems()[0].GetKey() != "alice" || len(d1.GetRemoved()) != 0 {
		t.Fatalf("delta with a failed collector: %v", d1)
	}
	if want := inventory.SetOf([]*commonv1.Item{pkgA, pkgR, user2}).Hash(); !bytes.Equal(d1.GetSetHash(), want) {
		t.Fatal("set hash must still count the failed collector's items")
	}
	if len(d2.GetRemoved()) != 1 || d2.GetRemoved()[0].GetKey() != "dpkg:a:amd64" {
		t.Fatalf("removal once dpkg works again: %v", d2)
	}
}

func TestScanRefusesOversizedInventory(t *testing.T) {
	sp, err := spool.Open(filepath.Join(t.TempDir(), "spool.db"), spool.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	var items []*commonv1.Item
	for i := 0; i < 30000; i++ {
		items = append(items, item(t, "package", "dpkg:"+string(rune('a'+i%26))+itoa(i)+":amd64", "1.0"))
	}
	r := New(Options{Servers: []string{"x"}, Spool: sp, Scanner: &scripted{steps: []step{{items: items}}}, MaxMessageSize: 1 << 20})
	if err := r.Scan(context.Background()); err == nil {
		t.Fatal("an inventory above the message limit must be refused, not spooled")
	}
	if sp.LastSeq() != 0 {
		t.Fatal("nothing may be spooled")
	}
}

func itoa(i int) string {
	b := []byte{}
	for {
		b = append([]byte{byte('0' + i%10)}, b...)
		i /= 10
		if i == 0 {
			return string(b)
		}
	}
}

func TestCommandHandledOnce(t *testing.T) {
	sp, err := spool.Open(filepath.Join(t.TempDir(), "spool.db"), spool.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	r := New(Options{Servers: []string{"x"}, Spool: sp, Scanner: &scripted{}})
	cmd := &agentv1.Command{Id: "c-1", Action: &agentv1.Command_RunScript{RunScript: &agentv1.Script{Body: "id"}}}
	r.handleCommand(cmd)
	r.handleCommand(cmd)
	entries, err := sp.Pending(0, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Fatalf("a command delivered twice must be answered once, got %d results", len(entries))
	}
	res := entries[0].Msg.GetCommandResult()
	if res.GetStatus() != "refused" || !strings.Contains(res.GetError(), "allow_scripts") || res.GetSeq() != entries[0].Seq {
		t.Fatalf("result: %v", res)
	}
}
