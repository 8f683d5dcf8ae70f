// Package ingest implements the agent-facing gRPC service: enrollment,
// the agents' long-lived streams, and exactly-once application of what
// they send into the store.
package ingest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/quantumlayer/qinfra/pkg/inventory"
	"github.com/quantumlayer/qinfra/pkg/pki"
	"github.com/quantumlayer/qinfra/server/internal/auth"
	"github.com/quantumlayer/qinfra/server/internal/cluster"
	"github.com/quantumlayer/qinfra/server/internal/store"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"

	agentv1 "github.com/quantumlayer/qinfra/proto/gen/qinfra/agent/v1"
)

var errNotFound = store.ErrNotFound

// Defaults for Options.
const (
	DefaultCertTTL        = 24 * time.Hour
	DefaultMaxMessageSize = 16 << 20
	DefaultHelloTimeout   = 10 * time.Second
	// maxItems bounds the items one inventory may carry, far above any real
	// host, so a hostile agent cannot make the server allocate without end
	// within the message size limit.
	maxItems = 500_000
)

// Options configure a Service.
type Options struct {
	Store  store.Store
	CA     *pki.CA
	Logger *slog.Logger
	// CertTTL is the lifetime of issued agent certificates; agents renew at
	// half of it.
	CertTTL time.Duration
	// MaxMessageSize bounds every message in both directions.
	MaxMessageSize int
	// HelloTimeout bounds the wait for a stream's first message.
	HelloTimeout time.Duration
	// ScanInterval and HeartbeatInterval, when set, are pushed to agents on
	// connect and override their own configuration; zero leaves each
	// agent's setting alone.
	ScanInterval      time.Duration
	HeartbeatInterval time.Duration
	// WatchPaths, when set, replaces the agents' watched files.
	WatchPaths []string
	// BaselinePaths, when set, returns the files the baselines matching a
	// host check; they go to its agent as ConfigUpdate.baseline_paths, on
	// connect and whenever PushConfig names the host, so the agent hashes
	// them besides its own watch paths. Nil sends agents an empty list.
	BaselinePaths func(ctx context.Context, hostID string) ([]string, error)
	// BaselinesChanged, when set, is called when the cluster bus says a
	// baseline changed (on any replica), before the agents are told: a
	// BaselinePaths that caches baselines drops them here.
	BaselinesChanged func()
	// Bus carries revocations, queued commands and configuration changes
	// between replicas; nil means this replica only hears of its own
	// (Disconnect, SendCommand, PushConfig).
	Bus cluster.Bus
	Now func() time.Time
	// OnInventory, when set, is called after an inventory update was
	// applied, with the refs it added, changed or removed (nil for a full
	// inventory): drift evaluation hooks in here.
	OnInventory func(ctx context.Context, hostID string, full bool, changed []inventory.Ref)
}

// Service is the AgentService implementation.
type Service struct {
	agentv1.UnimplementedAgentServiceServer

	store store.Store
	ca    *pki.CA
	log   *slog.Logger
	opts  Options

	mu   sync.Mutex
	live map[string]*conn

	// pushMu guards the configuration pushes waiting for pushLoop (see
	// PushConfig).
	pushMu    sync.Mutex
	pushAll   bool
	pushHosts map[string]struct{}
	pushing   bool
}

// New returns a Service.
func New(opts Options) *Service {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.CertTTL <= 0 {
		opts.CertTTL = DefaultCertTTL
	}
	if opts.MaxMessageSize <= 0 {
		opts.MaxMessageSize = DefaultMaxMessageSize
	}
	if opts.HelloTimeout <= 0 {
		opts.HelloTimeout = DefaultHelloTimeout
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Service{
		store: opts.Store,
		ca:    opts.CA,
		log:   opts.Logger.With("component", "ingest"),
		opts:  opts,
		live:  make(map[string]*conn),
	}
}

// NewGRPCServer returns a gRPC server serving svc over mutual TLS with the
// given server certificate. Only TLS 1.3 is accepted; message sizes are
// bounded both ways; handshakes that do not complete in time are dropped,
// so a flood of connections without certificates cannot pin resources.
func NewGRPCServer(svc *Service, serverCert tls.Certificate) *grpc.Server {
	pool := x509.NewCertPool()
	pool.AddCert(svc.ca.Cert)
	creds := &loggingCreds{TransportCredentials: credentials.NewTLS(pki.ServerTLSConfig(serverCert, pool)), log: svc.log}
	srv := grpc.NewServer(
		grpc.Creds(creds),
		grpc.MaxRecvMsgSize(svc.opts.MaxMessageSize),
		grpc.MaxSendMsgSize(svc.opts.MaxMessageSize),
		grpc.ConnectionTimeout(10*time.Second),
		grpc.MaxConcurrentStreams(16),
		// No bufio read buffer (32 KiB per connection by default): the TLS
		// connection underneath already buffers whole records, so the
		// framer reading it directly costs no extra syscalls, and an idle
		// agent no longer pins 32 KiB of server memory (measured with
		// qinfra-loadgen: about 31 KiB of the ~85 KiB per idle agent).
		grpc.ReadBufferSize(0),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 20 * time.Second, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 2 * time.Minute, Timeout: 20 * time.Second}),
		grpc.UnaryInterceptor(svc.UnaryInterceptor),
		grpc.StreamInterceptor(svc.StreamInterceptor),
	)
	agentv1.RegisterAgentServiceServer(srv, svc)
	return srv
}

