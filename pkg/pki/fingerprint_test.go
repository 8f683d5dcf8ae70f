package pki_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/quantumlayer/qinfra/pkg/pki"
)

func TestFingerprint(t *testing.T) {
	ca := newTestCA(t, "fingerprint CA")
	sum := sha256.Sum256(ca.Cert.Raw)
	want := "sha256:" + hex.EncodeToString(sum[:])
	if got := ca.Fingerprint(); got != want {
		t.Fatalf("CA.Fingerprint() = %q, want %q", got, want)
	}
	if got := pki.Fingerprint(ca.Cert); got != want {
		t.Fatalf("Fingerprint() = %q, want %q", got, want)
	}
	if got := pki.Fingerprint(nil); got != "" {
		t.Fatalf("Fingerprint(nil) = %q, want empty", got)
	}
	b, err := pki.ParseFingerprint(ca.Fingerprint())
	if err != nil || !bytes.Equal(b, sum[:]) {
		t.Fatalf("ParseFingerprint(Fingerprint()) = %x, %v", b, err)
	}
}

// opensslColons formats b the way `openssl x509 -fingerprint` does.
func opensslColons(b []byte) string {
	parts := make([]string, len(b))
	for i, c := range b {
		parts[i] = strings.ToUpper(hex.EncodeToString([]byte{c}))
	}
	return strings.Join(parts, ":")
}

func TestParseFingerprint(t *testing.T) {
	sum := sha256.Sum256([]byte("qinfra"))
	lower := hex.EncodeToString(sum[:])
	colons := opensslColons(sum[:])

	for _, in := range []string{
		"sha256:" + lower,
		"SHA256:" + strings.ToUpper(lower),
		"Sha256:" + lower,
		lower,
		strings.ToUpper(lower),
		colons,
		strings.ToLower(colons),
		"sha256:" + colons,
		"sha256 Fingerprint=" + colons,
		"SHA256 Fingerprint=" + colons,
		"  sha256:" + lower + "\n",
		"\t" + colons + "\r\n",
	} {
		got, err := pki.ParseFingerprint(in)
		if err != nil {
			t.Errorf("ParseFingerprint(%q): %v", in, err)
			continue
		}
		if !bytes.Equal(got, sum[:]) {
			t.Errorf("ParseFingerprint(%q) = %x, want %x", in, got, sum)
		}
	}

	for _, tc := range []struct {
		in, wantErr string
	}{
		{"", "empty"},
		{"   ", "empty"},
		{"sha1:" + lower[:40], "unsupported algorithm"},
		{"md5:" + lower[:32], "unsupported algorithm"},
		{"SHA1 Fingerprint=" + colons[:59], "unsupported label"},
		{"sha256:", "got 0 bytes"},
		{lower[:62], "got 31 bytes"},
		{lower + "00", "got 33 bytes"},
		{lower[:63], "invalid hex"},
		{"zz" + lower[2:], "invalid hex"},
		{"sha256:" + lower[:62] + "xy", "invalid hex"},
		{colons + ":", "group 33"},
		{colons[:len(colons)-3], "got 31 bytes"},
		{"A" + colons[2:], "group 1"},
		{strings.ReplaceAll(colons, ":", "::"), "group 2"},
		{"sha256:" + lower + " trailing", "invalid hex"},
	} {
		_, err := pki.ParseFingerprint(tc.in)
		if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("ParseFingerprint(%q) error = %v, want one containing %q", tc.in, err, tc.wantErr)
		}
	}
}

// FuzzParseFingerprint checks that no input panics and that anything
// accepted is 32 bytes that survive a round trip through Fingerprint's
// format and openssl's.
func FuzzParseFingerprint(f *testing.F) {
	sum := sha256.Sum256([]byte("seed"))
	f.Add("sha256:" + hex.EncodeToString(sum[:]))
	f.Add(opensslColons(sum[:]))
	f.Add("SHA256 Fingerprint=" + opensslColons(sum[:]))
	f.Add("sha1:00")
	f.Add(":::")
	f.Add("=")
	f.Fuzz(func(t *testing.T, s string) {
		b, err := pki.ParseFingerprint(s)
		if err != nil {
			return
		}
		if len(b) != sha256.Size {
			t.Fatalf("ParseFingerprint(%q) returned %d bytes", s, len(b))
		}
		for _, form := range []string{"sha256:" + hex.EncodeToString(b), opensslColons(b)} {
			again, err := pki.ParseFingerprint(form)
			if err != nil || !bytes.Equal(again, b) {
				t.Fatalf("round trip of %q via %q = %x, %v", s, form, again, err)
			}
		}
	})
}
