package api

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/quantumlayer/qinfra/pkg/baseline"
	"github.com/quantumlayer/qinfra/pkg/inventory"
	"github.com/quantumlayer/qinfra/server/internal/drift"
	"github.com/quantumlayer/qinfra/server/internal/store"
)

// Limits of drift acceptances.
const (
	maxAcceptance       = 365 * 24 * time.Hour
	maxJustificationLen = 1024
)

// Drift statuses as the API shows them.
const (
	driftOpen     = "open"
	driftAccepted = "accepted"
	driftResolved = "resolved"
)

// driftView is a drift with its status at the time of the request.
type driftView struct {
	*store.Drift
	Status string `json:"status"`
}

func (s *server) driftView(d *store.Drift, now time.Time) driftView {
	st := driftOpen
	switch {
	case !d.Open():
		st = driftResolved
	case d.Accepted(now):
		st = driftAccepted
	}
	return driftView{Drift: d, Status: st}
}

// handleHostDrift serves GET /api/v1/hosts/{id}/drift[?all=true]: the
// host's open drift (all: with resolved history), expected vs actual.
func (s *server) handleHostDrift(w http.ResponseWriter, r *http.Request) error {
	h, err := s.getHost(r, r.PathValue("id"))
	if err != nil {
		return err
	}
	all, _ := strconv.ParseBool(r.URL.Query().Get("all"))
	ds, err := s.store.ListDrift(r.Context(), store.DriftFilter{HostID: h.ID, All: all})
	if err != nil {
		return fmt.Errorf("list drift: %w", err)
	}
	now := s.now()
	out := make([]driftView, 0, len(ds))
	for _, d := range ds {
		out = append(out, s.driftView(d, now))
	}
	// File rules the agent gives no answer to are not drift (see
	// baseline.Unverified); show them, so a rule that is never checked
	// does not pass for one that holds.
	bs, err := s.store.ListBaselines(r.Context())
	if err != nil {
		return fmt.Errorf("list baselines: %w", err)
	}
	files, err := s.store.ListItems(r.Context(), h.ID, inventory.KindFile)
	if err != nil {
		return fmt.Errorf("list files: %w", err)
	}
	unverified := baseline.Unverified(drift.Matching(bs, h.Labels), files)
	if unverified == nil {
		unverified = []baseline.UnverifiedRule{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"host_id": h.ID, "drift": out, "unverified": unverified})
	return nil
}

// envOf is the environment a host's labels put it in.
func envOf(labels map[string]string) string {
	if v, ok := labels["env"]; ok {
		return v
	}
	return labels["environment"]
}

// envStats is one environment's line of the summary.
type envStats struct {
	Hosts           int     `json:"hosts"`
	Drifted         int     `json:"drifted"`
	DriftPercentage float64 `json:"drift_percentage"`
}

