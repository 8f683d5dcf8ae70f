package ingest

import (
	"context"
	"crypto/x509"
	"errors"

	"github.com/quantumlayer/qinfra/pkg/pki"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	agentv1 "github.com/quantumlayer/qinfra/proto/gen/qinfra/agent/v1"
)

type hostIDKey struct{}

// hostIDFrom returns the host ID the interceptors put into the context.
func hostIDFrom(ctx context.Context) string {
	id, _ := ctx.Value(hostIDKey{}).(string)
	return id
}

// peerCert returns the client certificate the TLS layer verified, or nil
// when the client presented none. The listener verifies any certificate
// given (tls.VerifyClientCertIfGiven), so a certificate from another CA or
// an expired one never gets this far.
func peerCert(ctx context.Context) *x509.Certificate {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return nil
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.VerifiedChains) == 0 || len(info.State.VerifiedChains[0]) == 0 {
		return nil
	}
	return info.State.VerifiedChains[0][0]
}

// unauthenticatedMethods may be called without a client certificate.
var unauthenticatedMethods = map[string]bool{
	agentv1.AgentService_Enroll_FullMethodName: true,
}

// authenticate resolves the caller's host ID from its verified certificate
// and refuses unknown and revoked hosts.
func (s *Service) authenticate(ctx context.Context) (context.Context, error) {
	cert := peerCert(ctx)
	if cert == nil {
		return nil, status.Error(codes.Unauthenticated, "a client certificate issued by this server's CA is required")
	}
	id, err := pki.HostIDFromVerifiedCert(cert)
	if err != nil {
		return nil, status.Errorf(codes.Unauthenticated, "client certificate carries no host identity: %v", err)
	}
	h, err := s.store.GetHost(ctx, id)
	if err != nil {
		if errors.Is(err, errNotFound) {
			return nil, status.Errorf(codes.PermissionDenied, "host %s is not enrolled", id)
		}
		s.log.Error("look up host", "host", id, "err", err)
		return nil, status.Error(codes.Unavailable, "store unavailable")
	}
	if h.Revoked {
		return nil, status.Errorf(codes.PermissionDenied, "host %s is revoked", id)
	}
	return context.WithValue(ctx, hostIDKey{}, id), nil
}

// UnaryInterceptor enforces certificate identity on every unary RPC but
// Enroll.
func (s *Service) UnaryInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if unauthenticatedMethods[info.FullMethod] {
		return handler(ctx, req)
	}
	ctx, err := s.authenticate(ctx)
	if err != nil {
		s.log.Warn("refused rpc", "method", info.FullMethod, "err", err)
		return nil, err
	}
	return handler(ctx, req)
}

type wrappedStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (w *wrappedStream) Context() context.Context { return w.ctx }

// StreamInterceptor enforces certificate identity on every streaming RPC.
func (s *Service) StreamInterceptor(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	ctx, err := s.authenticate(ss.Context())
	if err != nil {
		s.log.Warn("refused stream", "method", info.FullMethod, "err", err)
		return err
	}
	return handler(srv, &wrappedStream{ServerStream: ss, ctx: ctx})
}
