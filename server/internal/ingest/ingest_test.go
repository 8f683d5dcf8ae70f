package ingest_test

import (
	"context"
	"crypto/tls"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/quantumlayer/qinfra/pkg/inventory"
	"github.com/quantumlayer/qinfra/pkg/pki"
	"github.com/quantumlayer/qinfra/server/internal/ingest"
	"github.com/quantumlayer/qinfra/server/internal/store"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	agentv1 "github.com/quantumlayer/qinfra/proto/gen/qinfra/agent/v1"
	commonv1 "github.com/quantumlayer/qinfra/proto/gen/qinfra/common/v1"
)

func itemKeys(t *testing.T, st store.Store, hostID string) map[string]string {
	t.Helper()
	items, err := st.ListItems(context.Background(), hostID, "")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, it := range items {
		v := it.GetPackage().GetVersion()
		if v == "" {
			v = "-"
		}
		out[it.GetKind()+"/"+it.GetKey()] = v
	}
	return out
}

func TestStreamFullDeltaDuplicateAndResync(t *testing.T) {
	h := newHarness(t, ingest.Options{})
	a := h.mustEnroll()
	s, w := h.connect(a, "spool-1")
	if !w.GetNeedFull() || w.GetLastAppliedSeq() != 0 || w.GetHostId() != a.hostID {
		t.Fatalf("first welcome: %v", w)
	}
	if !h.svc.Connected(a.hostID) {
		t.Fatal("host should be connected")
	}

	openssl1, bash, root := pkgItem(t, "openssl", "3.0.1-1"), pkgItem(t, "bash", "5.2-1"), userItem(t, "root", 0)
	s.sendInventory(full(1, openssl1, bash, root))
	s.expectAck(1)

	// Delta 2: openssl upgraded, bash removed.
	openssl2 := pkgItem(t, "openssl", "3.0.2-1")
	after := inventory.SetOf([]*commonv1.Item{openssl2, root})
	delta2 := &agentv1.Inventory{Seq: 2, Items: []*commonv1.Item{openssl2},
		Removed: []*commonv1.ItemRef{{Kind: "package", Key: "dpkg:bash:amd64"}}, SetHash: after.Hash()}
	s.sendInventory(delta2)
	s.expectAck(2)
	want := map[string]string{"package/dpkg:openssl:amd64": "3.0.2-1", "user/root": "-"}
	if got := itemKeys(t, h.st, a.hostID); !equalMaps(got, want) {
		t.Fatalf("after delta: %v, want %v", got, want)
	}

	// The same delta again (a resend after a lost ack) is acked, not
	// applied twice: a second removal of bash would otherwise break the
	// set hash.
	s.sendInventory(delta2)
	s.expectAck(2)
	st, err := h.st.GetStreamState(context.Background(), a.hostID)
	if err != nil {
		t.Fatal(err)
	}
	if st.LastSeq != 2 || st.NeedsFull || st.Items != 2 {
		t.Fatalf("after duplicate: %+v", st)
	}

	// Delta 4 was computed on top of a delta 3 the server never got: the set
	// hash does not match, so nothing changes and a full resync is asked.
	curl := pkgItem(t, "curl", "8.0-1")
	wget := pkgItem(t, "wget", "1.21-1")
	agentSet := inventory.SetOf([]*commonv1.Item{openssl2, root, curl, wget})
	s.sendInventory(&agentv1.Inventory{Seq: 4, Items: []*commonv1.Item{wget}, SetHash: agentSet.Hash()})
	s.expectAck(4)
	if m := s.recv(); m.GetResync() == nil {
		t.Fatalf("want ResyncRequest after a lost delta, got %v", m)
	}
	if got := itemKeys(t, h.st, a.hostID); !equalMaps(got, want) {
		t.Fatalf("a mismatching delta changed the store: %v", got)
	}
	// Further deltas are acked and ignored until the full arrives, without a
	// second resync request.
	s.sendInventory(&agentv1.Inventory{Seq: 5, Items: []*commonv1.Item{curl}, SetHash: agentSet.Hash()})
	s.expectAck(5)
	s.sendInventory(full(6, openssl2, root, curl, wget))
	s.expectAck(6)
	want = map[string]string{"package/dpkg:openssl:amd64": "3.0.2-1", "package/dpkg:curl:amd64": "8.0-1",
		"package/dpkg:wget:amd64": "1.21-1", "user/root": "-"}
	if got := itemKeys(t, h.st, a.hostID); !equalMaps(got, want) {
		t.Fatalf("after resync: %v, want %v", got, want)
	}

	// Reconnecting with the same spool: the server says what it applied.
	s.cancel()
	waitFor(t, func() bool { return !h.svc.Connected(a.hostID) })
	_, w = h.connect(a, "spool-1")
	if w.GetLastAppliedSeq() != 6 || w.GetNeedFull() {
		t.Fatalf("reconnect welcome: %v", w)
	}
	// A new spool (agent reinstalled) starts a new sequence and needs a full.
	_, w = h.connect(a, "spool-2")
	if w.GetLastAppliedSeq() != 0 || !w.GetNeedFull() {
		t.Fatalf("new spool welcome: %v", w)
	}
}

