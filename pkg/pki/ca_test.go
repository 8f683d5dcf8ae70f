package pki_test

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io/fs"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/quantumlayer/qinfra/pkg/pki"
)

func TestNewCA(t *testing.T) {
	ca, err := pki.NewCA("qinfra test CA", 48*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	c := ca.Cert
	if !c.IsCA || !c.BasicConstraintsValid {
		t.Error("CA certificate is not a CA")
	}
	if c.MaxPathLen != 0 || !c.MaxPathLenZero {
		t.Errorf("MaxPathLen = %d (zero %v), want 0", c.MaxPathLen, c.MaxPathLenZero)
	}
	if want := x509.KeyUsageCertSign | x509.KeyUsageCRLSign; c.KeyUsage != want {
		t.Errorf("KeyUsage = %v, want %v", c.KeyUsage, want)
	}
	if c.Subject.CommonName != "qinfra test CA" {
		t.Errorf("CN = %q", c.Subject.CommonName)
	}
	if err := c.CheckSignatureFrom(c); err != nil {
		t.Errorf("not self-signed: %v", err)
	}
	if len(c.SubjectKeyId) == 0 {
		t.Error("no SubjectKeyId")
	}
	if d := time.Until(c.NotAfter); d < 47*time.Hour || d > 48*time.Hour {
		t.Errorf("NotAfter in %s, want 48h", d)
	}
	if !c.NotBefore.Before(time.Now()) {
		t.Error("NotBefore is not in the past")
	}
	fromPEM, err := pki.ParseCertPEM(ca.CertPEM)
	if err != nil || !bytes.Equal(fromPEM.Raw, c.Raw) {
		t.Errorf("CertPEM does not hold Cert (err %v)", err)
	}
	if k, ok := ca.Key.(*ecdsa.PrivateKey); !ok || k.Curve != elliptic.P256() {
		t.Errorf("key is %T, want ECDSA P-256", ca.Key)
	}

	if _, err := pki.NewCA("", time.Hour); err == nil {
		t.Error("empty common name accepted")
	}
	if _, err := pki.NewCA("x", 0); err == nil {
		t.Error("zero validity accepted")
	}
}

func TestCAPool(t *testing.T) {
	ca := newTestCA(t, "pool CA")
	other := newTestCA(t, "other CA")
	leaf := mustParseCert(t, newHostCert(t, ca, "h-a", time.Hour, time.Time{}).Certificate[0])
	opts := x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	if _, err := leaf.Verify(opts); err != nil {
		t.Errorf("leaf does not verify against its CA's pool: %v", err)
	}
	opts.Roots = other.Pool()
	if _, err := leaf.Verify(opts); err == nil {
		t.Error("leaf verifies against another CA's pool")
	}
}

func TestSaveLoadCA(t *testing.T) {
	dir := t.TempDir()
	certPath, keyPath := filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key")
	ca := newTestCA(t, "saved CA")
	if err := ca.Save(certPath, keyPath); err != nil {
		t.Fatalf("Save: %v", err)
	}
	if runtime.GOOS != "windows" {
		for path, want := range map[string]os.FileMode{keyPath: 0o600, certPath: 0o644} {
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if got := fi.Mode().Perm(); got != want {
				t.Errorf("%s mode = %v, want %v", filepath.Base(path), got, want)
			}
		}
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := pem.Decode(keyPEM); b == nil || b.Type != "PRIVATE KEY" {
		t.Errorf("key file is not a PKCS#8 PEM block")
	}

	loaded, err := pki.LoadCA(certPath, keyPath)
	if err != nil {
		t.Fatalf("LoadCA: %v", err)
	}
	if !bytes.Equal(loaded.Cert.Raw, ca.Cert.Raw) || !bytes.Equal(loaded.CertPEM, ca.CertPEM) {
		t.Error("loaded certificate differs")
	}
	if !loaded.Key.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(ca.Key.Public()) {
		t.Error("loaded key differs")
	}
	if loaded.Fingerprint() != ca.Fingerprint() {
		t.Error("fingerprint changed across Save/Load")
	}
	// The loaded CA signs certificates that the original's pool accepts.
	leaf := mustParseCert(t, newHostCert(t, loaded, "h-a", time.Hour, time.Time{}).Certificate[0])
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("certificate from loaded CA does not verify: %v", err)
	}

	// Saving again replaces both files in place.
	ca2 := newTestCA(t, "replacement CA")
	if err := ca2.Save(certPath, keyPath); err != nil {
		t.Fatalf("Save over existing: %v", err)
	}
	if again, err := pki.LoadCA(certPath, keyPath); err != nil || again.Fingerprint() != ca2.Fingerprint() {
		t.Errorf("after second Save, LoadCA = %v, want the replacement CA", err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Errorf("directory holds %d entries, want ca.crt and ca.key only", len(entries))
	}
}

func TestLoadCAErrors(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t, "CA one")
	other := newTestCA(t, "CA two")
	certPath, keyPath := filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key")
	if err := ca.Save(certPath, keyPath); err != nil {
		t.Fatal(err)
	}
	otherCert, otherKey := filepath.Join(dir, "o.crt"), filepath.Join(dir, "o.key")
	if err := other.Save(otherCert, otherKey); err != nil {
		t.Fatal(err)
	}
	serverPEM, serverKey, err := ca.IssueServerCert([]string{"x"}, nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	leafPath, leafKey := filepath.Join(dir, "leaf.crt"), filepath.Join(dir, "leaf.key")
	if err := os.WriteFile(leafPath, serverPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(leafKey, serverKey, 0o600); err != nil {
		t.Fatal(err)
	}
	garbage := filepath.Join(dir, "garbage")
	if err := os.WriteFile(garbage, []byte("not PEM"), 0o600); err != nil {
		t.Fatal(err)
	}

	if _, err := pki.LoadCA(filepath.Join(dir, "missing"), keyPath); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing cert: err = %v, want fs.ErrNotExist", err)
	}
	if _, err := pki.LoadCA(certPath, filepath.Join(dir, "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing key: err = %v, want fs.ErrNotExist", err)
	}
	if _, err := pki.LoadCA(certPath, otherKey); err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Errorf("mismatched key: err = %v", err)
	}
	if _, err := pki.LoadCA(leafPath, leafKey); err == nil || !strings.Contains(err.Error(), "not a CA") {
		t.Errorf("server certificate as CA: err = %v", err)
	}
	if _, err := pki.LoadCA(garbage, keyPath); err == nil {
		t.Error("garbage certificate accepted")
	}
	if _, err := pki.LoadCA(certPath, garbage); err == nil {
		t.Error("garbage key accepted")
	}
}

func TestSignHostCSR(t *testing.T) {
	ca := newTestCA(t, "signing CA")
	_, csrDER, err := pki.NewKeyAndCSR()
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().Truncate(time.Second)
	id := pki.NewHostID()
	cert, err := ca.SignHostCSR(csrDER, id, 2*time.Hour, now)
	if err != nil {
		t.Fatalf("SignHostCSR: %v", err)
	}
	if _, err := cert.Verify(x509.VerifyOptions{
		Roots:     ca.Pool(),
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}); err != nil {
		t.Fatalf("host certificate does not verify for client auth: %v", err)
	}
	if _, err := cert.Verify(x509.VerifyOptions{
		Roots:     ca.Pool(),
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}); err == nil {
		t.Error("host certificate verifies for server auth")
	}
	if got, err := pki.HostIDFromVerifiedCert(cert); err != nil || got != id {
		t.Errorf("HostIDFromVerifiedCert = %q, %v; want %q", got, err, id)
	}
	if want := now.Add(-time.Minute); !cert.NotBefore.Equal(want) {
		t.Errorf("NotBefore = %s, want %s (backdated a minute)", cert.NotBefore, want)
	}
	if want := now.Add(2 * time.Hour); !cert.NotAfter.Equal(want) {
		t.Errorf("NotAfter = %s, want %s", cert.NotAfter, want)
	}
	csr, _ := x509.ParseCertificateRequest(csrDER)
	if !csr.PublicKey.(*ecdsa.PublicKey).Equal(cert.PublicKey) {
		t.Error("certificate is not for the CSR's key")
	}
	if !bytes.Equal(cert.AuthorityKeyId, ca.Cert.SubjectKeyId) {
		t.Error("AuthorityKeyId does not name the CA")
	}
}

func TestSignHostCSRIgnoresRequestedNames(t *testing.T) {
	ca := newTestCA(t, "signing CA")
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	evil, _ := url.Parse("qinfra://host/h-admin")
	other, _ := url.Parse("spiffe://example.org/admin")
	csrDER, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject:        pkix.Name{CommonName: "h-admin", Organization: []string{"root"}},
		DNSNames:       []string{"server.qinfra.test", "h-admin"},
		IPAddresses:    []net.IP{net.IPv4(127, 0, 0, 1)},
		EmailAddresses: []string{"root@example.org"},
		URIs:           []*url.URL{evil, other},
	}, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.SignHostCSR(csrDER, "h-real", time.Hour, time.Time{})
	if err != nil {
		t.Fatalf("SignHostCSR: %v", err)
	}
	if len(cert.DNSNames) != 0 || len(cert.IPAddresses) != 0 || len(cert.EmailAddresses) != 0 {
		t.Errorf("requested SANs leaked into the certificate: %v %v %v", cert.DNSNames, cert.IPAddresses, cert.EmailAddresses)
	}
	if len(cert.URIs) != 1 || cert.URIs[0].String() != "qinfra://host/h-real" {
		t.Errorf("URIs = %v, want only qinfra://host/h-real", cert.URIs)
	}
	if cert.Subject.CommonName != "h-real" || len(cert.Subject.Organization) != 0 {
		t.Errorf("subject = %v, want CN=h-real only", cert.Subject)
	}
	if got, err := pki.HostIDFromVerifiedCert(cert); err != nil || got != "h-real" {
		t.Errorf("HostIDFromVerifiedCert = %q, %v; want h-real", got, err)
	}
}

