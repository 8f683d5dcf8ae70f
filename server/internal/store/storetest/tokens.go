package storetest

import (
	"bytes"
	"errors"
	"maps"
	"testing"
	"time"

	"github.com/quantumlayer/qinfra/server/internal/store"
)

var tokenTests = []test{
	{"EnrollmentToken/ListOrderedByCreation", testEnrollmentTokenList},
	{"EnrollmentToken/Conflict", testEnrollmentTokenConflict},
	{"APIToken/CreateGet", testAPITokenCreateGet},
	{"APIToken/UnknownHash", testAPITokenUnknownHash},
	{"APIToken/Conflict", testAPITokenConflict},
}

func sameEnrollmentToken(t *testing.T, got, want *store.EnrollmentToken) {
	t.Helper()
	if got.ID != want.ID || !bytes.Equal(got.Hash, want.Hash) || got.Description != want.Description ||
		!maps.Equal(got.Labels, want.Labels) || got.UsesAllowed != want.UsesAllowed || got.Used != want.Used ||
		!got.ExpiresAt.Equal(want.ExpiresAt) || !got.CreatedAt.Equal(want.CreatedAt) || got.CreatedBy != want.CreatedBy {
		t.Fatalf("enrollment token = %+v, want %+v", got, want)
	}
}

func sameAPIToken(t *testing.T, got, want *store.APIToken) {
	t.Helper()
	if got.ID != want.ID || !bytes.Equal(got.Hash, want.Hash) || got.Name != want.Name ||
		got.Role != want.Role || !got.CreatedAt.Equal(want.CreatedAt) {
		t.Fatalf("API token = %+v, want %+v", got, want)
	}
}

func listEnrollmentTokens(t *testing.T, s store.Store) []*store.EnrollmentToken {
	t.Helper()
	toks, err := s.ListEnrollmentTokens(t.Context())
	if err != nil {
		t.Fatalf("ListEnrollmentTokens: %v", err)
	}
	return toks
}

func testEnrollmentTokenList(t *testing.T, s store.Store) {
	if toks := listEnrollmentTokens(t, s); len(toks) != 0 {
		t.Fatalf("empty store lists %d enrollment tokens", len(toks))
	}
	// Created out of order, with IDs in yet another order.
	a := newEnrollmentToken("b-token", 1, map[string]string{"env": "prod"})
	a.CreatedAt = t0.Add(2 * time.Hour)
	b := newEnrollmentToken("c-token", 10, nil)
	b.CreatedAt = t0
	c := newEnrollmentToken("a-token", 3, map[string]string{"role": "db", "zone": "eu-1"})
	c.CreatedAt = t0.Add(time.Hour)
	for _, tok := range []*store.EnrollmentToken{a, b, c} {
		createEnrollmentToken(t, s, tok)
	}
	got := listEnrollmentTokens(t, s)
	want := []*store.EnrollmentToken{b, c, a}
	if len(got) != len(want) {
		t.Fatalf("ListEnrollmentTokens: %d tokens, want %d", len(got), len(want))
	}
	for i := range want {
		sameEnrollmentToken(t, got[i], want[i])
	}
}

func testEnrollmentTokenConflict(t *testing.T, s store.Store) {
	tok := newEnrollmentToken("tok1", 1, nil)
	createEnrollmentToken(t, s, tok)

	sameID := newEnrollmentToken("tok1", 1, nil)
	sameID.Hash = secretHash("another secret")
	if err := s.CreateEnrollmentToken(t.Context(), sameID); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("CreateEnrollmentToken with an existing ID: error = %v, want ErrConflict", err)
	}
	sameHash := newEnrollmentToken("tok2", 1, nil)
	sameHash.Hash = tok.Hash
	if err := s.CreateEnrollmentToken(t.Context(), sameHash); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("CreateEnrollmentToken with an existing hash: error = %v, want ErrConflict", err)
	}
	toks := listEnrollmentTokens(t, s)
	if len(toks) != 1 {
		t.Fatalf("%d enrollment tokens after refused creations, want 1", len(toks))
	}
	sameEnrollmentToken(t, toks[0], tok)

	// The refused token's hash enrolls nothing.
	err := s.EnrollHost(t.Context(), sameID.Hash, t0, &store.Host{ID: "host-1"})
	wantTokenInvalid(t, err, "unknown")
}

func newAPIToken(id, role string) *store.APIToken {
	return &store.APIToken{
		ID: id, Hash: secretHash("api-" + id), Name: "token " + id, Role: role, CreatedAt: t0,
	}
}

func testAPITokenCreateGet(t *testing.T, s store.Store) {
	toks := []*store.APIToken{
		newAPIToken("viewer", store.RoleViewer),
		newAPIToken("operator", store.RoleOperator),
		newAPIToken("admin", store.RoleAdmin),
	}
	for _, tok := range toks {
		if err := s.CreateAPIToken(t.Context(), tok); err != nil {
			t.Fatalf("CreateAPIToken(%s): %v", tok.ID, err)
		}
	}
	for _, tok := range toks {
		got, err := s.GetAPITokenByHash(t.Context(), tok.Hash)
		if err != nil {
			t.Fatalf("GetAPITokenByHash(%s): %v", tok.ID, err)
		}
		sameAPIToken(t, got, tok)
	}
}

func testAPITokenUnknownHash(t *testing.T, s store.Store) {
	if err := s.CreateAPIToken(t.Context(), newAPIToken("admin", store.RoleAdmin)); err != nil {
		t.Fatalf("CreateAPIToken: %v", err)
	}
	for _, hash := range [][]byte{secretHash("nope"), nil} {
		if _, err := s.GetAPITokenByHash(t.Context(), hash); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("GetAPITokenByHash(%x) error = %v, want ErrNotFound", hash, err)
		}
	}
	// An enrollment token's hash is not an API token's.
	enroll := newEnrollmentToken("tok1", 1, nil)
	createEnrollmentToken(t, s, enroll)
	if _, err := s.GetAPITokenByHash(t.Context(), enroll.Hash); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("GetAPITokenByHash(enrollment token hash) error = %v, want ErrNotFound", err)
	}
}

func testAPITokenConflict(t *testing.T, s store.Store) {
	tok := newAPIToken("admin", store.RoleAdmin)
	if err := s.CreateAPIToken(t.Context(), tok); err != nil {
		t.Fatalf("CreateAPIToken: %v", err)
	}
	sameID := newAPIToken("admin", store.RoleViewer)
	sameID.Hash = secretHash("other")
	if err := s.CreateAPIToken(t.Context(), sameID); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("CreateAPIToken with an existing ID: error = %v, want ErrConflict", err)
	}
	if _, err := s.GetAPITokenByHash(t.Context(), sameID.Hash); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("refused token is findable: error = %v", err)
	}
	sameHash := newAPIToken("viewer", store.RoleViewer)
	sameHash.Hash = tok.Hash
	if err := s.CreateAPIToken(t.Context(), sameHash); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("CreateAPIToken with an existing hash: error = %v, want ErrConflict", err)
	}
	got, err := s.GetAPITokenByHash(t.Context(), tok.Hash)
	if err != nil {
		t.Fatalf("GetAPITokenByHash: %v", err)
	}
	sameAPIToken(t, got, tok)
}
