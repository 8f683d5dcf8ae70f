package api_test

import (
	"encoding/hex"
	"net/http"
	"slices"
	"strings"
	"testing"
)

type inventoryJSON struct {
	HostID string           `json:"host_id"`
	Kind   string           `json:"kind"`
	Count  int              `json:"count"`
	Offset int              `json:"offset"`
	Limit  int              `json:"limit"`
	Items  []map[string]any `json:"items"`
}

func (inv inventoryJSON) keys() []string {
	var keys []string
	for _, it := range inv.Items {
		keys = append(keys, it["key"].(string))
	}
	return keys
}

func TestInventory(t *testing.T) {
	f := newFixture(t)
	f.addHost("h-a", "web-1", nil)
	items := sampleItems(t)
	putInventory(t, f.st, "h-a", items)

	var inv inventoryJSON
	f.do("GET", "/api/v1/hosts/h-a/inventory", f.viewer, nil).mustStatus(t, http.StatusOK).json(t, &inv)
	if inv.HostID != "h-a" || inv.Kind != "" || inv.Count != len(items) || len(inv.Items) != len(items) {
		t.Fatalf("inventory = %+v", inv)
	}

	f.do("GET", "/api/v1/hosts/h-a/inventory?kind=package", f.viewer, nil).mustStatus(t, http.StatusOK).json(t, &inv)
	if inv.Kind != "package" || inv.Count != 3 || !slices.Equal(inv.keys(), []string{"dpkg:bash:amd64", "dpkg:libssl3:amd64", "dpkg:openssl:amd64"}) {
		t.Fatalf("packages = %+v", inv)
	}
	var openssl map[string]any
	for _, it := range inv.Items {
		if it["key"] == "dpkg:openssl:amd64" {
			openssl = it
		}
	}
	var want []byte
	for _, it := range items {
		if it.GetKey() == "dpkg:openssl:amd64" {
			want = it.GetHash()
		}
	}
	if openssl["kind"] != "package" || openssl["hash"] != hex.EncodeToString(want) {
		t.Errorf("openssl item = %v", openssl)
	}
	pkg, ok := openssl["package"].(map[string]any)
	if !ok || pkg["name"] != "openssl" || pkg["version"] != "3.0.11-1~deb12u2" || pkg["arch"] != "amd64" || pkg["install_time"] != "1700000000" {
		t.Errorf("openssl body = %v (proto names, int64 as string)", openssl["package"])
	}
	if _, ok := pkg["source_name"]; ok {
		t.Errorf("unset field emitted: %v", pkg)
	}

	f.do("GET", "/api/v1/hosts/h-a/inventory?kind=file", f.viewer, nil).mustStatus(t, http.StatusOK).json(t, &inv)
	file := inv.Items[0]["file"].(map[string]any)
	if file["sha256"] != strings.Repeat("ab", 32) || file["mode"] != float64(0o644) {
		t.Errorf("file body = %v", file)
	}

	// q filters on the key, ignoring case.
	f.do("GET", "/api/v1/hosts/h-a/inventory?q=SSL", f.viewer, nil).mustStatus(t, http.StatusOK).json(t, &inv)
	if !slices.Equal(inv.keys(), []string{"dpkg:libssl3:amd64", "dpkg:openssl:amd64"}) || inv.Count != 2 {
		t.Errorf("q=SSL: %v", inv.keys())
	}

	// Paging: count is the total, items the page.
	f.do("GET", "/api/v1/hosts/h-a/inventory?kind=package&limit=2&offset=1", f.viewer, nil).mustStatus(t, http.StatusOK).json(t, &inv)
	if inv.Count != 3 || inv.Offset != 1 || inv.Limit != 2 || !slices.Equal(inv.keys(), []string{"dpkg:libssl3:amd64", "dpkg:openssl:amd64"}) {
		t.Errorf("page = %+v", inv)
	}
	f.do("GET", "/api/v1/hosts/h-a/inventory?offset=100", f.viewer, nil).mustStatus(t, http.StatusOK).json(t, &inv)
	if inv.Count != len(items) || len(inv.Items) != 0 {
		t.Errorf("past the end = %+v", inv)
	}

	for _, bad := range []string{"?kind=nope", "?kind=PACKAGE", "?limit=-1", "?limit=x", "?limit=10001", "?offset=-5"} {
		if code := f.do("GET", "/api/v1/hosts/h-a/inventory"+bad, f.viewer, nil).mustStatus(t, http.StatusBadRequest).errorCode(t); code != "bad_request" {
			t.Errorf("%s: %s", bad, code)
		}
	}
	f.do("GET", "/api/v1/hosts/h-nope/inventory", f.viewer, nil).mustStatus(t, http.StatusNotFound)

	// A host that has sent nothing has an empty list, not null.
	f.addHost("h-b", "db-1", nil)
	r := f.do("GET", "/api/v1/hosts/h-b/inventory", f.viewer, nil).mustStatus(t, http.StatusOK)
	if !strings.Contains(string(r.body), `"items":[]`) {
		t.Errorf("empty inventory body %s", r.body)
	}
}
