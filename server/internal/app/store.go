package app

import (
	"context"
	"strings"

	"github.com/quantumlayer/qinfra/server/internal/store"
	"github.com/quantumlayer/qinfra/server/internal/store/bboltstore"
	"github.com/quantumlayer/qinfra/server/internal/store/pgstore"
)

func isPostgres(url string) bool {
	return strings.HasPrefix(url, "postgres://") || strings.HasPrefix(url, "postgresql://")
}

// openStore opens the configured backend: PostgreSQL when cfg.Store is a
// URL, else the embedded bbolt file in the data directory.
func openStore(ctx context.Context, cfg Config) (store.Store, error) {
	if isPostgres(cfg.Store) {
		return pgstore.Open(ctx, cfg.Store, pgstore.Options{UnsafeDurability: cfg.UnsafeDurability, Logger: cfg.Logger})
	}
	return bboltstore.Open(Paths{cfg.DataDir}.Store(), bboltstore.Options{Logger: cfg.Logger})
}
