package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/quantumlayer/qinfra/cmd/qinfractl/cli"
	"github.com/quantumlayer/qinfra/pkg/inventory"
	commonv1 "github.com/quantumlayer/qinfra/proto/gen/qinfra/common/v1"
	"github.com/quantumlayer/qinfra/server/internal/api"
	"github.com/quantumlayer/qinfra/server/internal/auth"
	"github.com/quantumlayer/qinfra/server/internal/store"
	"github.com/quantumlayer/qinfra/server/internal/store/bboltstore"
)

// live records disconnects, standing in for the gRPC layer.
type cliLive struct {
	mu          sync.Mutex
	connected   map[string]bool
	disconnects []string
}

func (l *cliLive) Connected(id string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.connected[id]
}

func (l *cliLive) CommandQueued(string, string) {}

func (l *cliLive) ConfigChanged([]string) {}
func (l *cliLive) BaselinesChanged()      {}

func (l *cliLive) Disconnect(id, reason string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.connected, id)
	l.disconnects = append(l.disconnects, id+":"+reason)
}

// testEnv is a TLS API server over a real bbolt store, and what the CLI
// needs to reach it.
type cliEnv struct {
	t                       *testing.T
	st                      *bboltstore.Store
	live                    *cliLive
	srv                     *httptest.Server
	caFile                  string
	admin, operator, viewer string
}

func newCLIEnv(t *testing.T) *cliEnv {
	t.Helper()
	dir := t.TempDir()
	st, err := bboltstore.Open(filepath.Join(dir, "qinfra.db"), bboltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	e := &cliEnv{t: t, st: st, live: &cliLive{connected: map[string]bool{}}}
	ctx := context.Background()
	if e.admin, err = auth.NewAdminToken(ctx, st, "root"); err != nil {
		t.Fatal(err)
	}
	if e.operator, err = auth.NewAPIToken(ctx, st, "ops", store.RoleOperator); err != nil {
		t.Fatal(err)
	}
	if e.viewer, err = auth.NewAPIToken(ctx, st, "dash", store.RoleViewer); err != nil {
		t.Fatal(err)
	}
	e.srv = httptest.NewUnstartedServer(api.New(api.Options{
		Store:         st,
		Live:          e.live,
		Logger:        slog.New(slog.DiscardHandler),
		CAFingerprint: "SHA256:9f86d081884c7d65",
		GRPCAddress:   "qinfra.example:8444",
	}))
	// The untrusted-CA case makes the server log a handshake error.
	e.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	e.srv.StartTLS()
	t.Cleanup(e.srv.Close)
	// httptest's certificate is self-signed, so it is its own CA.
	e.caFile = filepath.Join(dir, "ca.pem")
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: e.srv.Certificate().Raw})
	if err := os.WriteFile(e.caFile, caPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	return e
}

// result is one CLI invocation.
type cliResult struct {
	stdout, stderr string
	code           int
}

// run runs the CLI with the environment pointing at the test server and
// the given token.
func (e *cliEnv) run(token string, args ...string) cliResult {
	e.t.Helper()
	env := map[string]string{
		"QINFRA_SERVER":  e.srv.URL,
		"QINFRA_TOKEN":   token,
		"QINFRA_CA_FILE": e.caFile,
	}
	return runCLI(env, args...)
}

func runCLI(env map[string]string, args ...string) cliResult {
	var out, errb bytes.Buffer
	code := cli.Run(args, &out, &errb, func(k string) string { return env[k] })
	return cliResult{out.String(), errb.String(), code}
}

func (r cliResult) ok(t *testing.T) cliResult {
	t.Helper()
	if r.code != 0 {
		t.Fatalf("exit %d; stderr:\n%s\nstdout:\n%s", r.code, r.stderr, r.stdout)
	}
	return r
}

