// Package app wires the server together: data directory, CA and server
// certificate, store, the agents' gRPC listener and the operators' REST
// listener.
package app

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	"github.com/quantumlayer/qinfra/pkg/pki"
	"github.com/quantumlayer/qinfra/pkg/version"
	"github.com/quantumlayer/qinfra/server/internal/api"
	"github.com/quantumlayer/qinfra/server/internal/auth"
	"github.com/quantumlayer/qinfra/server/internal/cluster"
	"github.com/quantumlayer/qinfra/server/internal/drift"
	"github.com/quantumlayer/qinfra/server/internal/ingest"
	"github.com/quantumlayer/qinfra/server/internal/store"
	"github.com/quantumlayer/qinfra/server/internal/vulnsvc"
	"google.golang.org/grpc"
)

// Config is the server's configuration.
type Config struct {
	// DataDir holds the CA, the server certificate and the embedded store.
	DataDir string
	// GRPCAddr is where agents connect (mTLS gRPC).
	GRPCAddr string
	// APIAddr is where operators connect (REST over TLS).
	APIAddr string
	// AdvertiseAddr is the gRPC address agents are told to use; default
	// GRPCAddr.
	AdvertiseAddr string
	// SANs are extra DNS names and IP addresses for the server certificate
	// created by Init.
	SANs []string
	// CertTTL is the lifetime of agent certificates.
	CertTTL time.Duration
	// ScanInterval, when set, is pushed to agents and overrides theirs.
	ScanInterval time.Duration
	// MaxMessageSize bounds gRPC messages both ways.
	MaxMessageSize int
	// Store is "" for the embedded bbolt store in DataDir, or a PostgreSQL
	// URL (postgres://...) shared by several replicas.
	Store string
	// UnsafeDurability lets the server start on a PostgreSQL that could
	// lose committed data (fsync or synchronous_commit off).
	UnsafeDurability bool
	// HistoryRetention and AuditRetention bound how long inventory history
	// and the audit log are kept (the audit log: one year by default; seven
	// for SOX).
	HistoryRetention time.Duration
	AuditRetention   time.Duration
	// DriftSweep is how long a full re-check of every host takes, a few
	// hosts each maintenance tick, healing drift that incremental checks
	// missed (0: never).
	DriftSweep time.Duration
	// DriftRetention bounds how long resolved drift is kept after its
	// resolution (0: forever); open drift is never pruned.
	DriftRetention time.Duration
	// MaintenanceEvery is how often the leader expires commands and prunes.
	MaintenanceEvery time.Duration
	Logger           *slog.Logger
}

// Default returns the default configuration.
func Default() Config {
	return Config{
		DataDir:          "/var/lib/qinfra-server",
		GRPCAddr:         ":8440",
		APIAddr:          ":8443",
		CertTTL:          ingest.DefaultCertTTL,
		MaxMessageSize:   ingest.DefaultMaxMessageSize,
		HistoryRetention: 90 * 24 * time.Hour,
		AuditRetention:   365 * 24 * time.Hour,
		DriftRetention:   90 * 24 * time.Hour,
		DriftSweep:       6 * time.Hour,
		MaintenanceEvery: time.Minute,
	}
}

// Paths of the files in a data directory.
type Paths struct{ Dir string }

func (p Paths) CACert() string     { return filepath.Join(p.Dir, "ca.crt") }
func (p Paths) CAKey() string      { return filepath.Join(p.Dir, "ca.key") }
func (p Paths) ServerCert() string { return filepath.Join(p.Dir, "server.crt") }
func (p Paths) ServerKey() string  { return filepath.Join(p.Dir, "server.key") }
func (p Paths) Store() string      { return filepath.Join(p.Dir, "qinfra.db") }

// Initialized reports whether the data directory holds a CA.
func Initialized(dir string) bool {
	_, err := os.Stat(Paths{dir}.CACert())
	return err == nil
}

// InitResult is what Init created.
type InitResult struct {
	CAFingerprint string
	// AdminToken is the first admin API token; it is stored hashed and
	// this is the only time it is seen.
	AdminToken string
}

