package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/quantumlayer/qinfra/pkg/inventory"
	commonv1 "github.com/quantumlayer/qinfra/proto/gen/qinfra/common/v1"
	"github.com/quantumlayer/qinfra/server/internal/api"
	"github.com/quantumlayer/qinfra/server/internal/auth"
	"github.com/quantumlayer/qinfra/server/internal/store"
	"github.com/quantumlayer/qinfra/server/internal/store/bboltstore"
)

// testNow is the API's clock in tests.
var testNow = time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)

// recordingLive is a Live whose connected set the test controls and which
// records disconnects, standing in for the gRPC ingest layer.
type recordingLive struct {
	mu          sync.Mutex
	connected   map[string]bool
	disconnects []string
	queued      []string
	configs     []string
	// baselineChanges counts BaselinesChanged calls.
	baselineChanges int
}

func (l *recordingLive) BaselinesChanged() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.baselineChanges++
}

func (l *recordingLive) ConfigChanged(hostIDs []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if hostIDs == nil {
		l.configs = append(l.configs, "*")
	}
	l.configs = append(l.configs, hostIDs...)
}

func (l *recordingLive) configCalls() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.configs...)
}

func (l *recordingLive) CommandQueued(hostID, commandID string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.queued = append(l.queued, hostID+":"+commandID)
}

func (l *recordingLive) queuedCalls() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.queued...)
}

func (l *recordingLive) Connected(id string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.connected[id]
}

func (l *recordingLive) Disconnect(id, reason string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.disconnects = append(l.disconnects, id+":"+reason)
	delete(l.connected, id)
}

func (l *recordingLive) calls() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.disconnects...)
}

