package pki

import (
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
)

// ErrFingerprintMismatch is the error a [PinnedTLSConfig] handshake fails
// with when the server's chain does not lead to the pinned CA. Errors carry
// detail after it and match it with errors.Is.
var ErrFingerprintMismatch = errors.New("server CA fingerprint mismatch")

// alpnH2 is the ALPN protocol gRPC speaks.
const alpnH2 = "h2"

// ServerTLSConfig returns the gRPC server's TLS configuration: TLS 1.3 only,
// serverCert (whose chain should include the CA, as [CA.IssueServerCert]
// makes it) and client certificates verified against clientCAs.
//
// Client certificates are verified if given but not required, because the
// Enroll RPC is how an agent without a certificate gets one. The gRPC layer
// must therefore require a verified certificate on every other RPC; a TLS
// handshake without one proves nothing about the peer.
func ServerTLSConfig(serverCert tls.Certificate, clientCAs *x509.CertPool) *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{serverCert},
		ClientAuth:   tls.VerifyClientCertIfGiven,
		ClientCAs:    clientCAs,
		NextProtos:   []string{alpnH2},
	}
}

// AgentTLSConfig returns an agent's TLS configuration for talking to the
// server: TLS 1.3 only, trusting only ca (never the system roots, which
// anyone can buy a certificate from) and checking the server's name against
// serverName (when empty, crypto/tls uses the dialed host).
//
// clientCert is the agent's certificate, or nil while enrolling. It is
// supplied through GetClientCertificate rather than Certificates because
// crypto/tls only sends a Certificates entry whose issuer the server lists
// as acceptable; a certificate the server would reject is then silently
// withheld, and the agent sees "certificate required" instead of the real
// reason. GetClientCertificate always sends it. It returns the same
// certificate every time; renewal builds a new config.
func AgentTLSConfig(clientCert *tls.Certificate, ca *x509.Certificate, serverName string) *tls.Config {
	roots := x509.NewCertPool()
	if ca != nil {
		roots.AddCert(ca)
	}
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		RootCAs:    roots,
		ServerName: serverName,
		NextProtos: []string{alpnH2},
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			if clientCert == nil {
				// An empty certificate means "send none", which the
				// server allows for enrollment.
				return &tls.Certificate{}, nil
			}
			return clientCert, nil
		},
	}
}

// PinnedTLSConfig returns the TLS configuration an agent enrolls with when
// all it knows of the server is the SHA-256 fingerprint of the CA
// certificate (as from [ParseFingerprint]), given at install time.
//
// The usual chain verification cannot run without the CA in hand, so it is
// turned off (InsecureSkipVerify) and replaced by a VerifyConnection that
// looks in the chain the server presents for a certificate whose
// fingerprint equals the pin, checks that it is a CA, and then verifies the
// server's leaf against that CA alone, for server authentication and, when
// serverName is not empty, for that name. Any failure is
// [ErrFingerprintMismatch] with the reason after it. The TLS handshake
// itself still proves the server holds the leaf's key.
func PinnedTLSConfig(fingerprint []byte, serverName string) *tls.Config {
	pin := append([]byte(nil), fingerprint...) // the caller's slice may change later
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		ServerName: serverName,
		NextProtos: []string{alpnH2},
		// Verification is done by VerifyConnection below against the
		// pinned CA; nothing is skipped.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			return verifyPinned(cs.PeerCertificates, pin, serverName)
		},
	}
}

// verifyPinned implements PinnedTLSConfig's check of a presented chain.
func verifyPinned(chain []*x509.Certificate, pin []byte, serverName string) error {
	if len(pin) != sha256.Size {
		return fmt.Errorf("%w: pin is %d bytes, want %d", ErrFingerprintMismatch, len(pin), sha256.Size)
	}
	if len(chain) == 0 {
		return fmt.Errorf("%w: server presented no certificate", ErrFingerprintMismatch)
	}
	var root *x509.Certificate
	for _, c := range chain {
		sum := sha256.Sum256(c.Raw)
		if subtle.ConstantTimeCompare(sum[:], pin) == 1 {
			root = c
			break
		}
	}
	if root == nil {
		return fmt.Errorf("%w: no certificate in the server's chain has the pinned fingerprint", ErrFingerprintMismatch)
	}
	if !root.BasicConstraintsValid || !root.IsCA {
		return fmt.Errorf("%w: pinned certificate %q is not a CA", ErrFingerprintMismatch, root.Subject.CommonName)
	}
	roots := x509.NewCertPool()
	roots.AddCert(root)
	intermediates := x509.NewCertPool()
	for _, c := range chain[1:] {
		if c != root {
			intermediates.AddCert(c)
		}
	}
	opts := x509.VerifyOptions{
		Roots:         roots,
		Intermediates: intermediates,
		DNSName:       serverName,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if _, err := chain[0].Verify(opts); err != nil {
		return fmt.Errorf("%w: server certificate does not verify against the pinned CA: %w", ErrFingerprintMismatch, err)
	}
	return nil
}