// Init creates the CA, the server certificate, the store and a first admin
// API token in an empty data directory. It refuses a directory that
// already holds a CA.
func Init(ctx context.Context, cfg Config) (*InitResult, error) {
	p := Paths{cfg.DataDir}
	if Initialized(cfg.DataDir) {
		return nil, fmt.Errorf("data directory %s is already initialized", cfg.DataDir)
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	ca, err := pki.NewCA("qinfra CA", 10*365*24*time.Hour)
	if err != nil {
		return nil, err
	}
	dns, ips := serverNames(cfg.SANs)
	certPEM, keyPEM, err := ca.IssueServerCert(dns, ips, 2*365*24*time.Hour)
	if err != nil {
		return nil, err
	}
	if err := pki.WriteFileAtomic(p.ServerKey(), keyPEM, 0o600); err != nil {
		return nil, err
	}
	if err := pki.WriteFileAtomic(p.ServerCert(), certPEM, 0o644); err != nil {
		return nil, err
	}
	st, err := openStore(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	secret, err := auth.NewAdminToken(ctx, st, "admin")
	if err != nil {
		return nil, err
	}
	if err := st.AppendAudit(ctx, &store.AuditEntry{Time: time.Now(), Actor: "qinfra-server init", Action: "server.init",
		Target: cfg.DataDir, Detail: fmt.Sprintf(`{"ca_fingerprint":%q}`, ca.Fingerprint())}); err != nil {
		return nil, err
	}
	// The CA is written last: its presence marks the directory initialized,
	// so an interrupted init can simply be run again.
	if err := ca.Save(p.CACert(), p.CAKey()); err != nil {
		return nil, err
	}
	return &InitResult{CAFingerprint: ca.Fingerprint(), AdminToken: secret}, nil
}

func serverNames(extra []string) (dns []string, ips []net.IP) {
	dns = []string{"localhost"}
	ips = []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
	if h, err := os.Hostname(); err == nil && h != "" {
		dns = append(dns, h)
	}
	for _, s := range extra {
		if ip := net.ParseIP(s); ip != nil {
			ips = append(ips, ip)
		} else if s != "" {
			dns = append(dns, s)
		}
	}
	return dns, ips
}

// Server is a running server.
type Server struct {
	cfg        Config
	log        *slog.Logger
	store      store.Store
	bus        cluster.Bus
	leader     cluster.Leader
	cancel     context.CancelFunc
	bg         sync.WaitGroup
	ca         *pki.CA
	Ingest     *ingest.Service
	drift      *drift.Engine
	driftQueue *drift.Queue
	// sweepAfter is where the drift sweep goes on (maintain; leader only).
	sweepAfter string
	grpcSrv    *grpc.Server
	httpSrv    *http.Server
	grpcLn     net.Listener
	apiLn      net.Listener
	errc       chan error
}

// GRPCAddr is the address the agents' listener is bound to.
func (s *Server) GRPCAddr() string { return s.grpcLn.Addr().String() }

// APIAddr is the address the REST listener is bound to.
func (s *Server) APIAddr() string { return s.apiLn.Addr().String() }

// CAFingerprint is the pin agents enroll with.
func (s *Server) CAFingerprint() string { return s.ca.Fingerprint() }

// Store is the server's store.
func (s *Server) Store() store.Store { return s.store }

// Start opens the store and starts both listeners. An uninitialized data
// directory is an error: run Init first (the command line does it on first
// start).
func Start(ctx context.Context, cfg Config) (*Server, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	p := Paths{cfg.DataDir}
	if !Initialized(cfg.DataDir) {
		return nil, fmt.Errorf("data directory %s is not initialized: run 'qinfra-server init --data %s'", cfg.DataDir, cfg.DataDir)
	}
	ca, err := pki.LoadCA(p.CACert(), p.CAKey())
	if err != nil {
		return nil, err
	}
	serverCert, err := tls.LoadX509KeyPair(p.ServerCert(), p.ServerKey())
	if err != nil {
		return nil, fmt.Errorf("load server certificate: %w", err)
	}
	st, err := openStore(ctx, cfg)
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, log: cfg.Logger, store: st, ca: ca, errc: make(chan error, 2)}
	if isPostgres(cfg.Store) {
		bus, err := cluster.NewPGBus(ctx, cfg.Store, cfg.Logger)
		if err != nil {
			st.Close()
			return nil, err
		}
		s.bus, s.leader = bus, cluster.PGLeader{DSN: cfg.Store, Log: cfg.Logger}
	} else {
		s.bus, s.leader = cluster.NewLocalBus(), cluster.LocalLeader{}
	}
	s.drift = drift.New(st, cfg.Logger, nil)
	// Drift checks triggered by inventories run off the streams' receive
	// paths, coalesced per host.
	s.driftQueue = drift.NewQueue(s.drift)
	s.Ingest = ingest.New(ingest.Options{
		Store:          st,
		CA:             ca,
		Logger:         cfg.Logger,
		CertTTL:        cfg.CertTTL,
		MaxMessageSize: cfg.MaxMessageSize,
		ScanInterval:   cfg.ScanInterval,
		Bus:            s.bus,
		OnInventory:    s.driftQueue.Enqueue,
		// Agents hash the files their baselines check, watched or not.
		BaselinePaths:    s.drift.WatchPaths,
		BaselinesChanged: s.drift.InvalidateBaselines,
	})
	s.grpcSrv = ingest.NewGRPCServer(s.Ingest, serverCert)
	if s.grpcLn, err = net.Listen("tcp", cfg.GRPCAddr); err != nil {
		st.Close()
		return nil, fmt.Errorf("listen for agents on %s: %w", cfg.GRPCAddr, err)
	}
	if s.apiLn, err = net.Listen("tcp", cfg.APIAddr); err != nil {
		s.grpcLn.Close()
		st.Close()
		return nil, fmt.Errorf("listen for the API on %s: %w", cfg.APIAddr, err)
	}
	advertise := cfg.AdvertiseAddr
	if advertise == "" {
		advertise = s.GRPCAddr()
	}
	apiOpts := api.Options{
		Store:         st,
		Live:          clusterLive{svc: s.Ingest, bus: s.bus, log: cfg.Logger},
		Logger:        cfg.Logger,
		CAFingerprint: ca.Fingerprint(),
		GRPCAddress:   advertise,
		Drift:         s.drift,
	}
	if isPostgres(cfg.Store) {
		// Agents heartbeat every 30 s by default.
		apiOpts.PeerLiveness = 75 * time.Second
	}
	if b, ok := st.(interface {
		Backup(io.Writer) (int64, error)
	}); ok {
		apiOpts.Backup, apiOpts.BackupDir = b.Backup, cfg.DataDir
	}
	// The vulnerability index is loaded from the store in the background;
	// a query before it is done waits for it (vulnsvc.Service.Sync).
	apiOpts.Vulns = vulnsvc.New(st, vulnsvc.Options{Logger: cfg.Logger})
	go func() {
		if err := apiOpts.Vulns.Sync(context.Background()); err != nil {
			cfg.Logger.Warn("load vulnerability database", "err", err)
		}
	}()
	handler := api.New(apiOpts)
	s.httpSrv = &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelWarn),
		TLSConfig: &tls.Config{
			MinVersion:   tls.VersionTLS12,
			Certificates: []tls.Certificate{serverCert},
		},
	}
	bgctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	s.bg.Add(3)
	go func() { defer s.bg.Done(); s.driftQueue.Run(bgctx, runtime.GOMAXPROCS(0)) }()
	go func() { defer s.bg.Done(); s.Ingest.Run(bgctx) }()
	go func() { defer s.bg.Done(); s.leader.Run(bgctx, "maintenance", s.maintain) }()
	go func() { s.errc <- s.grpcSrv.Serve(s.grpcLn) }()
	go func() {
		if err := s.httpSrv.ServeTLS(s.apiLn, "", ""); !errors.Is(err, http.ErrServerClosed) {
			s.errc <- err
		}
	}()
	s.log.Info("server started", "grpc", s.GRPCAddr(), "api", "https://"+s.APIAddr(),
		"ca_fingerprint", ca.Fingerprint(), "version", version.Version)
	return s, nil
}

// Wait blocks until ctx ends or a listener fails.
func (s *Server) Wait(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return nil
	case err := <-s.errc:
		return err
	}
}

// Close stops both listeners, letting in-flight requests finish for a
// moment, and closes the store. Agent streams never end on their own,
// so they are cut after that: agents resend whatever was not acknowledged.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = s.httpSrv.Shutdown(ctx)
	done := make(chan struct{})
	go func() { s.grpcSrv.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		s.grpcSrv.Stop()
	}
	s.cancel()
	s.bg.Wait()
	if b, ok := s.bus.(*cluster.PGBus); ok {
		b.Close()
	}
	return s.store.Close()
}