func (r cliResult) fails(t *testing.T, stderrHas string) cliResult {
	t.Helper()
	if r.code != 1 {
		t.Fatalf("exit %d, want 1; stderr:\n%s", r.code, r.stderr)
	}
	if !strings.Contains(r.stderr, stderrHas) {
		t.Fatalf("stderr lacks %q:\n%s", stderrHas, r.stderr)
	}
	return r
}

// addHost enrolls a host with labels and a Hello.
func (e *cliEnv) addHost(id, hostname string, labels map[string]string, lastSeen time.Time) {
	e.t.Helper()
	ctx := context.Background()
	tokID, _, hash := auth.GenerateSecret(auth.PrefixEnrollmentToken)
	now := time.Now()
	if err := e.st.CreateEnrollmentToken(ctx, &store.EnrollmentToken{
		ID: tokID, Hash: hash, Labels: labels, UsesAllowed: 1, ExpiresAt: now.Add(time.Hour), CreatedAt: now,
	}); err != nil {
		e.t.Fatal(err)
	}
	if err := e.st.EnrollHost(ctx, hash, now, &store.Host{ID: id, Hostname: hostname, EnrolledAt: now.Add(-time.Hour)}); err != nil {
		e.t.Fatal(err)
	}
	if err := e.st.UpdateHost(ctx, id, func(h *store.Host) error {
		h.LastSeen = lastSeen
		h.AgentVersion = "1.2.3"
		h.Facts = &commonv1.OSFacts{Os: "linux", Platform: "debian", PlatformVersion: "12.5",
			PrettyName: "Debian GNU/Linux 12 (bookworm)", KernelVersion: "6.1.0-18-amd64", KernelArch: "x86_64"}
		return nil
	}); err != nil {
		e.t.Fatal(err)
	}
}

func (e *cliEnv) addInventory(id string, items []*commonv1.Item) {
	e.t.Helper()
	for _, it := range items {
		if err := inventory.Seal(it); err != nil {
			e.t.Fatal(err)
		}
	}
	out, err := e.st.ApplyInventory(context.Background(), &store.InventoryUpdate{
		HostID: id, SpoolID: "s", Seq: 1, Full: true, Upserts: items,
		SetHash: inventory.SetOf(items).Hash(), CollectedAt: time.Now(), ReceivedAt: time.Now(),
	})
	if err != nil || out != store.Applied {
		e.t.Fatalf("apply inventory: %v %v", out, err)
	}
}

