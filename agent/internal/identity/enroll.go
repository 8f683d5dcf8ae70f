package identity

import (
	"context"
	"encoding/hex"
	"fmt"
	"net"
	"time"

	"github.com/quantumlayer/qinfra/pkg/pki"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	agentv1 "github.com/quantumlayer/qinfra/proto/gen/qinfra/agent/v1"
	commonv1 "github.com/quantumlayer/qinfra/proto/gen/qinfra/common/v1"
)

// EnrollOptions are the inputs of Enroll.
type EnrollOptions struct {
	// Server is the gRPC address, host:port.
	Server string
	Token  string
	// CAFingerprint pins the server's CA ("sha256:<hex>") until the agent
	// holds the CA certificate itself.
	CAFingerprint string
	// ServerName overrides the name checked in the server certificate
	// (default: the host part of Server).
	ServerName string
	Hostname   string
	Facts      *commonv1.OSFacts
	Timeout    time.Duration
}

func serverName(o EnrollOptions) string {
	if o.ServerName != "" {
		return o.ServerName
	}
	host, _, err := net.SplitHostPort(o.Server)
	if err != nil {
		return o.Server
	}
	return host
}

// Enroll generates a key locally, sends a CSR with the enrollment token over
// TLS pinned to the CA fingerprint, and saves the returned identity. The
// private key never leaves the machine.
func Enroll(ctx context.Context, f Files, o EnrollOptions) (*agentv1.EnrollResponse, error) {
	pin, err := pki.ParseFingerprint(o.CAFingerprint)
	if err != nil {
		return nil, fmt.Errorf("--ca-fingerprint: %w", err)
	}
	keyPEM, csr, err := pki.NewKeyAndCSR()
	if err != nil {
		return nil, err
	}
	if o.Timeout <= 0 {
		o.Timeout = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	cc, err := grpc.NewClient(o.Server, grpc.WithTransportCredentials(credentials.NewTLS(pki.PinnedTLSConfig(pin, serverName(o)))))
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", o.Server, err)
	}
	defer cc.Close()
	resp, err := agentv1.NewAgentServiceClient(cc).Enroll(ctx, &agentv1.EnrollRequest{
		Token:    o.Token,
		Csr:      csr,
		Hostname: o.Hostname,
		Facts:    o.Facts,
	})
	if err != nil {
		return nil, fmt.Errorf("enroll with %s: %w", o.Server, err)
	}
	ca, err := pki.ParseCertPEM(pki.CertPEM(resp.GetCaCertificate()))
	if err != nil {
		return nil, fmt.Errorf("server sent an unusable CA certificate: %w", err)
	}
	// The CA the server hands over must be the one the operator pinned.
	if got, want := pki.Fingerprint(ca), "sha256:"+hex.EncodeToString(pin); got != want {
		return nil, fmt.Errorf("server returned a CA whose fingerprint %s is not the pinned %s", got, want)
	}
	if err := Save(f, resp.GetHostId(), keyPEM, resp.GetCertificate(), resp.GetCaCertificate()); err != nil {
		return nil, err
	}
	if _, err := Load(f); err != nil {
		return nil, fmt.Errorf("enrolled, but the saved identity does not load: %w", err)
	}
	return resp, nil
}