// handleDriftSummary serves GET /api/v1/drift[?baseline=][&type=][&severity=]
// [&list=true]: fleet-wide counts of open drift by type, severity and
// baseline, and the share of drifted hosts per environment (label env).
// Accepted drift is counted apart and does not make a host drifted.
func (s *server) handleDriftSummary(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	f := store.DriftFilter{Baseline: q.Get("baseline"), Type: q.Get("type"), Severity: q.Get("severity")}
	list, _ := strconv.ParseBool(q.Get("list"))
	now := s.now()
	// Without the list, the store counts: no drift is read in full.
	var counts []store.DriftCount
	var views []driftView
	if list {
		ds, err := s.store.ListDrift(r.Context(), f)
		if err != nil {
			return fmt.Errorf("list drift: %w", err)
		}
		for _, d := range ds {
			counts = append(counts, store.DriftCount{HostID: d.HostID, Baseline: d.Baseline, Type: d.Type, Severity: d.Severity,
				Accepted: d.Accepted(now), Count: 1})
			views = append(views, s.driftView(d, now))
		}
	} else {
		var err error
		if counts, err = s.store.CountDrift(r.Context(), f, now); err != nil {
			return fmt.Errorf("count drift: %w", err)
		}
	}
	hosts, err := s.store.ListHosts(r.Context())
	if err != nil {
		return fmt.Errorf("list hosts: %w", err)
	}
	byType, bySev, byBaseline := map[string]int{}, map[string]int{}, map[string]int{}
	drifted := map[string]bool{}
	open, accepted := 0, 0
	for _, c := range counts {
		if c.Accepted {
			accepted += c.Count
			continue
		}
		open += c.Count
		byType[c.Type] += c.Count
		bySev[c.Severity] += c.Count
		byBaseline[c.Baseline] += c.Count
		drifted[c.HostID] = true
	}
	envs := map[string]*envStats{}
	total := 0
	for _, h := range hosts {
		if h.Revoked {
			continue
		}
		total++
		e := envs[envOf(h.Labels)]
		if e == nil {
			e = &envStats{}
			envs[envOf(h.Labels)] = e
		}
		e.Hosts++
		if drifted[h.ID] {
			e.Drifted++
		}
	}
	for _, e := range envs {
		e.DriftPercentage = percent(e.Drifted, e.Hosts)
	}
	out := map[string]any{
		"total_hosts": total, "drifted_hosts": len(drifted), "drift_percentage": percent(len(drifted), total),
		"open": open, "accepted": accepted,
		"by_type": byType, "by_severity": bySev, "by_baseline": byBaseline, "by_environment": envs,
	}
	if list {
		if views == nil {
			views = []driftView{}
		}
		out["drift"] = views
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func percent(n, of int) float64 {
	if of == 0 {
		return 0
	}
	return float64(int(float64(n)*10000/float64(of)+0.5)) / 100
}

// detectRequest is the body of POST /api/v1/drift/detect: a label selector,
// with the product notes' platform, datacenter and environment as
// shorthands for the labels of those names.
type detectRequest struct {
	Selector    map[string]string `json:"selector,omitempty"`
	Platform    string            `json:"platform,omitempty"`
	Datacenter  string            `json:"datacenter,omitempty"`
	Environment string            `json:"environment,omitempty"`
}

// detectDetail is one line of the detect answer, as in the product notes
// plus the rule and subject.
type detectDetail struct {
	NodeID        string `json:"node_id"`
	Hostname      string `json:"hostname"`
	DriftID       string `json:"drift_id"`
	Baseline      string `json:"baseline"`
	DriftType     string `json:"drift_type"`
	Severity      string `json:"severity"`
	Action        string `json:"action"`
	Kind          string `json:"kind"`
	Key           string `json:"key"`
	Rule          string `json:"rule"`
	Current       string `json:"current"`
	Expected      string `json:"expected"`
	ExpectedImage string `json:"expected_image,omitempty"`
	CurrentImage  string `json:"current_image,omitempty"`
}

// handleDetectDrift serves POST /api/v1/drift/detect: re-check the
// selected hosts now and answer with their open, unaccepted drift.
func (s *server) handleDetectDrift(w http.ResponseWriter, r *http.Request) error {
	var req detectRequest
	if err := s.decodeJSON(w, r, &req); err != nil {
		return err
	}
	sel := map[string]string{}
	for k, v := range req.Selector {
		sel[k] = v
	}
	for k, v := range map[string]string{"platform": req.Platform, "datacenter": req.Datacenter, "environment": req.Environment} {
		if v != "" {
			sel[k] = v
		}
	}
	if err := validateLabels(sel); err != nil {
		return badRequest("selector: %v", err)
	}
	hosts, err := s.drift.CheckSelected(r.Context(), sel)
	if err != nil {
		return err
	}
	bs, err := s.store.ListBaselines(r.Context())
	if err != nil {
		return fmt.Errorf("list baselines: %w", err)
	}
	images := map[string]string{}
	for _, b := range bs {
		images[b.Name] = b.Metadata.Image
	}
	now := s.now()
	details := []detectDetail{}
	drifted := 0
	for _, h := range hosts {
		if h.Revoked {
			continue
		}
		ds, err := s.store.ListDrift(r.Context(), store.DriftFilter{HostID: h.ID})
		if err != nil {
			return fmt.Errorf("list drift: %w", err)
		}
		n := 0
		for _, d := range ds {
			if d.Accepted(now) {
				continue
			}
			n++
			details = append(details, detectDetail{
				NodeID: h.ID, Hostname: h.Hostname, DriftID: d.ID, Baseline: d.Baseline, DriftType: d.Type, Severity: d.Severity,
				Action: d.Action, Kind: d.Kind, Key: d.Key, Rule: d.Rule, Current: d.Actual, Expected: d.Expected,
				ExpectedImage: images[d.Baseline], CurrentImage: h.Labels["image"],
			})
		}
		if n > 0 {
			drifted++
		}
	}
	total := 0
	for _, h := range hosts {
		if !h.Revoked {
			total++
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"total_nodes": total, "drifted_nodes": drifted, "details": details})
	return nil
}

// acceptRequest is the body of POST /api/v1/drift/{id}/accept.
type acceptRequest struct {
	Justification string `json:"justification"`
	// Until (RFC 3339) or TTL (a Go duration) says when the acceptance
	// ends; exactly one is required.
	Until string `json:"until,omitempty"`
	TTL   string `json:"ttl,omitempty"`
}

// handleAcceptDrift serves POST /api/v1/drift/{id}/accept.
func (s *server) handleAcceptDrift(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	var req acceptRequest
	if err := s.decodeJSON(w, r, &req); err != nil {
		return err
	}
	if req.Justification == "" || len(req.Justification) > maxJustificationLen {
		return badRequest("justification is required, at most %d bytes", maxJustificationLen)
	}
	now := s.now().UTC()
	var until time.Time
	switch {
	case req.Until != "" && req.TTL != "":
		return badRequest("give until or ttl, not both")
	case req.Until != "":
		t, err := time.Parse(time.RFC3339, req.Until)
		if err != nil {
			return badRequest("until must be an RFC 3339 time")
		}
		until = t.UTC()
	case req.TTL != "":
		d, err := time.ParseDuration(req.TTL)
		if err != nil || d <= 0 {
			return badRequest("ttl must be a positive duration")
		}
		until = now.Add(d)
	default:
		return badRequest("until or ttl is required: an acceptance expires")
	}
	if !until.After(now) || until.Sub(now) > maxAcceptance {
		return badRequest("the acceptance must end in the future, within %s", maxAcceptance)
	}
	d, err := s.store.AcceptDrift(r.Context(), id, store.Acceptance{Justification: req.Justification, Until: until, By: actor(r.Context()), At: now})
	switch {
	case errors.Is(err, store.ErrNotFound):
		return errorf(http.StatusNotFound, codeNotFound, "drift %s not found", clip(id, 100))
	case errors.Is(err, store.ErrInvalid):
		return errorf(http.StatusConflict, codeConflict, "drift %s is resolved", clip(id, 100))
	case err != nil:
		return fmt.Errorf("accept drift: %w", err)
	}
	if err := s.audit(r, "drift.accept", "host/"+d.HostID, map[string]any{
		"drift_id": d.ID, "baseline": d.Baseline, "rule": d.Rule, "key": d.Key, "actual": d.Actual,
		"justification": req.Justification, "until": until,
	}); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, s.driftView(d, now))
	return nil
}
