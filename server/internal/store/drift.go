package store

import (
	"context"
	"crypto/sha256"
	"time"

	"github.com/quantumlayer/qinfra/pkg/baseline"
)

// Drift is one deviation of one host from a baseline, from when it was
// first seen (OpenedAt) until it was last seen (ResolvedAt, zero while
// open). It is identified over time by host, baseline, rule and subject
// (baseline.Deviation.Identity): while open, a new evaluation updates its
// expected and actual values in place; once resolved, a recurrence opens a
// new Drift.
type Drift struct {
	ID     string `json:"id"`
	HostID string `json:"host_id"`
	baseline.Deviation
	OpenedAt   time.Time `json:"opened_at"`
	UpdatedAt  time.Time `json:"updated_at"`
	ResolvedAt time.Time `json:"resolved_at,omitzero"`
	// Acceptance, when set and not expired, means an operator accepted the
	// deviation. It is cleared when the actual value changes.
	Acceptance *Acceptance `json:"acceptance,omitempty"`
}

// Open reports whether the drift is unresolved.
func (d *Drift) Open() bool { return d.ResolvedAt.IsZero() }

// Accepted reports whether an acceptance covers the drift at now.
func (d *Drift) Accepted(now time.Time) bool {
	return d.Acceptance != nil && now.Before(d.Acceptance.Until)
}

// Acceptance is an operator's acceptance of a drift until a time.
type Acceptance struct {
	Justification string    `json:"justification"`
	Until         time.Time `json:"until"`
	By            string    `json:"by"`
	At            time.Time `json:"at"`
}

// HostDeviations is the current set of one host's deviations: all of them
// when Scope is nil, else those within Scope.
type HostDeviations struct {
	HostID string
	// Deviations is the host's complete drift when Scope is nil. When
	// Scope is set, it is the host's deviations within the scope only: the
	// result of a partial re-check (baseline.Scope).
	Deviations []baseline.Deviation
	// Scope, when set, limits the replacement to the open drift whose
	// identity it contains (baseline.Scope.ContainsIdentity): those not
	// among Deviations are resolved, while open drift outside the scope
	// is left untouched, neither resolved nor updated. Deviations are
	// opened and updated as without a scope, even one outside the scope:
	// the caller must not give such.
	Scope *baseline.Scope
}

// Drift change operations.
const (
	DriftOpened   = "opened"
	DriftUpdated  = "updated"
	DriftResolved = "resolved"
)

// DriftEvent is one change ReplaceHostDrift made.
type DriftEvent struct {
	Op    string `json:"op"`
	Drift *Drift `json:"drift"`
}

// DriftFilter selects drift for ListDrift. Zero fields match everything.
type DriftFilter struct {
	HostID   string
	Baseline string
	Type     string
	Severity string
	// All includes resolved drift; otherwise only open drift is listed.
	All bool
}

// DriftCount is how many drifts matching a filter share a host, baseline,
// type, severity and acceptance.
type DriftCount struct {
	HostID   string
	Baseline string
	Type     string
	Severity string
	// Accepted: an acceptance covers these drifts at the time counted
	// (Drift.Accepted).
	Accepted bool
	Count    int
}

// DriftStore persists drift and its history.
type DriftStore interface {
	// ReplaceHostDrift makes each host's open drift exactly its given
	// deviations, in one transaction for the whole batch: deviations not
	// open are opened at now, open ones whose values changed are updated
	// (an acceptance is cleared when Actual changed), open ones not given
	// are resolved at now. For a host with a Scope, only its open drift
	// within the scope (Scope.ContainsIdentity) is resolved when not
	// given; its open drift outside the scope is left as it is, and its
	// deviations are still opened and updated as above, whatever the
	// scope. It returns the changes; a host whose drift is unchanged
	// (within its scope, for a scoped host) costs reads only. Deviations
	// given twice for one identity: the first counts.
	ReplaceHostDrift(ctx context.Context, now time.Time, hosts ...HostDeviations) ([]DriftEvent, error)
	// GetDrift returns ErrNotFound for an unknown ID.
	GetDrift(ctx context.Context, id string) (*Drift, error)
	// ListDrift returns the drift matching f, ordered by host ID, then
	// OpenedAt, then ID.
	ListDrift(ctx context.Context, f DriftFilter) ([]*Drift, error)
	// AcceptDrift records an acceptance on an open drift and returns it.
	// ErrNotFound for an unknown ID, ErrInvalid for a resolved one.
	AcceptDrift(ctx context.Context, id string, a Acceptance) (*Drift, error)
	// CountDrift counts the drift matching f, grouped as DriftCount,
	// acceptances judged at now; groups are ordered by host ID, baseline,
	// type, severity, then not accepted before accepted. It answers what
	// ListDrift would, without returning every drift.
	CountDrift(ctx context.Context, f DriftFilter, now time.Time) ([]DriftCount, error)
	// ExpireDriftAcceptances clears acceptances whose Until is not after
	// now and returns the drift they covered (as it now is).
	ExpireDriftAcceptances(ctx context.Context, now time.Time) ([]*Drift, error)
	// PruneDrift deletes the drift resolved before resolvedBefore and
	// returns how many, also when it fails part way. Open drift, accepted
	// or not, is never deleted. It works in batches, so a large backlog
	// does not hold up writers; a pruned drift is gone from GetDrift and
	// ListDrift, and a recurrence of it opens a new drift as usual.
	PruneDrift(ctx context.Context, resolvedBefore time.Time) (int, error)
}

// DriftFingerprint covers what an update of an open drift can change;
// backends store it so that an unchanged host is recognised without
// decoding its drift. The baseline version is left out: a new version that
// leaves a deviation as it was does not rewrite it, so a drift's
// BaselineVersion is the version that opened or last changed it.
func DriftFingerprint(d *baseline.Deviation) []byte {
	h := sha256.New()
	for _, f := range []string{d.Type, d.Severity, d.Action, d.Expected, d.Actual} {
		h.Write([]byte(f))
		h.Write([]byte{0})
	}
	return h.Sum(nil)[:16]
}
