package api

import (
	"errors"
	"fmt"
	"io"
	"maps"
	"mime"
	"net/http"
	"slices"
	"strconv"

	"github.com/quantumlayer/qinfra/pkg/baseline"
	"github.com/quantumlayer/qinfra/server/internal/store"
)

// readBaseline reads a baseline document from the body: JSON or YAML by
// Content-Type, unknown fields refused, validated.
func (s *server) readBaseline(w http.ResponseWriter, r *http.Request) (*baseline.Baseline, error) {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	switch {
	case err != nil:
		return nil, errorf(http.StatusUnsupportedMediaType, codeUnsupportedMediaType, "Content-Type must be application/json or application/yaml")
	case mt == "application/json", mt == "application/yaml", mt == "application/x-yaml", mt == "text/yaml":
	default:
		return nil, errorf(http.StatusUnsupportedMediaType, codeUnsupportedMediaType, "Content-Type must be application/json or application/yaml")
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.maxBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, errorf(http.StatusRequestEntityTooLarge, codePayloadTooLarge, "request body exceeds %d bytes", tooBig.Limit)
		}
		return nil, badRequest("read request body: %v", err)
	}
	b, err := baseline.Parse(body)
	if err != nil {
		return nil, badRequest("%s", clip(err.Error(), 300))
	}
	return b, nil
}

// putBaseline stores b as a new version (unless unchanged), audits it,
// tells the agents when the files they must hash for it may have changed,
// and re-checks the hosts it selects now or selected before.
func (s *server) putBaseline(w http.ResponseWriter, r *http.Request, b *baseline.Baseline, action string, detail map[string]any) error {
	old, err := s.store.GetBaseline(r.Context(), b.Name, 0)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("get baseline %s: %w", b.Name, err)
	}
	b.CreatedAt, b.CreatedBy = s.now().UTC(), actor(r.Context())
	created, err := s.store.PutBaseline(r.Context(), b)
	if err != nil {
		return fmt.Errorf("put baseline: %w", err)
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
		if detail == nil {
			detail = map[string]any{}
		}
		detail["version"] = b.Version
		if err := s.audit(r, action, "baseline/"+b.Name, detail); err != nil {
			return err
		}
		s.live.BaselinesChanged()
		if watchedFilesChanged(old, b) {
			s.live.ConfigChanged(nil)
		}
		if _, err := s.drift.BaselineChanged(r.Context(), old, b); err != nil {
			return fmt.Errorf("re-check hosts of baseline %s (version %d stored): %w", b.Name, b.Version, err)
		}
	}
	stored, err := s.store.GetBaseline(r.Context(), b.Name, b.Version)
	if err != nil {
		return fmt.Errorf("get baseline %s: %w", b.Name, err)
	}
	writeJSON(w, status, map[string]any{"created": created, "baseline": stored})
	return nil
}

// handleApplyBaseline serves POST /api/v1/baselines.
func (s *server) handleApplyBaseline(w http.ResponseWriter, r *http.Request) error {
	b, err := s.readBaseline(w, r)
	if err != nil {
		return err
	}
	return s.putBaseline(w, r, b, "baseline.apply", nil)
}

// captureRequest is the body of POST /api/v1/baselines/capture.
type captureRequest struct {
	HostID          string            `json:"host_id"`
	Name            string            `json:"name"`
	Kinds           []string          `json:"kinds,omitempty"`
	MinimumVersions bool              `json:"minimum_versions,omitempty"`
	Selector        map[string]string `json:"selector,omitempty"`
	Description     string            `json:"description,omitempty"`
	Priority        int               `json:"priority,omitempty"`
	Image           string            `json:"image,omitempty"`
}