func TestMalformedInventoryIsAckedAndResynced(t *testing.T) {
	h := newHarness(t, ingest.Options{})
	a := h.mustEnroll()
	s, _ := h.connect(a, "sp")
	bad := pkgItem(t, "x", "1")
	bad.Hash = []byte("short")
	s.sendInventory(&agentv1.Inventory{Seq: 1, Full: true, Items: []*commonv1.Item{bad}, SetHash: make([]byte, 32)})
	s.expectAck(1)
	m := s.recv()
	if m.GetResync() == nil || !strings.Contains(m.GetResync().GetReason(), "hash") {
		t.Fatalf("want resync naming the problem, got %v", m)
	}
	// Wrong body for the kind, duplicate keys: same treatment.
	wrong := userItem(t, "bob", 1000)
	wrong.Kind = inventory.KindPackage
	s.sendInventory(&agentv1.Inventory{Seq: 2, Full: true, Items: []*commonv1.Item{wrong}, SetHash: make([]byte, 32)})
	s.expectAck(2)
	s.recv()
	// The stream still works.
	good := pkgItem(t, "x", "1")
	s.sendInventory(full(3, good))
	s.expectAck(3)
	if got := itemKeys(t, h.st, a.hostID); len(got) != 1 {
		t.Fatalf("items: %v", got)
	}
}

