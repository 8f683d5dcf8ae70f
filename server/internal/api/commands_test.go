package api_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/quantumlayer/qinfra/pkg/inventory"
	"github.com/quantumlayer/qinfra/server/internal/store"
	"google.golang.org/protobuf/proto"

	agentv1 "github.com/quantumlayer/qinfra/proto/gen/qinfra/agent/v1"
	commonv1 "github.com/quantumlayer/qinfra/proto/gen/qinfra/common/v1"
)

func TestCreateAndListCommands(t *testing.T) {
	f := newFixture(t)
	f.addHost("h-1", "web-1", nil)
	var c struct {
		ID       string `json:"id"`
		HostID   string `json:"host_id"`
		State    string `json:"state"`
		Kind     string `json:"kind"`
		Deadline string `json:"deadline"`
	}
	f.do("POST", "/api/v1/hosts/h-1/commands", f.operator, map[string]any{
		"action": "upgrade_package", "package": map[string]any{"name": "openssl", "version": "3.0.13-1~deb12u1"}, "deadline": "30m",
	}).mustStatus(t, http.StatusCreated).json(t, &c)
	if !strings.HasPrefix(c.ID, "c-") || c.HostID != "h-1" || c.State != store.CommandPending || c.Kind != "upgrade_package" || c.Deadline == "" {
		t.Fatalf("command = %+v", c)
	}
	// Stored with the typed payload the agent will get.
	sc, err := f.st.GetCommand(context.Background(), c.ID)
	if err != nil {
		t.Fatal(err)
	}
	var cmd agentv1.Command
	if err := proto.Unmarshal(sc.Payload, &cmd); err != nil {
		t.Fatal(err)
	}
	if cmd.GetUpgradePackage().GetName() != "openssl" || cmd.GetId() != c.ID {
		t.Fatalf("payload = %v", &cmd)
	}
	// The stream holder was told, and the call audited.
	if q := f.live.queuedCalls(); len(q) != 1 || q[0] != "h-1:"+c.ID {
		t.Fatalf("queued = %v", q)
	}
	entries := f.auditEntries()
	if last := entries[len(entries)-1]; last.Action != "command.create" || !strings.Contains(last.Detail, c.ID) {
		t.Fatalf("audit = %+v", last)
	}

	var list struct {
		Commands []map[string]any `json:"commands"`
	}
	f.do("GET", "/api/v1/hosts/h-1/commands", f.viewer, nil).mustStatus(t, http.StatusOK).json(t, &list)
	if len(list.Commands) != 1 || list.Commands[0]["id"] != c.ID {
		t.Fatalf("list = %v", list)
	}
	f.do("GET", "/api/v1/commands/"+c.ID, f.viewer, nil).mustStatus(t, http.StatusOK)
	f.do("GET", "/api/v1/commands/c-nope", f.viewer, nil).mustStatus(t, http.StatusNotFound)
}

func TestCreateCommandRefusals(t *testing.T) {
	f := newFixture(t)
	f.addHost("h-1", "web-1", nil)
	bad := map[string]map[string]any{
		"no action":           {"package": map[string]any{"name": "x"}},
		"unknown action":      {"action": "format_disk", "package": map[string]any{"name": "x"}},
		"two objects":         {"action": "remove_package", "package": map[string]any{"name": "x"}, "user": map[string]any{"name": "y"}},
		"wrong object":        {"action": "lock_user", "package": map[string]any{"name": "x"}},
		"empty name":          {"action": "lock_user", "user": map[string]any{"name": ""}},
		"relative path":       {"action": "restore_file", "file": map[string]any{"path": "etc/passwd"}},
		"unclean path":        {"action": "restore_file", "file": map[string]any{"path": "/etc/../root/x"}},
		"mode too big":        {"action": "restore_file", "file": map[string]any{"path": "/etc/x", "mode": 65535}},
		"empty script":        {"action": "run_script", "script": map[string]any{"body": ""}},
		"deadline too long":   {"action": "lock_user", "user": map[string]any{"name": "x"}, "deadline": "9999h"},
		"deadline not a time": {"action": "lock_user", "user": map[string]any{"name": "x"}, "deadline": "soon"},
		"newline in name":     {"action": "lock_user", "user": map[string]any{"name": "a\nb"}},
	}
	for name, body := range bad {
		f.do("POST", "/api/v1/hosts/h-1/commands", f.operator, body).mustStatus(t, http.StatusBadRequest)
		_ = name
	}
	f.do("POST", "/api/v1/hosts/h-1/commands", f.viewer, map[string]any{"action": "lock_user", "user": map[string]any{"name": "x"}}).mustStatus(t, http.StatusForbidden)
	f.do("POST", "/api/v1/hosts/h-nope/commands", f.operator, map[string]any{"action": "lock_user", "user": map[string]any{"name": "x"}}).mustStatus(t, http.StatusNotFound)
	// A revoked host gets no commands.
	f.do("POST", "/api/v1/hosts/h-1/revoke", f.operator, nil).mustStatus(t, http.StatusOK)
	f.do("POST", "/api/v1/hosts/h-1/commands", f.operator, map[string]any{"action": "lock_user", "user": map[string]any{"name": "x"}}).mustStatus(t, http.StatusConflict)
	if q := f.live.queuedCalls(); len(q) != 0 {
		t.Fatalf("refused commands must not be announced: %v", q)
	}
}

