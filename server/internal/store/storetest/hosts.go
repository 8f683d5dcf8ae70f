package storetest

import (
	"errors"
	"fmt"
	"maps"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/quantumlayer/qinfra/server/internal/store"
)

var hostTests = []test{
	{"EnrollHost/ValidToken", testEnrollValidToken},
	{"EnrollHost/UnknownToken", testEnrollUnknownToken},
	{"EnrollHost/ExpiredToken", testEnrollExpiredToken},
	{"EnrollHost/UsedUpToken", testEnrollUsedUpToken},
	{"EnrollHost/ConcurrentUses", testEnrollConcurrentUses},
	{"EnrollHost/DuplicateHostID", testEnrollDuplicateHostID},
	{"EnrollHost/EmptyHostID", testEnrollEmptyHostID},
	{"GetHost/Unknown", testGetHostUnknown},
	{"UpdateHost/RoundTrip", testUpdateHostRoundTrip},
	{"UpdateHost/FnErrorAborts", testUpdateHostFnErrorAborts},
	{"UpdateHost/Unknown", testUpdateHostUnknown},
	{"ListHosts/Empty", testListHostsEmpty},
	{"ListHosts/OrderedByID", testListHostsOrdered},
}

// sameHost compares hosts field by field: times by instant, facts as protos.
func sameHost(t *testing.T, got, want *store.Host) {
	t.Helper()
	var diffs []string
	check := func(field string, ok bool, g, w any) {
		if !ok {
			diffs = append(diffs, fmt.Sprintf("%s = %v, want %v", field, g, w))
		}
	}
	check("ID", got.ID == want.ID, got.ID, want.ID)
	check("Hostname", got.Hostname == want.Hostname, got.Hostname, want.Hostname)
	check("Labels", maps.Equal(got.Labels, want.Labels), got.Labels, want.Labels)
	check("EnrolledAt", got.EnrolledAt.Equal(want.EnrolledAt), got.EnrolledAt, want.EnrolledAt)
	check("LastSeen", got.LastSeen.Equal(want.LastSeen), got.LastSeen, want.LastSeen)
	check("AgentVersion", got.AgentVersion == want.AgentVersion, got.AgentVersion, want.AgentVersion)
	check("Facts", proto.Equal(got.Facts, want.Facts) && (got.Facts == nil) == (want.Facts == nil), got.Facts, want.Facts)
	check("CertSerial", got.CertSerial == want.CertSerial, got.CertSerial, want.CertSerial)
	check("CertNotAfter", got.CertNotAfter.Equal(want.CertNotAfter), got.CertNotAfter, want.CertNotAfter)
	check("Revoked", got.Revoked == want.Revoked, got.Revoked, want.Revoked)
	check("RevokedAt", got.RevokedAt.Equal(want.RevokedAt), got.RevokedAt, want.RevokedAt)
	if len(diffs) > 0 {
		t.Fatalf("host %s:\n  %s", want.ID, strings.Join(diffs, "\n  "))
	}
}

func getHost(t *testing.T, s store.Store, id string) *store.Host {
	t.Helper()
	h, err := s.GetHost(t.Context(), id)
	if err != nil {
		t.Fatalf("GetHost(%s): %v", id, err)
	}
	return h
}

// tokenUsed returns how many times the enrollment token was used.
func tokenUsed(t *testing.T, s store.Store, id string) int {
	t.Helper()
	toks, err := s.ListEnrollmentTokens(t.Context())
	if err != nil {
		t.Fatalf("ListEnrollmentTokens: %v", err)
	}
	for _, tok := range toks {
		if tok.ID == id {
			return tok.Used
		}
	}
	t.Fatalf("enrollment token %s not listed", id)
	return 0
}

func createEnrollmentToken(t *testing.T, s store.Store, tok *store.EnrollmentToken) {
	t.Helper()
	if err := s.CreateEnrollmentToken(t.Context(), tok); err != nil {
		t.Fatalf("CreateEnrollmentToken(%s): %v", tok.ID, err)
	}
}

// wantNoHost checks that the host does not exist.
func wantNoHost(t *testing.T, s store.Store, id string) {
	t.Helper()
	if _, err := s.GetHost(t.Context(), id); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("GetHost(%s) error = %v, want ErrNotFound", id, err)
	}
}

// wantTokenInvalid checks err wraps ErrTokenInvalid and names the reason.
func wantTokenInvalid(t *testing.T, err error, reason string) {
	t.Helper()
	if !errors.Is(err, store.ErrTokenInvalid) {
		t.Fatalf("EnrollHost error = %v, want ErrTokenInvalid", err)
	}
	if !strings.Contains(err.Error(), reason) {
		t.Fatalf("EnrollHost error %q does not say %q", err, reason)
	}
}

