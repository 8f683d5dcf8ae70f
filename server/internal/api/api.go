// Package api serves the operator REST API under /api/v1: hosts and their
// inventory, enrollment tokens, the audit log and the server's identity,
// plus the unauthenticated /healthz, /readyz and OpenAPI document.
//
// Every route is declared once, in routes, with the role it needs; New
// registers that table on a Go 1.22 method-pattern ServeMux and the OpenAPI
// test checks the same table against the embedded document, so the two
// cannot drift apart.
package api

import (
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/quantumlayer/qinfra/server/internal/drift"
	"github.com/quantumlayer/qinfra/server/internal/store"
	"github.com/quantumlayer/qinfra/server/internal/vulnsvc"
)

// Live is the view of connected agents the API needs. The gRPC ingest layer
// implements it.
type Live interface {
	// Connected reports whether the host has a live stream now.
	Connected(hostID string) bool
	// Disconnect closes the host's live stream now, if any, on whichever
	// replica holds it.
	Disconnect(hostID string, reason string)
	// CommandQueued tells the replica holding the host's stream that a
	// command is waiting in the store.
	CommandQueued(hostID, commandID string)
	// ConfigChanged tells the replicas holding the hosts' streams that
	// what their agents are configured with (the files their baselines
	// check) may have changed, for every host with nil. It does not wait
	// for the agents to be told.
	ConfigChanged(hostIDs []string)
	// BaselinesChanged tells every replica that a baseline was stored or
	// deleted, so none keeps checking drift against cached old versions.
	BaselinesChanged()
}

// Options configures the API handler. Store is required; every other field
// has a usable zero value.
type Options struct {
	// Store persists everything the API reads and changes.
	Store store.Store
	// Live reports and closes agent streams; nil means no agent is ever
	// connected (e.g. an API-only process).
	Live Live
	// Logger receives one line per request; nil discards.
	Logger *slog.Logger
	// MaxBodyBytes bounds request bodies; 0 means 1 MiB.
	MaxBodyBytes int64
	// Now is the clock; nil means time.Now. Tests inject a fixed one.
	Now func() time.Time
	// Ready reports whether the server can serve (store open, listeners
	// up); nil means always ready. Its error is shown by /readyz.
	Ready func() error
	// DefaultEnrollmentTTL is the lifetime of an enrollment token created
	// without a ttl; 0 means one hour, and values above the 30-day maximum
	// a request may ask for are capped to it.
	DefaultEnrollmentTTL time.Duration
	// CAFingerprint is the SHA-256 fingerprint of the CA agents pin when
	// they enroll, shown by /api/v1/server-info.
	CAFingerprint string
	// GRPCAddress is the address agents connect to, shown by
	// /api/v1/server-info.
	GRPCAddress string
	// PeerLiveness, when set, means other replicas may hold agent streams:
	// a host is also shown connected when it was seen within this window
	// (agents heartbeat well inside it). Zero: this process holds every
	// stream, and Live alone decides.
	PeerLiveness time.Duration
	// Backup writes a consistent snapshot of the store to w; nil when the
	// backend has its own tools (PostgreSQL). BackupDir holds the snapshot
	// while it is sent ("" means the system temp dir).
	Backup    func(w io.Writer) (int64, error)
	BackupDir string
	// Vulns answers the vulnerability endpoints; nil means a service of
	// its own on Store.
	Vulns *vulnsvc.Service
	// Drift re-checks hosts when baselines or labels change; nil means an
	// engine of its own on Store.
	Drift *drift.Engine
}

// Limits applied to request input.
const (
	defaultMaxBodyBytes  = 1 << 20
	defaultEnrollmentTTL = time.Hour
	maxEnrollmentTTL     = 30 * 24 * time.Hour
	maxEnrollmentUses    = 100000
	maxDescriptionLen    = 256
)

// server holds the handlers' dependencies.
type server struct {
	store         store.Store
	live          Live
	log           *slog.Logger
	maxBody       int64
	now           func() time.Time
	ready         func() error
	enrollTTL     time.Duration
	caFingerprint string
	grpcAddress   string
	peerLiveness  time.Duration
	backup        func(w io.Writer) (int64, error)
	backupDir     string
	vulns         *vulnsvc.Service
	drift         *drift.Engine
}

