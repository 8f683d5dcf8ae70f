package api_test

import (
	"context"
	"encoding/json"
	"regexp"
	"testing"
	"time"

	"github.com/quantumlayer/qinfra/pkg/inventory"
	commonv1 "github.com/quantumlayer/qinfra/proto/gen/qinfra/common/v1"
	"github.com/quantumlayer/qinfra/server/internal/store"
)

// TestCLIHostChanges: `qinfractl host changes` shows the timeline the
// store recorded for a delta: a package upgraded, a user added, a service
// enabled.
func TestCLIHostChanges(t *testing.T) {
	e := newCLIEnv(t)
	e.addHost("h-a", "web-1", nil, time.Now())
	base := cliSample()
	e.addInventory("h-a", base)

	up := &commonv1.Item{Kind: "package", Key: "dpkg:openssl:amd64", Body: &commonv1.Item_Package{Package: &commonv1.Package{
		Name: "openssl", Version: "3.0.13-1~deb12u1", Arch: "amd64", Status: "installed"}}}
	mallory := &commonv1.Item{Kind: "user", Key: "mallory", Body: &commonv1.Item_User{User: &commonv1.User{Name: "mallory", Uid: 1001, Shell: "/bin/sh", PasswordState: "set"}}}
	svc := &commonv1.Item{Kind: "service", Key: "ssh.service", Body: &commonv1.Item_Service{Service: &commonv1.Service{UnitFileState: "disabled"}}}
	ups := []*commonv1.Item{up, mallory, svc}
	set := inventory.SetOf(base)
	for _, it := range ups {
		if err := inventory.Seal(it); err != nil {
			t.Fatal(err)
		}
	}
	set.Apply(ups, nil)
	out, err := e.st.ApplyInventory(context.Background(), &store.InventoryUpdate{HostID: "h-a", SpoolID: "s", Seq: 2, Upserts: ups,
		SetHash: set.Hash(), ReceivedAt: time.Now()})
	if err != nil || out != store.Applied {
		t.Fatalf("delta: %v %v", out, err)
	}

	r := e.run(e.viewer, "host", "changes", "h-a").ok(t)
	for _, re := range []string{
		`(?m)^TIME\s+OP\s+CHANGE$`,
		`(?m)\s+changed\s+package dpkg:openssl:amd64 changed: 3\.0\.11-1~deb12u2 → 3\.0\.13-1~deb12u1$`,
		`(?m)\s+added\s+user mallory added \(uid=1001 shell=/bin/sh password=set\)$`,
		`(?m)\s+changed\s+service ssh\.service changed: enabled → disabled$`,
	} {
		if !regexp.MustCompile(re).MatchString(r.stdout) {
			t.Errorf("changes lack %s:\n%s", re, r.stdout)
		}
	}
	r = e.run(e.viewer, "host", "changes", "h-a", "--since", "1h", "--limit", "1", "-o", "json").ok(t)
	var resp struct {
		Changes []map[string]any `json:"changes"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &resp); err != nil || len(resp.Changes) != 1 {
		t.Fatalf("json with --limit 1: %v %s", err, r.stdout)
	}
	e.run(e.viewer, "host", "changes", "h-a", "--since", "yesterday").fails(t, "--since takes")
	e.run(e.viewer, "host", "changes", "h-nope").fails(t, "host h-nope not found")
}