func cliSample() []*commonv1.Item {
	return []*commonv1.Item{
		{Kind: "os", Key: "host", Body: &commonv1.Item_Os{Os: &commonv1.OSFacts{PrettyName: "Debian GNU/Linux 12 (bookworm)"}}},
		{Kind: "package", Key: "dpkg:openssl:amd64", Body: &commonv1.Item_Package{Package: &commonv1.Package{Name: "openssl", Version: "3.0.11-1~deb12u2", Arch: "amd64", Status: "installed"}}},
		{Kind: "package", Key: "dpkg:bash:amd64", Body: &commonv1.Item_Package{Package: &commonv1.Package{Name: "bash", Version: "5.2.15-2+b2", Arch: "amd64"}}},
		{Kind: "package", Key: "dpkg:oldlib:amd64", Body: &commonv1.Item_Package{Package: &commonv1.Package{Name: "oldlib", Version: "1.0", Arch: "amd64", Status: "config-files"}}},
		{Kind: "file", Key: "/etc/ssh/sshd_config", Body: &commonv1.Item_File{File: &commonv1.File{Type: "file", Sha256: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", Mode: 0o644, Owner: "root", Group: "root"}}},
		{Kind: "user", Key: "root", Body: &commonv1.Item_User{User: &commonv1.User{Name: "root", Shell: "/bin/bash", PasswordState: "locked"}}},
		{Kind: "group", Key: "sudo", Body: &commonv1.Item_Group{Group: &commonv1.Group{Gid: 27, Members: []string{"alice", "bob"}}}},
		{Kind: "service", Key: "ssh.service", Body: &commonv1.Item_Service{Service: &commonv1.Service{UnitFileState: "enabled", ActiveState: "active", SubState: "running"}}},
	}
}

func TestCLIHostsList(t *testing.T) {
	e := newCLIEnv(t)
	e.addHost("h-a", "web-1", map[string]string{"env": "prod", "role": "web"}, time.Now().Add(-3*time.Second))
	e.addHost("h-b", "db-1", map[string]string{"env": "staging"}, time.Time{})
	e.addInventory("h-a", cliSample())
	e.live.connected["h-a"] = true

	r := e.run(e.viewer, "hosts", "list").ok(t)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 3 {
		t.Fatalf("want header and 2 rows:\n%s", r.stdout)
	}
	if !regexp.MustCompile(`^ID\s+HOSTNAME\s+OS\s+CONNECTED\s+LAST SEEN\s+ITEMS\s+LABELS$`).MatchString(lines[0]) {
		t.Errorf("header %q", lines[0])
	}
	if !regexp.MustCompile(`^h-a\s+web-1\s+Debian GNU/Linux 12 \(bookworm\)\s+yes\s+\d+s ago\s+8\s+env=prod,role=web$`).MatchString(lines[1]) {
		t.Errorf("row a %q", lines[1])
	}
	if !regexp.MustCompile(`^h-b\s+db-1\s+.*\s+no\s+never\s+0\s+env=staging$`).MatchString(lines[2]) {
		t.Errorf("row b %q", lines[2])
	}

	// Global flags after the command, and label filters.
	r = e.run(e.viewer, "hosts", "list", "--label", "env=prod", "-o", "json").ok(t)
	var doc struct {
		Hosts []struct{ ID string } `json:"hosts"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil || len(doc.Hosts) != 1 || doc.Hosts[0].ID != "h-a" {
		t.Errorf("json output %v: %s", err, r.stdout)
	}
	// And before it.
	e.run(e.viewer, "-o", "json", "hosts", "list").ok(t)

	e.run(e.viewer, "hosts", "list", "--label", "env").fails(t, "label filter")
	e.run(e.viewer, "hosts", "list", "extra").fails(t, "takes no arguments")
	e.run(e.viewer, "hosts", "list", "-o", "yaml").fails(t, "-o must be table or json")
	e.run(e.viewer, "hosts").fails(t, "hosts needs one of: list")
}

func TestCLIHostGet(t *testing.T) {
	e := newCLIEnv(t)
	e.addHost("h-a", "web-1", map[string]string{"env": "prod"}, time.Now().Add(-time.Minute))
	e.addInventory("h-a", cliSample())

	r := e.run(e.viewer, "host", "get", "h-a").ok(t)
	for _, want := range []string{
		"ID:", "h-a", "web-1", "Debian GNU/Linux 12 (bookworm)", "6.1.0-18-amd64 x86_64", "1.2.3",
		"Connected:", "1m ago", "env=prod", "8 items", "KIND", "COUNT",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("host get lacks %q:\n%s", want, r.stdout)
		}
	}
	if !regexp.MustCompile(`(?m)^package\s+3$`).MatchString(r.stdout) || !regexp.MustCompile(`(?m)^os\s+1$`).MatchString(r.stdout) {
		t.Errorf("counts:\n%s", r.stdout)
	}

	r = e.run(e.viewer, "host", "get", "h-a", "-o", "json").ok(t)
	var h struct {
		ID         string         `json:"id"`
		ItemCounts map[string]int `json:"item_counts"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &h); err != nil || h.ItemCounts["package"] != 3 {
		t.Errorf("json: %v %s", err, r.stdout)
	}

	r = e.run(e.viewer, "host", "get", "h-nope").fails(t, "host h-nope not found")
	if r.stdout != "" {
		t.Errorf("stdout on error: %q", r.stdout)
	}
	e.run(e.viewer, "host", "get").fails(t, "exactly one host ID")
	e.run(e.viewer, "host", "get", "a", "b").fails(t, "exactly one host ID")
	// An ID cannot reach another endpoint.
	e.run(e.viewer, "host", "get", "../enrollment-tokens").fails(t, "not found")
	e.run(e.viewer, "host", "frob").fails(t, `unknown command "host frob"`)
}

func TestCLIHostInventory(t *testing.T) {
	e := newCLIEnv(t)
	e.addHost("h-a", "web-1", nil, time.Now())
	e.addInventory("h-a", cliSample())

	r := e.run(e.viewer, "host", "inventory", "h-a").ok(t)
	for _, re := range []string{
		`(?m)^KIND\s+COUNT$`, `(?m)^package\s+3$`, `(?m)^total\s+8$`,
		`(?m)^KIND\s+KEY\s+DETAIL$`,
		`(?m)^package\s+dpkg:openssl:amd64\s+3\.0\.11-1~deb12u2 amd64$`,
		`(?m)^package\s+dpkg:oldlib:amd64\s+1\.0 amd64 \(config-files\)$`,
		`(?m)^file\s+/etc/ssh/sshd_config\s+file 0644 root:root sha256:9f86d081884c$`,
		`(?m)^user\s+root\s+uid=0 shell=/bin/bash password=locked$`,
		`(?m)^group\s+sudo\s+gid=27 members=alice,bob$`,
		`(?m)^service\s+ssh\.service\s+enabled active/running$`,
		`(?m)^os\s+host\s+Debian GNU/Linux 12 \(bookworm\)$`,
	} {
		if !regexp.MustCompile(re).MatchString(r.stdout) {
			t.Errorf("inventory lacks %s:\n%s", re, r.stdout)
		}
	}

	// The flag after the ID, as users type it.
	r = e.run(e.viewer, "host", "inventory", "h-a", "--kind", "package").ok(t)
	if strings.Contains(r.stdout, "sshd_config") || !strings.Contains(r.stdout, "dpkg:bash:amd64") {
		t.Errorf("--kind package:\n%s", r.stdout)
	}
	r = e.run(e.viewer, "host", "inventory", "--q", "ssl", "h-a", "-o", "json").ok(t)
	var doc struct {
		Count int              `json:"count"`
		Items []map[string]any `json:"items"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil || doc.Count != 1 || doc.Items[0]["key"] != "dpkg:openssl:amd64" {
		t.Errorf("--q ssl json: %v %s", err, r.stdout)
	}

	e.run(e.viewer, "host", "inventory", "h-a", "--kind", "nope").fails(t, `unknown kind "nope"`)
	e.run(e.viewer, "host", "inventory", "h-nope").fails(t, "host h-nope not found")
}

// TestCLIHostInventoryPages stores more items than one page holds and
// checks the CLI gathers them all.
func TestCLIHostInventoryPages(t *testing.T) {
	if testing.Short() {
		t.Skip("stores 10,005 items")
	}
	e := newCLIEnv(t)
	e.addHost("h-big", "files", nil, time.Now())
	const n = 10005
	items := make([]*commonv1.Item, n)
	for i := range items {
		path := fmt.Sprintf("/srv/data/%05d", i)
		items[i] = &commonv1.Item{Kind: "file", Key: path, Body: &commonv1.Item_File{File: &commonv1.File{Path: path, Type: "file"}}}
	}
	e.addInventory("h-big", items)
	r := e.run(e.viewer, "host", "inventory", "h-big", "-o", "json").ok(t)
	var doc struct {
		Count int `json:"count"`
		Items []struct {
			Key string `json:"key"`
		} `json:"items"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Count != n || len(doc.Items) != n || doc.Items[n-1].Key != "/srv/data/10004" {
		t.Errorf("got count %d, %d items", doc.Count, len(doc.Items))
	}
	r = e.run(e.viewer, "host", "inventory", "h-big").ok(t)
	if !regexp.MustCompile(`(?m)^total\s+10005$`).MatchString(r.stdout) || strings.Count(r.stdout, "/srv/data/") != n {
		t.Errorf("table has %d rows", strings.Count(r.stdout, "/srv/data/"))
	}
}

func TestCLIHostRevokeAndLabel(t *testing.T) {
	e := newCLIEnv(t)
	e.addHost("h-a", "web-1", map[string]string{"env": "prod", "old": "x"}, time.Now())
	e.live.connected["h-a"] = true

	e.run(e.viewer, "host", "revoke", "h-a").fails(t, "needs role operator")
	r := e.run(e.operator, "host", "revoke", "h-a").ok(t)
	if !strings.Contains(r.stdout, "Host h-a revoked") {
		t.Errorf("revoke output %q", r.stdout)
	}
	if len(e.live.disconnects) != 1 || e.live.disconnects[0] != "h-a:revoked" {
		t.Errorf("disconnects %v", e.live.disconnects)
	}
	r = e.run(e.viewer, "hosts", "list").ok(t)
	if !regexp.MustCompile(`(?m)^h-a\s+web-1\s+.*\s+revoked\s+`).MatchString(r.stdout) {
		t.Errorf("revoked host not shown so:\n%s", r.stdout)
	}

	r = e.run(e.operator, "host", "label", "h-a", "role=web", "old-", "tier=").ok(t)
	if strings.TrimSpace(r.stdout) != "Host h-a labels: env=prod,role=web,tier=" {
		t.Errorf("label output %q", r.stdout)
	}
	e.run(e.operator, "host", "label", "h-a").fails(t, "at least one")
	e.run(e.operator, "host", "label", "h-a", "novalue").fails(t, "want key=value")
	e.run(e.operator, "host", "label", "h-a", "bad key=x").fails(t, "label key")
	e.run(e.operator, "host", "label", "h-nope", "a=b").fails(t, "not found")

	r = e.run(e.admin, "audit").ok(t)
	if !regexp.MustCompile(`(?m)^1\s+.*\s+ops \(\w+\)\s+host\.revoke\s+host/h-a\s+`).MatchString(r.stdout) ||
		!regexp.MustCompile(`(?m)^2\s+.*host\.label\s+host/h-a\s+`).MatchString(r.stdout) {
		t.Errorf("audit:\n%s", r.stdout)
	}
}

func TestCLITokenCreateAndList(t *testing.T) {
	e := newCLIEnv(t)
	r := e.run(e.operator, "token", "create", "--uses", "3", "--ttl", "2h", "--label", "env=prod", "--label", "role=web", "--description", "rack 7").ok(t)
	secret := regexp.MustCompile(`qet_[a-z2-7]+_[a-z2-7]+`).FindString(r.stdout)
	if secret == "" {
		t.Fatalf("no secret in output:\n%s", r.stdout)
	}
	for _, want := range []string{
		"shown only now", "Uses:", "3", "env=prod,role=web", "rack 7", "in 1h",
		"qinfra-agent enroll --server qinfra.example:8444 --token " + secret + " --ca-fingerprint SHA256:9f86d081884c7d65",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("token create output lacks %q:\n%s", want, r.stdout)
		}
	}
	// The printed secret is the real one.
	h := &store.Host{ID: "h-new"}
	if err := e.st.EnrollHost(context.Background(), auth.HashSecret(secret), time.Now(), h); err != nil {
		t.Fatalf("enroll with printed secret: %v", err)
	}
	if h.Labels["role"] != "web" {
		t.Errorf("labels %v", h.Labels)
	}

	// Defaults come from the server.
	r = e.run(e.operator, "token", "create", "-o", "json").ok(t)
	var created struct {
		Token       string    `json:"token"`
		UsesAllowed int       `json:"uses_allowed"`
		ExpiresAt   time.Time `json:"expires_at"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &created); err != nil || created.UsesAllowed != 1 || time.Until(created.ExpiresAt) > time.Hour {
		t.Errorf("default token %v: %s", err, r.stdout)
	}

	r = e.run(e.operator, "token", "list").ok(t)
	if !regexp.MustCompile(`(?m)^ID\s+STATE\s+USES\s+EXPIRES\s+LABELS\s+CREATED BY\s+DESCRIPTION$`).MatchString(r.stdout) ||
		!regexp.MustCompile(`(?m)^\w+\s+active\s+1/3\s+in 1h\s+env=prod,role=web\s+ops \(\w+\)\s+rack 7$`).MatchString(r.stdout) {
		t.Errorf("token list:\n%s", r.stdout)
	}
	if strings.Contains(r.stdout, "qet_") {
		t.Error("token list shows a secret")
	}

	e.run(e.operator, "token", "create", "--uses", "0").fails(t, "uses must be between 1 and 100000")
	e.run(e.operator, "token", "create", "--ttl", "1000h").fails(t, "ttl must be positive and at most")
	e.run(e.operator, "token", "create", "--label", "x").fails(t, "want key=value")
	e.run(e.viewer, "token", "create").fails(t, "forbidden")
	e.run(e.viewer, "token", "list").fails(t, "needs role operator")
}

func TestCLIAudit(t *testing.T) {
	e := newCLIEnv(t)
	for range 3 {
		e.run(e.operator, "token", "create").ok(t)
	}
	r := e.run(e.admin, "audit", "--after", "1").ok(t)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[1], "2 ") || !strings.HasPrefix(lines[2], "3 ") {
		t.Errorf("audit --after 1:\n%s", r.stdout)
	}
	r = e.run(e.admin, "audit", "--limit", "2").ok(t)
	if !strings.Contains(r.stderr, "qinfractl audit --after 2") {
		t.Errorf("no hint at more entries: %q", r.stderr)
	}
	r = e.run(e.admin, "audit", "-o", "json").ok(t)
	var doc struct {
		Entries []struct{ Hash string } `json:"entries"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil || len(doc.Entries) != 3 || len(doc.Entries[0].Hash) != 64 {
		t.Errorf("audit json %v: %s", err, r.stdout)
	}
	e.run(e.operator, "audit").fails(t, "needs role admin")
	e.run(e.admin, "audit", "--limit", "0").fails(t, "--limit must be between")
}

func TestCLIConnectionAndAuthErrors(t *testing.T) {
	e := newCLIEnv(t)
	e.run("", "hosts", "list").fails(t, "no API token")
	e.run("qat_nope_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "hosts", "list").fails(t, "invalid API token (unauthenticated, HTTP 401)")

	// --token overrides QINFRA_TOKEN.
	e.run("qat_bad_x", "hosts", "list", "--token", e.viewer).ok(t)

	// Without the CA the server's certificate is not trusted.
	runCLI(map[string]string{"QINFRA_SERVER": e.srv.URL, "QINFRA_TOKEN": e.viewer}, "hosts", "list").fails(t, "certificate")
}

func TestCLIVersion(t *testing.T) {
	e := newCLIEnv(t)
	r := e.run(e.viewer, "version").ok(t)
	if !strings.Contains(r.stdout, "qinfra-server dev") {
		t.Errorf("version with server %q", r.stdout)
	}
}

func TestCLITableCleansControlCharacters(t *testing.T) {
	e := newCLIEnv(t)
	e.addHost("h-a", "evil\x1b[2Jhost\tx", nil, time.Now())
	r := e.run(e.viewer, "hosts", "list").ok(t)
	if strings.ContainsAny(r.stdout, "\x1b") || !strings.Contains(r.stdout, "evil\uFFFD[2Jhost\uFFFDx") {
		t.Errorf("control characters reach the terminal:\n%q", r.stdout)
	}
}
