package pki_test

import (
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/quantumlayer/qinfra/pkg/pki"
)

func TestNewHostID(t *testing.T) {
	seen := make(map[string]bool)
	for range 1000 {
		id := pki.NewHostID()
		if !pki.ValidHostID(id) {
			t.Fatalf("NewHostID() = %q, not valid", id)
		}
		if !strings.HasPrefix(id, "h-") || len(id) != 22 {
			t.Fatalf("NewHostID() = %q, want \"h-\" and 20 characters", id)
		}
		if seen[id] {
			t.Fatalf("NewHostID() repeated %q", id)
		}
		seen[id] = true
	}
}

func TestValidHostID(t *testing.T) {
	for _, tc := range []struct {
		id   string
		want bool
	}{
		{"a", true},
		{"h-abcdefghij2345672345", true},
		{"web-01", true},
		{"0", true},
		{"-", true},
		{strings.Repeat("a", 64), true},
		{"", false},
		{strings.Repeat("a", 65), false},
		{"Web-01", false},
		{"web_01", false},
		{"web.example", false},
		{"web/01", false},
		{"web 01", false},
		{"wéb", false},
		{"web\x00", false},
	} {
		if got := pki.ValidHostID(tc.id); got != tc.want {
			t.Errorf("ValidHostID(%q) = %v, want %v", tc.id, got, tc.want)
		}
	}
}

// issueFromTemplate signs a host template for hostID, changed by mutate, with
// ca and a fresh key, and parses the result, so that the reader is tested on
// certificates exactly as crypto/x509 parses them off the wire.
func issueFromTemplate(t *testing.T, ca *pki.CA, hostID string, mutate func(*x509.Certificate)) *x509.Certificate {
	t.Helper()
	now := time.Now()
	tmpl, err := pki.HostIdentityToTemplate(hostID, now.Add(-time.Minute), now.Add(time.Hour))
	if err != nil {
		t.Fatalf("HostIdentityToTemplate: %v", err)
	}
	if mutate != nil {
		mutate(tmpl)
	}
	_, csrDER, err := pki.NewKeyAndCSR()
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.ParseCertificateRequest(csrDER)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, csr.PublicKey, ca.Key)
	if err != nil {
		t.Fatalf("CreateCertificate: %v", err)
	}
	return mustParseCert(t, der)
}

func TestHostIdentityRoundTrip(t *testing.T) {
	ca := newTestCA(t, "identity CA")
	id := pki.NewHostID()
	cert := issueFromTemplate(t, ca, id, nil)

	got, err := pki.HostIDFromVerifiedCert(cert)
	if err != nil {
		t.Fatalf("HostIDFromVerifiedCert: %v", err)
	}
	if got != id {
		t.Fatalf("HostIDFromVerifiedCert = %q, want %q", got, id)
	}
	if len(cert.URIs) != 1 || cert.URIs[0].String() != "qinfra://host/"+id {
		t.Errorf("URIs = %v, want [qinfra://host/%s]", cert.URIs, id)
	}
	if cert.Subject.CommonName != id {
		t.Errorf("CN = %q, want %q", cert.Subject.CommonName, id)
	}
	if len(cert.ExtKeyUsage) != 1 || cert.ExtKeyUsage[0] != x509.ExtKeyUsageClientAuth {
		t.Errorf("ExtKeyUsage = %v, want [ClientAuth]", cert.ExtKeyUsage)
	}
	if cert.IsCA {
		t.Error("host certificate is a CA")
	}
	if cert.SerialNumber.Sign() <= 0 || cert.SerialNumber.BitLen() > 128 {
		t.Errorf("serial %v is not a positive 128-bit number", cert.SerialNumber)
	}
}