// fixture is an API server over a real bbolt store with one API token per
// role.
type fixture struct {
	t                       *testing.T
	st                      *bboltstore.Store
	live                    *recordingLive
	srv                     *httptest.Server
	logs                    *syncBuffer
	admin, operator, viewer string
	ready                   error
	readyMu                 sync.Mutex
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func openStore(t testing.TB) *bboltstore.Store {
	t.Helper()
	st, err := bboltstore.Open(filepath.Join(t.TempDir(), "qinfra.db"), bboltstore.Options{})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{
		t:    t,
		st:   openStore(t),
		live: &recordingLive{connected: map[string]bool{}},
		logs: &syncBuffer{},
	}
	ctx := context.Background()
	var err error
	if f.admin, err = auth.NewAdminToken(ctx, f.st, "root"); err != nil {
		t.Fatal(err)
	}
	if f.operator, err = auth.NewAPIToken(ctx, f.st, "ops", store.RoleOperator); err != nil {
		t.Fatal(err)
	}
	if f.viewer, err = auth.NewAPIToken(ctx, f.st, "dash", store.RoleViewer); err != nil {
		t.Fatal(err)
	}
	h := api.New(api.Options{
		Store:         f.st,
		Live:          f.live,
		Logger:        slog.New(slog.NewJSONHandler(f.logs, nil)),
		Now:           func() time.Time { return testNow },
		Ready:         f.readyFn,
		CAFingerprint: "sha256:abcd",
		GRPCAddress:   "qinfra.example:8444",
	})
	f.srv = httptest.NewServer(h)
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fixture) readyFn() error {
	f.readyMu.Lock()
	defer f.readyMu.Unlock()
	return f.ready
}

// response is a finished request.
type response struct {
	status int
	header http.Header
	body   []byte
}

// json decodes the body into v, failing the test on error.
func (r response) json(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
}

// errorCode returns the code of an error body, failing the test when the
// body is not one.
func (r response) errorCode(t *testing.T) string {
	t.Helper()
	var e struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	r.json(t, &e)
	if e.Error.Code == "" || e.Error.Message == "" {
		t.Fatalf("not an error body: %s", r.body)
	}
	return e.Error.Code
}

// do sends a request; body is sent as JSON unless it is a string or
// []byte, sent as is.
func (f *fixture) do(method, path, token string, body any) response {
	f.t.Helper()
	return f.doCT(method, path, token, "application/json", body)
}

func (f *fixture) doCT(method, path, token, contentType string, body any) response {
	f.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			f.t.Fatal(err)
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, f.srv.URL+path, rd)
	if err != nil {
		f.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if rd != nil && contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := f.srv.Client().Do(req)
	if err != nil {
		f.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		f.t.Fatal(err)
	}
	noBody := resp.StatusCode == http.StatusTemporaryRedirect || resp.StatusCode == http.StatusNoContent
	if ct := resp.Header.Get("Content-Type"); !noBody && ct != "application/json" {
		f.t.Errorf("%s %s: Content-Type %q, want application/json", method, path, ct)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

// mustStatus fails the test unless the response has the status.
func (r response) mustStatus(t *testing.T, want int) response {
	t.Helper()
	if r.status != want {
		t.Fatalf("status %d, want %d; body %s", r.status, want, r.body)
	}
	return r
}

// addHost enrolls a host through a fresh enrollment token carrying labels,
// as an agent would, then records its Hello.
func (f *fixture) addHost(id, hostname string, labels map[string]string) {
	f.t.Helper()
	ctx := context.Background()
	tokID, _, hash := auth.GenerateSecret(auth.PrefixEnrollmentToken)
	err := f.st.CreateEnrollmentToken(ctx, &store.EnrollmentToken{
		ID: tokID, Hash: hash, Labels: labels, UsesAllowed: 1,
		ExpiresAt: testNow.Add(time.Hour), CreatedAt: testNow, CreatedBy: "test",
	})
	if err != nil {
		f.t.Fatal(err)
	}
	if err := f.st.EnrollHost(ctx, hash, testNow, &store.Host{ID: id, Hostname: hostname, EnrolledAt: testNow}); err != nil {
		f.t.Fatal(err)
	}
	err = f.st.UpdateHost(ctx, id, func(h *store.Host) error {
		h.AgentVersion = "1.2.3"
		h.LastSeen = testNow.Add(-3 * time.Second)
		h.Facts = &commonv1.OSFacts{
			Hostname: hostname, Os: "linux", Platform: "debian", PlatformFamily: "debian",
			PlatformVersion: "12.5", KernelVersion: "6.1.0-18-amd64", KernelArch: "x86_64",
			PrettyName: "Debian GNU/Linux 12 (bookworm)", BootTime: 1700000000,
		}
		return nil
	})
	if err != nil {
		f.t.Fatal(err)
	}
}

// sampleItems is a small inventory of every kind.
func sampleItems(t testing.TB) []*commonv1.Item {
	t.Helper()
	items := []*commonv1.Item{
		{Kind: inventory.KindOS, Key: "host", Body: &commonv1.Item_Os{Os: &commonv1.OSFacts{Platform: "debian", PrettyName: "Debian GNU/Linux 12 (bookworm)"}}},
		{Kind: inventory.KindPackage, Key: "dpkg:openssl:amd64", Body: &commonv1.Item_Package{Package: &commonv1.Package{
			Manager: "dpkg", Name: "openssl", Version: "3.0.11-1~deb12u2", Arch: "amd64", Status: "installed", InstallTime: 1700000000}}},
		{Kind: inventory.KindPackage, Key: "dpkg:libssl3:amd64", Body: &commonv1.Item_Package{Package: &commonv1.Package{
			Manager: "dpkg", Name: "libssl3", Version: "3.0.11-1~deb12u2", Arch: "amd64", SourceName: "openssl"}}},
		{Kind: inventory.KindPackage, Key: "dpkg:bash:amd64", Body: &commonv1.Item_Package{Package: &commonv1.Package{
			Manager: "dpkg", Name: "bash", Version: "5.2.15-2+b2", Arch: "amd64"}}},
		{Kind: inventory.KindFile, Key: "/etc/ssh/sshd_config", Body: &commonv1.Item_File{File: &commonv1.File{
			Path: "/etc/ssh/sshd_config", Type: "file", Sha256: strings.Repeat("ab", 32), Mode: 0o644, Owner: "root", Group: "root", Size: 3223}}},
		{Kind: inventory.KindUser, Key: "root", Body: &commonv1.Item_User{User: &commonv1.User{Name: "root", Home: "/root", Shell: "/bin/bash", PasswordState: "locked"}}},
		{Kind: inventory.KindGroup, Key: "sudo", Body: &commonv1.Item_Group{Group: &commonv1.Group{Name: "sudo", Gid: 27, Members: []string{"alice"}}}},
		{Kind: inventory.KindService, Key: "ssh.service", Body: &commonv1.Item_Service{Service: &commonv1.Service{
			Manager: "systemd", Name: "ssh.service", UnitFileState: "enabled", ActiveState: "active", SubState: "running"}}},
	}
	for _, it := range items {
		if err := inventory.Seal(it); err != nil {
			t.Fatal(err)
		}
	}
	return items
}

// putInventory stores a full inventory for a host, as the ingest layer
// would on a stream.
func putInventory(t testing.TB, st store.Store, hostID string, items []*commonv1.Item) {
	t.Helper()
	out, err := st.ApplyInventory(context.Background(), &store.InventoryUpdate{
		HostID: hostID, SpoolID: "spool-1", Seq: 1, Full: true,
		Upserts: items, SetHash: inventory.SetOf(items).Hash(),
		CollectedAt: testNow, ReceivedAt: testNow,
	})
	if err != nil || out != store.Applied {
		t.Fatalf("apply inventory: %v, %v", out, err)
	}
}

// auditEntries returns the whole audit log and checks its chain.
func (f *fixture) auditEntries() []*store.AuditEntry {
	f.t.Helper()
	entries, err := f.st.ListAudit(context.Background(), 0, 0)
	if err != nil {
		f.t.Fatal(err)
	}
	if err := store.VerifyAuditChain(nil, entries); err != nil {
		f.t.Fatalf("audit chain: %v", err)
	}
	return entries
}