// csrFor makes a CSR for key with no names.
func csrFor(t *testing.T, key crypto.Signer) []byte {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		t.Fatalf("CreateCertificateRequest(%T): %v", key, err)
	}
	return der
}

func TestSignHostCSRKeyTypes(t *testing.T) {
	ca := newTestCA(t, "signing CA")
	ecKey := func(c elliptic.Curve) crypto.Signer {
		k, err := ecdsa.GenerateKey(c, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	rsaKey := func(bits int) crypto.Signer {
		k, err := rsa.GenerateKey(rand.Reader, bits)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		key  crypto.Signer
		ok   bool
	}{
		{"ECDSA P-256", ecKey(elliptic.P256()), true},
		{"ECDSA P-384", ecKey(elliptic.P384()), true},
		{"ECDSA P-521", ecKey(elliptic.P521()), false},
		{"Ed25519", edKey, true},
		{"RSA 2048", rsaKey(2048), true},
		{"RSA 1024", rsaKey(1024), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cert, err := ca.SignHostCSR(csrFor(t, tc.key), "h-a", time.Hour, time.Time{})
			if !tc.ok {
				if err == nil {
					t.Fatal("key accepted, want refused")
				}
				return
			}
			if err != nil {
				t.Fatalf("SignHostCSR: %v", err)
			}
			if _, err := cert.Verify(x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
				t.Fatalf("Verify: %v", err)
			}
		})
	}
}

func TestSignHostCSRBadInput(t *testing.T) {
	ca := newTestCA(t, "signing CA")
	_, good, err := pki.NewKeyAndCSR()
	if err != nil {
		t.Fatal(err)
	}

	// A CSR whose content was changed after signing: the subject names one
	// host, then the bytes are edited to name another of the same length.
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	signed, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "aaaaaaaa"}}, key)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Count(signed, []byte("aaaaaaaa")) != 1 {
		t.Fatal("test setup: common name not found exactly once in the CSR")
	}
	tampered := bytes.Replace(signed, []byte("aaaaaaaa"), []byte("bbbbbbbb"), 1)
	if _, err := x509.ParseCertificateRequest(tampered); err != nil {
		t.Fatalf("test setup: tampered CSR should still parse: %v", err)
	}
	badSig := bytes.Clone(good)
	badSig[len(badSig)-1] ^= 0x01 // last byte of the ECDSA signature's s

	for _, tc := range []struct {
		name   string
		csr    []byte
		hostID string
		ttl    time.Duration
	}{
		{"garbage DER", []byte("this is not a CSR"), "h-a", time.Hour},
		{"empty", nil, "h-a", time.Hour},
		{"truncated", good[:len(good)/2], "h-a", time.Hour},
		{"trailing data", append(bytes.Clone(good), 0), "h-a", time.Hour},
		{"tampered content", tampered, "h-a", time.Hour},
		{"tampered signature", badSig, "h-a", time.Hour},
		{"certificate instead of CSR", ca.Cert.Raw, "h-a", time.Hour},
		{"invalid host ID", good, "H A", time.Hour},
		{"empty host ID", good, "", time.Hour},
		{"zero ttl", good, "h-a", 0},
		{"negative ttl", good, "h-a", -time.Hour},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if cert, err := ca.SignHostCSR(tc.csr, tc.hostID, tc.ttl, time.Time{}); err == nil {
				t.Fatalf("accepted, issued %v", cert.URIs)
			}
		})
	}
}

