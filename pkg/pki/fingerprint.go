package pki

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// fingerprintPrefix names the hash in the fingerprints this package prints.
const fingerprintPrefix = "sha256:"

// Fingerprint returns "sha256:" followed by the lowercase hex SHA-256 of the
// certificate's DER encoding. It is what an operator passes to an agent at
// install time to pin the CA. A nil certificate has the empty fingerprint.
func Fingerprint(cert *x509.Certificate) string {
	if cert == nil {
		return ""
	}
	sum := sha256.Sum256(cert.Raw)
	return fingerprintPrefix + hex.EncodeToString(sum[:])
}

// ParseFingerprint parses a SHA-256 certificate fingerprint into its 32
// bytes. It accepts the form [Fingerprint] prints ("sha256:<64 hex>") as
// well as bare hex and openssl's colon-separated pairs
// ("AB:CD:...", optionally after "SHA256 Fingerprint=" or "sha256:"), in
// either case, with surrounding white space ignored. People copy
// fingerprints from several tools, and rejecting a correct pin for its
// spelling only teaches them to skip pinning.
func ParseFingerprint(s string) ([]byte, error) {
	rest := strings.TrimSpace(s)
	if rest == "" {
		return nil, errors.New("parse fingerprint: empty")
	}
	// openssl x509 -fingerprint -sha256 prints "sha256 Fingerprint=AB:CD:...".
	if i := strings.IndexByte(rest, '='); i >= 0 {
		label := strings.ToLower(strings.Join(strings.Fields(rest[:i]), " "))
		if label != "sha256 fingerprint" {
			return nil, fmt.Errorf("parse fingerprint: unsupported label %q, want a SHA-256 fingerprint", rest[:i])
		}
		rest = strings.TrimSpace(rest[i+1:])
	} else if alg, after, ok := strings.Cut(rest, ":"); ok && !isHex(alg) {
		// Something before the first colon that is not hex names the hash
		// algorithm; a malformed hex group is reported as such below.
		if !strings.EqualFold(alg, "sha256") {
			return nil, fmt.Errorf("parse fingerprint: unsupported algorithm %q, want sha256", alg)
		}
		rest = after
	}
	var hexDigits string
	if strings.Contains(rest, ":") {
		pairs := strings.Split(rest, ":")
		for i, p := range pairs {
			if !isHexPair(p) {
				return nil, fmt.Errorf("parse fingerprint: colon-separated group %d is %q, want two hex digits", i+1, p)
			}
		}
		hexDigits = strings.Join(pairs, "")
	} else {
		hexDigits = rest
	}
	b, err := hex.DecodeString(hexDigits)
	if err != nil {
		return nil, fmt.Errorf("parse fingerprint: invalid hex: %w", err)
	}
	if len(b) != sha256.Size {
		return nil, fmt.Errorf("parse fingerprint: got %d bytes, want %d (a SHA-256 fingerprint is %d hex digits)",
			len(b), sha256.Size, 2*sha256.Size)
	}
	return b, nil
}

// isHex reports whether s is made only of hex digits.
func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isHexDigit(s[i]) {
			return false
		}
	}
	return true
}

// isHexPair reports whether s is exactly two hex digits.
func isHexPair(s string) bool {
	return len(s) == 2 && isHexDigit(s[0]) && isHexDigit(s[1])
}

func isHexDigit(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}
