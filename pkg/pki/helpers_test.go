package pki_test

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/quantumlayer/qinfra/pkg/pki"
)

// testServerName is the DNS name test servers are issued for and clients
// expect.
const testServerName = "qinfra.test"

// newTestCA returns a fresh CA valid for a day.
func newTestCA(t testing.TB, name string) *pki.CA {
	t.Helper()
	ca, err := pki.NewCA(name, 24*time.Hour)
	if err != nil {
		t.Fatalf("NewCA(%q): %v", name, err)
	}
	return ca
}

// newHostCert runs the agent's side of enrollment (key and CSR) and the
// server's (signing) and returns the resulting client certificate.
func newHostCert(t testing.TB, ca *pki.CA, hostID string, ttl time.Duration, now time.Time) tls.Certificate {
	t.Helper()
	keyPEM, csrDER, err := pki.NewKeyAndCSR()
	if err != nil {
		t.Fatalf("NewKeyAndCSR: %v", err)
	}
	cert, err := ca.SignHostCSR(csrDER, hostID, ttl, now)
	if err != nil {
		t.Fatalf("SignHostCSR: %v", err)
	}
	pair, err := tls.X509KeyPair(pki.CertPEM(cert.Raw), keyPEM)
	if err != nil {
		t.Fatalf("X509KeyPair(host): %v", err)
	}
	return pair
}

// newServerCert issues a server certificate for testServerName and
// 127.0.0.1, with the CA in its chain.
func newServerCert(t testing.TB, ca *pki.CA) tls.Certificate {
	t.Helper()
	certPEM, keyPEM, err := ca.IssueServerCert([]string{testServerName}, []net.IP{net.IPv4(127, 0, 0, 1)}, time.Hour)
	if err != nil {
		t.Fatalf("IssueServerCert: %v", err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatalf("X509KeyPair(server): %v", err)
	}
	return pair
}

// handshakeResult is what both ends of a test connection saw.
type handshakeResult struct {
	serverErr   error               // from the server's Handshake
	serverState tls.ConnectionState // valid when serverErr is nil
	clientErr   error               // from the client's dial or first read
	clientState tls.ConnectionState // valid when the dial succeeded
}

// handshake runs one real TLS connection over loopback: a server with
// serverConf accepts, completes its handshake and writes "ok"; a client
// with clientConf dials and reads the reply. The read matters: in TLS 1.3
// the client finishes its handshake before the server has checked the
// client certificate, so a rejection only shows up on the client's first
// read.
func handshake(t *testing.T, serverConf, clientConf *tls.Config) handshakeResult {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", serverConf)
	if err != nil {
		t.Fatalf("tls.Listen: %v", err)
	}
	defer ln.Close()

	type serverOut struct {
		err   error
		state tls.ConnectionState
	}
	done := make(chan serverOut, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- serverOut{err: err}
			return
		}
		defer c.Close()
		tc := c.(*tls.Conn)
		_ = tc.SetDeadline(time.Now().Add(10 * time.Second))
		if err := tc.Handshake(); err != nil {
			done <- serverOut{err: err}
			return
		}
		_, err = tc.Write([]byte("ok"))
		done <- serverOut{err: err, state: tc.ConnectionState()}
	}()

	var res handshakeResult
	dialer := &net.Dialer{Timeout: 10 * time.Second}
	conn, err := tls.DialWithDialer(dialer, "tcp", ln.Addr().String(), clientConf)
	if err != nil {
		res.clientErr = err
	} else {
		res.clientState = conn.ConnectionState()
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		buf := make([]byte, 2)
		if _, err := conn.Read(buf); err != nil {
			res.clientErr = err
		} else if string(buf) != "ok" {
			res.clientErr = errors.New("unexpected reply " + string(buf))
		}
		conn.Close()
	}
	out := <-done
	res.serverErr, res.serverState = out.err, out.state
	return res
}

// mustParseCert parses a DER certificate or fails the test.
func mustParseCert(t testing.TB, der []byte) *x509.Certificate {
	t.Helper()
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("ParseCertificate: %v", err)
	}
	return c
}
