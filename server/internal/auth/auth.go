// Package auth creates and checks the bearer secrets of the server: API
// tokens (operators and tools on the REST API) and enrollment tokens (agents
// enrolling). Only the SHA-256 of a secret is ever stored, so a leaked
// database does not leak usable tokens.
package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/quantumlayer/qinfra/server/internal/store"
)

// Secret prefixes. A typed prefix lets secret scanners recognise a leaked
// token and lets a human tell at a glance which kind was pasted where.
const (
	PrefixAPIToken        = "qat"
	PrefixEnrollmentToken = "qet"
)

// Sizes of the random parts, in bytes. 20 bytes encode to exactly 32 base32
// characters (160 bits, beyond brute force); the ID only needs to be unique
// enough to name a token in listings and audit entries.
const (
	idBytes     = 5
	secretBytes = 20
)

// encoding is lowercase base32 without padding: case-insensitive readers
// (humans, terminals) cannot corrupt it and it never contains '_', the
// separator between the parts.
var encoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// ErrInvalidToken is returned by Authenticate for a secret that does not
// name a stored API token, whatever the reason; callers tell the client no
// more than that.
var ErrInvalidToken = errors.New("invalid API token")

// GenerateSecret returns a new secret "<prefix>_<id>_<random>", its public
// id, and the SHA-256 of the whole secret, which is what gets stored.
func GenerateSecret(prefix string) (id, secret string, hash []byte) {
	id = randomString(idBytes)
	secret = prefix + "_" + id + "_" + randomString(secretBytes)
	return id, secret, HashSecret(secret)
}

func randomString(n int) string {
	b := make([]byte, n)
	// crypto/rand.Read never fails since Go 1.24; it crashes the program
	// rather than return predictable bytes.
	_, _ = rand.Read(b)
	return encoding.EncodeToString(b)
}

// HashSecret returns the SHA-256 of a secret, the form in which secrets are
// stored and looked up.
func HashSecret(secret string) []byte {
	sum := sha256.Sum256([]byte(secret))
	return sum[:]
}

// SecretID returns the public id embedded in a secret of the given prefix,
// or false when the secret does not have that shape. It lets logs name a
// token without ever printing the secret.
func SecretID(prefix, secret string) (string, bool) {
	rest, ok := strings.CutPrefix(secret, prefix+"_")
	if !ok {
		return "", false
	}
	id, random, ok := strings.Cut(rest, "_")
	if !ok || id == "" || random == "" {
		return "", false
	}
	return id, true
}

var roleRank = map[string]int{
	store.RoleViewer:   1,
	store.RoleOperator: 2,
	store.RoleAdmin:    3,
}

// ValidRole reports whether role is one of the store's roles.
func ValidRole(role string) bool { return roleRank[role] > 0 }

// RoleAllows reports whether a token of role have may do what needs role
// need (viewer < operator < admin). Unknown roles allow nothing, so a typo in
// stored data fails closed.
func RoleAllows(have, need string) bool {
	h, n := roleRank[have], roleRank[need]
	return h > 0 && n > 0 && h >= n
}

// Authenticate returns the API token whose secret is given. Every secret,
// well-formed or not, is hashed and looked up the same way, and the stored
// hash is compared in constant time, so the response time says nothing about
// how close a guess was. It returns ErrInvalidToken for an unknown secret.
func Authenticate(ctx context.Context, st store.Tokens, secret string) (*store.APIToken, error) {
	hash := HashSecret(secret)
	tok, err := st.GetAPITokenByHash(ctx, hash)
	if errors.Is(err, store.ErrNotFound) {
		return nil, ErrInvalidToken
	}
	if err != nil {
		return nil, fmt.Errorf("look up API token: %w", err)
	}
	// The lookup is by hash already; comparing again guards against a backend
	// that matches loosely (a prefix scan, a case-folding index).
	if subtle.ConstantTimeCompare(tok.Hash, hash) != 1 {
		return nil, ErrInvalidToken
	}
	return tok, nil
}

// NewAPIToken creates an API token of the given role and returns its
// secret, which exists nowhere else afterwards: the caller must show it once.
func NewAPIToken(ctx context.Context, st store.Tokens, name, role string) (secret string, err error) {
	if !ValidRole(role) {
		return "", fmt.Errorf("create API token %q: unknown role %q", name, role)
	}
	if name == "" {
		return "", errors.New("create API token: empty name")
	}
	// A 40-bit random ID can collide in a large deployment; retrying is
	// cheaper than a longer ID on every screen.
	for attempt := 0; ; attempt++ {
		id, secret, hash := GenerateSecret(PrefixAPIToken)
		err := st.CreateAPIToken(ctx, &store.APIToken{
			ID:        id,
			Hash:      hash,
			Name:      name,
			Role:      role,
			CreatedAt: time.Now().UTC(),
		})
		if errors.Is(err, store.ErrConflict) && attempt < 3 {
			continue
		}
		if err != nil {
			return "", fmt.Errorf("create API token %q: %w", name, err)
		}
		return secret, nil
	}
}

// NewAdminToken creates an admin API token, as `qinfra-server init` does to
// bootstrap access, and returns its secret.
func NewAdminToken(ctx context.Context, st store.Tokens, name string) (secret string, err error) {
	return NewAPIToken(ctx, st, name, store.RoleAdmin)
}
