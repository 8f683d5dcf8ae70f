package pki

import (
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base32"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"strings"
	"time"
)

// HostURIScheme is the scheme of the URI SAN that carries a host's identity.
// The full form is "qinfra://host/<hostID>".
const HostURIScheme = "qinfra"

// hostURIHost is the authority part of an identity URI. It names the kind of
// principal, so that other kinds (an operator, a server) could later get
// their own URIs without any chance of being mistaken for a host.
const hostURIHost = "host"

// maxHostIDLen is the longest host ID accepted; it keeps IDs usable as
// storage keys, file names and label values.
const maxHostIDLen = 64

// hostIDEncoding is lowercase RFC 4648 base32 without padding; its alphabet
// (a-z, 2-7) is a subset of what ValidHostID accepts.
var hostIDEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// NewHostID returns a new random host ID: "h-" followed by 20 lowercase
// base32 characters (100 random bits), so IDs never collide in practice and
// carry nothing about the host they name.
func NewHostID() string {
	var b [13]byte // 104 bits encode to 21 characters; 20 are kept.
	// crypto/rand.Read never returns an error (it crashes the program if the
	// system's random source fails), so there is nothing to handle.
	_, _ = rand.Read(b[:])
	return "h-" + hostIDEncoding.EncodeToString(b[:])[:20]
}

// ValidHostID reports whether id is a well-formed host ID: 1 to 64
// characters, each a lowercase ASCII letter, a digit or '-'.
func ValidHostID(id string) bool {
	if len(id) == 0 || len(id) > maxHostIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// hostURI returns the identity URI for a host ID that has already been
// validated.
func hostURI(hostID string) *url.URL {
	return &url.URL{Scheme: HostURIScheme, Host: hostURIHost, Path: "/" + hostID}
}

// HostIdentityToTemplate returns a certificate template for a host's client
// certificate, valid from notBefore to notAfter. It is the only place that
// writes a host identity into a certificate: the identity goes into a single
// URI SAN "qinfra://host/<hostID>" and, for people reading the certificate
// with openssl, into the subject's common name. The template allows only
// client authentication and has a random 128-bit serial number.
func HostIdentityToTemplate(hostID string, notBefore, notAfter time.Time) (*x509.Certificate, error) {
	if !ValidHostID(hostID) {
		return nil, fmt.Errorf("invalid host ID %q", hostID)
	}
	if !notAfter.After(notBefore) {
		return nil, fmt.Errorf("host certificate validity: notAfter %s is not after notBefore %s",
			notAfter.Format(time.RFC3339), notBefore.Format(time.RFC3339))
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	return &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: hostID},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		URIs:                  []*url.URL{hostURI(hostID)},
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		IsCA:                  false,
	}, nil
}

// HostIDFromVerifiedCert returns the host ID carried by a client certificate
// whose chain the caller has already verified against the CA (for example
// the leaf of tls.ConnectionState.VerifiedChains[0]). It is the only place
// that reads a host identity out of a certificate.
//
// The certificate must look exactly like one made from
// [HostIdentityToTemplate]: exactly one URI SAN, of the form
// "qinfra://host/<hostID>" with a valid host ID and nothing else in the URI,
// a common name equal to that ID, no DNS, IP or e-mail SANs, and not a CA.
// Anything else is an error rather than a best guess, so a server or CA
// certificate, or one a future issuer shapes differently, can never be taken
// for a host.
func HostIDFromVerifiedCert(cert *x509.Certificate) (string, error) {
	if cert == nil {
		return "", errors.New("host identity: no certificate")
	}
	if cert.IsCA {
		return "", errors.New("host identity: certificate is a CA")
	}
	if len(cert.DNSNames) > 0 || len(cert.IPAddresses) > 0 || len(cert.EmailAddresses) > 0 {
		return "", errors.New("host identity: certificate has DNS, IP or e-mail SANs")
	}
	if len(cert.URIs) != 1 {
		return "", fmt.Errorf("host identity: want exactly one URI SAN, certificate has %d", len(cert.URIs))
	}
	u := cert.URIs[0]
	if u.Scheme != HostURIScheme || u.Host != hostURIHost || u.Opaque != "" || u.User != nil ||
		u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || u.RawPath != "" ||
		!strings.HasPrefix(u.Path, "/") {
		return "", fmt.Errorf("host identity: URI SAN %q is not %s://%s/<host ID>", u.String(), HostURIScheme, hostURIHost)
	}
	id := u.Path[1:]
	if !ValidHostID(id) {
		return "", fmt.Errorf("host identity: invalid host ID %q in URI SAN", id)
	}
	if cert.Subject.CommonName != id {
		return "", fmt.Errorf("host identity: common name %q does not match URI SAN host ID %q", cert.Subject.CommonName, id)
	}
	return id, nil
}

// serialLimit is 2^128; serial numbers are drawn uniformly below it.
var serialLimit = new(big.Int).Lsh(big.NewInt(1), 128)

// randomSerial returns a random positive serial number of at most 128 bits.
// Random serials keep two certificates from the same CA distinct without any
// state, and RFC 5280 requires them to be positive.
func randomSerial() (*big.Int, error) {
	for {
		n, err := rand.Int(rand.Reader, serialLimit)
		if err != nil {
			return nil, fmt.Errorf("generate serial number: %w", err)
		}
		if n.Sign() > 0 {
			return n, nil
		}
	}
}