func testEnrollValidToken(t *testing.T, s store.Store) {
	tok := newEnrollmentToken("tok1", 2, map[string]string{"env": "prod", "role": "web"})
	createEnrollmentToken(t, s, tok)
	h := &store.Host{
		ID: "host-1", Hostname: "web-1.example.com",
		// Token labels are copied over the host's own.
		Labels:       map[string]string{"role": "db", "rack": "r7"},
		EnrolledAt:   t0,
		LastSeen:     t0,
		CertSerial:   "0a1b2c",
		CertNotAfter: t0.Add(72 * time.Hour),
	}
	if err := s.EnrollHost(t.Context(), tok.Hash, t0, h); err != nil {
		t.Fatalf("EnrollHost: %v", err)
	}
	want := *h
	want.Labels = map[string]string{"env": "prod", "role": "web", "rack": "r7"}
	sameHost(t, getHost(t, s, "host-1"), &want)
	if used := tokenUsed(t, s, "tok1"); used != 1 {
		t.Fatalf("token Used = %d after one enrollment, want 1", used)
	}

	// A host without labels gets exactly the token's.
	h2 := &store.Host{ID: "host-2", Hostname: "web-2.example.com", EnrolledAt: t0}
	if err := s.EnrollHost(t.Context(), tok.Hash, t0.Add(time.Hour), h2); err != nil {
		t.Fatalf("EnrollHost(host-2): %v", err)
	}
	if got := getHost(t, s, "host-2").Labels; !maps.Equal(got, tok.Labels) {
		t.Fatalf("host-2 labels = %v, want the token's %v", got, tok.Labels)
	}
	if used := tokenUsed(t, s, "tok1"); used != 2 {
		t.Fatalf("token Used = %d after two enrollments, want 2", used)
	}
}

func testEnrollUnknownToken(t *testing.T, s store.Store) {
	createEnrollmentToken(t, s, newEnrollmentToken("tok1", 1, nil))
	err := s.EnrollHost(t.Context(), secretHash("not a token"), t0, &store.Host{ID: "host-1", EnrolledAt: t0})
	wantTokenInvalid(t, err, "unknown")
	wantNoHost(t, s, "host-1")
	if used := tokenUsed(t, s, "tok1"); used != 0 {
		t.Fatalf("other token's Used = %d, want 0", used)
	}
}

func testEnrollExpiredToken(t *testing.T, s store.Store) {
	tok := newEnrollmentToken("tok1", 5, nil)
	createEnrollmentToken(t, s, tok)
	// Valid until just before ExpiresAt, expired from ExpiresAt on.
	if err := s.EnrollHost(t.Context(), tok.Hash, tok.ExpiresAt.Add(-time.Microsecond), &store.Host{ID: "host-1"}); err != nil {
		t.Fatalf("EnrollHost just before expiry: %v", err)
	}
	for i, now := range []time.Time{tok.ExpiresAt, tok.ExpiresAt.Add(time.Hour)} {
		id := fmt.Sprintf("late-%d", i)
		err := s.EnrollHost(t.Context(), tok.Hash, now, &store.Host{ID: id})
		wantTokenInvalid(t, err, "expired")
		wantNoHost(t, s, id)
	}
	if used := tokenUsed(t, s, "tok1"); used != 1 {
		t.Fatalf("token Used = %d, want 1", used)
	}
}

func testEnrollUsedUpToken(t *testing.T, s store.Store) {
	tok := newEnrollmentToken("tok1", 1, nil)
	createEnrollmentToken(t, s, tok)
	if err := s.EnrollHost(t.Context(), tok.Hash, t0, &store.Host{ID: "host-1"}); err != nil {
		t.Fatalf("first EnrollHost: %v", err)
	}
	err := s.EnrollHost(t.Context(), tok.Hash, t0, &store.Host{ID: "host-2"})
	wantTokenInvalid(t, err, "used up")
	wantNoHost(t, s, "host-2")
	if used := tokenUsed(t, s, "tok1"); used != 1 {
		t.Fatalf("token Used = %d, want 1", used)
	}
}

func testEnrollConcurrentUses(t *testing.T, s store.Store) {
	const uses, racers = 3, 10
	tok := newEnrollmentToken("tok1", uses, map[string]string{"env": "prod"})
	createEnrollmentToken(t, s, tok)
	errs := make([]error, racers)
	var wg sync.WaitGroup
	for i := range racers {
		wg.Go(func() {
			errs[i] = s.EnrollHost(t.Context(), tok.Hash, t0, &store.Host{ID: fmt.Sprintf("host-%02d", i), EnrolledAt: t0})
		})
	}
	wg.Wait()
	ok := 0
	for i, err := range errs {
		switch {
		case err == nil:
			ok++
		case errors.Is(err, store.ErrTokenInvalid):
			wantTokenInvalid(t, err, "used up")
		default:
			t.Fatalf("racer %d: unexpected error %v", i, err)
		}
	}
	if ok != uses {
		t.Fatalf("%d of %d racers enrolled with a %d-use token, want exactly %d", ok, racers, uses, uses)
	}
	if used := tokenUsed(t, s, "tok1"); used != uses {
		t.Fatalf("token Used = %d, want %d", used, uses)
	}
	hosts, err := s.ListHosts(t.Context())
	if err != nil {
		t.Fatalf("ListHosts: %v", err)
	}
	if len(hosts) != uses {
		t.Fatalf("%d hosts exist, want %d", len(hosts), uses)
	}
}

