-- qinfra PostgreSQL schema, version 4: pruning of resolved drift.

-- PruneDrift finds the drift resolved before a time with this index, its
-- cost that of the rows deleted; open drift (resolved_at NULL) stays out.
CREATE INDEX drift_resolved ON drift (resolved_at) WHERE resolved_at IS NOT NULL;
