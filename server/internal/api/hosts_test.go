package api_test

import (
	"encoding/json"
	"fmt"
	"github.com/quantumlayer/qinfra/pkg/inventory"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
)

// hostJSON mirrors the host view closely enough to check it.
type hostJSON struct {
	ID           string            `json:"id"`
	Hostname     string            `json:"hostname"`
	Labels       map[string]string `json:"labels"`
	EnrolledAt   time.Time         `json:"enrolled_at"`
	LastSeen     time.Time         `json:"last_seen"`
	Connected    bool              `json:"connected"`
	Revoked      bool              `json:"revoked"`
	RevokedAt    time.Time         `json:"revoked_at"`
	AgentVersion string            `json:"agent_version"`
	OS           struct {
		Platform        string    `json:"platform"`
		PlatformVersion string    `json:"platform_version"`
		KernelVersion   string    `json:"kernel_version"`
		PrettyName      string    `json:"pretty_name"`
		BootTime        time.Time `json:"boot_time"`
	} `json:"os"`
	Inventory struct {
		Items     int       `json:"items"`
		UpdatedAt time.Time `json:"updated_at"`
		NeedsFull bool      `json:"needs_full"`
	} `json:"inventory"`
	ItemCounts map[string]int `json:"item_counts"`
}

func TestListHosts(t *testing.T) {
	f := newFixture(t)
	f.addHost("h-a", "web-1", map[string]string{"env": "prod", "role": "web"})
	f.addHost("h-b", "db-1", map[string]string{"env": "prod", "role": "db"})
	f.addHost("h-c", "web-9", map[string]string{"env": "staging", "role": "web"})
	putInventory(t, f.st, "h-a", sampleItems(t))
	f.live.connected["h-a"] = true

	var got struct{ Hosts []hostJSON }
	f.do("GET", "/api/v1/hosts", f.viewer, nil).mustStatus(t, http.StatusOK).json(t, &got)
	if len(got.Hosts) != 3 {
		t.Fatalf("got %d hosts, want 3", len(got.Hosts))
	}
	a := got.Hosts[0]
	if a.ID != "h-a" || a.Hostname != "web-1" || !a.Connected || a.Revoked || a.AgentVersion != "1.2.3" {
		t.Errorf("host a = %+v", a)
	}
	if a.Labels["role"] != "web" || a.OS.Platform != "debian" || a.OS.PlatformVersion != "12.5" || a.OS.KernelVersion != "6.1.0-18-amd64" {
		t.Errorf("host a labels/os = %v %+v", a.Labels, a.OS)
	}
	if !a.OS.BootTime.Equal(time.Unix(1700000000, 0)) || !a.EnrolledAt.Equal(testNow) || !a.LastSeen.Equal(testNow.Add(-3*time.Second)) {
		t.Errorf("host a times = boot %v enrolled %v last seen %v", a.OS.BootTime, a.EnrolledAt, a.LastSeen)
	}
	if a.Inventory.Items != len(sampleItems(t)) || a.Inventory.NeedsFull || a.Inventory.UpdatedAt.IsZero() {
		t.Errorf("host a inventory = %+v", a.Inventory)
	}
	if a.ItemCounts != nil {
		t.Errorf("list shows item counts: %v", a.ItemCounts)
	}
	if got.Hosts[1].Connected || got.Hosts[1].Inventory.Items != 0 {
		t.Errorf("host b = %+v", got.Hosts[1])
	}

	for _, tc := range []struct {
		query string
		want  []string
	}{
		{"?label=env=prod", []string{"h-a", "h-b"}},
		{"?label=env=prod&label=role=web", []string{"h-a"}},
		{"?label=role=web", []string{"h-a", "h-c"}},
		{"?label=env=nowhere", []string{}},
		{"?label=env=prod&label=env=prod", []string{"h-a", "h-b"}},
	} {
		var got struct{ Hosts []hostJSON }
		f.do("GET", "/api/v1/hosts"+tc.query, f.viewer, nil).mustStatus(t, http.StatusOK).json(t, &got)
		ids := []string{}
		for _, h := range got.Hosts {
			ids = append(ids, h.ID)
		}
		if !slices.Equal(ids, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.query, ids, tc.want)
		}
	}
	for _, bad := range []string{"?label=env", "?label==x", "?label=env=a&label=env=b", "?label=bad%20key=x"} {
		if code := f.do("GET", "/api/v1/hosts"+bad, f.viewer, nil).mustStatus(t, http.StatusBadRequest).errorCode(t); code != "bad_request" {
			t.Errorf("%s: code %s", bad, code)
		}
	}
}

