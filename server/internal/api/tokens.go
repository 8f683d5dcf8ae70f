package api

import (
	"errors"
	"fmt"
	"net/http"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/quantumlayer/qinfra/server/internal/auth"
	"github.com/quantumlayer/qinfra/server/internal/store"
)

// createEnrollmentTokenRequest is the body of POST
// /api/v1/enrollment-tokens. Uses is a pointer so an explicit 0 is an error
// rather than the default.
type createEnrollmentTokenRequest struct {
	Uses        *int              `json:"uses"`
	TTL         string            `json:"ttl"`
	Labels      map[string]string `json:"labels"`
	Description string            `json:"description"`
}

// createEnrollmentTokenResponse carries the secret, the only time it is
// ever shown.
type createEnrollmentTokenResponse struct {
	Token       string            `json:"token"`
	ID          string            `json:"id"`
	ExpiresAt   time.Time         `json:"expires_at"`
	UsesAllowed int               `json:"uses_allowed"`
	Labels      map[string]string `json:"labels"`
	Description string            `json:"description,omitempty"`
}

// enrollmentTokenView is a stored token, without its secret.
type enrollmentTokenView struct {
	ID          string            `json:"id"`
	Description string            `json:"description,omitempty"`
	Labels      map[string]string `json:"labels"`
	UsesAllowed int               `json:"uses_allowed"`
	Used        int               `json:"used"`
	ExpiresAt   time.Time         `json:"expires_at"`
	CreatedAt   time.Time         `json:"created_at"`
	CreatedBy   string            `json:"created_by"`
	// State is "active", "expired" or "used_up", so a listing answers "can
	// this token still enroll?" without clock arithmetic in the client.
	State string `json:"state"`
}

func (req *createEnrollmentTokenRequest) validate(defaultTTL time.Duration) (uses int, ttl time.Duration, err error) {
	uses = 1
	if req.Uses != nil {
		uses = *req.Uses
		if uses < 1 || uses > maxEnrollmentUses {
			return 0, 0, badRequest("uses must be between 1 and %d", maxEnrollmentUses)
		}
	}
	ttl = defaultTTL
	if req.TTL != "" {
		ttl, err = time.ParseDuration(req.TTL)
		if err != nil {
			return 0, 0, badRequest("ttl %q is not a duration such as \"1h\" or \"30m\"", clip(req.TTL, 40))
		}
		if ttl <= 0 || ttl > maxEnrollmentTTL {
			return 0, 0, badRequest("ttl must be positive and at most %s (30 days)", maxEnrollmentTTL)
		}
	}
	if err := validateLabels(req.Labels); err != nil {
		return 0, 0, badRequest("%v", err)
	}
	if err := validateDescription(req.Description); err != nil {
		return 0, 0, err
	}
	return uses, ttl, nil
}

// validateDescription keeps descriptions short and printable: they end up
// in terminals through qinfractl, where control characters could rewrite
// the screen.
func validateDescription(d string) error {
	if len(d) > maxDescriptionLen {
		return badRequest("description is longer than %d bytes", maxDescriptionLen)
	}
	if !utf8.ValidString(d) {
		return badRequest("description is not valid UTF-8")
	}
	for _, c := range d {
		if unicode.IsControl(c) {
			return badRequest("description contains control characters")
		}
	}
	return nil
}

// handleCreateEnrollmentToken serves POST /api/v1/enrollment-tokens.
func (s *server) handleCreateEnrollmentToken(w http.ResponseWriter, r *http.Request) error {
	var req createEnrollmentTokenRequest
	if err := s.decodeJSON(w, r, &req); err != nil {
		return err
	}
	uses, ttl, err := req.validate(s.enrollTTL)
	if err != nil {
		return err
	}
	labels := req.Labels
	if labels == nil {
		labels = map[string]string{}
	}
	now := s.now().UTC()
	var (
		t      *store.EnrollmentToken
		secret string
	)
	// A 40-bit ID can collide; retry rather than lengthen every ID.
	for attempt := 0; ; attempt++ {
		var id string
		var hash []byte
		id, secret, hash = auth.GenerateSecret(auth.PrefixEnrollmentToken)
		t = &store.EnrollmentToken{
			ID:          id,
			Hash:        hash,
			Description: req.Description,
			Labels:      labels,
			UsesAllowed: uses,
			ExpiresAt:   now.Add(ttl),
			CreatedAt:   now,
			CreatedBy:   actor(r.Context()),
		}
		err = s.store.CreateEnrollmentToken(r.Context(), t)
		if errors.Is(err, store.ErrConflict) && attempt < 3 {
			continue
		}
		if err != nil {
			return fmt.Errorf("create enrollment token: %w", err)
		}
		break
	}
	if err := s.audit(r, "enrollment_token.create", "enrollment_token/"+t.ID, map[string]any{
		"uses":        uses,
		"ttl":         ttl.String(),
		"expires_at":  t.ExpiresAt,
		"labels":      labels,
		"description": req.Description,
	}); err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, createEnrollmentTokenResponse{
		Token:       secret,
		ID:          t.ID,
		ExpiresAt:   t.ExpiresAt,
		UsesAllowed: t.UsesAllowed,
		Labels:      labels,
		Description: t.Description,
	})
	return nil
}

// handleListEnrollmentTokens serves GET /api/v1/enrollment-tokens.
func (s *server) handleListEnrollmentTokens(w http.ResponseWriter, r *http.Request) error {
	tokens, err := s.store.ListEnrollmentTokens(r.Context())
	if err != nil {
		return fmt.Errorf("list enrollment tokens: %w", err)
	}
	now := s.now()
	views := make([]enrollmentTokenView, 0, len(tokens))
	for _, t := range tokens {
		state := "active"
		switch {
		case t.Used >= t.UsesAllowed:
			state = "used_up"
		case !now.Before(t.ExpiresAt):
			state = "expired"
		}
		labels := t.Labels
		if labels == nil {
			labels = map[string]string{}
		}
		views = append(views, enrollmentTokenView{
			ID:          t.ID,
			Description: t.Description,
			Labels:      labels,
			UsesAllowed: t.UsesAllowed,
			Used:        t.Used,
			ExpiresAt:   t.ExpiresAt.UTC(),
			CreatedAt:   t.CreatedAt.UTC(),
			CreatedBy:   t.CreatedBy,
			State:       state,
		})
	}
	writeJSON(w, http.StatusOK, struct {
		Tokens []enrollmentTokenView `json:"tokens"`
	}{views})
	return nil
}
