package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
)

// PEM block types used by this package.
const (
	pemTypeCert     = "CERTIFICATE"
	pemTypePKCS8    = "PRIVATE KEY"
	pemTypeECKey    = "EC PRIVATE KEY"
	pemTypeRSAKey   = "RSA PRIVATE KEY"
	pemTypeECParams = "EC PARAMETERS"
)

// newKey returns a new ECDSA P-256 private key, the only kind this package
// generates: small, fast and accepted by every TLS 1.3 stack.
func newKey() (*ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate ECDSA P-256 key: %w", err)
	}
	return key, nil
}

// marshalKeyPEM encodes a private key as a PKCS#8 "PRIVATE KEY" PEM block.
func marshalKeyPEM(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("marshal private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: pemTypePKCS8, Bytes: der}), nil
}

// NewKeyAndCSR generates an agent's key pair and a certificate signing
// request for it. The key is ECDSA P-256, returned as a PKCS#8 "PRIVATE KEY"
// PEM block; the CSR is DER. The CSR makes no identity claims: the server
// decides the host ID and ignores any names a CSR asks for, so the CSR only
// proves possession of the key.
func NewKeyAndCSR() (keyPEM []byte, csrDER []byte, err error) {
	key, err := newKey()
	if err != nil {
		return nil, nil, err
	}
	csrDER, err = x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		return nil, nil, fmt.Errorf("create certificate request: %w", err)
	}
	keyPEM, err = marshalKeyPEM(key)
	if err != nil {
		return nil, nil, err
	}
	return keyPEM, csrDER, nil
}

// ParsePrivateKeyPEM parses the first private key in b. It accepts PKCS#8
// ("PRIVATE KEY"), SEC 1 ("EC PRIVATE KEY") and PKCS#1 ("RSA PRIVATE KEY")
// blocks, so keys made by openssl work as well as ours, and skips an
// "EC PARAMETERS" block such as `openssl ecparam -genkey` writes first.
// Encrypted keys and keys that cannot sign are errors.
func ParsePrivateKeyPEM(b []byte) (crypto.Signer, error) {
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			return nil, errors.New("parse private key: no PEM private key block found")
		}
		if block.Type == pemTypeECParams {
			continue
		}
		if _, encrypted := block.Headers["Proc-Type"]; encrypted {
			return nil, errors.New("parse private key: encrypted PEM keys are not supported")
		}
		var (
			key any
			err error
		)
		switch block.Type {
		case pemTypePKCS8:
			key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
		case pemTypeECKey:
			key, err = x509.ParseECPrivateKey(block.Bytes)
		case pemTypeRSAKey:
			key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
		default:
			return nil, fmt.Errorf("parse private key: unexpected PEM block %q", block.Type)
		}
		if err != nil {
			return nil, fmt.Errorf("parse private key (%s): %w", block.Type, err)
		}
		signer, ok := key.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("parse private key: %T cannot sign", key)
		}
		return signer, nil
	}
}

// CertPEM encodes a DER certificate as a "CERTIFICATE" PEM block.
func CertPEM(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: pemTypeCert, Bytes: der})
}

// ParseCertPEM parses the first "CERTIFICATE" block in b, skipping any
// other blocks before it. For a chain file (leaf then CA) it returns the
// leaf.
func ParseCertPEM(b []byte) (*x509.Certificate, error) {
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			return nil, errors.New("parse certificate: no PEM CERTIFICATE block found")
		}
		if block.Type != pemTypeCert {
			continue
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parse certificate: %w", err)
		}
		return cert, nil
	}
}
