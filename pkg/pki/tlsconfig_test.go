package pki_test

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/quantumlayer/qinfra/pkg/pki"
)

// mtlsFixture is a server with our CA and the pieces tests vary.
type mtlsFixture struct {
	ca, other  *pki.CA
	serverConf *tls.Config
}

func newMTLSFixture(t *testing.T) *mtlsFixture {
	t.Helper()
	ca := newTestCA(t, "qinfra CA")
	return &mtlsFixture{
		ca:         ca,
		other:      newTestCA(t, "someone else's CA"),
		serverConf: pki.ServerTLSConfig(newServerCert(t, ca), ca.Pool()),
	}
}

func TestServerTLSConfigShape(t *testing.T) {
	f := newMTLSFixture(t)
	c := f.serverConf
	if c.MinVersion != tls.VersionTLS13 {
		t.Errorf("MinVersion = %x, want TLS 1.3", c.MinVersion)
	}
	if c.ClientAuth != tls.VerifyClientCertIfGiven {
		t.Errorf("ClientAuth = %v, want VerifyClientCertIfGiven", c.ClientAuth)
	}
	if len(c.NextProtos) != 1 || c.NextProtos[0] != "h2" {
		t.Errorf("NextProtos = %v, want [h2]", c.NextProtos)
	}
	if len(c.Certificates) != 1 || len(c.Certificates[0].Certificate) != 2 {
		t.Errorf("server presents %d certificates, want the leaf and the CA", len(c.Certificates[0].Certificate))
	}
}