func TestRefusals(t *testing.T) {
	h := newHarness(t, ingest.Options{})

	t.Run("no client certificate", func(t *testing.T) {
		s, err := h.open(nil)
		if err == nil {
			_, err = s.hello(&agentv1.Hello{})
		}
		expectCode(t, err, codes.Unauthenticated)
	})

	t.Run("certificate from another CA", func(t *testing.T) {
		other, _ := pki.NewCA("rogue CA", time.Hour)
		cert := hostCert(t, other, pki.NewHostID(), time.Now(), time.Hour)
		_, err := connectErr(h, &cert)
		expectHandshakeFailure(t, err)
	})

	t.Run("expired certificate", func(t *testing.T) {
		a := h.mustEnroll()
		cert := hostCert(t, h.ca, a.hostID, time.Now().Add(-3*time.Hour), time.Hour)
		_, err := connectErr(h, &cert)
		expectHandshakeFailure(t, err)
	})

	t.Run("certificate of a host never enrolled", func(t *testing.T) {
		cert := hostCert(t, h.ca, pki.NewHostID(), time.Now(), time.Hour)
		_, err := connectErr(h, &cert)
		expectCode(t, err, codes.PermissionDenied)
	})

	t.Run("revoked host", func(t *testing.T) {
		a := h.mustEnroll()
		s, _ := h.connect(a, "sp")
		revoke(t, h, a.hostID)
		// The live stream is closed at once...
		_, err := s.Recv()
		expectCode(t, err, codes.PermissionDenied)
		// ...and reconnects are refused.
		_, err = connectErr(h, &a.cert)
		expectCode(t, err, codes.PermissionDenied)
	})

	t.Run("hello claiming another host", func(t *testing.T) {
		a, b := h.mustEnroll(), h.mustEnroll()
		s, err := h.open(&a.cert)
		if err != nil {
			t.Fatal(err)
		}
		_, err = s.hello(&agentv1.Hello{HostId: b.hostID, SpoolId: "x"})
		expectCode(t, err, codes.PermissionDenied)
		// Nothing was recorded for b.
		st, _ := h.st.GetStreamState(context.Background(), b.hostID)
		if st.SpoolID != "" {
			t.Fatalf("b's stream state touched: %+v", st)
		}
	})

	t.Run("first message not hello", func(t *testing.T) {
		a := h.mustEnroll()
		s, err := h.open(&a.cert)
		if err != nil {
			t.Fatal(err)
		}
		s.sendInventory(full(1))
		_, err = s.Recv()
		expectCode(t, err, codes.InvalidArgument)
	})

	t.Run("unknown enrollment token", func(t *testing.T) {
		_, err := h.enroll("qet_nope_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
		expectCode(t, err, codes.PermissionDenied)
	})

	t.Run("used-up enrollment token", func(t *testing.T) {
		tok := h.token(2, time.Hour, nil)
		for i := 0; i < 2; i++ {
			if _, err := h.enroll(tok); err != nil {
				t.Fatalf("use %d: %v", i+1, err)
			}
		}
		_, err := h.enroll(tok)
		expectCode(t, err, codes.PermissionDenied)
	})

	t.Run("expired enrollment token", func(t *testing.T) {
		_, err := h.enroll(h.token(5, -time.Minute, nil))
		expectCode(t, err, codes.PermissionDenied)
	})

	t.Run("garbage CSR does not consume the token", func(t *testing.T) {
		tok := h.token(1, time.Hour, nil)
		_, err := h.enrollClient().Enroll(context.Background(), &agentv1.EnrollRequest{Token: tok, Csr: []byte("not a csr")})
		expectCode(t, err, codes.InvalidArgument)
		if _, err := h.enroll(tok); err != nil {
			t.Fatalf("token should still have its use: %v", err)
		}
	})

	t.Run("enrollment pinned to another CA", func(t *testing.T) {
		other, _ := pki.NewCA("other", time.Hour)
		pin, _ := pki.ParseFingerprint(other.Fingerprint())
		_, err := dialPinned(h.addr, pin)
		if err == nil || !strings.Contains(err.Error(), "fingerprint") {
			t.Fatalf("want a fingerprint mismatch, got %v", err)
		}
	})
}

func TestEnrollmentLabelsAndCertificate(t *testing.T) {
	h := newHarness(t, ingest.Options{CertTTL: 2 * time.Hour})
	a, err := h.enroll(h.token(1, time.Hour, map[string]string{"env": "prod"}))
	if err != nil {
		t.Fatal(err)
	}
	host, err := h.st.GetHost(context.Background(), a.hostID)
	if err != nil {
		t.Fatal(err)
	}
	if host.Labels["env"] != "prod" || host.Hostname != "test-host" {
		t.Fatalf("host: %+v", host)
	}
	leaf := a.cert.Leaf
	if leaf == nil {
		t.Fatal("no leaf")
	}
	id, err := pki.HostIDFromVerifiedCert(leaf)
	if err != nil || id != a.hostID {
		t.Fatalf("cert identity %q, %v", id, err)
	}
	if life := leaf.NotAfter.Sub(leaf.NotBefore); life > 2*time.Hour+2*time.Minute || life < 2*time.Hour {
		t.Fatalf("certificate lifetime %s, want about 2h", life)
	}
	entries, err := h.st.ListAudit(context.Background(), 0, 100)
	if err != nil || len(entries) == 0 || entries[len(entries)-1].Action != "host.enroll" {
		t.Fatalf("enrollment not audited: %v %v", entries, err)
	}
}

func TestRenewalOverTheStream(t *testing.T) {
	h := newHarness(t, ingest.Options{})
	a := h.mustEnroll()
	s, _ := h.connect(a, "sp")
	_, csr, err := pki.NewKeyAndCSR()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Send(&agentv1.ConnectRequest{Msg: &agentv1.ConnectRequest_Renew{Renew: &agentv1.RenewRequest{Csr: csr}}}); err != nil {
		t.Fatal(err)
	}
	m := s.recv()
	r := m.GetRenew()
	if r == nil || r.GetError() != "" {
		t.Fatalf("renewal: %v", m)
	}
	leaf, err := pki.ParseCertPEM(pki.CertPEM(r.GetCertificate()))
	if err != nil {
		t.Fatal(err)
	}
	if id, _ := pki.HostIDFromVerifiedCert(leaf); id != a.hostID {
		t.Fatalf("renewed for %q, want %q", id, a.hostID)
	}
	host, _ := h.st.GetHost(context.Background(), a.hostID)
	if host.CertSerial != leaf.SerialNumber.Text(16) {
		t.Fatalf("store not updated with the new serial")
	}
	// A garbage CSR gets an error answer, the stream stays up.
	s.Send(&agentv1.ConnectRequest{Msg: &agentv1.ConnectRequest_Renew{Renew: &agentv1.RenewRequest{Csr: []byte{1, 2, 3}}}})
	if m := s.recv(); m.GetRenew().GetError() == "" {
		t.Fatalf("want a renewal error, got %v", m)
	}
	s.sendInventory(full(1, pkgItem(t, "a", "1")))
	s.expectAck(1)
}

func TestOversizedMessageRefused(t *testing.T) {
	h := newHarness(t, ingest.Options{MaxMessageSize: 1 << 20})
	a := h.mustEnroll()
	s, _ := h.connect(a, "sp")
	var items []*commonv1.Item
	for i := 0; i < 20000; i++ {
		items = append(items, pkgItem(t, strings.Repeat("p", 40)+string(rune('a'+i%26))+itoa(i), "1.0-1"))
	}
	s.sendInventory(full(1, items...))
	_, err := s.Recv()
	expectCode(t, err, codes.ResourceExhausted)
	// The server is fine and the agent can go on with smaller messages.
	s2, _ := h.connect(a, "sp")
	s2.sendInventory(full(1, items[:10]...))
	s2.expectAck(1)
}

func TestNewerStreamReplacesOlder(t *testing.T) {
	h := newHarness(t, ingest.Options{})
	a := h.mustEnroll()
	s1, _ := h.connect(a, "sp")
	_, _ = h.connect(a, "sp")
	_, err := s1.Recv()
	expectCode(t, err, codes.Aborted)
	if !h.svc.Connected(a.hostID) {
		t.Fatal("the newer stream should stay connected")
	}
}

func TestFloodWithoutCertificates(t *testing.T) {
	h := newHarness(t, ingest.Options{})
	// Idle TCP connections and TLS clients without certificates must not
	// keep an enrolled agent out.
	var conns []net.Conn
	for i := 0; i < 200; i++ {
		c, err := net.Dial("tcp", h.addr)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	var wg sync.WaitGroup
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := h.open(nil)
			if err == nil {
				_, err = s.hello(&agentv1.Hello{})
			}
			if status.Code(err) != codes.Unauthenticated {
				t.Errorf("want Unauthenticated, got %v", err)
			}
		}()
	}
	wg.Wait()
	a := h.mustEnroll()
	s, _ := h.connect(a, "sp")
	s.sendInventory(full(1, pkgItem(t, "a", "1")))
	s.expectAck(1)
}