func TestHostIdentityToTemplateSerialsDiffer(t *testing.T) {
	now := time.Now()
	a, err := pki.HostIdentityToTemplate("h-a", now, now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	b, err := pki.HostIdentityToTemplate("h-a", now, now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if a.SerialNumber.Cmp(b.SerialNumber) == 0 {
		t.Fatal("two templates got the same serial number")
	}
}

func TestHostIdentityToTemplateRejects(t *testing.T) {
	now := time.Now()
	if _, err := pki.HostIdentityToTemplate("Bad ID", now, now.Add(time.Hour)); err == nil {
		t.Error("invalid host ID accepted")
	}
	if _, err := pki.HostIdentityToTemplate("", now, now.Add(time.Hour)); err == nil {
		t.Error("empty host ID accepted")
	}
	if _, err := pki.HostIdentityToTemplate("h-a", now, now); err == nil {
		t.Error("empty validity accepted")
	}
	if _, err := pki.HostIdentityToTemplate("h-a", now, now.Add(-time.Hour)); err == nil {
		t.Error("notAfter before notBefore accepted")
	}
}

func TestHostIDFromVerifiedCertRejects(t *testing.T) {
	ca := newTestCA(t, "identity CA")
	const id = "h-test"
	mustURL := func(s string) *url.URL {
		u, err := url.Parse(s)
		if err != nil {
			t.Fatalf("url.Parse(%q): %v", s, err)
		}
		return u
	}
	setURIs := func(uris ...string) func(*x509.Certificate) {
		return func(c *x509.Certificate) {
			c.URIs = nil
			for _, s := range uris {
				c.URIs = append(c.URIs, mustURL(s))
			}
		}
	}
	for _, tc := range []struct {
		name   string
		mutate func(*x509.Certificate)
	}{
		{"no URI", setURIs()},
		{"two URIs", setURIs("qinfra://host/h-test", "qinfra://host/h-other")},
		{"same URI twice", setURIs("qinfra://host/h-test", "qinfra://host/h-test")},
		{"other scheme", setURIs("spiffe://host/h-test")},
		{"https scheme", setURIs("https://host/h-test")},
		{"other principal kind", setURIs("qinfra://operator/h-test")},
		{"port", setURIs("qinfra://host:1/h-test")},
		{"user info", setURIs("qinfra://u@host/h-test")},
		{"no path", setURIs("qinfra://host")},
		{"empty ID", setURIs("qinfra://host/")},
		{"extra path segment", setURIs("qinfra://host/h-test/x")},
		{"uppercase ID", setURIs("qinfra://host/H-TEST")},
		{"ID too long", setURIs("qinfra://host/" + strings.Repeat("a", 65))},
		{"escaped ID", setURIs("qinfra://host/h%2Dtest")},
		{"escaped slash", setURIs("qinfra://host/h-test%2Fx")},
		{"query", setURIs("qinfra://host/h-test?x=1")},
		{"fragment", setURIs("qinfra://host/h-test#x")},
		{"opaque", setURIs("qinfra:host/h-test")},
		{"CN differs", func(c *x509.Certificate) { c.Subject = pkix.Name{CommonName: "h-other"} }},
		{"no CN", func(c *x509.Certificate) { c.Subject = pkix.Name{} }},
		{"extra DNS SAN", func(c *x509.Certificate) { c.DNSNames = []string{"h-test"} }},
		{"extra IP SAN", func(c *x509.Certificate) { c.IPAddresses = []net.IP{net.IPv4(10, 0, 0, 1)} }},
		{"extra e-mail SAN", func(c *x509.Certificate) { c.EmailAddresses = []string{"a@b.c"} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cert := issueFromTemplate(t, ca, id, tc.mutate)
			if got, err := pki.HostIDFromVerifiedCert(cert); err == nil {
				t.Fatalf("HostIDFromVerifiedCert = %q, want an error (URIs %v)", got, cert.URIs)
			}
		})
	}

	t.Run("nil", func(t *testing.T) {
		if _, err := pki.HostIDFromVerifiedCert(nil); err == nil {
			t.Fatal("nil certificate accepted")
		}
	})
	t.Run("DNS-only server cert", func(t *testing.T) {
		pair := newServerCert(t, ca)
		if _, err := pki.HostIDFromVerifiedCert(mustParseCert(t, pair.Certificate[0])); err == nil {
			t.Fatal("server certificate accepted as a host identity")
		}
	})
	t.Run("CA cert", func(t *testing.T) {
		if _, err := pki.HostIDFromVerifiedCert(ca.Cert); err == nil {
			t.Fatal("CA certificate accepted as a host identity")
		}
	})
	t.Run("CA cert with host URI", func(t *testing.T) {
		// Not issuable by our CA (MaxPathLen 0 makes a chain through it
		// fail), but the reader must not rely on that.
		c := &x509.Certificate{
			IsCA: true, BasicConstraintsValid: true,
			Subject: pkix.Name{CommonName: id},
			URIs:    []*url.URL{mustURL("qinfra://host/" + id)},
		}
		if _, err := pki.HostIDFromVerifiedCert(c); err == nil {
			t.Fatal("CA certificate accepted as a host identity")
		}
	})
}

// FuzzHostIDFromCert checks that the reader never panics and accepts only
// the one canonical URI form that the writer produces.
func FuzzHostIDFromCert(f *testing.F) {
	f.Add("qinfra://host/h-abc", "h-abc")
	f.Add("qinfra://host/h-abc", "h-abd")
	f.Add("qinfra://host/h%2Dabc", "h-abc")
	f.Add("QINFRA://host/h-abc", "h-abc")
	f.Add("qinfra://host/h-abc?", "h-abc")
	f.Add("qinfra://host//h-abc", "/h-abc")
	f.Add("qinfra:///h-abc", "h-abc")
	f.Fuzz(func(t *testing.T, uri, cn string) {
		u, err := url.Parse(uri)
		if err != nil {
			return
		}
		cert := &x509.Certificate{Subject: pkix.Name{CommonName: cn}, URIs: []*url.URL{u}}
		id, err := pki.HostIDFromVerifiedCert(cert)
		if err != nil {
			return
		}
		if !pki.ValidHostID(id) || id != cn {
			t.Fatalf("accepted %q (CN %q) as invalid or mismatched ID %q", uri, cn, id)
		}
		if got, want := u.String(), "qinfra://host/"+id; got != want {
			t.Fatalf("accepted non-canonical URI %q (as %q), want %q", uri, got, want)
		}
	})
}