func TestListHostsEmpty(t *testing.T) {
	f := newFixture(t)
	r := f.do("GET", "/api/v1/hosts", f.viewer, nil).mustStatus(t, http.StatusOK)
	if strings.TrimSpace(string(r.body)) != `{"hosts":[]}` {
		t.Errorf("body %s, want an empty array rather than null", r.body)
	}
}

func TestGetHost(t *testing.T) {
	f := newFixture(t)
	f.addHost("h-a", "web-1", nil)
	putInventory(t, f.st, "h-a", sampleItems(t))

	var h hostJSON
	f.do("GET", "/api/v1/hosts/h-a", f.viewer, nil).mustStatus(t, http.StatusOK).json(t, &h)
	if h.ID != "h-a" || h.Labels == nil {
		t.Errorf("host = %+v", h)
	}
	want := map[string]int{"os": 1, "package": 3, "file": 1, "user": 1, "group": 1, "service": 1}
	for k, n := range want {
		if h.ItemCounts[k] != n {
			t.Errorf("item_counts[%s] = %d, want %d (all: %v)", k, h.ItemCounts[k], n, h.ItemCounts)
		}
	}

	f.addHost("h-empty", "x", nil)
	f.do("GET", "/api/v1/hosts/h-empty", f.viewer, nil).mustStatus(t, http.StatusOK).json(t, &h)
	if len(h.ItemCounts) != len(inventory.Kinds) || h.ItemCounts["package"] != 0 {
		t.Errorf("empty host item_counts = %v, want every kind at zero", h.ItemCounts)
	}

	r := f.do("GET", "/api/v1/hosts/h-nope", f.viewer, nil).mustStatus(t, http.StatusNotFound)
	if r.errorCode(t) != "not_found" || !strings.Contains(string(r.body), "host h-nope not found") {
		t.Errorf("404 body %s", r.body)
	}
}

func TestRevokeHost(t *testing.T) {
	f := newFixture(t)
	f.addHost("h-a", "web-1", nil)
	f.live.connected["h-a"] = true

	var h hostJSON
	f.do("POST", "/api/v1/hosts/h-a/revoke", f.operator, nil).mustStatus(t, http.StatusOK).json(t, &h)
	if !h.Revoked || !h.RevokedAt.Equal(testNow) || h.Connected {
		t.Errorf("revoked host = %+v", h)
	}
	if got := f.live.calls(); !slices.Equal(got, []string{"h-a:revoked"}) {
		t.Errorf("disconnects = %v", got)
	}
	stored, err := f.st.GetHost(t.Context(), "h-a")
	if err != nil || !stored.Revoked || !stored.RevokedAt.Equal(testNow) {
		t.Fatalf("stored host = %+v, %v", stored, err)
	}

	// Again: harmless, still disconnects and audits.
	f.do("POST", "/api/v1/hosts/h-a/revoke", f.operator, nil).mustStatus(t, http.StatusOK)
	if got := f.live.calls(); len(got) != 2 {
		t.Errorf("disconnects = %v", got)
	}

	f.do("POST", "/api/v1/hosts/h-nope/revoke", f.operator, nil).mustStatus(t, http.StatusNotFound)
	if len(f.live.calls()) != 2 {
		t.Error("unknown host was disconnected")
	}

	entries := f.auditEntries()
	if len(entries) != 2 {
		t.Fatalf("audit has %d entries, want 2", len(entries))
	}
	e := entries[0]
	if e.Action != "host.revoke" || e.Target != "host/h-a" || e.Actor != "ops ("+tokenID(f.operator)+")" || !e.Time.Equal(testNow) {
		t.Errorf("audit entry = %+v", e)
	}
	var detail map[string]any
	if err := json.Unmarshal([]byte(entries[1].Detail), &detail); err != nil || detail["already_revoked"] != true {
		t.Errorf("second revoke detail = %s", entries[1].Detail)
	}
}

