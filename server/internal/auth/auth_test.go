package auth_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/quantumlayer/qinfra/server/internal/auth"
	"github.com/quantumlayer/qinfra/server/internal/store"
	"github.com/quantumlayer/qinfra/server/internal/store/bboltstore"
)

func TestGenerateSecret(t *testing.T) {
	shape := regexp.MustCompile(`^qat_([a-z2-7]{8})_[a-z2-7]{32}$`)
	seen := map[string]bool{}
	for range 1000 {
		id, secret, hash := auth.GenerateSecret(auth.PrefixAPIToken)
		m := shape.FindStringSubmatch(secret)
		if m == nil || m[1] != id {
			t.Fatalf("secret %q id %q: wrong shape", secret, id)
		}
		if sum := sha256.Sum256([]byte(secret)); !bytes.Equal(hash, sum[:]) || !bytes.Equal(auth.HashSecret(secret), hash) {
			t.Fatalf("hash of %q is not its SHA-256", secret)
		}
		if seen[secret] {
			t.Fatalf("secret %q generated twice", secret)
		}
		seen[secret] = true
		if got, ok := auth.SecretID(auth.PrefixAPIToken, secret); !ok || got != id {
			t.Fatalf("SecretID(%q) = %q, %v", secret, got, ok)
		}
	}
	_, secret, _ := auth.GenerateSecret(auth.PrefixEnrollmentToken)
	if !regexp.MustCompile(`^qet_[a-z2-7]{8}_[a-z2-7]{32}$`).MatchString(secret) {
		t.Errorf("enrollment secret %q", secret)
	}
	if _, ok := auth.SecretID(auth.PrefixAPIToken, secret); ok {
		t.Error("SecretID accepted an enrollment secret as an API token")
	}
	for _, bad := range []string{"", "qat_", "qat__x", "qat_id", "qat_id_", "xqat_id_x"} {
		if _, ok := auth.SecretID(auth.PrefixAPIToken, bad); ok {
			t.Errorf("SecretID accepted %q", bad)
		}
	}
}

func TestRoleAllows(t *testing.T) {
	roles := []string{store.RoleViewer, store.RoleOperator, store.RoleAdmin}
	for i, have := range roles {
		for j, need := range roles {
			if got := auth.RoleAllows(have, need); got != (i >= j) {
				t.Errorf("RoleAllows(%s, %s) = %v", have, need, got)
			}
		}
		if auth.RoleAllows(have, "root") || auth.RoleAllows("root", have) || auth.RoleAllows("", have) {
			t.Errorf("unknown role allowed with %s", have)
		}
	}
	if auth.RoleAllows("", "") {
		t.Error("empty roles allowed")
	}
}

func TestNewAdminTokenAuthenticates(t *testing.T) {
	st, err := bboltstore.Open(filepath.Join(t.TempDir(), "s.db"), bboltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()

	secret, err := auth.NewAdminToken(ctx, st, "bootstrap")
	if err != nil {
		t.Fatal(err)
	}
	tok, err := auth.Authenticate(ctx, st, secret)
	if err != nil {
		t.Fatal(err)
	}
	id, _ := auth.SecretID(auth.PrefixAPIToken, secret)
	if tok.Role != store.RoleAdmin || tok.Name != "bootstrap" || tok.ID != id || tok.CreatedAt.IsZero() {
		t.Errorf("token = %+v", tok)
	}
	stored, err := st.GetAPITokenByHash(ctx, auth.HashSecret(secret))
	if err != nil || stored.ID != id {
		t.Errorf("stored by hash: %+v, %v", stored, err)
	}

	for _, bad := range []string{"", secret + "x", secret[:len(secret)-1], "qat_" + id + "_" + "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"} {
		if _, err := auth.Authenticate(ctx, st, bad); !errors.Is(err, auth.ErrInvalidToken) {
			t.Errorf("Authenticate(%q) = %v, want ErrInvalidToken", bad, err)
		}
	}

	if _, err := auth.NewAPIToken(ctx, st, "x", "superuser"); err == nil {
		t.Error("unknown role accepted")
	}
	if _, err := auth.NewAPIToken(ctx, st, "", store.RoleViewer); err == nil {
		t.Error("empty name accepted")
	}
	v, err := auth.NewAPIToken(ctx, st, "dash", store.RoleViewer)
	if err != nil {
		t.Fatal(err)
	}
	if tok, err := auth.Authenticate(ctx, st, v); err != nil || tok.Role != store.RoleViewer {
		t.Errorf("viewer token = %+v, %v", tok, err)
	}
}
