package api

import (
	_ "embed"
	"net/http"

	"github.com/quantumlayer/qinfra/pkg/version"
)

// openAPIDoc is the hand-written OpenAPI 3.0 description of every route;
// TestOpenAPIMatchesRoutes keeps it and routes in step.
//
//go:embed openapi.json
var openAPIDoc []byte

// handleOpenAPI serves GET /api/v1/openapi.json.
func (s *server) handleOpenAPI(w http.ResponseWriter, r *http.Request) error {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	_, _ = w.Write(openAPIDoc)
	return nil
}

// handleHealthz serves GET /healthz: the process is up and serving HTTP.
func (s *server) handleHealthz(w http.ResponseWriter, r *http.Request) error {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	return nil
}

// handleReadyz serves GET /readyz: the server can do its work now. A load
// balancer takes a replica out of rotation on 503.
func (s *server) handleReadyz(w http.ResponseWriter, r *http.Request) error {
	if s.ready != nil {
		if err := s.ready(); err != nil {
			return errorf(http.StatusServiceUnavailable, codeNotReady, "not ready: %v", err)
		}
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
	return nil
}

// serverInfo is what a client needs to tell an agent how to enroll.
type serverInfo struct {
	// CAFingerprint is the SHA-256 fingerprint of the CA certificate that
	// agents pin.
	CAFingerprint string `json:"ca_fingerprint"`
	// GRPCAddress is where agents connect.
	GRPCAddress string `json:"grpc_address"`
	Version     string `json:"version"`
}

// handleServerInfo serves GET /api/v1/server-info.
func (s *server) handleServerInfo(w http.ResponseWriter, r *http.Request) error {
	writeJSON(w, http.StatusOK, serverInfo{
		CAFingerprint: s.caFingerprint,
		GRPCAddress:   s.grpcAddress,
		Version:       version.Version,
	})
	return nil
}