func TestLabelHost(t *testing.T) {
	f := newFixture(t)
	f.addHost("h-a", "web-1", map[string]string{"env": "prod", "old": "x"})

	var h hostJSON
	f.do("POST", "/api/v1/hosts/h-a/labels", f.operator, map[string]any{
		"set":    map[string]string{"role": "web", "qinfra.io/tier": "gold", "env": "staging", "empty": ""},
		"remove": []string{"old", "never-there"},
	}).mustStatus(t, http.StatusOK).json(t, &h)
	want := map[string]string{"env": "staging", "role": "web", "qinfra.io/tier": "gold", "empty": ""}
	if len(h.Labels) != len(want) {
		t.Errorf("labels = %v, want %v", h.Labels, want)
	}
	for k, v := range want {
		if got, ok := h.Labels[k]; !ok || got != v {
			t.Errorf("labels[%s] = %q, want %q", k, got, v)
		}
	}
	stored, _ := f.st.GetHost(t.Context(), "h-a")
	if stored.Labels["role"] != "web" || stored.Labels["old"] != "" {
		t.Errorf("stored labels = %v", stored.Labels)
	}
	entries := f.auditEntries()
	if len(entries) != 1 || entries[0].Action != "host.label" || !strings.Contains(entries[0].Detail, `"remove":["never-there","old"]`) {
		t.Errorf("audit = %+v", entries)
	}

	for name, body := range map[string]any{
		"empty request":     map[string]any{},
		"bad key":           map[string]any{"set": map[string]string{"-bad": "x"}},
		"bad prefix":        map[string]any{"set": map[string]string{"Bad_Prefix/x": "x"}},
		"key too long":      map[string]any{"set": map[string]string{strings.Repeat("k", 64): "x"}},
		"value too long":    map[string]any{"set": map[string]string{"k": strings.Repeat("v", 64)}},
		"value with space":  map[string]any{"set": map[string]string{"k": "a b"}},
		"set and remove":    map[string]any{"set": map[string]string{"k": "v"}, "remove": []string{"k"}},
		"bad remove":        map[string]any{"remove": []string{"no spaces"}},
		"remove not a list": map[string]any{"remove": "k"},
		"value not string":  map[string]any{"set": map[string]any{"k": 1}},
	} {
		r := f.do("POST", "/api/v1/hosts/h-a/labels", f.operator, body)
		if r.status != http.StatusBadRequest || r.errorCode(t) != "bad_request" {
			t.Errorf("%s: status %d body %s", name, r.status, r.body)
		}
	}

	// A host has at most 64 labels, whatever each request adds.
	many := map[string]string{}
	for i := range 61 {
		many[fmt.Sprintf("k%d", i)] = "v"
	}
	f.do("POST", "/api/v1/hosts/h-a/labels", f.operator, map[string]any{"set": many}).mustStatus(t, http.StatusBadRequest)

	f.do("POST", "/api/v1/hosts/h-nope/labels", f.operator, map[string]any{"set": map[string]string{"a": "b"}}).mustStatus(t, http.StatusNotFound)
	if n := len(f.auditEntries()); n != 1 {
		t.Errorf("failed calls were audited: %d entries", n)
	}
}

// tokenID is the public ID of a secret.
func tokenID(secret string) string {
	parts := strings.Split(secret, "_")
	return parts[1]
}
