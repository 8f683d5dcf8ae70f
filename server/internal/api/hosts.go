package api

import (
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"time"

	"github.com/quantumlayer/qinfra/pkg/inventory"
	commonv1 "github.com/quantumlayer/qinfra/proto/gen/qinfra/common/v1"
	"github.com/quantumlayer/qinfra/server/internal/store"
)

// hostView is a host as the API shows it: the stored record, its live
// connection state and a summary of its inventory.
type hostView struct {
	ID           string            `json:"id"`
	Hostname     string            `json:"hostname"`
	Labels       map[string]string `json:"labels"`
	EnrolledAt   time.Time         `json:"enrolled_at"`
	LastSeen     time.Time         `json:"last_seen,omitzero"`
	Connected    bool              `json:"connected"`
	Revoked      bool              `json:"revoked"`
	RevokedAt    time.Time         `json:"revoked_at,omitzero"`
	AgentVersion string            `json:"agent_version,omitempty"`
	CertSerial   string            `json:"cert_serial,omitempty"`
	CertNotAfter time.Time         `json:"cert_not_after,omitzero"`
	OS           *osView           `json:"os,omitempty"`
	Inventory    inventorySummary  `json:"inventory"`
	// ItemCounts is filled for a single host only: counting costs a scan.
	ItemCounts map[string]int `json:"item_counts,omitempty"`
}

// osView is the host's OS facts from its agent's last Hello.
type osView struct {
	OS                   string    `json:"os,omitempty"`
	Platform             string    `json:"platform,omitempty"`
	PlatformFamily       string    `json:"platform_family,omitempty"`
	PlatformVersion      string    `json:"platform_version,omitempty"`
	PrettyName           string    `json:"pretty_name,omitempty"`
	VersionCodename      string    `json:"version_codename,omitempty"`
	KernelVersion        string    `json:"kernel_version,omitempty"`
	KernelArch           string    `json:"kernel_arch,omitempty"`
	BootTime             time.Time `json:"boot_time,omitzero"`
	VirtualizationSystem string    `json:"virtualization_system,omitempty"`
	VirtualizationRole   string    `json:"virtualization_role,omitempty"`
	MachineID            string    `json:"machine_id,omitempty"`
}

// inventorySummary is the state of the host's stored inventory.
type inventorySummary struct {
	Items     int       `json:"items"`
	UpdatedAt time.Time `json:"updated_at,omitzero"`
	NeedsFull bool      `json:"needs_full"`
}

func newOSView(f *commonv1.OSFacts) *osView {
	if f == nil {
		return nil
	}
	v := &osView{
		OS:                   f.GetOs(),
		Platform:             f.GetPlatform(),
		PlatformFamily:       f.GetPlatformFamily(),
		PlatformVersion:      f.GetPlatformVersion(),
		PrettyName:           f.GetPrettyName(),
		VersionCodename:      f.GetVersionCodename(),
		KernelVersion:        f.GetKernelVersion(),
		KernelArch:           f.GetKernelArch(),
		VirtualizationSystem: f.GetVirtualizationSystem(),
		VirtualizationRole:   f.GetVirtualizationRole(),
		MachineID:            f.GetMachineId(),
	}
	if bt := f.GetBootTime(); bt > 0 && bt < 1<<62 {
		v.BootTime = time.Unix(int64(bt), 0).UTC()
	}
	return v
}

// view builds a host's view; it reads the host's stream state.
func (s *server) view(r *http.Request, h *store.Host) (*hostView, error) {
	st, err := s.store.GetStreamState(r.Context(), h.ID)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("stream state of host %s: %w", h.ID, err)
	}
	labels := h.Labels
	if labels == nil {
		labels = map[string]string{}
	}
	return &hostView{
		ID:           h.ID,
		Hostname:     h.Hostname,
		Labels:       labels,
		EnrolledAt:   h.EnrolledAt.UTC(),
		LastSeen:     h.LastSeen.UTC(),
		Connected:    s.connected(h),
		Revoked:      h.Revoked,
		RevokedAt:    h.RevokedAt.UTC(),
		AgentVersion: h.AgentVersion,
		CertSerial:   h.CertSerial,
		CertNotAfter: h.CertNotAfter.UTC(),
		OS:           newOSView(h.Facts),
		Inventory: inventorySummary{
			Items:     st.Items,
			UpdatedAt: st.UpdatedAt.UTC(),
			NeedsFull: st.NeedsFull,
		},
	}, nil
}

// connected reports whether the host has a live stream here or, with
// several replicas, was seen recently enough to have one elsewhere.
func (s *server) connected(h *store.Host) bool {
	if s.live.Connected(h.ID) {
		return true
	}
	return s.peerLiveness > 0 && !h.Revoked && s.now().Sub(h.LastSeen) < s.peerLiveness
}

// getHost loads a host, with a 404 naming it when unknown.
func (s *server) getHost(r *http.Request, id string) (*store.Host, error) {
	h, err := s.store.GetHost(r.Context(), id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, errorf(http.StatusNotFound, codeNotFound, "host %s not found", clip(id, 100))
	}
	if err != nil {
		return nil, fmt.Errorf("get host %s: %w", id, err)
	}
	return h, nil
}