func TestMTLSHandshake(t *testing.T) {
	f := newMTLSFixture(t)

	t.Run("valid agent certificate", func(t *testing.T) {
		id := pki.NewHostID()
		cert := newHostCert(t, f.ca, id, time.Hour, time.Time{})
		res := handshake(t, f.serverConf, pki.AgentTLSConfig(&cert, f.ca.Cert, testServerName))
		if res.serverErr != nil || res.clientErr != nil {
			t.Fatalf("handshake failed: server %v, client %v", res.serverErr, res.clientErr)
		}
		st := res.serverState
		if st.Version != tls.VersionTLS13 || st.NegotiatedProtocol != "h2" {
			t.Errorf("version %x, ALPN %q; want TLS 1.3 and h2", st.Version, st.NegotiatedProtocol)
		}
		if len(st.VerifiedChains) == 0 {
			t.Fatal("server has no verified client chain")
		}
		got, err := pki.HostIDFromVerifiedCert(st.VerifiedChains[0][0])
		if err != nil || got != id {
			t.Fatalf("server sees host %q, %v; want %q", got, err, id)
		}
	})

	t.Run("client certificate from another CA", func(t *testing.T) {
		cert := newHostCert(t, f.other, "h-intruder", time.Hour, time.Time{})
		res := handshake(t, f.serverConf, pki.AgentTLSConfig(&cert, f.ca.Cert, testServerName))
		var unknown x509.UnknownAuthorityError
		if !errors.As(res.serverErr, &unknown) {
			t.Errorf("server error = %v, want an unknown authority error", res.serverErr)
		}
		if res.clientErr == nil {
			t.Error("client saw no error")
		}
	})

	t.Run("expired client certificate", func(t *testing.T) {
		cert := newHostCert(t, f.ca, "h-old", time.Hour, time.Now().Add(-48*time.Hour))
		res := handshake(t, f.serverConf, pki.AgentTLSConfig(&cert, f.ca.Cert, testServerName))
		var invalid x509.CertificateInvalidError
		if !errors.As(res.serverErr, &invalid) || invalid.Reason != x509.Expired {
			t.Errorf("server error = %v, want an expired certificate error", res.serverErr)
		}
		if res.clientErr == nil {
			t.Error("client saw no error")
		}
	})

	t.Run("server certificate used as client certificate", func(t *testing.T) {
		// Signed by the right CA but for the wrong purpose: a stolen
		// server key must not let its holder pose as an agent.
		cert := newServerCert(t, f.ca)
		res := handshake(t, f.serverConf, pki.AgentTLSConfig(&cert, f.ca.Cert, testServerName))
		if res.serverErr == nil {
			t.Error("server accepted a ServerAuth-only certificate from a client")
		}
	})

	t.Run("no client certificate", func(t *testing.T) {
		res := handshake(t, f.serverConf, pki.AgentTLSConfig(nil, f.ca.Cert, testServerName))
		if res.serverErr != nil || res.clientErr != nil {
			t.Fatalf("handshake failed: server %v, client %v", res.serverErr, res.clientErr)
		}
		if n := len(res.serverState.PeerCertificates); n != 0 {
			t.Fatalf("server sees %d peer certificates, want none", n)
		}
		if len(res.serverState.VerifiedChains) != 0 {
			t.Fatal("server has a verified chain without a client certificate")
		}
	})

	t.Run("TLS 1.2 client refused", func(t *testing.T) {
		cert := newHostCert(t, f.ca, "h-old-tls", time.Hour, time.Time{})
		conf := pki.AgentTLSConfig(&cert, f.ca.Cert, testServerName)
		conf.MinVersion, conf.MaxVersion = tls.VersionTLS12, tls.VersionTLS12
		res := handshake(t, f.serverConf, conf)
		if res.serverErr == nil || res.clientErr == nil {
			t.Fatalf("TLS 1.2 handshake not refused: server %v, client %v", res.serverErr, res.clientErr)
		}
	})

	t.Run("agent refuses a server from another CA", func(t *testing.T) {
		impostor := pki.ServerTLSConfig(newServerCert(t, f.other), f.ca.Pool())
		cert := newHostCert(t, f.ca, "h-a", time.Hour, time.Time{})
		res := handshake(t, impostor, pki.AgentTLSConfig(&cert, f.ca.Cert, testServerName))
		var unknown x509.UnknownAuthorityError
		if !errors.As(res.clientErr, &unknown) {
			t.Errorf("client error = %v, want an unknown authority error", res.clientErr)
		}
	})

	t.Run("agent checks the server name", func(t *testing.T) {
		res := handshake(t, f.serverConf, pki.AgentTLSConfig(nil, f.ca.Cert, "elsewhere.test"))
		var host x509.HostnameError
		if !errors.As(res.clientErr, &host) {
			t.Errorf("client error = %v, want a host name error", res.clientErr)
		}
	})

	t.Run("agent with no CA trusts nothing", func(t *testing.T) {
		res := handshake(t, f.serverConf, pki.AgentTLSConfig(nil, nil, testServerName))
		if res.clientErr == nil {
			t.Error("client with no CA accepted the server")
		}
	})
}

