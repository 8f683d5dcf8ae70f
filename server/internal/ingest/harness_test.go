package ingest_test

import (
	"context"
	"crypto/tls"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/quantumlayer/qinfra/pkg/inventory"
	"github.com/quantumlayer/qinfra/pkg/pki"
	"github.com/quantumlayer/qinfra/server/internal/auth"
	"github.com/quantumlayer/qinfra/server/internal/ingest"
	"github.com/quantumlayer/qinfra/server/internal/store"
	"github.com/quantumlayer/qinfra/server/internal/store/bboltstore"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	agentv1 "github.com/quantumlayer/qinfra/proto/gen/qinfra/agent/v1"
	commonv1 "github.com/quantumlayer/qinfra/proto/gen/qinfra/common/v1"
)

// harness is a real server: bbolt store on disk, CA, mTLS gRPC on loopback.
type harness struct {
	t    *testing.T
	st   store.Store
	ca   *pki.CA
	svc  *ingest.Service
	addr string
}

func newHarness(t *testing.T, opts ingest.Options) *harness {
	t.Helper()
	st, err := bboltstore.Open(filepath.Join(t.TempDir(), "qinfra.db"), bboltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ca, err := pki.NewCA("test CA", 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := ca.IssueServerCert([]string{"localhost"}, []net.IP{net.IPv4(127, 0, 0, 1)}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	serverCert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	opts.Store, opts.CA = st, ca
	svc := ingest.New(opts)
	srv := ingest.NewGRPCServer(svc, serverCert)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
	return &harness{t: t, st: st, ca: ca, svc: svc, addr: ln.Addr().String()}
}

// token creates an enrollment token in the store and returns its secret.
func (h *harness) token(uses int, ttl time.Duration, labels map[string]string) string {
	h.t.Helper()
	id, secret, hash := auth.GenerateSecret("qet")
	err := h.st.CreateEnrollmentToken(context.Background(), &store.EnrollmentToken{
		ID: id, Hash: hash, UsesAllowed: uses, Labels: labels,
		ExpiresAt: time.Now().Add(ttl), CreatedAt: time.Now(),
	})
	if err != nil {
		h.t.Fatal(err)
	}
	return secret
}

// enrollClient dials with only the pinned CA, as an agent does before it
// has a certificate.
func (h *harness) enrollClient() agentv1.AgentServiceClient {
	h.t.Helper()
	pin, err := pki.ParseFingerprint(h.ca.Fingerprint())
	if err != nil {
		h.t.Fatal(err)
	}
	cc, err := grpc.NewClient(h.addr, grpc.WithTransportCredentials(credentials.NewTLS(pki.PinnedTLSConfig(pin, "localhost"))))
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { cc.Close() })
	return agentv1.NewAgentServiceClient(cc)
}

type agent struct {
	hostID string
	cert   tls.Certificate
}

// enroll runs a real enrollment and returns the agent's credentials.
func (h *harness) enroll(secret string) (*agent, error) {
	keyPEM, csr, err := pki.NewKeyAndCSR()
	if err != nil {
		h.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := h.enrollClient().Enroll(ctx, &agentv1.EnrollRequest{Token: secret, Csr: csr, Hostname: "test-host"})
	if err != nil {
		return nil, err
	}
	cert, err := tls.X509KeyPair(pki.CertPEM(resp.GetCertificate()), keyPEM)
	if err != nil {
		h.t.Fatal(err)
	}
	return &agent{hostID: resp.GetHostId(), cert: cert}, nil
}

func (h *harness) mustEnroll() *agent {
	h.t.Helper()
	a, err := h.enroll(h.token(1, time.Hour, nil))
	if err != nil {
		h.t.Fatal(err)
	}
	return a
}

// client dials with the given client certificate (nil for none).
func (h *harness) client(cert *tls.Certificate) agentv1.AgentServiceClient {
	h.t.Helper()
	cfg := pki.AgentTLSConfig(cert, h.ca.Cert, "localhost")
	cc, err := grpc.NewClient(h.addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)),
		grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(64<<20)))
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { cc.Close() })
	return agentv1.NewAgentServiceClient(cc)
}

type stream struct {
	t *testing.T
	agentv1.AgentService_ConnectClient
	cancel context.CancelFunc
}

// connect opens a stream, says Hello and returns the Welcome.
func (h *harness) connect(a *agent, spoolID string) (*stream, *agentv1.Welcome) {
	h.t.Helper()
	s, err := h.open(&a.cert)
	if err != nil {
		h.t.Fatal(err)
	}
	w, err := s.hello(&agentv1.Hello{HostId: a.hostID, SpoolId: spoolID, AgentVersion: "test"})
	if err != nil {
		h.t.Fatal(err)
	}
	return s, w
}

func (h *harness) open(cert *tls.Certificate) (*stream, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	cs, err := h.client(cert).Connect(ctx)
	if err != nil {
		cancel()
		return nil, err
	}
	s := &stream{t: h.t, AgentService_ConnectClient: cs, cancel: cancel}
	h.t.Cleanup(cancel)
	return s, nil
}

func (s *stream) hello(hello *agentv1.Hello) (*agentv1.Welcome, error) {
	// A stream the server already ended fails Send with io.EOF; the
	// server's status is what Recv then returns.
	_ = s.Send(&agentv1.ConnectRequest{Msg: &agentv1.ConnectRequest_Hello{Hello: hello}})
	m, err := s.Recv()
	if err != nil {
		return nil, err
	}
	return m.GetWelcome(), nil
}

func (s *stream) sendInventory(inv *agentv1.Inventory) {
	s.t.Helper()
	if err := s.Send(&agentv1.ConnectRequest{Msg: &agentv1.ConnectRequest_Inventory{Inventory: inv}}); err != nil {
		s.t.Fatal(err)
	}
}

func (s *stream) recv() *agentv1.ConnectResponse {
	s.t.Helper()
	m, err := s.Recv()
	if err != nil {
		s.t.Fatalf("recv: %v", err)
	}
	return m
}

func (s *stream) expectAck(seq uint64) {
	s.t.Helper()
	m := s.recv()
	if m.GetAck() == nil || m.GetAck().GetSeq() != seq {
		s.t.Fatalf("want Ack(%d), got %v", seq, m)
	}
}

func pkgItem(t *testing.T, name, version string) *commonv1.Item {
	t.Helper()
	it := &commonv1.Item{Kind: inventory.KindPackage, Key: "dpkg:" + name + ":amd64",
		Body: &commonv1.Item_Package{Package: &commonv1.Package{Manager: "dpkg", Name: name, Version: version, Arch: "amd64", Status: "installed"}}}
	if err := inventory.Seal(it); err != nil {
		t.Fatal(err)
	}
	return it
}

func userItem(t *testing.T, name string, uid uint32) *commonv1.Item {
	t.Helper()
	it := &commonv1.Item{Kind: inventory.KindUser, Key: name,
		Body: &commonv1.Item_User{User: &commonv1.User{Name: name, Uid: uid, Shell: "/bin/sh"}}}
	if err := inventory.Seal(it); err != nil {
		t.Fatal(err)
	}
	return it
}

func full(seq uint64, items ...*commonv1.Item) *agentv1.Inventory {
	return &agentv1.Inventory{Seq: seq, Full: true, Items: items, SetHash: inventory.SetOf(items).Hash()}
}