func testEnrollDuplicateHostID(t *testing.T, s store.Store) {
	tok := newEnrollmentToken("tok1", 3, nil)
	createEnrollmentToken(t, s, tok)
	first := &store.Host{ID: "host-1", Hostname: "first", EnrolledAt: t0}
	if err := s.EnrollHost(t.Context(), tok.Hash, t0, first); err != nil {
		t.Fatalf("EnrollHost: %v", err)
	}
	err := s.EnrollHost(t.Context(), tok.Hash, t0, &store.Host{ID: "host-1", Hostname: "second"})
	if !errors.Is(err, store.ErrConflict) {
		t.Fatalf("EnrollHost of an existing ID: error = %v, want ErrConflict", err)
	}
	if got := getHost(t, s, "host-1"); got.Hostname != "first" {
		t.Fatalf("existing host overwritten: hostname %q", got.Hostname)
	}
	if used := tokenUsed(t, s, "tok1"); used != 1 {
		t.Fatalf("token Used = %d after a refused enrollment, want 1 (the refusal must not consume a use)", used)
	}
}

func testEnrollEmptyHostID(t *testing.T, s store.Store) {
	tok := newEnrollmentToken("tok1", 1, nil)
	createEnrollmentToken(t, s, tok)
	if err := s.EnrollHost(t.Context(), tok.Hash, t0, &store.Host{}); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("EnrollHost with an empty ID: error = %v, want ErrInvalid", err)
	}
	if used := tokenUsed(t, s, "tok1"); used != 0 {
		t.Fatalf("token Used = %d, want 0", used)
	}
}

func testGetHostUnknown(t *testing.T, s store.Store) {
	wantNoHost(t, s, "nope")
	enrollHosts(t, s, "host-1")
	wantNoHost(t, s, "host-")
	wantNoHost(t, s, "host-10")
}

func testUpdateHostRoundTrip(t *testing.T, s store.Store) {
	enrollHosts(t, s, "host-1")
	before := getHost(t, s, "host-1")
	facts := testFacts("Debian GNU/Linux 12 (bookworm)")
	var want store.Host
	err := s.UpdateHost(t.Context(), "host-1", func(h *store.Host) error {
		sameHost(t, h, before) // fn sees the stored host
		h.Hostname = "renamed.example.com"
		h.Labels = map[string]string{"env": "prod"}
		h.LastSeen = t0.Add(5 * time.Minute)
		h.AgentVersion = "1.2.3"
		h.Facts = facts
		h.CertSerial = "ff00"
		h.CertNotAfter = t0.Add(48 * time.Hour)
		h.Revoked = true
		h.RevokedAt = t0.Add(10 * time.Minute)
		want = *h
		return nil
	})
	if err != nil {
		t.Fatalf("UpdateHost: %v", err)
	}
	sameHost(t, getHost(t, s, "host-1"), &want)

	// Facts can be cleared again.
	if err := s.UpdateHost(t.Context(), "host-1", func(h *store.Host) error {
		h.Facts = nil
		return nil
	}); err != nil {
		t.Fatalf("UpdateHost: %v", err)
	}
	want.Facts = nil
	sameHost(t, getHost(t, s, "host-1"), &want)
}

func testUpdateHostFnErrorAborts(t *testing.T, s store.Store) {
	enrollHosts(t, s, "host-1")
	before := getHost(t, s, "host-1")
	errStop := errors.New("stop")
	err := s.UpdateHost(t.Context(), "host-1", func(h *store.Host) error {
		h.Hostname = "changed"
		h.Revoked = true
		return errStop
	})
	if !errors.Is(err, errStop) {
		t.Fatalf("UpdateHost error = %v, want fn's error", err)
	}
	sameHost(t, getHost(t, s, "host-1"), before)
}

func testUpdateHostUnknown(t *testing.T, s store.Store) {
	called := false
	err := s.UpdateHost(t.Context(), "nope", func(*store.Host) error {
		called = true
		return nil
	})
	if !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("UpdateHost(unknown) error = %v, want ErrNotFound", err)
	}
	if called {
		t.Fatal("UpdateHost called fn for an unknown host")
	}
	wantNoHost(t, s, "nope")
}

func testListHostsEmpty(t *testing.T, s store.Store) {
	hosts, err := s.ListHosts(t.Context())
	if err != nil {
		t.Fatalf("ListHosts: %v", err)
	}
	if len(hosts) != 0 {
		t.Fatalf("ListHosts on an empty store: %d hosts", len(hosts))
	}
}

func testListHostsOrdered(t *testing.T, s store.Store) {
	ids := []string{"host-c", "host-a", "host-B", "host-b", "host-a1"}
	enrollHosts(t, s, ids...)
	hosts, err := s.ListHosts(t.Context())
	if err != nil {
		t.Fatalf("ListHosts: %v", err)
	}
	var got []string
	for _, h := range hosts {
		got = append(got, h.ID)
	}
	want := []string{"host-B", "host-a", "host-a1", "host-b", "host-c"} // byte order
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("ListHosts order = %v, want %v", got, want)
	}
	for _, h := range hosts {
		sameHost(t, h, getHost(t, s, h.ID))
	}
}