// handleListHosts serves GET /api/v1/hosts[?label=k=v...].
func (s *server) handleListHosts(w http.ResponseWriter, r *http.Request) error {
	sel, err := parseLabelSelector(r.URL.Query()["label"])
	if err != nil {
		return badRequest("%v", err)
	}
	hosts, err := s.store.ListHosts(r.Context())
	if err != nil {
		return fmt.Errorf("list hosts: %w", err)
	}
	views := make([]*hostView, 0, len(hosts))
	for _, h := range hosts {
		if !matchLabels(h.Labels, sel) {
			continue
		}
		v, err := s.view(r, h)
		if err != nil {
			return err
		}
		views = append(views, v)
	}
	writeJSON(w, http.StatusOK, struct {
		Hosts []*hostView `json:"hosts"`
	}{views})
	return nil
}

// handleGetHost serves GET /api/v1/hosts/{id}.
func (s *server) handleGetHost(w http.ResponseWriter, r *http.Request) error {
	h, err := s.getHost(r, r.PathValue("id"))
	if err != nil {
		return err
	}
	v, err := s.view(r, h)
	if err != nil {
		return err
	}
	counts, err := s.store.CountItems(r.Context(), h.ID)
	if err != nil {
		return fmt.Errorf("count items of host %s: %w", h.ID, err)
	}
	// Every known kind is listed, zero included, so a client can tell "no
	// services" from "services not reported by this API version".
	v.ItemCounts = make(map[string]int, len(inventory.Kinds))
	for _, k := range inventory.Kinds {
		v.ItemCounts[k] = 0
	}
	maps.Copy(v.ItemCounts, counts)
	writeJSON(w, http.StatusOK, v)
	return nil
}

// handleRevokeHost serves POST /api/v1/hosts/{id}/revoke. Revoking is
// idempotent: a second call keeps the first RevokedAt, but still closes any
// stream and is audited, since an operator retrying wants both guaranteed.
func (s *server) handleRevokeHost(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	now := s.now().UTC()
	var updated store.Host
	already := false
	err := s.store.UpdateHost(r.Context(), id, func(h *store.Host) error {
		if h.Revoked {
			already = true
		} else {
			h.Revoked, h.RevokedAt = true, now
		}
		updated = *h
		updated.Labels = maps.Clone(h.Labels)
		return nil
	})
	if errors.Is(err, store.ErrNotFound) {
		return errorf(http.StatusNotFound, codeNotFound, "host %s not found", clip(id, 100))
	}
	if err != nil {
		return fmt.Errorf("revoke host %s: %w", id, err)
	}
	// The stored flag makes the ingest layer refuse new streams; an open
	// one must be closed explicitly, or a compromised agent keeps talking.
	s.live.Disconnect(id, "revoked")
	if err := s.audit(r, "host.revoke", "host/"+id, map[string]any{"already_revoked": already}); err != nil {
		return err
	}
	v, err := s.view(r, &updated)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, v)
	return nil
}

// labelRequest is the body of POST /api/v1/hosts/{id}/labels.
type labelRequest struct {
	Set    map[string]string `json:"set"`
	Remove []string          `json:"remove"`
}

func (req *labelRequest) validate() error {
	if len(req.Set) == 0 && len(req.Remove) == 0 {
		return badRequest("nothing to change: give \"set\" and/or \"remove\"")
	}
	if len(req.Set) > maxLabels || len(req.Remove) > maxLabels {
		return badRequest("at most %d labels may be set or removed at once", maxLabels)
	}
	if err := validateLabels(req.Set); err != nil {
		return badRequest("%v", err)
	}
	for _, k := range req.Remove {
		if err := validateLabelKey(k); err != nil {
			return badRequest("remove: %v", err)
		}
		if _, ok := req.Set[k]; ok {
			return badRequest("label %q is both set and removed", k)
		}
	}
	return nil
}

// handleLabelHost serves POST /api/v1/hosts/{id}/labels.
func (s *server) handleLabelHost(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	var req labelRequest
	if err := s.decodeJSON(w, r, &req); err != nil {
		return err
	}
	if err := req.validate(); err != nil {
		return err
	}
	var updated store.Host
	err := s.store.UpdateHost(r.Context(), id, func(h *store.Host) error {
		labels := maps.Clone(h.Labels)
		if labels == nil {
			labels = map[string]string{}
		}
		maps.Copy(labels, req.Set)
		for _, k := range req.Remove {
			delete(labels, k)
		}
		if len(labels) > maxLabels {
			return badRequest("host would have %d labels; at most %d are allowed", len(labels), maxLabels)
		}
		h.Labels = labels
		updated = *h
		updated.Labels = maps.Clone(labels)
		return nil
	})
	if errors.Is(err, store.ErrNotFound) {
		return errorf(http.StatusNotFound, codeNotFound, "host %s not found", clip(id, 100))
	}
	var ae *apiError
	if errors.As(err, &ae) {
		return ae
	}
	if err != nil {
		return fmt.Errorf("label host %s: %w", id, err)
	}
	remove := slices.Clone(req.Remove)
	slices.Sort(remove)
	if err := s.audit(r, "host.label", "host/"+id, map[string]any{"set": req.Set, "remove": remove}); err != nil {
		return err
	}
	// Labels select baselines: the files the host's agent must hash for
	// them, and its drift, may have changed.
	s.live.ConfigChanged([]string{id})
	if _, err := s.drift.CheckHost(r.Context(), id); err != nil {
		return fmt.Errorf("re-check drift of %s (labels applied): %w", id, err)
	}
	v, err := s.view(r, &updated)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, v)
	return nil
}
