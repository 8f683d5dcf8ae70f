package store

import (
	"context"

	"github.com/quantumlayer/qinfra/pkg/baseline"
)

// Baselines persists golden baselines. Each name has immutable versions
// 1, 2, ...; a change makes a new version.
type Baselines interface {
	// PutBaseline stores b as the next version of b.Name and sets b.Version.
	// When b's content equals the latest version's (baseline.SameContent)
	// nothing is stored, b.Version is set to that version and created is
	// false. b.CreatedAt and b.CreatedBy are the caller's.
	PutBaseline(ctx context.Context, b *baseline.Baseline) (created bool, err error)
	// GetBaseline returns one version, or the latest for version 0.
	// ErrNotFound for an unknown name or version, or a deleted name.
	GetBaseline(ctx context.Context, name string, version int) (*baseline.Baseline, error)
	// ListBaselines returns the latest version of every baseline, by name.
	ListBaselines(ctx context.Context) ([]*baseline.Baseline, error)
	// ListBaselineVersions returns every version of a baseline, oldest
	// first. ErrNotFound for an unknown name.
	ListBaselineVersions(ctx context.Context, name string) ([]*baseline.Baseline, error)
	// DeleteBaseline deletes a baseline and all its versions. ErrNotFound
	// for an unknown name. A later PutBaseline of the name starts again at
	// version 1.
	DeleteBaseline(ctx context.Context, name string) error
}