func TestSignHostCSRCapsTTL(t *testing.T) {
	_, csrDER, err := pki.NewKeyAndCSR()
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().Truncate(time.Second)

	ca, err := pki.NewCA("long CA", 10*365*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.SignHostCSR(csrDER, "h-a", 365*24*time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	if want := now.Add(pki.MaxHostCertTTL); !cert.NotAfter.Equal(want) {
		t.Errorf("NotAfter = %s, want capped at %s", cert.NotAfter, want)
	}

	short, err := pki.NewCA("short CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cert, err = short.SignHostCSR(csrDER, "h-a", 24*time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	if !cert.NotAfter.Equal(short.Cert.NotAfter) {
		t.Errorf("NotAfter = %s, want capped at the CA's %s", cert.NotAfter, short.Cert.NotAfter)
	}
	if _, err := short.SignHostCSR(csrDER, "h-a", time.Hour, now.Add(2*time.Hour)); err == nil {
		t.Error("expired CA signed a certificate")
	}
}

func TestIssueServerCert(t *testing.T) {
	ca := newTestCA(t, "server CA")
	ip := net.IPv4(127, 0, 0, 1)
	certPEM, keyPEM, err := ca.IssueServerCert([]string{"qinfra.test", "alt.qinfra.test"}, []net.IP{ip}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	var ders [][]byte
	for rest := certPEM; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			t.Fatalf("unexpected PEM block %q", b.Type)
		}
		ders = append(ders, b.Bytes)
	}
	if len(ders) != 2 || !bytes.Equal(ders[1], ca.Cert.Raw) {
		t.Fatalf("certPEM holds %d certificates, want the leaf followed by the CA", len(ders))
	}
	leaf := mustParseCert(t, ders[0])
	for _, name := range []string{"qinfra.test", "alt.qinfra.test", "127.0.0.1"} {
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: ca.Pool(), DNSName: name}); err != nil {
			t.Errorf("Verify for %q: %v", name, err)
		}
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err == nil {
		t.Error("server certificate verifies for client auth")
	}
	if leaf.Subject.CommonName != "qinfra.test" {
		t.Errorf("CN = %q", leaf.Subject.CommonName)
	}
	key, err := pki.ParsePrivateKeyPEM(keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	if !key.Public().(*ecdsa.PublicKey).Equal(leaf.PublicKey) {
		t.Error("key does not match the certificate")
	}

	// IP-only certificates are named after the address.
	certPEM, _, err = ca.IssueServerCert(nil, []net.IP{ip}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if c, err := pki.ParseCertPEM(certPEM); err != nil || c.Subject.CommonName != "127.0.0.1" {
		t.Errorf("IP-only certificate: CN = %v, err %v", c.Subject.CommonName, err)
	}

	for name, call := range map[string]func() error{
		"no names":      func() error { _, _, err := ca.IssueServerCert(nil, nil, time.Hour); return err },
		"empty name":    func() error { _, _, err := ca.IssueServerCert([]string{""}, nil, time.Hour); return err },
		"nil IP":        func() error { _, _, err := ca.IssueServerCert(nil, []net.IP{nil}, time.Hour); return err },
		"zero validity": func() error { _, _, err := ca.IssueServerCert([]string{"x"}, nil, 0); return err },
	} {
		if call() == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// FuzzSignHostCSR checks that no input makes SignHostCSR panic and that
// whatever it does sign carries exactly the identity it was given.
func FuzzSignHostCSR(f *testing.F) {
	ca := newTestCA(f, "fuzz CA")
	_, good, err := pki.NewKeyAndCSR()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add(good[:len(good)-1])
	f.Add([]byte{})
	f.Add([]byte{0x30, 0x80})
	f.Add(ca.Cert.Raw)
	f.Fuzz(func(t *testing.T, csr []byte) {
		cert, err := ca.SignHostCSR(csr, "h-fuzz", time.Hour, time.Time{})
		if err != nil {
			return
		}
		if id, err := pki.HostIDFromVerifiedCert(cert); err != nil || id != "h-fuzz" {
			t.Fatalf("signed certificate has identity %q, %v; want h-fuzz", id, err)
		}
		if len(cert.DNSNames)+len(cert.IPAddresses)+len(cert.EmailAddresses) != 0 {
			t.Fatal("signed certificate carries names from the CSR")
		}
	})
}
