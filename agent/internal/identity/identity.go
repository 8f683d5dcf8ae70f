// Package identity keeps the agent's key, certificate and the server CA in
// its state directory, enrolls with a token, and swaps in renewed
// certificates without a restart.
package identity

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/quantumlayer/qinfra/pkg/pki"
)

// Files names the identity files in an agent state directory. The key and
// certificate are written 0600; the directory itself 0700.
type Files struct{ Dir string }

func (f Files) KeyPath() string    { return filepath.Join(f.Dir, "agent.key") }
func (f Files) CertPath() string   { return filepath.Join(f.Dir, "agent.crt") }
func (f Files) CAPath() string     { return filepath.Join(f.Dir, "ca.crt") }
func (f Files) HostIDPath() string { return filepath.Join(f.Dir, "host_id") }
func (f Files) SpoolPath() string  { return filepath.Join(f.Dir, "spool.db") }

// ErrNotEnrolled is returned by Load when the state directory holds no
// identity yet.
var ErrNotEnrolled = errors.New("agent is not enrolled: run 'qinfra-agent enroll' first")

// Identity is the agent's current credentials. It is safe for concurrent
// use: the TLS stack asks for the certificate on every handshake, so a
// renewal takes effect on the next connection.
type Identity struct {
	files  Files
	HostID string
	CA     *x509.Certificate

	mu   sync.RWMutex
	cert tls.Certificate
	leaf *x509.Certificate
	// obtained is when this certificate was received (the file's mtime
	// after a restart). Renewal is timed from it rather than from
	// NotBefore, which the CA backdates for clock skew.
	obtained time.Time
}

// Load reads the identity from the state directory.
func Load(f Files) (*Identity, error) {
	idb, err := os.ReadFile(f.HostIDPath())
	if errors.Is(err, os.ErrNotExist) {
		return nil, ErrNotEnrolled
	}
	if err != nil {
		return nil, fmt.Errorf("read host id: %w", err)
	}
	caPEM, err := os.ReadFile(f.CAPath())
	if err != nil {
		return nil, fmt.Errorf("read CA certificate: %w", err)
	}
	ca, err := pki.ParseCertPEM(caPEM)
	if err != nil {
		return nil, fmt.Errorf("parse CA certificate %s: %w", f.CAPath(), err)
	}
	cert, err := tls.LoadX509KeyPair(f.CertPath(), f.KeyPath())
	if err != nil {
		// A renewal interrupted between writing the certificate and renaming
		// its key into place leaves the key as agent.key.new: finish it.
		alt, altErr := tls.LoadX509KeyPair(f.CertPath(), f.KeyPath()+".new")
		if altErr != nil {
			return nil, fmt.Errorf("load agent key pair: %w", err)
		}
		if err := os.Rename(f.KeyPath()+".new", f.KeyPath()); err != nil {
			return nil, fmt.Errorf("finish interrupted renewal: %w", err)
		}
		cert = alt
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("parse agent certificate: %w", err)
	}
	cert.Leaf = leaf
	hostID := strings.TrimSpace(string(idb))
	if got, err := pki.HostIDFromVerifiedCert(leaf); err != nil || got != hostID {
		return nil, fmt.Errorf("agent certificate does not match host id %q in %s", hostID, f.HostIDPath())
	}
	obtained := leaf.NotBefore
	if fi, err := os.Stat(f.CertPath()); err == nil && fi.ModTime().After(obtained) && fi.ModTime().Before(leaf.NotAfter) {
		obtained = fi.ModTime()
	}
	return &Identity{files: f, HostID: hostID, CA: ca, cert: cert, leaf: leaf, obtained: obtained}, nil
}

// Save writes a new identity into the state directory.
func Save(f Files, hostID string, keyPEM, certDER, caDER []byte) error {
	if err := os.MkdirAll(f.Dir, 0o700); err != nil {
		return fmt.Errorf("create state dir: %w", err)
	}
	if err := pki.WriteFileAtomic(f.CAPath(), pki.CertPEM(caDER), 0o644); err != nil {
		return err
	}
	if err := pki.WriteFileAtomic(f.KeyPath(), keyPEM, 0o600); err != nil {
		return err
	}
	if err := pki.WriteFileAtomic(f.CertPath(), pki.CertPEM(certDER), 0o600); err != nil {
		return err
	}
	return pki.WriteFileAtomic(f.HostIDPath(), []byte(hostID+"\n"), 0o644)
}

// Leaf returns the current certificate.
func (id *Identity) Leaf() *x509.Certificate {
	id.mu.RLock()
	defer id.mu.RUnlock()
	return id.leaf
}

// RenewAt returns when the certificate should be renewed: half-way from
// when it was obtained to when it expires.
func (id *Identity) RenewAt() time.Time {
	id.mu.RLock()
	defer id.mu.RUnlock()
	return id.obtained.Add(id.leaf.NotAfter.Sub(id.obtained) / 2)
}

// Lifetime is how long the current certificate was valid for when it was
// obtained.
func (id *Identity) Lifetime() time.Duration {
	id.mu.RLock()
	defer id.mu.RUnlock()
	return id.leaf.NotAfter.Sub(id.obtained)
}

// GetClientCertificate serves tls.Config.GetClientCertificate.
func (id *Identity) GetClientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	id.mu.RLock()
	defer id.mu.RUnlock()
	c := id.cert
	return &c, nil
}

// Replace installs a renewed key and certificate, on disk first so a crash
// right after cannot leave the agent with a certificate it no longer has
// the key for in memory only.
func (id *Identity) Replace(keyPEM, certDER []byte) error {
	leaf, err := x509.ParseCertificate(certDER)
	if err != nil {
		return fmt.Errorf("parse renewed certificate: %w", err)
	}
	if got, err := pki.HostIDFromVerifiedCert(leaf); err != nil || got != id.HostID {
		return fmt.Errorf("renewed certificate is not for host %s", id.HostID)
	}
	cert, err := tls.X509KeyPair(pki.CertPEM(certDER), keyPEM)
	if err != nil {
		return fmt.Errorf("renewed certificate does not match the new key: %w", err)
	}
	cert.Leaf = leaf
	// Write the pair so a reader never sees a new cert with the old key
	// for longer than the gap between two renames; Load checks the pair.
	if err := pki.WriteFileAtomic(id.files.KeyPath()+".new", keyPEM, 0o600); err != nil {
		return err
	}
	if err := pki.WriteFileAtomic(id.files.CertPath(), pki.CertPEM(certDER), 0o600); err != nil {
		return err
	}
	if err := os.Rename(id.files.KeyPath()+".new", id.files.KeyPath()); err != nil {
		return fmt.Errorf("install renewed key: %w", err)
	}
	id.mu.Lock()
	id.cert, id.leaf, id.obtained = cert, leaf, time.Now()
	id.mu.Unlock()
	return nil
}

// TLSConfig returns the mTLS client configuration for the agent's stream.
func (id *Identity) TLSConfig(serverName string) *tls.Config {
	cfg := pki.AgentTLSConfig(nil, id.CA, serverName)
	cfg.GetClientCertificate = id.GetClientCertificate
	return cfg
}