// handleCaptureBaseline serves POST /api/v1/baselines/capture.
func (s *server) handleCaptureBaseline(w http.ResponseWriter, r *http.Request) error {
	var req captureRequest
	if err := s.decodeJSON(w, r, &req); err != nil {
		return err
	}
	for _, k := range req.Kinds {
		if !contains(baseline.CaptureKinds, k) {
			return badRequest("kinds: %q is not one of package, file, user, service", clip(k, 40))
		}
	}
	if err := validateLabels(req.Selector); err != nil {
		return badRequest("selector: %v", err)
	}
	h, err := s.getHost(r, req.HostID)
	if err != nil {
		return err
	}
	items, err := s.store.ListItems(r.Context(), h.ID, "")
	if err != nil {
		return fmt.Errorf("capture from %s: %w", h.ID, err)
	}
	if len(items) == 0 {
		return errorf(http.StatusConflict, codeConflict, "host %s has reported no inventory yet", h.ID)
	}
	b := baseline.Capture(items, baseline.CaptureOptions{
		Name: req.Name, Kinds: req.Kinds, MinimumVersions: req.MinimumVersions, Selector: req.Selector,
		Description: req.Description, Priority: req.Priority, Image: req.Image, HostID: h.ID,
	})
	if err := b.Validate(); err != nil {
		return badRequest("%s", clip(err.Error(), 300))
	}
	return s.putBaseline(w, r, b, "baseline.capture", map[string]any{"host_id": h.ID, "kinds": req.Kinds, "minimum_versions": req.MinimumVersions})
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// handleListBaselines serves GET /api/v1/baselines.
func (s *server) handleListBaselines(w http.ResponseWriter, r *http.Request) error {
	bs, err := s.store.ListBaselines(r.Context())
	if err != nil {
		return fmt.Errorf("list baselines: %w", err)
	}
	if bs == nil {
		bs = []*baseline.Baseline{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"baselines": bs})
	return nil
}

// handleGetBaseline serves GET /api/v1/baselines/{name}[?version=N].
func (s *server) handleGetBaseline(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("name")
	version := 0
	if v := r.URL.Query().Get("version"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return badRequest("query parameter version must be a positive integer")
		}
		version = n
	}
	b, err := s.store.GetBaseline(r.Context(), name, version)
	if errors.Is(err, store.ErrNotFound) {
		return errorf(http.StatusNotFound, codeNotFound, "baseline %s not found", clip(name, 100))
	}
	if err != nil {
		return fmt.Errorf("get baseline: %w", err)
	}
	writeJSON(w, http.StatusOK, b)
	return nil
}

// handleListBaselineVersions serves GET /api/v1/baselines/{name}/versions.
func (s *server) handleListBaselineVersions(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("name")
	vs, err := s.store.ListBaselineVersions(r.Context(), name)
	if errors.Is(err, store.ErrNotFound) {
		return errorf(http.StatusNotFound, codeNotFound, "baseline %s not found", clip(name, 100))
	}
	if err != nil {
		return fmt.Errorf("list baseline versions: %w", err)
	}
	writeJSON(w, http.StatusOK, map[string]any{"name": name, "versions": vs})
	return nil
}

// handleDeleteBaseline serves DELETE /api/v1/baselines/{name}.
func (s *server) handleDeleteBaseline(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("name")
	old, err := s.store.GetBaseline(r.Context(), name, 0)
	if errors.Is(err, store.ErrNotFound) {
		return errorf(http.StatusNotFound, codeNotFound, "baseline %s not found", clip(name, 100))
	}
	if err != nil {
		return fmt.Errorf("get baseline: %w", err)
	}
	if err := s.store.DeleteBaseline(r.Context(), name); err != nil {
		return fmt.Errorf("delete baseline: %w", err)
	}
	if err := s.audit(r, "baseline.delete", "baseline/"+name, map[string]any{"last_version": old.Version}); err != nil {
		return err
	}
	s.live.BaselinesChanged()
	if watchedFilesChanged(old, nil) {
		s.live.ConfigChanged(nil)
	}
	if _, err := s.drift.BaselineChanged(r.Context(), old, nil); err != nil {
		return fmt.Errorf("re-check hosts of deleted baseline %s: %w", name, err)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// watchedFilesChanged reports whether a change of a baseline from old to
// updated (either nil for a creation or a deletion) can change the files
// agents are asked to hash for their baselines (ingest's baseline paths):
// its file paths changed, or its selector did while it has files. Every
// host may be concerned (the hosts either selector matches), so the caller
// tells all of them; the agents whose list is unchanged are sent nothing.
func watchedFilesChanged(old, updated *baseline.Baseline) bool {
	paths := func(b *baseline.Baseline) []string {
		if b == nil {
			return nil
		}
		out := make([]string, 0, len(b.Files))
		for _, f := range b.Files {
			out = append(out, f.Path)
		}
		slices.Sort(out)
		return out
	}
	po, pu := paths(old), paths(updated)
	if len(po) == 0 && len(pu) == 0 {
		return false
	}
	if !slices.Equal(po, pu) {
		return true
	}
	return !maps.Equal(old.Selector, updated.Selector)
}