// Enroll exchanges an enrollment token and a CSR for a client certificate.
// The CSR is checked before the token is consumed, so a garbage request
// does not burn a use.
func (s *Service) Enroll(ctx context.Context, req *agentv1.EnrollRequest) (*agentv1.EnrollResponse, error) {
	if req.GetToken() == "" {
		return nil, status.Error(codes.InvalidArgument, "enrollment token is required")
	}
	csr, err := x509.ParseCertificateRequest(req.GetCsr())
	if err != nil {
		s.log.Warn("enroll: bad csr", "err", err)
		return nil, status.Errorf(codes.InvalidArgument, "certificate request is not valid DER PKCS#10: %v", err)
	}
	if err := csr.CheckSignature(); err != nil {
		s.log.Warn("enroll: bad csr signature", "err", err)
		return nil, status.Errorf(codes.InvalidArgument, "certificate request signature does not verify: %v", err)
	}
	hostname := cleanHostname(req.GetHostname())
	if req.GetFacts().GetHostname() != "" && hostname == "" {
		hostname = cleanHostname(req.GetFacts().GetHostname())
	}
	now := s.opts.Now()
	id := pki.NewHostID()
	cert, err := s.ca.SignHostCSR(req.GetCsr(), id, s.opts.CertTTL, now)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "certificate request refused: %v", err)
	}
	h := &store.Host{
		ID:           id,
		Hostname:     hostname,
		EnrolledAt:   now.UTC(),
		Facts:        req.GetFacts(),
		CertSerial:   cert.SerialNumber.Text(16),
		CertNotAfter: cert.NotAfter.UTC(),
	}
	if err := s.store.EnrollHost(ctx, auth.HashSecret(req.GetToken()), now, h); err != nil {
		if errors.Is(err, store.ErrTokenInvalid) {
			// The reason (unknown, expired, used up) goes to the log only:
			// telling the caller would help guess tokens.
			s.log.Warn("enroll refused", "hostname", hostname, "err", err)
			return nil, status.Error(codes.PermissionDenied, "enrollment token is invalid, expired or used up")
		}
		s.log.Error("enroll", "err", err)
		return nil, status.Error(codes.Unavailable, "enrollment failed: store unavailable")
	}
	s.audit(ctx, "enrollment-token", "host.enroll", id, fmt.Sprintf(`{"hostname":%q,"cert_serial":%q}`, hostname, h.CertSerial))
	s.log.Info("host enrolled", "host", id, "hostname", hostname, "labels", h.Labels)
	return &agentv1.EnrollResponse{
		HostId:        id,
		Certificate:   cert.Raw,
		CaCertificate: s.ca.Cert.Raw,
		Labels:        h.Labels,
	}, nil
}

func cleanHostname(s string) string {
	if len(s) > 253 || !utf8.ValidString(s) {
		return ""
	}
	return strings.TrimSpace(s)
}

func (s *Service) audit(ctx context.Context, actor, action, target, detail string) {
	e := &store.AuditEntry{Time: s.opts.Now(), Actor: actor, Action: action, Target: target, Detail: detail}
	if err := s.store.AppendAudit(ctx, e); err != nil {
		s.log.Error("audit append failed", "action", action, "target", target, "err", err)
	}
}

// Connected reports whether the host has a live stream to this server.
func (s *Service) Connected(hostID string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.live[hostID]
	return ok
}

// Disconnect closes the host's live stream, if any, at once.
func (s *Service) Disconnect(hostID, reason string) {
	s.mu.Lock()
	c := s.live[hostID]
	s.mu.Unlock()
	if c != nil {
		c.close(status.Errorf(codes.PermissionDenied, "stream closed by server: %s", reason))
		s.log.Info("stream closed", "host", hostID, "reason", reason)
	}
}

// ConnectedCount returns the number of live streams.
func (s *Service) ConnectedCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.live)
}

// SendCommand queues a command on the host's live stream. It fails when
// the host is not connected to this server.
func (s *Service) SendCommand(hostID string, cmd *agentv1.Command) error {
	s.mu.Lock()
	c := s.live[hostID]
	s.mu.Unlock()
	if c == nil {
		return fmt.Errorf("host %s is not connected", hostID)
	}
	return c.send(&agentv1.ConnectResponse{Msg: &agentv1.ConnectResponse_Command{Command: cmd}})
}
