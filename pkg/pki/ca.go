package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"net"
	"os"
	"time"
)

// MaxHostCertTTL is the longest lifetime SignHostCSR gives a host
// certificate, whatever the caller asks for. Host certificates are meant to
// be short-lived and renewed at half life; the cap bounds the damage of a
// misconfigured TTL, since revocation is only a server-side deny list.
const MaxHostCertTTL = 30 * 24 * time.Hour

// clockSkew is how far NotBefore is backdated, so a certificate issued now
// is already valid on a host whose clock runs a little behind the server's.
const clockSkew = time.Minute

// Limits on the RSA keys SignHostCSR accepts: below 2048 bits is breakable,
// and above 8192 bits only makes every handshake slow.
const (
	minRSABits = 2048
	maxRSABits = 8192
)

// CA is a certificate authority: its self-signed certificate and the key
// that signs with it. A CA is not modified after it is created or loaded and
// may be used from several goroutines.
type CA struct {
	// Cert is the CA's self-signed certificate.
	Cert *x509.Certificate
	// Key is the CA's private key; its public half is Cert's.
	Key crypto.Signer
	// CertPEM is Cert as a "CERTIFICATE" PEM block, ready to hand out.
	CertPEM []byte
}

// NewCA creates a CA with a new ECDSA P-256 key and a self-signed
// certificate named commonName, valid for validity from now (backdated a
// minute for clock skew). The CA may sign only end-entity certificates
// (MaxPathLen 0), which keeps a stolen host or server key from ever becoming
// an intermediate CA.
func NewCA(commonName string, validity time.Duration) (*CA, error) {
	if commonName == "" {
		return nil, errors.New("new CA: empty common name")
	}
	if validity <= 0 {
		return nil, fmt.Errorf("new CA: validity %s is not positive", validity)
	}
	key, err := newKey()
	if err != nil {
		return nil, fmt.Errorf("new CA: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, fmt.Errorf("new CA: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: commonName},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              now.Add(validity),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLen:            0,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		// SubjectKeyId is left empty: x509.CreateCertificate derives it
		// from the public key for CA certificates, and issued certificates
		// then carry it as their AuthorityKeyId.
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("new CA: create certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("new CA: parse certificate: %w", err)
	}
	return &CA{Cert: cert, Key: key, CertPEM: CertPEM(der)}, nil
}

// LoadCA reads a CA from a PEM certificate file and a PEM private key file,
// such as [CA.Save] writes. It checks that the certificate is a CA allowed
// to sign certificates and that the key belongs to it, so a mixed-up pair
// fails at start-up rather than as handshake errors on every agent. It does
// not check the validity period; callers that care compare Cert.NotAfter
// with the time.
func LoadCA(certPath, keyPath string) (*CA, error) {
	certPEM, err := os.ReadFile(certPath)
	if err != nil {
		return nil, fmt.Errorf("load CA certificate: %w", err)
	}
	cert, err := ParseCertPEM(certPEM)
	if err != nil {
		return nil, fmt.Errorf("load CA certificate %s: %w", certPath, err)
	}
	if !cert.BasicConstraintsValid || !cert.IsCA {
		return nil, fmt.Errorf("load CA certificate %s: not a CA certificate", certPath)
	}
	if cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, fmt.Errorf("load CA certificate %s: key usage does not allow signing certificates", certPath)
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, fmt.Errorf("load CA key: %w", err)
	}
	key, err := ParsePrivateKeyPEM(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("load CA key %s: %w", keyPath, err)
	}
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(cert.PublicKey) {
		return nil, fmt.Errorf("load CA: key %s does not match certificate %s", keyPath, certPath)
	}
	return &CA{Cert: cert, Key: key, CertPEM: CertPEM(cert.Raw)}, nil
}

// Save writes the CA certificate to certPath (mode 0644) and its key to
// keyPath (mode 0600), each atomically. The key is written first: if the
// certificate write then fails, LoadCA reports the mismatch instead of
// silently using a certificate whose key is lost.
func (ca *CA) Save(certPath, keyPath string) error {
	keyPEM, err := marshalKeyPEM(ca.Key)
	if err != nil {
		return fmt.Errorf("save CA key: %w", err)
	}
	if err := WriteFileAtomic(keyPath, keyPEM, 0o600); err != nil {
		return fmt.Errorf("save CA key: %w", err)
	}
	if err := WriteFileAtomic(certPath, ca.CertPEM, 0o644); err != nil {
		return fmt.Errorf("save CA certificate: %w", err)
	}
	return nil
}

// Fingerprint returns the CA certificate's fingerprint, the value an agent
// pins at install time; see the package-level [Fingerprint].
func (ca *CA) Fingerprint() string {
	return Fingerprint(ca.Cert)
}

// Pool returns a new certificate pool holding only this CA, for use as a
// TLS config's RootCAs or ClientCAs.
func (ca *CA) Pool() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	return pool
}

