package pki_test

import (
	"bytes"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"strings"
	"testing"

	"github.com/quantumlayer/qinfra/pkg/pki"
)

func TestNewKeyAndCSR(t *testing.T) {
	keyPEM, csrDER, err := pki.NewKeyAndCSR()
	if err != nil {
		t.Fatal(err)
	}
	b, rest := pem.Decode(keyPEM)
	if b == nil || b.Type != "PRIVATE KEY" || len(bytes.TrimSpace(rest)) != 0 {
		t.Fatalf("key is not a single PKCS#8 PEM block: %q", keyPEM)
	}
	key, err := pki.ParsePrivateKeyPEM(keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	ec, ok := key.(*ecdsa.PrivateKey)
	if !ok || ec.Curve != elliptic.P256() {
		t.Fatalf("key is %T, want ECDSA P-256", key)
	}
	csr, err := x509.ParseCertificateRequest(csrDER)
	if err != nil {
		t.Fatal(err)
	}
	if err := csr.CheckSignature(); err != nil {
		t.Fatalf("CSR signature: %v", err)
	}
	if !ec.PublicKey.Equal(csr.PublicKey) {
		t.Error("CSR is not for the returned key")
	}
	if len(csr.DNSNames)+len(csr.URIs)+len(csr.IPAddresses)+len(csr.EmailAddresses) != 0 || csr.Subject.CommonName != "" {
		t.Error("CSR makes identity claims")
	}
}

func TestParsePrivateKeyPEM(t *testing.T) {
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	rsaKey, err := rsa.GenerateKey(rand.Reader, 1024) // size is irrelevant to parsing
	if err != nil {
		t.Fatal(err)
	}
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	xKey, _ := ecdh.X25519().GenerateKey(rand.Reader)

	block := func(typ string, der []byte, err error) []byte {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
	}
	pkcs8 := func(k any) []byte { der, err := x509.MarshalPKCS8PrivateKey(k); return block("PRIVATE KEY", der, err) }
	sec1 := func() []byte { der, err := x509.MarshalECPrivateKey(ecKey); return block("EC PRIVATE KEY", der, err) }
	ecParams := pem.EncodeToMemory(&pem.Block{Type: "EC PARAMETERS", Bytes: []byte{0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07}})
	encrypted := pem.EncodeToMemory(&pem.Block{
		Type:    "EC PRIVATE KEY",
		Headers: map[string]string{"Proc-Type": "4,ENCRYPTED", "DEK-Info": "AES-128-CBC,00000000000000000000000000000000"},
		Bytes:   []byte{1, 2, 3},
	})

	for _, tc := range []struct {
		name string
		in   []byte
		ok   bool
	}{
		{"PKCS#8 ECDSA", pkcs8(ecKey), true},
		{"PKCS#8 RSA", pkcs8(rsaKey), true},
		{"PKCS#8 Ed25519", pkcs8(edKey), true},
		{"SEC 1", sec1(), true},
		{"SEC 1 after EC PARAMETERS", append(bytes.Clone(ecParams), sec1()...), true},
		{"PKCS#1", block("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsaKey), nil), true},
		{"PKCS#8 X25519 cannot sign", pkcs8(xKey), false},
		{"encrypted", encrypted, false},
		{"certificate", newTestCA(t, "x").CertPEM, false},
		{"wrong type for content", block("RSA PRIVATE KEY", mustMarshalEC(t, ecKey), nil), false},
		{"corrupt PKCS#8", block("PRIVATE KEY", []byte{0x30, 0x03, 0x02, 0x01, 0x00}, nil), false},
		{"EC PARAMETERS only", ecParams, false},
		{"not PEM", []byte("hello"), false},
		{"empty", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			key, err := pki.ParsePrivateKeyPEM(tc.in)
			if tc.ok != (err == nil) {
				t.Fatalf("ParsePrivateKeyPEM = %T, %v; want ok=%v", key, err, tc.ok)
			}
			if err == nil && key == nil {
				t.Fatal("nil key without error")
			}
		})
	}
}

func mustMarshalEC(t *testing.T, k *ecdsa.PrivateKey) []byte {
	t.Helper()
	der, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func TestCertPEMRoundTrip(t *testing.T) {
	ca := newTestCA(t, "pem CA")
	p := pki.CertPEM(ca.Cert.Raw)
	if !strings.HasPrefix(string(p), "-----BEGIN CERTIFICATE-----\n") {
		t.Fatalf("CertPEM = %q", p)
	}
	c, err := pki.ParseCertPEM(p)
	if err != nil || !bytes.Equal(c.Raw, ca.Cert.Raw) {
		t.Fatalf("ParseCertPEM = %v, %v", c, err)
	}

	// Other blocks before the certificate are skipped; of a chain the
	// first certificate is returned.
	keyPEM, _, _ := pki.NewKeyAndCSR()
	server := newServerCert(t, ca)
	chain := append(bytes.Clone(keyPEM), pki.CertPEM(server.Certificate[0])...)
	chain = append(chain, ca.CertPEM...)
	c, err = pki.ParseCertPEM(chain)
	if err != nil || !bytes.Equal(c.Raw, server.Certificate[0]) {
		t.Fatalf("ParseCertPEM(key, leaf, CA) = %v, %v; want the leaf", c, err)
	}

	for name, in := range map[string][]byte{
		"empty":     nil,
		"not PEM":   []byte("garbage"),
		"key only":  keyPEM,
		"corrupt":   pki.CertPEM([]byte{0x30, 0x00}),
		"truncated": p[:len(p)/2],
	} {
		if _, err := pki.ParseCertPEM(in); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