// New returns the API handler. It panics when opts.Store is nil, a
// programming error caught by the first test.
func New(opts Options) http.Handler {
	if opts.Store == nil {
		panic("api.New: nil Store")
	}
	s := &server{
		store:         opts.Store,
		live:          opts.Live,
		log:           opts.Logger,
		maxBody:       opts.MaxBodyBytes,
		now:           opts.Now,
		ready:         opts.Ready,
		enrollTTL:     opts.DefaultEnrollmentTTL,
		caFingerprint: opts.CAFingerprint,
		grpcAddress:   opts.GRPCAddress,
		peerLiveness:  opts.PeerLiveness,
		backup:        opts.Backup,
		backupDir:     opts.BackupDir,
		vulns:         opts.Vulns,
		drift:         opts.Drift,
	}
	if s.vulns == nil {
		s.vulns = vulnsvc.New(opts.Store, vulnsvc.Options{Logger: opts.Logger, Now: opts.Now})
	}
	if s.live == nil {
		s.live = noLive{}
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.log = s.log.With("component", "api")
	if s.maxBody <= 0 {
		s.maxBody = defaultMaxBodyBytes
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.drift == nil {
		s.drift = drift.New(opts.Store, opts.Logger, opts.Now)
	}
	if s.enrollTTL <= 0 {
		s.enrollTTL = defaultEnrollmentTTL
	}
	if s.enrollTTL > maxEnrollmentTTL {
		s.enrollTTL = maxEnrollmentTTL
	}

	mux := http.NewServeMux()
	for _, rt := range s.routes() {
		mux.Handle(rt.pattern(), s.authorize(rt))
	}
	return s.logRequests(jsonFallback(mux))
}

// route is one endpoint: its method and path (a ServeMux pattern, which is
// also its OpenAPI path), the role it needs ("" for unauthenticated) and the
// handler.
type route struct {
	method  string
	path    string
	role    string
	handler handlerFunc
}

func (rt route) pattern() string { return rt.method + " " + rt.path }

// routes is the single list of endpoints.
func (s *server) routes() []route {
	return []route{
		{"GET", "/healthz", "", s.handleHealthz},
		{"GET", "/readyz", "", s.handleReadyz},
		{"GET", "/api/v1/openapi.json", "", s.handleOpenAPI},
		{"GET", "/api/v1/server-info", store.RoleViewer, s.handleServerInfo},
		{"GET", "/api/v1/hosts", store.RoleViewer, s.handleListHosts},
		{"GET", "/api/v1/hosts/{id}", store.RoleViewer, s.handleGetHost},
		{"GET", "/api/v1/hosts/{id}/inventory", store.RoleViewer, s.handleInventory},
		{"POST", "/api/v1/hosts/{id}/revoke", store.RoleOperator, s.handleRevokeHost},
		{"POST", "/api/v1/hosts/{id}/labels", store.RoleOperator, s.handleLabelHost},
		{"POST", "/api/v1/enrollment-tokens", store.RoleOperator, s.handleCreateEnrollmentToken},
		{"GET", "/api/v1/enrollment-tokens", store.RoleOperator, s.handleListEnrollmentTokens},
		{"GET", "/api/v1/hosts/{id}/changes", store.RoleViewer, s.handleListChanges},
		{"POST", "/api/v1/hosts/{id}/commands", store.RoleOperator, s.handleCreateCommand},
		{"GET", "/api/v1/hosts/{id}/commands", store.RoleViewer, s.handleListCommands},
		{"GET", "/api/v1/commands/{id}", store.RoleViewer, s.handleGetCommand},
		{"GET", "/api/v1/audit", store.RoleAdmin, s.handleListAudit},
		{"POST", "/api/v1/admin/backup", store.RoleAdmin, s.handleBackup},
		{"GET", "/api/v1/baselines", store.RoleViewer, s.handleListBaselines},
		{"POST", "/api/v1/baselines", store.RoleOperator, s.handleApplyBaseline},
		{"POST", "/api/v1/baselines/capture", store.RoleOperator, s.handleCaptureBaseline},
		{"GET", "/api/v1/baselines/{name}", store.RoleViewer, s.handleGetBaseline},
		{"DELETE", "/api/v1/baselines/{name}", store.RoleOperator, s.handleDeleteBaseline},
		{"GET", "/api/v1/baselines/{name}/versions", store.RoleViewer, s.handleListBaselineVersions},
		{"GET", "/api/v1/drift", store.RoleViewer, s.handleDriftSummary},
		{"POST", "/api/v1/drift/detect", store.RoleOperator, s.handleDetectDrift},
		{"POST", "/api/v1/drift/{id}/accept", store.RoleOperator, s.handleAcceptDrift},
		{"GET", "/api/v1/hosts/{id}/drift", store.RoleViewer, s.handleHostDrift},
		{"POST", "/api/v1/vulndb/import", store.RoleAdmin, s.handleImportVulnDB},
		{"GET", "/api/v1/vulndb", store.RoleViewer, s.handleVulnDBState},
		{"GET", "/api/v1/vulnerabilities", store.RoleViewer, s.handleListVulnerabilities},
		{"GET", "/api/v1/hosts/{id}/vulnerabilities", store.RoleViewer, s.handleHostVulnerabilities},
		{"GET", "/api/v1/hosts/{id}/scan", store.RoleViewer, s.handleHostScan},
		{"POST", "/api/v1/vulnerabilities/mutes", store.RoleOperator, s.handleCreateMute},
		{"GET", "/api/v1/vulnerabilities/mutes", store.RoleViewer, s.handleListMutes},
		{"DELETE", "/api/v1/vulnerabilities/mutes/{id}", store.RoleOperator, s.handleDeleteMute},
	}
}

// noLive is the Live of a process without agent streams.
type noLive struct{}

func (noLive) Connected(string) bool        { return false }
func (noLive) Disconnect(string, string)    {}
func (noLive) CommandQueued(string, string) {}
func (noLive) ConfigChanged([]string)       {}
func (noLive) BaselinesChanged()            {}