// helpers

func revoke(t *testing.T, h *harness, id string) {
	t.Helper()
	err := h.st.UpdateHost(context.Background(), id, func(host *store.Host) error {
		host.Revoked, host.RevokedAt = true, time.Now()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	h.svc.Disconnect(id, "revoked")
}

func hostCert(t *testing.T, ca *pki.CA, hostID string, now time.Time, ttl time.Duration) tls.Certificate {
	t.Helper()
	keyPEM, csr, err := pki.NewKeyAndCSR()
	if err != nil {
		t.Fatal(err)
	}
	c, err := ca.SignHostCSR(csr, hostID, ttl, now)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(pki.CertPEM(c.Raw), keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

func connectErr(h *harness, cert *tls.Certificate) (*agentv1.Welcome, error) {
	s, err := h.open(cert)
	if err != nil {
		return nil, err
	}
	return s.hello(&agentv1.Hello{SpoolId: "x"})
}

func dialPinned(addr string, pin []byte) (*tls.ConnectionState, error) {
	c, err := tls.Dial("tcp", addr, pki.PinnedTLSConfig(pin, "localhost"))
	if err != nil {
		return nil, err
	}
	defer c.Close()
	st := c.ConnectionState()
	return &st, nil
}

// expectHandshakeFailure checks that the TLS layer itself refused the
// certificate, before any RPC handler ran: a handler would have answered
// PermissionDenied or Unauthenticated. With TLS 1.3 the client learns of
// the refusal on its first read or write, as the server's alert ("bad
// certificate") or, when the server already closed, a broken pipe.
func expectHandshakeFailure(t *testing.T, err error) {
	t.Helper()
	if err == nil || status.Code(err) != codes.Unavailable {
		t.Fatalf("want the TLS handshake to refuse the certificate (Unavailable), got %v", err)
	}
}

func expectCode(t *testing.T, err error, want codes.Code) {
	t.Helper()
	if err == nil {
		t.Fatalf("want %s, got no error", want)
	}
	if got := status.Code(err); got != want {
		t.Fatalf("want %s, got %s: %v", want, got, err)
	}
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func itoa(i int) string {
	if i == 0 {
		return "0"
	}
	var b []byte
	for ; i > 0; i /= 10 {
		b = append([]byte{byte('0' + i%10)}, b...)
	}
	return string(b)
}