// SignHostCSR issues a client certificate for hostID to the key in a DER
// certificate signing request. The CSR only proves possession of the key:
// every name, SAN and extension it asks for is ignored, and the identity is
// taken from hostID alone through [HostIdentityToTemplate].
//
// The CSR's signature must verify and its key must be ECDSA P-256 or P-384,
// RSA of 2048 to 8192 bits, or Ed25519. The certificate is valid from a
// minute before now (for clock skew) for ttl, capped at [MaxHostCertTTL]
// and at the CA's own expiry. A zero now means time.Now(); tests pass other
// times to make expired certificates.
func (ca *CA) SignHostCSR(csrDER []byte, hostID string, ttl time.Duration, now time.Time) (*x509.Certificate, error) {
	if ttl <= 0 {
		return nil, fmt.Errorf("sign host CSR: ttl %s is not positive", ttl)
	}
	csr, err := x509.ParseCertificateRequest(csrDER)
	if err != nil {
		return nil, fmt.Errorf("sign host CSR: parse: %w", err)
	}
	// Check the key type before the signature: it is cheap and keeps an
	// oversized RSA key from costing a slow verification.
	if err := checkPublicKey(csr.PublicKey); err != nil {
		return nil, fmt.Errorf("sign host CSR: %w", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("sign host CSR: signature: %w", err)
	}
	if now.IsZero() {
		now = time.Now()
	}
	if !now.Before(ca.Cert.NotAfter) {
		return nil, fmt.Errorf("sign host CSR: CA certificate expired at %s", ca.Cert.NotAfter.Format(time.RFC3339))
	}
	ttl = min(ttl, MaxHostCertTTL)
	notAfter := now.Add(ttl)
	// A certificate outliving its CA would stop verifying when the CA
	// expires anyway; saying so in NotAfter makes renewal happen in time.
	if notAfter.After(ca.Cert.NotAfter) {
		notAfter = ca.Cert.NotAfter
	}
	tmpl, err := HostIdentityToTemplate(hostID, now.Add(-clockSkew), notAfter)
	if err != nil {
		return nil, fmt.Errorf("sign host CSR: %w", err)
	}
	return ca.sign(tmpl, csr.PublicKey)
}

// checkPublicKey accepts the key types and sizes a host certificate may
// certify and refuses the rest with a reason.
func checkPublicKey(pub any) error {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() && k.Curve != elliptic.P384() {
			return fmt.Errorf("unsupported ECDSA curve %s, want P-256 or P-384", k.Curve.Params().Name)
		}
	case *rsa.PublicKey:
		if bits := k.N.BitLen(); bits < minRSABits || bits > maxRSABits {
			return fmt.Errorf("RSA key of %d bits refused, want %d to %d", bits, minRSABits, maxRSABits)
		}
	case ed25519.PublicKey:
	default:
		return fmt.Errorf("unsupported public key type %T, want ECDSA, RSA or Ed25519", pub)
	}
	return nil
}

// IssueServerCert creates a new ECDSA P-256 key and a server certificate
// for it, valid for validity from now (backdated a minute, capped at the
// CA's expiry), for the given DNS names and IP addresses. The first name
// (or, failing that, address) is also the common name.
//
// certPEM is the leaf followed by the CA certificate: the server presents
// that whole chain, which is how an enrolling agent that only knows the
// CA's fingerprint finds the CA to verify against (see [PinnedTLSConfig]).
// keyPEM is PKCS#8.
func (ca *CA) IssueServerCert(dnsNames []string, ips []net.IP, validity time.Duration) (certPEM, keyPEM []byte, err error) {
	if len(dnsNames) == 0 && len(ips) == 0 {
		return nil, nil, errors.New("issue server certificate: no DNS names or IP addresses")
	}
	for _, n := range dnsNames {
		if n == "" {
			return nil, nil, errors.New("issue server certificate: empty DNS name")
		}
	}
	for _, ip := range ips {
		if ip == nil {
			return nil, nil, errors.New("issue server certificate: nil IP address")
		}
	}
	if validity <= 0 {
		return nil, nil, fmt.Errorf("issue server certificate: validity %s is not positive", validity)
	}
	now := time.Now()
	if !now.Before(ca.Cert.NotAfter) {
		return nil, nil, fmt.Errorf("issue server certificate: CA certificate expired at %s", ca.Cert.NotAfter.Format(time.RFC3339))
	}
	notAfter := now.Add(validity)
	if notAfter.After(ca.Cert.NotAfter) {
		notAfter = ca.Cert.NotAfter
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, nil, fmt.Errorf("issue server certificate: %w", err)
	}
	var cn string
	if len(dnsNames) > 0 {
		cn = dnsNames[0]
	} else {
		cn = ips[0].String()
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              notAfter,
		DNSNames:              dnsNames,
		IPAddresses:           ips,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  false,
	}
	key, err := newKey()
	if err != nil {
		return nil, nil, fmt.Errorf("issue server certificate: %w", err)
	}
	cert, err := ca.sign(tmpl, key.Public())
	if err != nil {
		return nil, nil, fmt.Errorf("issue server certificate: %w", err)
	}
	keyPEM, err = marshalKeyPEM(key)
	if err != nil {
		return nil, nil, fmt.Errorf("issue server certificate: %w", err)
	}
	certPEM = append(CertPEM(cert.Raw), ca.CertPEM...)
	return certPEM, keyPEM, nil
}

// sign creates and parses a certificate for pub from tmpl, signed by the CA.
func (ca *CA) sign(tmpl *x509.Certificate, pub crypto.PublicKey) (*x509.Certificate, error) {
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, pub, ca.Key)
	if err != nil {
		return nil, fmt.Errorf("create certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse issued certificate: %w", err)
	}
	return cert, nil
}