func TestPinnedTLSConfig(t *testing.T) {
	f := newMTLSFixture(t)
	pin, err := pki.ParseFingerprint(f.ca.Fingerprint())
	if err != nil {
		t.Fatal(err)
	}

	t.Run("right fingerprint", func(t *testing.T) {
		for _, name := range []string{testServerName, ""} {
			res := handshake(t, f.serverConf, pki.PinnedTLSConfig(pin, name))
			if res.serverErr != nil || res.clientErr != nil {
				t.Fatalf("serverName %q: handshake failed: server %v, client %v", name, res.serverErr, res.clientErr)
			}
			if res.clientState.Version != tls.VersionTLS13 || res.clientState.NegotiatedProtocol != "h2" {
				t.Errorf("version %x, ALPN %q; want TLS 1.3 and h2", res.clientState.Version, res.clientState.NegotiatedProtocol)
			}
			if len(res.serverState.PeerCertificates) != 0 {
				t.Error("enrollment connection sent a client certificate")
			}
		}
	})

	assertMismatch := func(t *testing.T, res handshakeResult, detail string) {
		t.Helper()
		if !errors.Is(res.clientErr, pki.ErrFingerprintMismatch) {
			t.Fatalf("client error = %v, want %v", res.clientErr, pki.ErrFingerprintMismatch)
		}
		if !strings.Contains(res.clientErr.Error(), "server CA fingerprint mismatch") ||
			!strings.Contains(res.clientErr.Error(), detail) {
			t.Fatalf("client error = %q, want the mismatch error mentioning %q", res.clientErr, detail)
		}
		if res.serverErr == nil {
			t.Error("server saw no error")
		}
	}

	t.Run("wrong fingerprint", func(t *testing.T) {
		wrong, _ := pki.ParseFingerprint(f.other.Fingerprint())
		res := handshake(t, f.serverConf, pki.PinnedTLSConfig(wrong, testServerName))
		assertMismatch(t, res, "no certificate in the server's chain")
	})

	t.Run("malformed pin", func(t *testing.T) {
		res := handshake(t, f.serverConf, pki.PinnedTLSConfig(pin[:16], testServerName))
		assertMismatch(t, res, "pin is 16 bytes")
	})

	t.Run("other CA's server presenting our CA", func(t *testing.T) {
		// An impostor copies our public CA certificate into its chain to
		// satisfy the pin, but its leaf was signed by a different CA.
		impostorCert := newServerCert(t, f.other)
		impostorCert.Certificate = [][]byte{impostorCert.Certificate[0], f.ca.Cert.Raw}
		impostor := pki.ServerTLSConfig(impostorCert, f.ca.Pool())
		res := handshake(t, impostor, pki.PinnedTLSConfig(pin, testServerName))
		assertMismatch(t, res, "does not verify against the pinned CA")
	})

	t.Run("other CA's server without our CA", func(t *testing.T) {
		impostor := pki.ServerTLSConfig(newServerCert(t, f.other), f.other.Pool())
		res := handshake(t, impostor, pki.PinnedTLSConfig(pin, testServerName))
		assertMismatch(t, res, "no certificate in the server's chain")
	})

	t.Run("pin of a non-CA certificate", func(t *testing.T) {
		leafPin := sha256.Sum256(f.serverConf.Certificates[0].Certificate[0])
		res := handshake(t, f.serverConf, pki.PinnedTLSConfig(leafPin[:], testServerName))
		assertMismatch(t, res, "is not a CA")
	})

	t.Run("wrong server name", func(t *testing.T) {
		res := handshake(t, f.serverConf, pki.PinnedTLSConfig(pin, "elsewhere.test"))
		assertMismatch(t, res, "does not verify against the pinned CA")
	})

	t.Run("caller's pin slice is copied", func(t *testing.T) {
		p := append([]byte(nil), pin...)
		conf := pki.PinnedTLSConfig(p, testServerName)
		p[0] ^= 0xff
		res := handshake(t, f.serverConf, conf)
		if res.clientErr != nil {
			t.Fatalf("changing the caller's slice changed the pin: %v", res.clientErr)
		}
	})

	t.Run("pinned CA then full mTLS", func(t *testing.T) {
		// The enrollment flow end to end: pin, get a certificate, then
		// connect with it and the CA learned from the pinned chain.
		res := handshake(t, f.serverConf, pki.PinnedTLSConfig(pin, testServerName))
		if res.clientErr != nil {
			t.Fatal(res.clientErr)
		}
		chain := res.clientState.PeerCertificates
		learned := chain[len(chain)-1]
		if pki.Fingerprint(learned) != f.ca.Fingerprint() {
			t.Fatal("last certificate of the server's chain is not the pinned CA")
		}
		id := pki.NewHostID()
		cert := newHostCert(t, f.ca, id, time.Hour, time.Time{})
		res = handshake(t, f.serverConf, pki.AgentTLSConfig(&cert, learned, testServerName))
		if res.serverErr != nil || res.clientErr != nil {
			t.Fatalf("mTLS after enrollment failed: server %v, client %v", res.serverErr, res.clientErr)
		}
		if got, err := pki.HostIDFromVerifiedCert(res.serverState.VerifiedChains[0][0]); err != nil || got != id {
			t.Fatalf("server sees host %q, %v; want %q", got, err, id)
		}
	})
}
