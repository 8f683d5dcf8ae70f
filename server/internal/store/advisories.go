package store

import (
	"context"
	"time"
)

// StoredAdvisory is one OSV advisory as persisted: a few fields to index
// and decide on, and the record itself.
type StoredAdvisory struct {
	ID       string    `json:"id"`
	Modified time.Time `json:"modified"`
	// Withdrawn advisories are kept, so that a re-import of the same
	// record is recognised as unchanged, but produce no findings.
	Withdrawn bool `json:"withdrawn,omitempty"`
	// Ecosystems and Packages are the advisory's affected ecosystems and
	// package names, for information and filtering.
	Ecosystems []string `json:"ecosystems,omitempty"`
	Packages   []string `json:"packages,omitempty"`
	// Raw is the record's JSON; it must be valid JSON.
	Raw []byte `json:"-"`
	// Revision is set by the store: the advisory revision (see
	// AdvisoryState) at which this version was put.
	Revision uint64 `json:"revision"`
}

// AdvisoryState summarises the stored advisories.
type AdvisoryState struct {
	// Count is the number of advisories stored, withdrawn ones included.
	Count int `json:"count"`
	// Withdrawn counts the withdrawn ones.
	Withdrawn int `json:"withdrawn"`
	// Revision increases with every PutAdvisories that changed anything;
	// zero means none ever did. Replicas compare it with the revision
	// their in-memory index was built from.
	Revision uint64 `json:"revision"`
	// UpdatedAt is when the last such PutAdvisories committed.
	UpdatedAt time.Time `json:"updated_at"`
}

// Advisories persists the vulnerability database, shared by replicas.
type Advisories interface {
	// PutAdvisories stores recs in one transaction, under one new
	// revision, replacing stored advisories with the same ID unless the
	// stored one's Modified is later (that one is kept). It returns an
	// error wrapping ErrInvalid, storing nothing, for an advisory without
	// ID, modified time or valid JSON. Nothing changing leaves the
	// revision as it was.
	PutAdvisories(ctx context.Context, recs []StoredAdvisory, now time.Time) error
	// AdvisoriesSince calls fn for every advisory whose stored version was
	// put at a revision greater than after (0: all of them), ordered by
	// revision then ID, stopping at fn's first error, which it returns.
	AdvisoriesSince(ctx context.Context, after uint64, fn func(StoredAdvisory) error) error
	// GetAdvisoryState returns the summary; the zero state for none.
	GetAdvisoryState(ctx context.Context) (AdvisoryState, error)
}

// Mute suppresses findings of one vulnerability, on one host or the whole
// fleet, until it expires. Muted findings are still shown, marked, but do
// not count towards risk scores and open counts.
type Mute struct {
	ID string `json:"id"`
	// HostID is the host the mute applies to; "" means every host.
	HostID string `json:"host_id,omitempty"`
	// Vulnerability is an advisory ID or a CVE ID (matched against a
	// finding's advisory ID, CVEs and aliases).
	Vulnerability string `json:"vulnerability"`
	// Package limits the mute to findings of this binary or source
	// package; "" means any package.
	Package       string    `json:"package,omitempty"`
	Justification string    `json:"justification"`
	Until         time.Time `json:"until"`
	CreatedBy     string    `json:"created_by"`
	CreatedAt     time.Time `json:"created_at"`
}

// Mutes persists finding mutes.
type Mutes interface {
	// PutMute creates m; ErrConflict when its ID exists, ErrInvalid
	// without ID or Vulnerability.
	PutMute(ctx context.Context, m *Mute) error
	// ListMutes returns every mute, expired ones included, ordered by ID.
	ListMutes(ctx context.Context) ([]*Mute, error)
	// DeleteMute deletes one; ErrNotFound for an unknown ID.
	DeleteMute(ctx context.Context, id string) error
}