func TestListChanges(t *testing.T) {
	f := newFixture(t)
	f.addHost("h-1", "web-1", nil)
	items := sampleItems(t)
	putInventory(t, f.st, "h-1", items)
	// openssl upgraded, bash removed, a user added.
	up := &commonv1.Item{Kind: inventory.KindPackage, Key: "dpkg:openssl:amd64", Body: &commonv1.Item_Package{Package: &commonv1.Package{
		Manager: "dpkg", Name: "openssl", Version: "3.0.13-1~deb12u1", Arch: "amd64"}}}
	bob := &commonv1.Item{Kind: inventory.KindUser, Key: "bob", Body: &commonv1.Item_User{User: &commonv1.User{Name: "bob", Uid: 1001, Shell: "/bin/sh"}}}
	for _, it := range []*commonv1.Item{up, bob} {
		if err := inventory.Seal(it); err != nil {
			t.Fatal(err)
		}
	}
	set := inventory.SetOf(items)
	removed := []inventory.Ref{{Kind: "package", Key: "dpkg:bash:amd64"}}
	set.Apply([]*commonv1.Item{up, bob}, removed)
	out, err := f.st.ApplyInventory(context.Background(), &store.InventoryUpdate{HostID: "h-1", SpoolID: "spool-1", Seq: 2,
		Upserts: []*commonv1.Item{up, bob}, Removed: removed, SetHash: set.Hash(), ReceivedAt: testNow})
	if err != nil || out != store.Applied {
		t.Fatalf("%v %v", out, err)
	}
	type changeView struct {
		Key, Op, Before, After, Summary string
	}
	var r struct {
		Changes []changeView `json:"changes"`
	}
	f.do("GET", "/api/v1/hosts/h-1/changes", f.viewer, nil).mustStatus(t, http.StatusOK).json(t, &r)
	got := map[string]changeView{}
	for _, c := range r.Changes {
		got[c.Key] = c
	}
	if len(r.Changes) != 3 {
		t.Fatalf("changes = %+v", r.Changes)
	}
	if c := got["dpkg:openssl:amd64"]; c.Op != "changed" || c.Before != "3.0.11-1~deb12u2" || c.After != "3.0.13-1~deb12u1" || !strings.Contains(c.Summary, "→") {
		t.Errorf("openssl change = %+v", c)
	}
	if c := got["dpkg:bash:amd64"]; c.Op != "removed" || c.Before != "5.2.15-2+b2" {
		t.Errorf("bash change = %+v", c)
	}
	if c := got["bob"]; c.Op != "added" || !strings.Contains(c.After, "uid=1001") {
		t.Errorf("bob change = %+v", c)
	}
	f.do("GET", "/api/v1/hosts/h-1/changes?since=yesterday", f.viewer, nil).mustStatus(t, http.StatusBadRequest)
	f.do("GET", "/api/v1/hosts/h-nope/changes", f.viewer, nil).mustStatus(t, http.StatusNotFound)
}

func TestBackupEndpoint(t *testing.T) {
	f := newFixture(t)
	f.addHost("h-1", "web-1", nil)
	// The fixture's API has no Backup wired: 501 with a pointer to pg_dump.
	r := f.do("POST", "/api/v1/admin/backup", f.admin, nil).mustStatus(t, http.StatusNotImplemented)
	_ = r
	f.do("POST", "/api/v1/admin/backup", f.operator, nil).mustStatus(t, http.StatusForbidden)
}
